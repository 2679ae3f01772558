"""Study 6: ablations of the lens on mnist5k at image-L2 budget B = 2.

On 60 sources (20 per pair 3->8, 1->7, 5->6; test images the driver classifies
correctly) and the classifiers of study 3, every setting is one batched run; each row
reports reach, endpoint L2 (median [IQR]; only unmatched schedules vary), the driver's
median p(target) with a 95% source-cluster bootstrap interval, G flips, transfer counts,
warp-explained energy E and the largest phase change.  Groups: domain (pixel, Fourier
phase, CSP phase, CSP amplitude, joint CSP); pyramid (height, order, orientations);
mode (fixed, live, live_local); schedule (matched budget, one raw alpha for all sources,
per-frame caps, the follow-up's step-local reference schedule and fixed edits at its
distance); loss (NLL vs logit margin).

    python experiments/ablations.py                          # 60 sources
    python experiments/ablations.py --quick                  # 6 sources, fewer settings
    python experiments/ablations.py --groups mode,schedule   # some groups only
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
from lens_jax.tables import write_csv, write_tables  # noqa: E402

BUDGET = 2.0


def main(argv=None, *, load=None) -> dict:
    parser = protocol.study_parser(__doc__.splitlines()[0], out="outputs/ablations", n=60,
                                  n_boot=2000, chunk=64,
                                  groups=",".join(protocol.ABLATION_GROUPS))
    args = protocol.parse_study_args(parser, argv=argv)
    n, n_boot = (min(args.n, 6), min(args.n_boot, 200)) if args.quick else (args.n, args.n_boot)
    t0 = time.perf_counter()
    out = Path(args.out)
    if load is None:
        from lens_jax import data
        from lens_jax.studies.job import load_classifiers
        images, labels = data.load("mnist5k", "test")
        names = data.class_names("mnist5k")
        driver, independent, cinfo = load_classifiers("mnist5k", ccexam=True,
                                                      quick=args.quick, seed=args.seed)
    else:
        images, labels, names, driver, independent, cinfo = load("mnist5k")
    src = ev.select_sources(images, labels, reference.MNIST_PAIRS, driver=driver, seed=args.seed,
                            n_per_pair=max(1, n // len(reference.MNIST_PAIRS)))
    print(f"[ablations] {len(src.id)} sources; writing to {out}/", flush=True)
    settings = protocol.ablation_settings(
        quick=args.quick, shape=images.shape[1:3], budget=BUDGET,
        groups=[g.strip() for g in args.groups.split(",") if g.strip()])
    records, results = protocol.run_ablations(driver, src, independent, settings=settings,
                                             chunk=args.chunk,
                                             warp_steps=50 if args.quick else 200)
    classifiers = list(independent)
    together = [c for c in ("O", "O2") if c in classifiers] or None
    rows = ev.summarise(records, group=("group", "setting"), classifiers=classifiers,
                        together=together, n_boot=n_boot, seed=args.seed)
    notes = {(r["group"], r["setting"]): r["note"] for r in records if r.get("note")}
    for r in rows:
        r["note"] = notes.get((r["group"], r["setting"]), "")
    shown = ev.display_rows(rows, classifiers, lead=("group", "setting"), show_l2=True,
                            together_label="O & O2")
    for d, r in zip(shown, rows):
        d["setting"] += f" ({r['note']})" if r["note"] else ""
    paths = write_tables(shown, out / "table")
    write_tables(rows, out / "table_raw")
    write_csv(out / "endpoints.csv", records)
    print(paths["md"].read_text(), flush=True)
    keys = [((r["group"], r["setting"]), -1, r["setting"][:18]) for r in rows]
    grid = protocol.endpoint_rows(src, results, keys, names, per_pair=1)
    figs = [(protocol.grid_figure(out / "endpoints.png", grid,
                                 suptitle="Endpoint of every setting (driver p(target))"),
             "Endpoint of every setting for one source per pair"),
            (protocol.summary_figure(out / "summary.png", rows,
                                    [f"[{r['group']}] {r['setting']}" for r in rows]),
             "Median driver p(target) and E per setting (95% source-cluster bootstrap)")]
    sections = [
        {"title": "Setup", "text": (
            f"mnist5k test split, pairs 3->8, 1->7, 5->6, {len(src.id)} sources the driver "
            "classifies correctly (seeded subset, equal share per pair). Driver G = CNN; O = "
            "ResNet-mini, O2 = MLP, ccexam = pretrained CNN (never differentiated). Matched "
            f"budget B = {BUDGET:g} unless the setting says otherwise; for unmatched schedules "
            "(raw alpha, step caps) every endpoint counts and its L2 is reported. Medians "
            "and counts use the endpoints that reached their budget; counts are out of the "
            f"requested number. Bootstrap: {n_boot} draws, clusters = sources.")},
        {"title": "Ablation table", "table": shown},
        {"title": "Figures", "figures": figs}]
    study = {"out": out, "rows": rows, "records": records, "sections": sections,
             "payload": {"dataset": "mnist5k", "n_sources": int(len(src.id)),
                         "budget": BUDGET, "n_boot": n_boot, "classifiers": cinfo,
                         "rows": rows}}
    title = f"Study 6: ablations on mnist5k (B = {BUDGET:g})"
    protocol.write_study(study, title=title, wall_s=time.perf_counter() - t0,
                        argv=["experiments/ablations.py", *args.argv])
    return study


if __name__ == "__main__":
    main()
