"""Study 4: the protocol table of study 3 on Fashion-MNIST.

Full Fashion-MNIST (60k/10k, Debian's ``dataset-fashion-mnist`` files via
``lens_jax.data.load("fashion_mnist", ...)``); driver G = CNN, O = ResNet-mini,
O2 = MLP, all trained on Fashion-MNIST with :func:`lens_jax.train.load_or_train`
(there is no pretrained ccexam model here). Pairs: sneaker -> ankle boot,
shirt -> coat, T-shirt/top -> dress; up to 100 test sources per pair that the driver
classifies correctly (seeded random subset). Methods, budgets, statistics, figures
and outputs as in ``protocol.py`` (the follow-up has no Fashion-MNIST numbers).

    python experiments/fashion.py            # 300 sources
    python experiments/fashion.py --quick    # 12 sources, 1-epoch models
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments import common  # noqa: E402
from experiments import protocol as P  # noqa: E402

FASHION_PAIRS = ((7, 9), (6, 4), (0, 3))   # sneaker->ankle boot, shirt->coat, T-shirt->dress


def main(argv=None, *, load=None) -> dict:
    args = common.experiment_args(
        "Study 4: the protocol table (pixel / Fourier phase / CSP phase / joint CSP at "
        "matched L2 budgets 1 and 2) on Fashion-MNIST.",
        argv=argv, out="outputs/fashion", n=300, n_boot=2000, chunk=64,
        methods=",".join(P.METHODS))
    if args.quick and not any(a == "--out" or a.startswith("--out=") for a in args.argv):
        args.out = args.out.rstrip("/") + "_quick"   # never overwrite a full run
    title = "Study 4: protocol table on Fashion-MNIST"
    with common.Timer() as t:
        study = P.protocol_study(args, dataset="fashion_mnist", pairs=FASHION_PAIRS,
                                 ccexam=False, followup=None, title=title, load=load)
    P.finish(args, study, t.wall_s, title, "experiments/fashion.py")
    return study


if __name__ == "__main__":
    main()
