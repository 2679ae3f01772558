"""Study 4: the protocol table of study 3 on Fashion-MNIST.

Full Fashion-MNIST (Debian's ``dataset-fashion-mnist`` files); driver G = CNN, O =
ResNet-mini, O2 = MLP, all trained on Fashion-MNIST (no pretrained model here). Pairs:
sneaker -> ankle boot, shirt -> coat, T-shirt/top -> dress (``evaluate.FASHION_PAIRS``);
up to 100 test sources per pair. Methods, budgets and statistics as in protocol.py (the
follow-up has no Fashion-MNIST numbers).

    python experiments/fashion.py            # 300 sources
    python experiments/fashion.py --quick    # 12 sources, 1-epoch models
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lens_jax import evaluate as ev  # noqa: E402
from lens_jax.studies import reference  # noqa: E402
from lens_jax.studies import protocol  # noqa: E402


def main(argv=None, *, load=None) -> dict:
    parser = protocol.study_parser(__doc__.splitlines()[0], out="outputs/fashion", n=300,
                                  n_boot=2000, chunk=64, methods=",".join(ev.METHODS))
    args = protocol.parse_study_args(parser, argv=argv)
    n, n_boot = (min(args.n, 12), min(args.n_boot, 200)) if args.quick else (args.n, args.n_boot)
    title = "Study 4: protocol table on Fashion-MNIST"
    t0 = time.perf_counter()
    study = protocol.protocol_study(
        args.out, dataset="fashion_mnist", pairs=reference.FASHION_PAIRS,
        n_per_pair=max(1, n // len(reference.FASHION_PAIRS)), load=load, ccexam=False,
        quick=args.quick, methods=[m.strip() for m in args.methods.split(",")],
        n_boot=n_boot, chunk=args.chunk, seed=args.seed, title=title)
    protocol.write_study(study, title=title, wall_s=time.perf_counter() - t0,
                        argv=["experiments/fashion.py", *args.argv])
    return study


if __name__ == "__main__":
    main()
