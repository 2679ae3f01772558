"""Study: does stopping a CSP-phase extrapolation before its phases wrap change transfer?

For the first ``--n`` mnist5k test digits per pair (3 -> 8, 1 -> 7, 5 -> 6) that the
standard driver classifies correctly, and for the standard and robust drivers, the fixed
CSP-phase morph to L2 = ``--budget`` is computed twice: as is, and with
``stop_before_wrap=True`` (the extrapolation stops at the largest amplification whose
largest phase change is at most pi).  Per setting: the fraction of coefficients whose phase
moved by more than pi at the endpoint (``Morph.wrapped``), the L2 actually reached, the
driver's p(target) and how many endpoints each independent classifier calls the target.

    python experiments/wrapping.py [--n 10] [--budget 4] [--out outputs/wrapping]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lens_jax import data, morph_batch  # noqa: E402
from lens_jax import evaluate as ev  # noqa: E402
from lens_jax.studies import reference  # noqa: E402
from lens_jax.studies import job  # noqa: E402
from lens_jax.tables import markdown_table, record_command, write_tables  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10, help="sources per pair (default 10)")
    p.add_argument("--budget", type=float, default=4.0)
    p.add_argument("--out", default="outputs/wrapping")
    p.add_argument("--quick", action="store_true", help="tiny version (smoke test)")
    args = p.parse_args(argv)
    t0, out = time.perf_counter(), Path(args.out)
    n = 1 if args.quick else args.n
    drivers, _ = job.load_drivers(("cnn", "cnn+robust"), "mnist5k", quick=args.quick)
    evaluators, _ = job.load_evaluators("mnist5k", models=("mlp",) if args.quick
                                        else ("resnet_mini", "mlp"), quick=args.quick)
    x, y = data.load("mnist5k", "test")
    src = ev.select_sources(x, y, reference.MNIST_PAIRS, n_per_pair=n, driver=drivers["cnn"],
                            seed=None)
    rows = []
    for name, fn in drivers.items():
        for stop in (False, True):
            m = morph_batch(fn, src.images, target=src.target, source=src.source,
                            domain="csp_phase", l2_budget=[args.budget],
                            stop_before_wrap=stop)
            ends = np.asarray(m.frames)[:, -1]
            row = {"driver": name, "stop_before_wrap": stop, "n": len(ends),
                   "wrapped (median)": float(np.median(np.asarray(m.wrapped)[:, -1])),
                   "L2 reached (median)": float(np.median(np.asarray(m.l2)[:, -1])),
                   "driver p(target) (median)": float(np.median(
                       np.asarray(m.probs)[np.arange(len(ends)), -1, src.target]))}
            hits = []
            for e, f in evaluators.items():
                pred = ev.predict(f, ends).argmax(1)
                row[e] = f"{int(np.sum(pred == src.target))}/{len(ends)}"
                hits.append(pred == src.target)
            row["all"] = f"{int(np.sum(np.all(hits, axis=0)))}/{len(ends)}"
            rows.append(row)
            print(markdown_table([row]), flush=True)
    paths = write_tables(rows, out / "wrapping")
    record_command(out, time.perf_counter() - t0, argv=["experiments/wrapping.py",
                                                         *(argv or sys.argv[1:])])
    print(markdown_table(rows))
    print(f"[wrapping] {paths['md']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
