"""A lens sweep over every device of every host: the script a TPU-pod (or multi-GPU-host)
user runs, once per host.

On a Cloud TPU pod slice (every worker runs the same command; ``jax.distributed``
finds the coordinator, process count and id by itself)::

    gcloud compute tpus tpu-vm ssh NAME --worker=all --command \\
        "cd lens_jax && .venv/bin/python experiments/multihost_sweep.py --out /shared/sweep"

On GPU hosts without a cluster manager, name the coordinator (host 0, any free port)::

    python experiments/multihost_sweep.py --coordinator host0:1234 --num-processes 2 --process-id 0
    python experiments/multihost_sweep.py --coordinator host0:1234 --num-processes 2 --process-id 1

(SLURM and Open MPI are detected too: omit the three flags under ``srun``/``mpirun``.)

On one machine, as a test (two local processes, each with 2 CPU devices, talking over
localhost; JAX uses gloo for CPU collectives)::

    python experiments/multihost_sweep.py --spawn-local 2 --cpu-devices 2 --quick --check

What happens: every process builds the same problem (images, targets, classifier;
replace :func:`build_problem` with yours: each host must see the same images, e.g. a
``np.memmap`` on a shared disk or the same tfds split), calls ``jax.distributed.initialize``,
and runs one :func:`lens_jax.sweep.sweep` over ``jax.devices()`` (all hosts).  Each chunk
is one global array sharded over the ``"images"`` axis; each host fills only the
shards of its own devices.  Process 0 writes the chunks and the manifest to ``--out``
(put it on a shared disk to resume from any host) and ``summary.json``; rerunning the
same command resumes.  ``--check`` recomputes the sweep on process 0's devices alone
and records the largest difference.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lens_jax import studies  # noqa: E402
from lens_jax.tables import record_command, save_json  # noqa: E402

K_CLASSES = 10


def build_problem(n_images: int, size: int, seed: int):
    """``(images (N, S, S, 1) float32 in [0, 1], targets (N,), logits_fn)``; deterministic,
    so every host builds the same one.  Replace with your data set and classifier."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    r = np.random.default_rng(seed)
    x = r.random((n_images, size, size))
    k = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
    x = np.real(np.fft.ifft2(np.fft.fft2(x) * np.exp(-k * 4 * size)))
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    images = (0.1 + 0.8 * (x - lo) / (hi - lo)).astype(np.float32)[..., None]
    targets = (np.arange(n_images) % K_CLASSES).astype(np.int32)
    w1 = jnp.asarray(r.standard_normal((3, 3, 1, 8)).astype(np.float32) / 3.0)
    w2 = jnp.asarray(r.standard_normal((8 * (size // 2) ** 2, K_CLASSES)).astype(np.float32)
                     / np.sqrt(8 * (size // 2) ** 2))

    def logits_fn(batch):
        h = jax.lax.conv_general_dilated(batch, w1, (2, 2), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.tanh(h).reshape(batch.shape[0], -1) @ w2

    return images, targets, logits_fn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def spawn_local(args) -> int:
    """Run this script as ``args.spawn_local`` local CPU processes; return the exit code."""
    port = _free_port()
    argv = [a for a in args.argv]
    # drop --spawn-local N from the children's command line
    out_argv = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--spawn-local":
            skip = True
            continue
        if a.startswith("--spawn-local="):
            continue
        out_argv.append(a)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if args.cpu_devices > 0:
        flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "",
                       env.get("XLA_FLAGS", ""))
        env["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count="
                            f"{args.cpu_devices}").strip()
    procs = []
    for i in range(args.spawn_local):
        cmd = [sys.executable, __file__, *out_argv, "--coordinator", f"localhost:{port}",
               "--num-processes", str(args.spawn_local), "--process-id", str(i)]
        procs.append(subprocess.Popen(cmd, env=env))
    rc = 0
    deadline = time.time() + args.spawn_timeout
    for p in procs:
        try:
            rc = rc or p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            rc = 124
    for p in procs:               # only our own children, by handle
        if p.poll() is None:
            p.kill()
            p.wait()
    return rc


def main(argv=None) -> int:
    args = studies.parse_study_args(studies.study_parser(
        "Lens sweep over all devices of all hosts (jax.distributed)",
        out="outputs/multihost_sweep", coordinator=None, num_processes=0, process_id=-1,
        spawn_local=0, spawn_timeout=600, cpu_devices=0, n_images=512, size=32,
        n_alphas=8, alpha_max=6.0, alpha_shards=1, domain="csp_phase", chunk_size=128,
        keep=4, check=False, resume=True), argv)
    if args.quick:
        args.n_images, args.size, args.n_alphas, args.chunk_size = 24, 16, 4, 8
    if args.spawn_local > 0:
        return spawn_local(args)

    if args.cpu_devices > 0 and "--xla_force_host_platform_device_count" not in \
            os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.cpu_devices}")
    import jax
    kw = {}
    if args.coordinator:
        kw = dict(coordinator_address=args.coordinator, num_processes=args.num_processes,
                  process_id=args.process_id)
    # must come before anything touches a device; with no arguments it auto-detects
    # TPU pods, SLURM and Open MPI, and is a no-op error elsewhere (single host)
    try:
        jax.distributed.initialize(**kw)
    except (ValueError, RuntimeError) as e:
        if kw:
            raise
        print(f"[multihost_sweep] single host ({e.__class__.__name__}: {e})", flush=True)

    import numpy as np
    import lens_jax as lj
    from lens_jax.sweep import load_sweep, sweep, sweep_mesh

    pid, nproc = jax.process_index(), jax.process_count()
    print(f"[process {pid}/{nproc}] {len(jax.local_devices())} local of "
          f"{len(jax.devices())} devices ({jax.default_backend()})", flush=True)
    images, targets, logits_fn = build_problem(args.n_images, args.size, args.seed)
    alphas = np.linspace(0.0, args.alpha_max, args.n_alphas).astype(np.float32)
    mesh = sweep_mesh(alpha_shards=args.alpha_shards)
    out = Path(args.out)
    t0 = time.perf_counter()
    res = sweep(logits_fn, images, targets, domain=args.domain, alphas=alphas,
                mesh=mesh, chunk_size=args.chunk_size, keep_frames=args.keep,
                out_dir=out / "sweep", resume=args.resume, progress=pid == 0)
    wall = time.perf_counter() - t0
    summary = None
    if pid == 0:
        tp = res.target_prob
        summary = {
            "processes": nproc, "devices": len(jax.devices()),
            "local_devices": len(jax.local_devices()), "backend": jax.default_backend(),
            "mesh": dict(mesh.shape), "n_images": args.n_images, "size": args.size,
            "n_alphas": args.n_alphas, "domain": args.domain, "wall_s": wall,
            "pairs_alphas_per_s": args.n_images * args.n_alphas / max(wall, 1e-9),
            "median_final_target_prob": float(np.median(tp[:, -1])),
            "lens_jax_version": lj.__version__,
        }
    if args.check:
        # every process takes part in the collectives of the sweep above; the check runs
        # on process 0's local devices only (no collectives), so the others just wait
        if pid == 0:
            local = sweep_mesh(devices=jax.local_devices())
            ref = sweep(logits_fn, images, targets, domain=args.domain, alphas=alphas,
                        mesh=local, chunk_size=args.chunk_size, keep_frames=args.keep,
                        progress=False)
            diffs = {f: float(np.max(np.abs(np.asarray(getattr(res, f), np.float64)
                                            - np.asarray(getattr(ref, f), np.float64))))
                     for f in ("probs", "l2", "alphas", "frames", "target", "source")}
            summary["check_max_abs_diff"] = diffs
            print(f"[process 0] check against process 0's devices alone: {diffs}", flush=True)
    if nproc > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("multihost_sweep:check")
    if pid == 0:
        save_json(out / "summary.json", summary)
        record_command(out, wall, argv=["experiments/multihost_sweep.py", *args.argv])
        print(f"[process 0] {args.n_images} images x {args.n_alphas} alphas on "
              f"{len(jax.devices())} devices ({nproc} processes) in {wall:.1f} s; "
              f"wrote {out / 'sweep'} and {out / 'summary.json'}", flush=True)
        assert load_sweep(out / "sweep").probs.shape[0] == args.n_images
    return 0


if __name__ == "__main__":
    sys.exit(main())
