"""Study 2: MNIST pairs 3 -> 8, 1 -> 7, 5 -> 6 in every domain at matched L2 budgets.

Driver: the CNN trained on mnist5k; independent evaluators: ResNet-mini, MLP (trained on
mnist5k) and the pretrained ccexam CNN.  For the first ``--per-pair`` test images of each
source class that the driver classifies correctly, every domain is morphed toward the
target at each budget (1 and 2 are the protocol's MNIST budgets; 4 shows where the edits
go when pushed further).  The first source of each pair gets strips, GIFs and figures at
``--fig-budget`` and a gallery (source and every domain's endpoint, one row per pair);
every source gets transfer, E and the target specificity of its edits (mean pairwise
cosine of its edits toward the nine other digits).

    python experiments/mnist_pairs.py [--out outputs/mnist_pairs] [--per-pair 2]
        [--budgets 1,2,4] [--fig-budget 2] [--frames 12] [--mode fixed] [--quick]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lens_jax import evaluate as ev  # noqa: E402
from lens_jax.studies import reference  # noqa: E402
from lens_jax.studies import job, protocol  # noqa: E402
from lens_jax.tables import markdown_table, record_command, write_tables  # noqa: E402


def main(argv=None) -> int:
    parser = protocol.study_parser(__doc__.splitlines()[0], out="outputs/mnist_pairs",
                                  per_pair=2, budgets="1,2,4", fig_budget=2.0, frames=12,
                                  mode="fixed", domains=",".join(ev.METHODS), n_boot=2000)
    args = protocol.parse_study_args(parser, argv=argv)
    out = Path(args.out)
    budgets = sorted(float(b) for b in args.budgets.split(","))
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    pairs, per_pair, frames, n_boot = reference.MNIST_PAIRS, args.per_pair, args.frames, args.n_boot
    if args.quick:
        pairs, per_pair, frames, n_boot = pairs[:1], 1, 3, 100
        budgets, domains = [args.fig_budget], ["pixel", "csp_phase"]
    t0 = time.perf_counter()
    print(f"[mnist_pairs] classifiers; writing to {out}/", flush=True)
    drivers, rows = job.load_drivers(["cnn"], "mnist5k", quick=args.quick, seed=args.seed)
    evaluators, ev_rows = job.load_evaluators(
        "mnist5k", models=() if args.quick else ("resnet_mini", "mlp"), quick=args.quick,
        seed=args.seed)
    from lens_jax import data
    x, y = data.load("mnist5k", "test")
    names = [str(k) for k in range(10)]
    src = ev.select_sources(x, y, pairs, n_per_pair=per_pair, driver=drivers["cnn"],
                            seed=None)
    print(f"[mnist_pairs] {len(src.id)} sources; figures at L2 = {args.fig_budget:g}",
          flush=True)
    g_rows, views, _ = job.gallery(drivers, src, evaluators, domains=domains,
                                   budget=args.fig_budget, n_frames=frames, out=out,
                                   class_names=names, modes=(args.mode,), strips=True)
    grid = []
    for k in range(len(pairs)):
        vs = [v for v in views if v["pair"] == views[k * len(domains)]["pair"]]
        grid.append([(vs[0]["source_image"], vs[0]["pair"])]
                    + [(v["frames"][-1], f"{ev.label(v['domain'])}\n"
                                         f"p={v['p_target'][-1]:.3f}") for v in vs])
    gal = protocol.grid_figure(out / f"gallery_B{args.fig_budget:g}.png", grid,
                              suptitle=f"Endpoints at the same image change "
                                       f"(L2 = {args.fig_budget:g})")
    print(f"[mnist_pairs] every source x domain x budget {budgets}", flush=True)
    records, summary = job.measure(drivers, src, evaluators, domains=domains,
                                   budgets=budgets, modes=(args.mode,),
                                   spec_budget=args.fig_budget, n_specificity=per_pair,
                                   num_classes=10, n_boot=n_boot,
                                   warp_steps=20 if args.quick else 200)
    shown = ev.display_rows(summary, list(evaluators), lead=("B", "method"))
    paths = {"figures": write_tables(g_rows, out / "results")["md"],
             "per source": write_tables(records, out / "per_source")["md"],
             "summary": write_tables(shown, out / "summary")["md"]}
    write_tables(summary, out / "summary_raw")
    wall = time.perf_counter() - t0
    record_command(out, wall, argv=["experiments/mnist_pairs.py", *args.argv])
    print(markdown_table(shown))
    print(f"[mnist_pairs] wall {wall:.0f} s; gallery {gal}; tables "
          + ", ".join(f"{k}: {v}" for k, v in paths.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
