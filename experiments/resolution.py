"""Study: where does the paper's claim hold? Image size x driver robustness x edit domain.

Digits at 28/56/112 px, Fashion-MNIST at 28/112 (``data.load(..., size=S)``); standard, robust
(PGD eps x S/28) CNN drivers per size (``cnn+robust@56``: 56 px only); every domain, fixed, live,
L2 = 2, 4, 6 x S/28.  Per cell (atomic; reruns skip it): driver p(target), transfer at 28 px to
the judges and the other driver, E warp, specificity, phase change; galleries, summary.png.
``--reader 4 --cells "S,driver,mode,domain;..."``: blind-reading sheets."""
import dataclasses
import itertools
import time
from pathlib import Path

import numpy as np

from lens_jax import data, reader, evaluate as ev
from lens_jax.adversarial import default_attack
from lens_jax.classifier import as_classifier
from lens_jax.studies import job, protocol, reference
from lens_jax.tables import read_json, record_command, save_json, save_npz, write_tables

BASE, LEAD = 28, ("size", "driver", "mode", "B", "method")
SIZES = {"mnist5k": "28,56,112", "fashion_mnist": "28,112"}
PAIRS = {"mnist5k": reference.MNIST_PAIRS, "fashion_mnist": reference.FASHION_PAIRS}


def load_driver(spec: str, dataset: str, size: int, args, same=False):  # same: --same-recipe
    kw = ({} if size == BASE else {"size": size}) | ({} if size == BASE and not same  # --*-large
          else {"epochs": args.epochs_large or None, "n_train": args.n_train_large or None})
    if spec.endswith("+robust"):
        kw["adversary"] = dataclasses.replace(a := default_attack(dataset), eps=a.eps * size / BASE)
    fn, _, info = job.load_model(spec.split("+")[0], dataset, quick=args.quick,   # full: a
                                 progress=not args.quick, **kw)     # bar per training epoch
    print(f"   {spec} at {size} px: test accuracy {info['test_accuracy']:.4f}", flush=True)
    return fn


def at_base(fn, size: int):   # a 28-px classifier shown S-px images downsampled to 28
    c = as_classifier(fn)
    return c if size == BASE else (lambda p, x: c.apply(p, data.resize(x, BASE)), c.params)


def run_cell(path: Path, fn, judges, src, *, domain, mode, size, budgets, args):
    print(f"   {path.stem}: {len(src.id)} sources ...", end="", flush=True)   # (a kill: which)
    t0, scale, spec_b = time.perf_counter(), size / BASE, max(budgets)
    ep = ev.endpoints(fn, src, domain=domain, budgets=[b * scale for b in budgets], mode=mode)
    recs = ev.evaluate_endpoints(ep, src, judges, method=domain, endpoint_keys=budgets,
                                 warp_steps=20 if args.quick else 200)
    sub = np.flatnonzero(src.id - np.searchsorted(src.pair, src.pair) < args.n_specificity)
    sp = dict(zip(sub.tolist(), ev.specificity(fn, src.subset(sub), num_classes=ep.probs.shape[
        -1], domain=domain, budget=spec_b * scale, mode=mode)))     # first n of each pair
    for i, r in enumerate(recs):                       # source-major, budget-minor
        r.update(size=size, mode=mode, wrapped=float(ep.wrapped.reshape(-1)[i]))
        r.update({"specificity": float(sp[r["id"]])} if r["B"] == spec_b and r["id"] in sp else {})
    small = np.asarray(data.resize(ep.frames.reshape((-1,) + ep.frames.shape[2:]), BASE))
    save_npz(path.with_suffix(".npz"), frames28=np.round(small * 255).astype(np.uint8).reshape(
        ep.l2.shape + small.shape[1:]), gallery=ep.frames[args.first])   # 28 px: uint8
    save_json(path, {"seconds": time.perf_counter() - t0, "records": recs})
    print(f" {time.perf_counter() - t0:.0f} s", flush=True)


def run_dataset(dataset: str, args, out: Path) -> None:
    evaluators, _ = job.load_evaluators(dataset, models=("mlp",) if args.quick else (
        "resnet_mini", "mlp"), ccexam=dataset == "mnist5k", quick=args.quick)
    src28 = ev.select_sources(*data.load(dataset, "test"), PAIRS[dataset], n_per_pair=args.n,
                              seed=None, driver=load_driver("cnn", dataset, BASE, args))
    args.first = np.unique(src28.pair, return_index=True)[1]     # first source of each pair
    budgets = [float(b) for b in args.budgets.split(",")]
    for size in map(int, (args.sizes or ("28,56" if args.quick else SIZES[dataset])).split(",")):
        drivers = {d[0]: load_driver(d[0], dataset, size, args, args.same_recipe) for d in (
            s.split("@") for s in args.drivers.split(",")) if d[1:] in ([], [str(size)])}
        src = src28._replace(images=np.asarray(data.resize(src28.images, size)))
        for (dname, fn), mode in itertools.product(drivers.items(), args.modes.split(",")):
            judges = {k: at_base(f, size) for k, f in evaluators.items()} | dict(zip(
                ["other driver"], [f for k, f in drivers.items() if k != dname]))   # if any
            stem = out / "cells" / f"{size}px_{dname}_{mode}"
            for domain in args.domains.split(","):
                path = Path(f"{stem}_{domain}.json")
                if not (path.is_file() and path.with_suffix(".npz").is_file()):   # else: done
                    run_cell(path, fn, judges, src, domain=domain, mode=mode, size=size,
                             budgets=budgets, args=args)
            summarise(list(evaluators), out, args)   # gallery: every cell done at these budgets
            doms = [d for d in dict.fromkeys([*job.default_domains(), *args.domains.split(",")])
                    if (c := Path(f"{stem}_{d}.json")).is_file() and [r["B"] for r in read_json(
                        c)["records"][:len(budgets)]] == budgets]    # (records: budget-minor)
            protocol.grid_figure(out / f"gallery_{stem.name}.png", [
                [(src.images[i], f"source ({size} px)")] + [(np.load(f"{stem}_{d}.npz")["gallery"][
                    j, k], f"{d} L2={b:g}") for d in doms]
                for j, i in enumerate(args.first) for k, b in enumerate(budgets)],
                suptitle=f"{dname} at {size} px, {mode} (L2 at 28 px)")


