"""Study: a blind reader check of the endpoints (does a person see the target class?).

Morphs the first N test images of each pair (that the first driver gets right) with each
driver x domain x mode to each image-L2 budget, adds the unedited sources as a control,
and writes shuffled contact sheets that show only a tile number (``OUT/DATASET/sheet_*.png``),
the key (``key.json``) and an empty ``labels.csv``.  A person labels every tile with the
class they see (or ``?``) without opening the key; ``--score`` then counts, per driver x
mode x domain x budget, how often the reader saw the target.

    python experiments/reader_study.py                # mnist5k, 5 sources per pair, L2 = 4
    python experiments/reader_study.py --score outputs/reader_study/mnist5k/labels.csv
    python experiments/reader_study.py --pool docs/reader/resolution_live_*/labels.csv \\
        --by size,driver,mode,domain,B --out outputs/pooled   # rounds summed, a figure
    python experiments/reader_study.py --modes fixed --budget 6,8 --source-seed 1 \\
        --domains pixel,csp_flow_joint --out outputs/reader_study_b68   # a second round
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from lens_jax import data, reader, evaluate as ev  # noqa: E402
from lens_jax.studies import job, protocol, reference  # noqa: E402
from lens_jax.tables import read_json, record_command, write_tables  # noqa: E402

PAIRS = {"mnist5k": reference.MNIST_PAIRS, "fashion_mnist": reference.FASHION_PAIRS}
BY = "driver,mode,domain,B"      # --by default: the table is scores.*, else scores_by_*


def make(args) -> Path:
    out = Path(args.out) / args.dataset
    drivers, _ = job.load_drivers(args.drivers.split(","), args.dataset, quick=args.quick)
    x, y = data.load(args.dataset, "test")
    first = next(iter(drivers.values()))
    src = ev.select_sources(x, y, PAIRS[args.dataset], n_per_pair=args.n, driver=first,
                            seed=args.source_seed)
    budgets = [float(b) for b in args.budget.split(",")]
    frames = [src.images]
    meta = [{"driver": "-", "mode": "-", "domain": "unedited source", "B": 0.0,
             "index": int(i), "source": int(s), "target": int(t)}
            for i, s, t in zip(src.index, src.source, src.target)]
    for dname, fn in drivers.items():
        for mode in args.modes.split(","):
            for domain in args.domains.split(","):
                t0 = time.perf_counter()
                ep = ev.endpoints(fn, src, domain=domain, budgets=budgets, mode=mode)
                for k, b in enumerate(budgets):
                    frames.append(ep.frames[:, k])
                    meta += [{"driver": dname, "mode": mode, "domain": domain, "B": b,
                              "index": int(i), "source": int(s), "target": int(t),
                              "reached": bool(r), "p_driver": float(p[t])}
                             for i, s, t, r, p in zip(src.index, src.source, src.target,
                                                      ep.reached[:, k], ep.probs[:, k])]
                print(f"   {dname} {mode} {domain}: {len(src.id)} x {len(budgets)} endpoints "
                      f"({time.perf_counter() - t0:.1f} s)", flush=True)
    key = reader.make_sheets(np.concatenate(frames), meta, out,
                             num_classes=int(y.max()) + 1, seed=args.seed)
    print(f"{len(meta)} tiles on {len(reader.load_key(key)['sheets'])} sheets: "
          f"{out}/sheet_*.png; label them in {out}/labels.csv (class number or ?) "
          f"without opening {key}", flush=True)
    return key


def score(args) -> list[dict]:
    labels_path = Path(args.score)
    key = reader.load_key(labels_path.parent / "key.json")
    labels = reader.read_labels(labels_path, key)
    rows = reader.score(key, labels, group=tuple(args.by.split(",")), judged=None if not
                        args.cells else judged_tiles(key, Path(args.cells)))
    stem = "scores" if args.by == BY else "scores_by_" + args.by.replace(",", "_")
    paths = write_tables(rows, labels_path.parent / stem)
    fig = reader.unblind(key, labels, labels_path.parent / "unblinded.png",
                         group=tuple(args.by.split(",")))
    print(f"{len(labels)}/{len(key['tiles'])} tiles labelled; each condition's tiles with "
          f"the reader's labels: {fig}")
    print(paths["md"].read_text(), flush=True)
    return rows


def judged_tiles(key, cells: Path) -> dict[int, bool]:
    """``{tile: every independent classifier calls it the target}`` for the edited tiles of
    ``experiments/resolution.py``'s cells (their records; not the driver, not the other one)."""
    out, cache = {}, {}
    for t in (t for t in key["tiles"] if t["domain"] != "unedited source"):
        stem = cells / "{size}px_{driver}_{mode}_{domain}.json".format(**t)
        if not stem.is_file():
            raise SystemExit(f"--cells {cells}: no {stem.name} (give the cells/ folder)")
        recs = cache.setdefault(stem, read_json(stem)["records"])
        r = next(r for r in recs if r["index"] == t["index"] and r["B"] == t["B"])
        out[t["tile"]] = all(r[k] == t["target"] for k in r if k.startswith("pred_")
                             and k not in ("pred_G", "pred_other driver"))
    return out


