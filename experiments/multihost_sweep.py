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
replace ``build_problem`` (:func:`lens_jax.multihost.toy_problem`) with yours: each host
must see the same images, e.g. a ``np.memmap`` on a shared disk or the same tfds split),
calls ``jax.distributed.initialize``,
and runs one :func:`lens_jax.sweep.run` over ``jax.devices()`` (all hosts).  Each chunk
is one global array sharded over the ``"images"`` axis; each host fills only the
shards of its own devices.  Process 0 writes the sweep's Zarr store to ``--out``
(put it on a shared disk to resume from any host) and ``summary.json``; rerunning the
same command resumes.  ``--check`` recomputes the sweep on process 0's devices alone
(one device in a single-process run) and records the largest difference.
``--l2-budget B`` sweeps to a matched image change instead of raw alphas.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lens_jax import multihost, studies  # noqa: E402
from lens_jax.tables import record_command, save_json  # noqa: E402

#: ``(n_images, size, seed) -> (images, targets, logits_fn)``, the same on every host
build_problem = multihost.toy_problem


def main(argv=None) -> int:
    args = studies.parse_study_args(studies.study_parser(
        "Lens sweep over all devices of all hosts (jax.distributed)",
        out="outputs/multihost_sweep", coordinator=None, num_processes=0, process_id=-1,
        spawn_local=0, spawn_timeout=600, cpu_devices=0, n_images=512, size=32,
        n_alphas=8, alpha_max=6.0, l2_budget=0.0, alpha_shards=1, domain="csp_phase",
        chunk_size=128, keep=4, check=False, resume=True), argv=argv)
    if args.quick:
        args.n_images, args.size, args.n_alphas, args.chunk_size = 24, 16, 4, 8
    if args.spawn_local > 0:
        return multihost.spawn_local(__file__, args.argv, n_processes=args.spawn_local,
                                     cpu_devices=args.cpu_devices, timeout=args.spawn_timeout)

    multihost.force_cpu_devices(args.cpu_devices)
    # must come before anything touches a device
    multihost.initialize(coordinator=args.coordinator, num_processes=args.num_processes,
                         process_id=args.process_id, name="multihost_sweep")
    import jax
    import numpy as np
    from lens_jax.sweep import load, run, sweep_mesh

    pid, nproc = jax.process_index(), jax.process_count()
    print(f"[process {pid}/{nproc}] {len(jax.local_devices())} local of "
          f"{len(jax.devices())} devices ({jax.default_backend()})", flush=True)
    images, targets, logits_fn = build_problem(args.n_images, args.size, args.seed)
    # --l2-budget B > 0: n_alphas frames from the source to L2 distance B for every image
    # (a scalar budget, on any mesh); else n_alphas raw alphas up to --alpha-max
    schedule = dict(l2_budget=args.l2_budget, n_frames=args.n_alphas) if args.l2_budget > 0 \
        else dict(alphas=np.linspace(0.0, args.alpha_max, args.n_alphas).astype(np.float32))
    mesh = sweep_mesh(alpha_shards=args.alpha_shards)
    out = Path(args.out)
    kw = dict(domain=args.domain, chunk_size=args.chunk_size, keep_frames=args.keep,
              **schedule)
    t0 = time.perf_counter()
    res = run(logits_fn, images, targets, mesh=mesh, out_dir=out / "sweep",
              resume=args.resume, progress=pid == 0, **kw)
    wall = time.perf_counter() - t0
    summary = None
    if pid == 0:
        summary = multihost.sweep_summary(res, mesh, wall, n_images=args.n_images,
                                          size=args.size, n_alphas=args.n_alphas,
                                          domain=args.domain)
    if args.check:
        # every process takes part in the collectives of the sweep above; the check runs
        # on process 0's local devices only (no collectives), so the others just wait
        if pid == 0:
            diffs = multihost.check_on_local_devices(res, logits_fn, images, targets, **kw)
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
        assert load(out / "sweep").probs.shape[0] == args.n_images
    return 0


if __name__ == "__main__":
    sys.exit(main())