def summarise(evaluators, out: Path, args) -> None:   # all cells on disk, by size/driver/mode
    paths = sorted((out / "cells").glob("*.json"), key=lambda p: (p.stem.index("px"), p.stem))
    records = [{**{k: np.nan if v is None else v for k, v in r.items()},   # null: NaN
                "driver": p.stem.split("_")[1]} for p in paths for r in read_json(p)["records"]]
    rows, shown = [], []
    key = lambda r: (*(r[k] for k in LEAD[:3]), "pred_other driver" in r)  # noqa: E731
    for blk in dict.fromkeys(map(key, records)):     # cells judged by the other driver or not
        rs, judges = [r for r in records if key(r) == blk], evaluators + ["other driver"] * blk[-1]
        rows += ev.summarise(rs, group=LEAD, classifiers=judges, together=evaluators,
                             n_boot=200 if args.quick else 2000)
        shown += ev.display_rows(rows[len(shown):], judges, lead=LEAD,
                                 together_label="all independent")
    for row, s in zip(rows, shown):
        w = [r["wrapped"] for r in records if r["reached"] and all(r[k] == row[k] for k in LEAD)]
        row["wrapped"] = s["wrapped (median)"] = np.nanmedian(w) if np.isfinite(w).any() else None
    write_tables(rows, out / "summary_raw"), write_tables(shown, out / "summary")
    protocol.size_figure(out / "summary.png", rows, title=f"{out.name}: every judge says target")


def make_reader(args, out: Path) -> None:   # blind sheets, every tile at 28 px
    ds, bs, tiles, meta = args.datasets.split(",")[0], args.budgets.split(","), [], []
    (x, _), k = data.load(ds, "test"), bs.index(args.reader_budget)
    for cell in args.cells.split(";"):
        stem = out / ds / "cells" / "{}px_{}_{}_{}".format(*cell.split(","))
        recs = read_json(stem.with_suffix(".json"))["records"][k::len(bs)]   # one per source
        pairs = [r["pair"] for r in recs]
        keep = [i for i, q in enumerate(pairs) if i - pairs.index(q) < args.reader]
        tiles += list(np.load(stem.with_suffix(".npz"))["frames28"][keep, k] / 255.0)
        meta += [{**dict(zip(("size", "driver", "mode", "domain"), cell.split(","))),
                  **{f: recs[i][f] for f in ("index", "source", "target", "reached")},
                  "B": float(args.reader_budget)} for i in keep]
    for m in list({m["index"]: m for m in meta}.values()):       # unedited controls
        tiles, meta = tiles + [x[m["index"]]], meta + [{**m, "size": "-", "driver": "-",
                      "mode": "-", "domain": "unedited source", "B": 0.0, "reached": True}]
    key = reader.make_sheets(np.stack(tiles), meta, out / "reader", seed=args.seed,
                             num_classes=len(data.class_names(ds)))
    print(f"{len(meta)} tiles: label {out}/reader/sheet_*.png in labels.csv, key {key}")


def main(argv=None) -> int:
    p = protocol.study_parser(__doc__.splitlines()[0], out="outputs/resolution",
        datasets="mnist5k,fashion_mnist", sizes="", drivers="cnn,cnn+robust", modes="fixed,live",
        budgets="2,4,6", domains=",".join(job.default_domains()), n=30, n_specificity=3, reader=0,
        cells="", reader_budget="4", epochs_large=0, n_train_large=0, same_recipe=False)
    args = protocol.parse_study_args(p, argv=argv)
    if args.reader:            # sheets of --reader sources per pair of each of --cells
        return make_reader(args, Path(args.out)) or 0
    if args.quick:
        vars(args).update(n=1, budgets="4", modes="fixed", domains="pixel,csp_phase")
    t0, out = time.perf_counter(), Path(args.out)
    for dataset in args.datasets.split(","):   # Fashion-MNIST: apt-get dataset-fashion-mnist
        run_dataset(dataset, args, out / dataset)
    record_command(out, time.perf_counter() - t0, argv=["experiments/resolution.py", *args.argv])
    print(f"done in {time.perf_counter() - t0:.0f} s: {out}/*/summary.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