def pool(args) -> list[dict]:       # several rounds summed; a figure against image size
    by, keys = tuple(args.by.split(",")), [reader.load_key(Path(p).parent / "key.json")
                                           for p in args.pool]
    rows = reader.pool([(k, reader.read_labels(p, k)) for k, p in zip(keys, args.pool)],
                       group=by)
    paths = write_tables(rows, Path(args.out) / ("pooled_by_" + "_".join(by)))
    print(f"{len(args.pool)} rounds pooled: {paths['md']}\n{paths['md'].read_text()}")
    if {"size", "driver", "mode", "domain", "B"} <= set(by):    # edited tiles, by size
        protocol.size_figure(Path(args.out) / "read_as_target.png", [
            {**r, "size": int(r["size"]), "method": r["domain"]} for r in rows if r["size"] != "-"],
            count="as_target", ylabel="share read as the target", unit="tiles",
            title=f"{len(args.pool)} blind readings: tiles read as the target")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--score", metavar="LABELS", default=None,
                   help="score this labels.csv against the key beside it (makes nothing)")
    p.add_argument("--by", default=BY, help="--score, --pool: group by these key fields")
    p.add_argument("--pool", nargs="+", metavar="LABELS", default=None,
                   help="rounds' labels.csv: summed per --by into OUT, a figure by size")
    p.add_argument("--cells", default=None, metavar="DIR",
                   help="--score: resolution.py's cells/ of the tiles: adds judged_target")
    p.add_argument("--dataset", default="mnist5k", choices=sorted(PAIRS))
    p.add_argument("--out", default="outputs/reader_study")
    p.add_argument("--n", type=int, default=5, help="sources per pair (default 5)")
    p.add_argument("--drivers", default="cnn,cnn+robust")
    p.add_argument("--domains", default="pixel,csp_phase,csp_flow_joint")
    p.add_argument("--modes", default="fixed,live")
    p.add_argument("--budget", default="4", help="image L2, or several: 6,8 (default 4)")
    p.add_argument("--source-seed", type=int, default=None,
                   help="a seeded random subset of the sources (default: the first ones)")
    p.add_argument("--seed", type=int, default=0, help="the shuffle")
    p.add_argument("--quick", action="store_true", help="1-epoch models, 1 source per pair")
    args = p.parse_args(argv)
    if args.score or args.pool:
        (score if args.score else pool)(args)
        return 0
    args.n = 1 if args.quick else args.n
    t0 = time.perf_counter()
    key = make(args)
    record_command(key.parent, time.perf_counter() - t0,
                   argv=["experiments/reader_study.py", *(argv or sys.argv[1:])])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
