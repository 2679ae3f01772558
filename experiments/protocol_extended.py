"""Study: the protocol extended to robust drivers and flow-coherent domains.

Drivers {standard CNN, adversarially trained CNN (L2 PGD)} x every edit domain (pixel,
Fourier phase, CSP phase, joint CSP, CSP flow, joint CSP flow, pixel warp) x matched image-L2
budgets {1, 2, 4} x modes {fixed, live}, on mnist5k (3 -> 8, 1 -> 7, 5 -> 6) and
Fashion-MNIST (sneaker -> ankle boot, shirt -> coat, T-shirt -> dress).  Per cell: budget
reach, the driver's median p(target) with a 95% source-cluster bootstrap interval, transfer
to the independent classifiers (ResNet-mini, MLP, the pretrained ccexam CNN on MNIST) and
to the OTHER driver, all independent classifiers together, warp-explained energy E (warp,
warp + gain), the largest phase change and target specificity (mean cosine between the
edits one source receives toward every other class; near 1: "less source", not "more
target").

    python experiments/protocol_extended.py                    # 30 sources per pair
    python experiments/protocol_extended.py --quick            # tiny, 1-epoch models
    python experiments/protocol_extended.py --datasets mnist5k --modes fixed
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lens_jax import data  # noqa: E402
from lens_jax import evaluate as ev  # noqa: E402
from lens_jax.studies import reference  # noqa: E402
from lens_jax.studies import job  # noqa: E402
from lens_jax.tables import record_command, write_tables  # noqa: E402

PAIRS = {"mnist5k": reference.MNIST_PAIRS, "fashion_mnist": reference.FASHION_PAIRS}
DRIVERS = ("cnn", "cnn+robust")


def run_dataset(dataset: str, args, out: Path) -> list[dict]:
    quick = args.quick
    print(f"== {dataset}: classifiers (trained once, then cached)", flush=True)
    drivers, rows = job.load_drivers(DRIVERS, dataset, quick=quick)
    evaluators, ev_rows = job.load_evaluators(
        dataset, models=("mlp",) if quick else ("resnet_mini", "mlp"),
        ccexam=dataset == "mnist5k", quick=quick)
    write_tables(rows + ev_rows, out / "classifiers")
    x, y = data.load(dataset, "test")
    n = 2 if quick else args.n
    src = ev.select_sources(x, y, PAIRS[dataset], n_per_pair=n,
                            driver=drivers[DRIVERS[0]], seed=None)
    print(f"   {len(src.id)} sources: the first {n} test images per pair that the "
          "standard driver classifies correctly", flush=True)
    domains = ("pixel", "csp_phase") if quick else job.default_domains()
    modes = tuple(args.modes.split(","))
    budgets = [4.0] if quick else [float(b) for b in args.budgets.split(",")]
    records = []
    for name, fn in drivers.items():
        other = {"other driver": f for k, f in drivers.items() if k != name}
        recs, _ = job.measure({name: fn}, src, {**evaluators, **other}, domains=domains,
                              budgets=budgets, modes=modes, spec_budget=max(budgets),
                              n_specificity=1 if quick else args.n_specificity,
                              num_classes=int(y.max()) + 1, n_boot=200,
                              warp_steps=20 if quick else 200)
        records += recs
    classifiers = list(evaluators) + ["other driver"]
    summary = ev.summarise(records, group=("driver", "mode", "B", "method"),
                           classifiers=classifiers, together=list(evaluators),
                           n_boot=200 if quick else args.n_boot)
    shown = ev.display_rows(summary, classifiers, lead=("driver", "mode", "B", "method"),
                            together_label="all independent")
    write_tables(records, out / "per_source")
    write_tables(summary, out / "summary_raw")
    paths = write_tables(shown, out / "summary")
    print(paths["md"].read_text(), flush=True)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/protocol_extended")
    p.add_argument("--datasets", default="mnist5k,fashion_mnist")
    p.add_argument("--n", type=int, default=30, help="sources per pair (default 30)")
    p.add_argument("--modes", default="fixed,live")
    p.add_argument("--budgets", default="1,2,4")
    p.add_argument("--n-specificity", type=int, default=3,
                   help="sources per pair for target specificity (default 3)")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--quick", action="store_true", help="tiny version (smoke test)")
    args = p.parse_args(argv)
    unknown = [d for d in args.datasets.split(",") if d not in PAIRS]
    if unknown:
        p.error(f"unknown data set(s) {unknown}; choose from {', '.join(PAIRS)}")
    t0 = time.perf_counter()
    out = Path(args.out)
    for dataset in args.datasets.split(","):
        try:
            run_dataset(dataset, args, out / dataset)
        except data.DataUnavailableError as e:
            print(f"   skipped {dataset}: {e}", flush=True)
    record_command(out, time.perf_counter() - t0,
                   argv=["experiments/protocol_extended.py", *(argv or sys.argv[1:])])
    print(f"done in {time.perf_counter() - t0:.0f} s: {out}/*/summary.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
