"""Helpers for running one lens sweep over every device of every host (``jax.distributed``).

Used by ``experiments/multihost_sweep.py``: :func:`initialize` joins the processes
(explicit coordinator, or auto-detection on TPU pods, SLURM and Open MPI; a single host
otherwise), :func:`toy_problem` builds the same deterministic problem on every host,
:func:`sweep_summary` and :func:`check_on_local_devices` describe and verify a finished
sweep, and :func:`spawn_local` runs a script as several local CPU processes talking over
localhost (a multi-host run on one machine, for testing).  jax loads on first use.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

__all__ = ["toy_problem", "force_cpu_devices", "initialize", "spawn_local", "sweep_summary",
           "check_on_local_devices"]

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def toy_problem(n_images: int, size: int, seed: int, *, n_classes: int = 10
                ) -> tuple[Any, Any, Callable]:
    """``(images (N, S, S, 1) float32 in [0, 1], targets (N,), logits_fn)``; deterministic,
    so every host builds the same one: smooth random images, targets ``i % n_classes``
    and a random one-convolution classifier.  Replace with your data set and classifier."""
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
    targets = (np.arange(n_images) % n_classes).astype(np.int32)
    w1 = jnp.asarray(r.standard_normal((3, 3, 1, 8)).astype(np.float32) / 3.0)
    w2 = jnp.asarray(r.standard_normal((8 * (size // 2) ** 2, n_classes)).astype(np.float32)
                     / np.sqrt(8 * (size // 2) ** 2))

    def logits_fn(batch):
        h = jax.lax.conv_general_dilated(batch, w1, (2, 2), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.tanh(h).reshape(batch.shape[0], -1) @ w2

    return images, targets, logits_fn


def force_cpu_devices(n: int) -> None:
    """Ask XLA for ``n`` host-platform (CPU) devices, unless ``XLA_FLAGS`` already sets a
    count; must run before jax initialises its backends.  ``n <= 0`` does nothing."""
    if n > 0 and _DEVICE_FLAG not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + f" {_DEVICE_FLAG}={n}"


def initialize(*, coordinator: str | None = None, num_processes: int = 0,
               process_id: int = -1, name: str = "multihost") -> None:
    """``jax.distributed.initialize``: with ``coordinator`` (``host:port``) the given
    process count and id; without, auto-detection (TPU pods, SLURM, Open MPI), and a
    single host (a printed note) when nothing is detected.  Must come before anything
    touches a device."""
    import jax
    kw = {}
    if coordinator:
        kw = dict(coordinator_address=coordinator, num_processes=num_processes,
                  process_id=process_id)
    try:
        jax.distributed.initialize(**kw)
    except (ValueError, RuntimeError) as e:
        if kw:
            raise
        print(f"[{name}] single host ({e.__class__.__name__}: {e})", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` less ``option VALUE`` and ``option=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def spawn_local(script: str | os.PathLike, argv: Sequence[str], *, n_processes: int,
                cpu_devices: int = 0, timeout: float = 600.0) -> int:
    """Run ``script`` as ``n_processes`` local CPU processes joined over localhost and
    return the exit code (124 after ``timeout`` seconds; the children still running are
    killed).  Each child gets ``argv`` less ``--spawn-local N`` plus ``--coordinator``,
    ``--num-processes`` and ``--process-id``, and ``cpu_devices`` CPU devices when > 0."""
    port = _free_port()
    child_argv = _without_option(argv, "--spawn-local")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if cpu_devices > 0:
        flags = re.sub(_DEVICE_FLAG + r"=\S*", "", env.get("XLA_FLAGS", ""))
        env["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={cpu_devices}".strip()
    procs = []
    for i in range(n_processes):
        cmd = [sys.executable, str(script), *child_argv, "--coordinator", f"localhost:{port}",
               "--num-processes", str(n_processes), "--process-id", str(i)]
        procs.append(subprocess.Popen(cmd, env=env))
    rc = 0
    deadline = time.time() + timeout
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


def sweep_summary(res: Any, mesh: Any, wall: float, **info: Any) -> dict:
    """JSON-ready description of a finished sweep: processes and devices, the mesh, the
    wall time, throughput (``info["n_images"] * info["n_alphas"]`` per second), the median
    final target probability, the package version and ``info``."""
    import jax
    import numpy as np

    from . import __version__
    return {
        "processes": jax.process_count(), "devices": len(jax.devices()),
        "local_devices": len(jax.local_devices()), "backend": jax.default_backend(),
        "mesh": dict(mesh.shape), **info, "wall_s": wall,
        "pairs_alphas_per_s": info["n_images"] * info["n_alphas"] / max(wall, 1e-9),
        "median_final_target_prob": float(np.median(res.target_prob[:, -1])),
        "lens_jax_version": __version__,
    }


def check_on_local_devices(res: Any, logits_fn: Callable, images: Any, targets: Any,
                           **sweep_kw: Any) -> dict[str, float]:
    """Recompute a sweep on this process's devices alone (no collectives; one device
    when this is the only process) and return the largest absolute difference per result
    field."""
    import jax
    import numpy as np

    from .sweep import run, sweep_mesh
    devices = jax.local_devices() if jax.process_count() > 1 else jax.local_devices()[:1]
    ref = run(logits_fn, images, targets, mesh=sweep_mesh(devices=devices),
              progress=False, **sweep_kw)
    return {f: float(np.max(np.abs(np.asarray(getattr(res, f), np.float64)
                                   - np.asarray(getattr(ref, f), np.float64))))
            for f in ("probs", "l2", "alphas", "frames", "target", "source")}
