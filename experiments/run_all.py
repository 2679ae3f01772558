"""Run every study, one after another, each in its own process (``make experiments``).

    python experiments/run_all.py                    # full studies (hours on a CPU)
    python experiments/run_all.py --quick            # tiny versions (minutes)
    python experiments/run_all.py --only protocol,ablations --out-root outputs

Each study writes under ``OUT_ROOT/NAME`` (``NAME_quick`` with ``--quick``); this script
prints each study's progress as it runs, a line per study with its wall time and exit
status, and exits non-zero when any study failed.  The main job (``python -m lens_jax
run``) is separate: ``make run``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: name -> extra arguments (the multi-host sweep runs on this host alone and checks
#: its result against a sweep on process 0's devices)
STUDIES = {"synthetic": [], "mnist_pairs": [], "protocol": [], "protocol_extended": [],
           "robust_drivers": [], "wrapping": [], "fashion": [],
           "natural": [], "ablations": [], "reader_study": [], "resolution": [],
           "multihost_sweep": ["--check"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny versions of every study")
    p.add_argument("--out-root", default="outputs", help="parent folder (default outputs)")
    p.add_argument("--only", default="", help="comma-separated studies (default: all)")
    p.add_argument("--skip", default="", help="comma-separated studies to leave out")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(STUDIES)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = sorted((set(only) | skip) - set(STUDIES))
    if unknown:
        p.error(f"unknown studies {unknown}; choose from {', '.join(STUDIES)}")
    names = [s for s in only if s not in skip]
    results = []
    for i, name in enumerate(names, 1):
        out = Path(args.out_root) / (name + ("_quick" if args.quick else ""))
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--out", str(out),
               *STUDIES[name], *(["--quick"] if args.quick else [])]
        print(f"[run_all {i}/{len(names)}] {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        results.append((name, rc, time.perf_counter() - t0, out))
        print(f"[run_all {i}/{len(names)}] {name}: exit {rc} after "
              f"{results[-1][2]:.0f} s; results in {out}/", flush=True)
    print("\n[run_all] summary:")
    for name, rc, wall, out in results:
        print(f"  {name:<16} {'ok' if rc == 0 else f'FAILED (exit {rc})':<16} "
              f"{wall:7.0f} s  {out}/")
    return 0 if all(rc == 0 for _, rc, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
