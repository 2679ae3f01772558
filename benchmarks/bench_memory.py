"""Peak memory of a lens sweep against the number of images and of alphas, chunked or not.

Each configuration runs in a fresh subprocess on one CPU device (so peaks never mix) and
reports two measures:

* ``peak_rss_mb``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end of the run,
  i.e. the whole process (Python, jax, XLA compilation, host copies, results);
  ``start_rss_mb`` is the resident size just before :func:`lens_jax.sweep.run` is
  called (imports and data), so ``peak - start`` is what the sweep added, compilation
  included (~100 MB here, the same for every chunked run);
* ``xla_chunk_mb``: XLA's own account of the per-chunk program the sweep ran,
  ``compiled.memory_analysis()`` (arguments + outputs + temporaries): what sits on an
  accelerator at once.

Modes: ``chunked`` (``chunk_size=32`` images per chunk, ``alpha_chunk=4`` frames of an
image at once, streamed to ``out_dir``, metrics only) and ``unchunked`` (one chunk holding
every image, every alpha at once, in memory).  Chunked peaks stay flat in N and in the
number of alphas; unchunked peaks grow with N x alphas.  Configurations marked
``compile only`` are too large to run here: only XLA's account is given.

    python benchmarks/bench_memory.py                       # ~3 minutes on 2 cores
    python benchmarks/bench_memory.py --quick --json mem.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = 32
K = 10
CHUNK = 32
ALPHA_CHUNK = 4


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0    # KiB on Linux


def _status_mb(key: str) -> float:
    """``VmRSS`` (or another field) of ``/proc/self/status`` in MiB; NaN elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def child(n_images: int, n_alphas: int, chunked: bool, domain: str, run: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from lens_jax.sweep import _chunk_fn, sweep_mesh
    from lens_jax.sweep import run as sweep_run

    r = np.random.default_rng(0)
    images = (0.1 + 0.8 * r.random((n_images, SIZE, SIZE))).astype(np.float32)
    w = jnp.asarray(r.standard_normal((SIZE * SIZE, K)).astype(np.float32) * 0.05)

    def logits_fn(b):
        return b.reshape(b.shape[0], -1) @ w

    targets = (np.arange(n_images) % K).astype(np.int32)
    alphas = np.linspace(0.0, 4.0, n_alphas).astype(np.float32)
    mesh = sweep_mesh(devices=jax.devices()[:1])
    chunk = CHUNK if chunked else n_images
    achunk = ALPHA_CHUNK if chunked else None
    row = {"n_images": n_images, "n_alphas": n_alphas,
           "mode": "chunked" if chunked else "unchunked", "domain": domain,
           "start_rss_mb": None, "peak_rss_mb": None, "wall_s": None}
    if run:
        row["start_rss_mb"] = _status_mb("VmRSS")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            res = sweep_run(logits_fn, images, targets, domain=domain, alphas=alphas,
                            mesh=mesh, chunk_size=chunk, alpha_chunk=achunk, keep_frames=0,
                            out_dir=tmp if chunked else None, progress=False)
            assert res.probs.shape == (n_images, n_alphas, K)
        row["wall_s"] = time.perf_counter() - t0
        row["peak_rss_mb"] = _rss_mb()

    # XLA's account of the per-chunk program: the very jitted function the sweep runs
    from lens_jax.classifier import as_classifier
    clf = as_classifier(logits_fn)
    fn, _ = _chunk_fn(clf.apply, mesh, mesh.axis_names[0], None, 1, want_frames=False,
                      kind="alphas", has_source=False, domain=domain, loss="nll",
                      mode="fixed", pyramid=None, color="luminance", n_frames=12,
                      alpha_chunk=achunk, num_classes=K, hw=(SIZE, SIZE))
    ma = fn.lower(clf.params, jax.ShapeDtypeStruct((chunk, SIZE, SIZE, 1), jnp.float32),
                  jax.ShapeDtypeStruct((chunk,), jnp.int32),
                  jax.ShapeDtypeStruct((chunk,), jnp.int32),
                  jax.ShapeDtypeStruct((n_alphas,), jnp.float32)).compile().memory_analysis()
    row["xla_chunk_mb"] = None if ma is None else (
        ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes) / 2 ** 20
    return row


def run_config(n_images, n_alphas, chunked, domain, run, timeout) -> dict:
    cmd = [sys.executable, __file__, "--child", str(n_images), str(n_alphas),
           str(int(chunked)), str(int(run)), "--domain", domain]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)                 # one CPU device
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if p.returncode != 0:
        return {"n_images": n_images, "n_alphas": n_alphas,
                "mode": "chunked" if chunked else "unchunked", "domain": domain,
                "error": (p.stderr or p.stdout)[-800:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, smaller configurations")
    ap.add_argument("--domain", default="csp_phase")
    ap.add_argument("--json", default=None, help="write the rows here (atomically)")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--child", nargs=4, type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        n, a, c, run = args.child
        print(json.dumps(child(n, a, bool(c), args.domain, bool(run))), flush=True)
        return 0

    # (N, alphas, run the unchunked one too)
    if args.quick:
        grid = [(64, 8, True), (256, 8, True), (128, 4, True), (128, 32, True)]
    else:
        grid = [(64, 16, True), (256, 16, True), (1024, 16, True), (4096, 16, False),
                (256, 4, True), (256, 64, True), (256, 256, False)]
    rows = []
    print(f"# sweep peak memory: {SIZE}x{SIZE} images, domain {args.domain}, one CPU device "
          f"({platform.machine()}, {os.cpu_count()} CPUs)", flush=True)
    for n, a, run_unchunked in grid:
        for chunked in (True, False):
            run = chunked or run_unchunked
            row = run_config(n, a, chunked, args.domain, run, args.timeout)
            rows.append(row)
            if "error" in row:
                print(f"  N={n} alphas={a} {row['mode']}: ERROR {row['error']}", flush=True)
            else:
                print(f"  N={n:5d} alphas={a:3d} {row['mode']:9s} peak RSS "
                      f"{_fmt(row['peak_rss_mb'], '7.0f')} MB (start "
                      f"{_fmt(row['start_rss_mb'], '.0f')} MB), XLA chunk "
                      f"{row['xla_chunk_mb']:8.1f} MB, {_fmt(row['wall_s'], '.1f')} s",
                      flush=True)
    print()
    print("| N images | alphas | N x alphas | mode | peak RSS MB (ru_maxrss) | RSS before "
          "sweep MB | XLA per-chunk MB | wall s (incl. compile) |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['n_images']} | {r['n_alphas']} | | {r['mode']} | error | | | |")
            continue
        peak = _fmt(r["peak_rss_mb"], ".0f") if r["peak_rss_mb"] is not None \
            else "compile only"
        print(f"| {r['n_images']} | {r['n_alphas']} | {r['n_images'] * r['n_alphas']} | "
              f"{r['mode']} | {peak} | {_fmt(r['start_rss_mb'], '.0f')} | "
              f"{r['xla_chunk_mb']:.1f} | {_fmt(r['wall_s'], '.1f')} |")
    if args.json:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from lens_jax.tables import save_json
        save_json(args.json, {
            "benchmark": "sweep peak memory", "size": SIZE, "domain": args.domain,
            "chunk_size": CHUNK, "alpha_chunk": ALPHA_CHUNK,
            "measure": "ru_maxrss of one subprocess per configuration (incl. compile); "
                       "XLA compiled.memory_analysis() of the chunk program",
            "host": platform.node(), "cpus": os.cpu_count(), "rows": rows})
        print(f"\nwrote {args.json}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
