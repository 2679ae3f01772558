"""Standard vs adversarially trained ("robust") driver CNNs: clean and PGD accuracy.

For each data set, loads (or trains and caches, under ``$LENS_JAX_CACHE/models``)
the standard driver ``load_or_train("cnn", ds)`` and the robust driver
``load_or_train("cnn", ds, adversary=DEFAULT_ATTACKS[ds])``, then measures clean test
accuracy and accuracy under L2 PGD at the same eps with ``--steps`` steps and
``--restarts`` restarts (``robust_accuracy``: correct both clean and attacked).
Writes a markdown table to ``OUT/table.md`` (and ``OUT/results.json``).

    python experiments/robust_drivers.py                       # mnist5k + fashion_mnist
    python experiments/robust_drivers.py --datasets mnist5k --n 200
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from lens_jax import data  # noqa: E402
from lens_jax import train as T  # noqa: E402
from lens_jax.studies import job  # noqa: E402
from lens_jax.tables import save_text  # noqa: E402


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def evaluate(ds: str, *, n: int, steps: int, restarts: int, seed: int,
             quick: bool = False) -> list[dict]:
    """Rows (one per driver) for data set ``ds``; [] when its data are missing."""
    try:
        xt, yt = data.load(ds, "test")
    except data.DataUnavailableError as e:
        print(f"[{ds}] skipped: {e}", flush=True)
        return []
    if n and n < len(xt):     # a seeded subset keeps the PGD evaluation affordable
        idx = np.sort(np.random.default_rng(seed).choice(len(xt), n, replace=False))
        xt, yt = xt[idx], yt[idx]
    train_atk = T.DEFAULT_ATTACKS[ds]
    attack = T.PGD(train_atk.norm, train_atk.eps, steps, restarts=restarts)
    rows = []
    for driver, adversary in (("standard", None), ("robust", train_atk)):
        print(f"[{ds}] {driver} driver: load or train ...", flush=True)
        t0, c0 = time.perf_counter(), _cpu_s()
        # quick: 1-epoch models in a cache of their own (never replace the real ones)
        fn, _, info = job.load_model("cnn", ds, quick=quick, adversary=adversary, seed=seed,
                                     progress=True)
        train_s = sum(h["seconds"] for h in info["history"])
        load_s = time.perf_counter() - t0
        clean = T.accuracy(np.concatenate([np.asarray(fn(xt[i:i + 500]))
                                           for i in range(0, len(xt), 500)]), yt)
        print(f"[{ds}] {driver}: clean {clean:.4f}; attacking with {attack.tag} ...",
              flush=True)
        t1 = time.perf_counter()
        robust = T.robust_accuracy(fn, xt, yt, attack, progress=True)
        rows.append({"dataset": ds, "driver": driver,
                     "training": "standard" if adversary is None else
                     f"{adversary.tag}, ramp {info['adversary']['ramp_epochs']} ep",
                     "epochs": info["epochs"], "lr": info["lr"], "n_test": int(len(xt)),
                     "clean": clean, "robust": robust, "attack": attack.tag,
                     "train_s": round(train_s, 1), "this_run_s": round(load_s, 1),
                     "this_run_cpu_s": round(_cpu_s() - c0, 1),
                     "attack_s": round(time.perf_counter() - t1, 1),
                     "workdir": info["workdir"]})
        print(f"[{ds}] {driver}: clean {clean:.4f}, {attack.tag} {robust:.4f} "
              f"(training {train_s:.0f} s when run)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    head = ("| data set | driver | training | epochs | n test | clean acc | robust acc "
            "| attack | training wall s |\n|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['dataset']} | {r['driver']} | {r['training']} | {r['epochs']} | "
        f"{r['n_test']} | {100 * r['clean']:.1f}% | {100 * r['robust']:.1f}% | "
        f"{r['attack']} | {r['train_s']:.0f} |\n" for r in rows)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="mnist5k,fashion_mnist")
    p.add_argument("--n", type=int, default=1000,
                   help="test images per data set (seeded subset; 0 = all)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/robust_drivers")
    p.add_argument("--quick", action="store_true",
                   help="tiny version: 1-epoch models, 50 images, PGD-5, mnist5k only")
    args = p.parse_args(argv)
    if args.quick:
        args.datasets, args.n, args.steps, args.restarts = "mnist5k", 50, 5, 1
    t0 = time.perf_counter()
    rows = []
    for ds in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        rows += evaluate(ds, n=args.n, steps=args.steps, restarts=args.restarts,
                         seed=args.seed, quick=args.quick)
    command = "python experiments/robust_drivers.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    text = (f"# Standard vs robust driver CNNs\n\n{table(rows)}\n"
            "Robust acc: correct on the clean image and under L2 PGD at the training eps "
            "(step 2.5 eps / steps, the first restart from the clean image, the others "
            "from random points of the ball, worst case kept per image). Training wall "
            "seconds are those of the run that trained the model (summed epochs).\n\n"
            f"Command: `{command.strip()}` ({time.perf_counter() - t0:.0f} s wall, "
            f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, load average "
            f"at the end {os.getloadavg()[0]:.1f}).\n")
    out = Path(args.out)
    save_text(out / "table.md", text)
    save_text(out / "results.json", json.dumps(rows, indent=2) + "\n")
    print(text, flush=True)
    return rows


if __name__ == "__main__":
    main()
