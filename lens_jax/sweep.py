"""Amplification sweeps over a data set: images x targets x alphas (x domains), sharded
over a device mesh, chunked, streamed to disk and resumable.

    pairs (image, target) --chunk--> one global batch, sharded P("images") over the mesh
          --shard_map(vmap(morph))--> per-pair metrics (+ frames for a few images)
          --> chunk_000012.npz (atomic)  ...  load_sweep(out_dir) -> SweepResult

* **Work unit**: one (image, target) pair is one :func:`lens_jax.morph` call (one
  gradient, ``n_alpha`` frames).  ``targets`` of shape ``(N,)`` gives one pair per image,
  ``(N, T)`` gives ``T`` pairs per image (results gain a ``T`` axis).  For raw alphas in
  fixed mode, chunks that keep no frames compute the same thing without ``morph``'s
  frames array (:func:`lens_jax.prepare_edit`, one ``jax.grad``, then each group of
  ``alpha_chunk`` frames rendered, classified and measured and dropped), so memory does
  not grow with the number of alphas.
* **Devices**: a :class:`jax.sharding.Mesh` with axis ``"images"`` (and optionally
  ``"alphas"``).  Each chunk is built as a global array with
  ``NamedSharding(mesh, P("images"))`` and computed by one ``jax.jit(jax.shard_map(...))``:
  every device runs the single-device program on its slice, with no communication, so
  results equal the one-device path (bitwise on CPU in our tests).  ``mesh=None`` uses
  every device of ``jax.devices()`` (all hosts after :func:`jax.distributed.initialize`).
  An ``"alphas"`` axis also splits the frames of each pair (``alphas=`` or a 1-D
  ``l2_budget`` in fixed mode); each alpha shard then recomputes the pair's gradient.
* **Memory**: a chunk of ``chunk_size`` pairs is on the devices at once (every chunk is
  padded to ``chunk_size`` rounded up to the image-axis devices, so one program serves
  them all; padding is dropped); ``alpha_chunk`` renders, classifies and measures the
  frames of each pair in groups of that many.  Only the small metrics
  come back for every pair; frames come back only for ``keep_frames`` images.  With
  ``out_dir`` nothing accumulates in host memory until :func:`load_sweep`.
* **Streaming and resume**: ``out_dir/sweep.json`` (the configuration, its hash, a
  fingerprint of the classifier) and one ``chunk_NNNNNN.npz`` per chunk, each written
  atomically with a hash of its inputs.  A rerun skips every valid chunk and refuses a
  different configuration, classifier or data with a ``ValueError``.

Multi-host (TPU pods, several GPU hosts): call ``jax.distributed.initialize()`` on every
host first, then run the same :func:`sweep` call everywhere with the same ``images``
(each host reads the slices its devices own).  Process 0 writes ``out_dir`` (put it on a
shared file system to resume from another host) and returns the result; the others
return ``None`` when ``out_dir`` is given.  See ``experiments/multihost_sweep.py``.

Why ``shard_map(..., check_vma=False)``: the edit parameters of a domain are created with
``jnp.zeros`` inside the per-device program, i.e. device-*invariant*; with
``check_vma=True`` JAX transposes their implicit broadcast into a ``psum``, so
``jax.grad`` would sum the gradients of all devices' images (wrong frames for the
Fourier and CSP domains).  Without the check every device differentiates its own images.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ._io import atomic_save_json, atomic_save_npz
from .domains import DOMAINS
from .lens import LOSSES, MODES, _edit_size, morph, prepare_edit
from .pyramid import SteerablePyramid

__all__ = ["sweep", "load_sweep", "sweep_mesh", "SweepResult", "MANIFEST", "FORMAT"]

MANIFEST = "sweep.json"
FORMAT = "lens_jax.sweep/2"      # /2: max_change added
_CHUNK_RE = re.compile(r"^chunk_(\d{6})\.npz$")
_METRICS = ("probs", "logits", "l2", "alphas", "reached", "max_change", "target", "source")
# default chunk: about this many bytes of frames (times a factor for the transform's
# intermediates) per chunk on the devices
_CHUNK_BYTES = 2 ** 28
_INTERMEDIATE_FACTOR = 16


class SweepResult(NamedTuple):
    """Result of :func:`sweep` / :func:`load_sweep` (host NumPy arrays).

    ``N`` images, ``T`` targets per image (the ``T`` axis is present only when
    ``targets`` was 2-D), ``n`` frames per pair, ``K`` classes, ``M`` kept images.

    Attributes:
      probs, logits: ``(N, [T,] n, K)`` classifier outputs at every frame.
      l2: ``(N, [T,] n)`` L2 distance of each frame to its source image.
      alphas: ``(N, [T,] n)`` amplification of each frame (per pair: budgets and
        step caps depend on the image).
      reached: ``(N, [T,] n)`` bool, False where an L2 budget was not reached.
      max_change: ``(N, [T,] n)`` largest |edit| of each frame (see ``Morph.max_change``;
        a phase above pi has wrapped).
      target, source: ``(N, [T])`` int classes.
      frames: ``(M, [T,] n, H, W, C)`` frames of the images in ``frame_index``.
      frame_index: ``(M,)`` sorted image indices whose frames were kept.
      info: the sweep configuration (as written to ``sweep.json``).
    """
    probs: np.ndarray
    logits: np.ndarray
    l2: np.ndarray
    alphas: np.ndarray
    reached: np.ndarray
    max_change: np.ndarray
    target: np.ndarray
    source: np.ndarray
    frames: np.ndarray
    frame_index: np.ndarray
    info: dict

    @property
    def target_prob(self) -> np.ndarray:
        """``(N, [T,] n)`` probability of the target class at every frame."""
        return np.take_along_axis(self.probs, self.target[..., None, None], axis=-1)[..., 0]

    @property
    def source_prob(self) -> np.ndarray:
        return np.take_along_axis(self.probs, self.source[..., None, None], axis=-1)[..., 0]

    @property
    def margin(self) -> np.ndarray:
        t = np.take_along_axis(self.logits, self.target[..., None, None], axis=-1)[..., 0]
        s = np.take_along_axis(self.logits, self.source[..., None, None], axis=-1)[..., 0]
        return t - s

    @property
    def pred(self) -> np.ndarray:
        return np.argmax(self.logits, axis=-1)


# ----------------------------------------------------------------------------------
# mesh
# ----------------------------------------------------------------------------------

def sweep_mesh(*, alpha_shards: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh for :func:`sweep`: axes ``("images",)``, or ``("images", "alphas")`` with
    ``alpha_shards > 1``.  ``devices`` defaults to ``jax.devices()`` (every host's)."""
    devices = list(jax.devices() if devices is None else devices)
    a = int(alpha_shards)
    if a < 1 or len(devices) % a:
        raise ValueError(f"alpha_shards={alpha_shards} must be >= 1 and divide the "
                         f"{len(devices)} devices")
    if a == 1:
        return Mesh(np.array(devices), ("images",))
    return Mesh(np.array(devices).reshape(len(devices) // a, a), ("images", "alphas"))


def _check_mesh(mesh) -> Mesh:
    if mesh is None:
        return sweep_mesh()
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh or None; got {type(mesh).__name__}")
    names = tuple(mesh.axis_names)
    if names not in (("images",), ("images", "alphas")):
        raise ValueError(f"mesh axes must be ('images',) or ('images', 'alphas'); got {names}")
    return mesh


# ----------------------------------------------------------------------------------
# the per-chunk program
# ----------------------------------------------------------------------------------

def _pair_fn(logits_fn, *, kind, has_source, domain, loss, mode, pyramid, color, n_frames,
             alpha_chunk, want_frames):
    """``(image, target, source, sched) -> dict`` for one pair, vmapped over pairs.

    With frames (or any schedule but raw alphas in fixed mode): one :func:`morph` call.
    Metrics only, raw alphas, fixed mode: the same computation as ``morph`` (one
    gradient, ``render(-alpha * g)``, the source at ``alpha == 0``), but each group of
    ``alpha_chunk`` frames is classified and measured as it is rendered, so the frames of
    a pair are never all in memory (``morph`` returns them, so it keeps them all).
    """
    def with_morph(image, target, source, sched):
        kw = {} if kind is None else {kind: sched}
        m = morph(logits_fn, image, target=target, source=source if has_source else None,
                  domain=domain, loss=loss, mode=mode, pyramid=pyramid, color=color,
                  n_frames=n_frames, chunk_size=alpha_chunk, **kw)
        out = {"probs": m.probs, "logits": m.logits, "l2": m.l2, "alphas": m.alphas,
               "reached": m.reached, "max_change": m.max_change, "target": m.target,
               "source": m.source}
        if want_frames:
            out["frames"] = m.frames
        return out

    def streamed(image, target, source, alphas):
        ed = prepare_edit(logits_fn, image, target=target,
                          source=source if has_source else None, domain=domain, loss=loss,
                          color=color, pyramid=pyramid)
        g = jax.grad(ed.loss)(ed.zeros)

        def per_alpha(a):
            fr = ed.render(jax.tree.map(lambda v: -a * v, g), straight_through=False)
            fr = jnp.where(a == 0, image, fr)
            return logits_fn(fr[None])[0], jnp.sqrt(jnp.sum((fr - image) ** 2))

        n = alphas.shape[0]
        if alpha_chunk is None or alpha_chunk >= n:
            z, l2 = jax.vmap(per_alpha)(alphas)
        else:
            z, l2 = jax.lax.map(per_alpha, alphas, batch_size=int(alpha_chunk))
        return {"probs": jax.nn.softmax(z, axis=-1), "logits": z, "l2": l2,
                "alphas": alphas, "reached": jnp.ones(alphas.shape, bool),
                "max_change": jnp.abs(alphas) * _edit_size(g),
                "target": jnp.asarray(target, jnp.int32), "source": ed.source}

    fast = kind == "alphas" and mode == "fixed" and not want_frames
    return jax.vmap(streamed if fast else with_morph, in_axes=(0, 0, 0, None))


def _build_chunk_fn(logits_fn, mesh: Mesh, *, alpha_sharded: bool, **static):
    """The jitted chunk function and the shardings of its inputs."""
    f = _pair_fn(logits_fn, **static)
    if mesh.size == 1:
        dev = mesh.devices.flat[0]
        return jax.jit(f), [jax.sharding.SingleDeviceSharding(dev)] * 4
    a = "alphas" if alpha_sharded else None
    per_pair = P("images")
    per_frame = P("images", a)
    sched_spec = P(a) if alpha_sharded else P()
    out_specs = {"probs": per_frame, "logits": per_frame, "l2": per_frame,
                 "alphas": per_frame, "reached": per_frame, "max_change": per_frame,
                 "target": per_pair,
                 "source": per_pair}
    if static["want_frames"]:
        out_specs["frames"] = per_frame
    in_specs = (per_pair, per_pair, per_pair, sched_spec)
    # check_vma=False: see the module docstring (gradients w.r.t. device-invariant zeros)
    fn = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                               check_vma=False))
    return fn, [NamedSharding(mesh, s) for s in in_specs]


_FN_CACHE: dict = {}


def _chunk_fn(logits_fn, mesh, **kw):
    key = None
    try:
        key = (logits_fn, mesh, tuple(sorted(kw.items())))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _FN_CACHE:
        return _FN_CACHE[key]
    fn = _build_chunk_fn(logits_fn, mesh, **kw)
    if key is not None:
        if len(_FN_CACHE) > 32:
            _FN_CACHE.clear()
        _FN_CACHE[key] = fn
    return fn


def _global(x: np.ndarray, sharding) -> jax.Array:
    """A global array from the host copy every process holds (multi-host safe)."""
    if isinstance(sharding, jax.sharding.SingleDeviceSharding):
        return jax.device_put(x, sharding)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _to_host(x: jax.Array) -> np.ndarray:
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


# ----------------------------------------------------------------------------------
# configuration, hashing, manifest
# ----------------------------------------------------------------------------------

def _hash_arrays(*arrays) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _config_hash(config: dict) -> str:
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _schedule(alphas, l2_budget, step_cap, mode, dtype):
    """``(kind, host array, n_alpha, shardable)``."""
    given = [n for n, v in (("alphas", alphas), ("l2_budget", l2_budget),
                            ("step_cap", step_cap)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one schedule; got {', '.join(given)}")
    if alphas is not None:
        a = np.asarray(alphas, dtype)
        if a.ndim != 1 or a.shape[0] == 0:
            raise ValueError(f"alphas must be a non-empty 1-D array; got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("alphas contain NaN/Inf")
        if mode != "fixed" and np.any(np.diff(a) < 0):
            raise ValueError("live modes need non-decreasing alphas (cumulative steps)")
        return "alphas", a, a.shape[0], mode == "fixed"
    if l2_budget is not None:
        b = np.asarray(l2_budget, dtype)
        if b.ndim > 1 or b.size == 0:
            raise ValueError(f"l2_budget must be a number or a non-empty 1-D array; "
                             f"got shape {b.shape}")
        if not np.all(np.isfinite(b) & (b > 0)):
            raise ValueError(f"l2_budget values must be positive and finite; got {b}")
        return "l2_budget", b, (b.shape[0] if b.ndim == 1 else None), b.ndim == 1
    if step_cap is not None:
        s = np.asarray(step_cap, dtype)
        if s.ndim != 0 or not (np.isfinite(s) and s > 0):
            raise ValueError(f"step_cap must be a positive finite number; got {step_cap}")
        return "step_cap", s, None, False
    return None, np.zeros((), dtype), None, False


def _keep_index(keep_frames, n_images: int) -> np.ndarray:
    if keep_frames is None or keep_frames is False:
        return np.zeros((0,), np.int64)
    if isinstance(keep_frames, (int, np.integer)) and not isinstance(keep_frames, bool):
        k = int(keep_frames)
        if k < 0:
            raise ValueError(f"keep_frames must be >= 0; got {k}")
        return np.arange(min(k, n_images), dtype=np.int64)
    idx = np.unique(np.asarray(keep_frames, np.int64).reshape(-1))
    if idx.size and (idx[0] < 0 or idx[-1] >= n_images):
        raise ValueError(f"keep_frames indices must lie in [0, {n_images}); got "
                         f"{idx[(idx < 0) | (idx >= n_images)].tolist()}")
    return idx


def _check_values(x: np.ndarray, first: int) -> None:
    """Finite and in [0, 1] (``first``: the index of the chunk's first image)."""
    ok = np.isfinite(x).reshape(len(x), -1).all(1)
    if not ok.all():
        raise ValueError(f"image {first + int(np.argmin(ok))} contains NaN/Inf values")
    lo, hi = x.reshape(len(x), -1).min(1), x.reshape(len(x), -1).max(1)
    bad = (lo < 0) | (hi > 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"image values must lie in [0, 1]; image {first + i} has range "
                         f"[{lo[i]:.4g}, {hi[i]:.4g}]")


def _probe(logits_fn, images) -> np.ndarray:
    x = np.asarray(images[:1])
    if x.ndim == 3:
        x = x[..., None]
    return np.asarray(logits_fn(jnp.asarray(x)), np.float64)


def _read_manifest(out_dir: Path) -> dict | None:
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    with open(path) as f:
        man = json.load(f)
    if man.get("format") != FORMAT:
        raise ValueError(f"{path} is not a lens_jax sweep manifest (format "
                         f"{man.get('format')!r}, expected {FORMAT!r})")
    return man


def _check_resume(man: dict, config: dict, chash: str, chunk_size, probe, path) -> int:
    """Validate an existing manifest against this call; returns its chunk size."""
    if man["config_hash"] != chash:
        old = man["config"]
        diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        raise ValueError(
            f"{path} holds a different sweep (differs in: {', '.join(diff)}); use another "
            "out_dir, or resume=False to start this sweep afresh there")
    if chunk_size is not None and int(chunk_size) != man["chunk_size"]:
        raise ValueError(f"{path} was written with chunk_size={man['chunk_size']}; "
                         f"got chunk_size={chunk_size} (omit it to resume)")
    old = np.asarray(man["probe"], np.float64)
    scale = 1.0 + float(np.max(np.abs(old)))
    if old.shape != probe.shape or not np.allclose(old, probe, rtol=1e-3, atol=1e-3 * scale):
        raise ValueError(f"{path}: the classifier differs from the one that started this "
                         f"sweep (logits at image 0: {old.ravel()[:4]} then, "
                         f"{probe.ravel()[:4]} now); use another out_dir or resume=False")
    return int(man["chunk_size"])


def _chunk_path(out_dir: Path, k: int) -> Path:
    return out_dir / f"chunk_{k:06d}.npz"


def _valid_chunk(path: Path, input_hash: str) -> bool:
    try:
        with np.load(path) as z:
            return str(z["input_hash"]) == input_hash
    except Exception:          # unreadable or truncated by hand: recompute it
        return False


# ----------------------------------------------------------------------------------
# multi-host agreement (process 0 decides, everyone follows)
# ----------------------------------------------------------------------------------

def _agree(value: np.ndarray) -> np.ndarray:
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.broadcast_one_to_all(value))


def _agree_ok(err: BaseException | None) -> None:
    """Raise on every process when process 0 failed (so no one hangs in a collective)."""
    flag = _agree(np.array(0 if err is None else 1, np.int32))
    if err is not None:
        raise err
    if int(flag):
        raise RuntimeError("process 0 refused this sweep (see its error)")


# ----------------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------------

def sweep(logits_fn: Callable, images, targets, *, sources=None,
          domain: str | Sequence[str] = "csp_phase", alphas=None, l2_budget=None,
          step_cap: float | None = None, n_frames: int = 12, loss: str = "nll",
          mode: str = "fixed", color: str = "luminance",
          pyramid: SteerablePyramid | None = None, mesh: Mesh | None = None,
          chunk_size: int | None = None, alpha_chunk: int | None = None,
          keep_frames: int | Sequence[int] | None = 0,
          out_dir: str | os.PathLike | None = None, resume: bool = True,
          progress: bool = True, on_chunk: Callable[[int, dict], Any] | None = None
          ) -> SweepResult | dict[str, SweepResult] | None:
    """Morph every image toward every target at every amplification, over a mesh.

    Args:
      logits_fn: JAX function ``(B, H, W, C)`` images in [0, 1] -> ``(B, K)`` logits.
      images: ``(N, H, W, C)`` or ``(N, H, W)`` float array in [0, 1]; any array with
        NumPy slicing (a ``np.memmap`` keeps a large split on disk).  Read chunk by chunk.
      targets: an int (every image), ``(N,)`` (one target per image) or ``(N, T)``
        (``T`` targets per image; results gain a ``T`` axis).
      sources: ``(N,)`` source classes (default: the classifier's prediction).
      domain: one of ``lens_jax.DOMAINS``, or a sequence of them: then a dict
        ``{domain: SweepResult}`` is returned and each domain streams to
        ``out_dir/<domain>``.
      alphas, l2_budget, step_cap, n_frames, loss, mode, color, pyramid: the schedule and
        options of :func:`lens_jax.morph` (same meaning), shared by every pair.
      mesh: a :class:`~jax.sharding.Mesh` with axes ``("images",)`` or
        ``("images", "alphas")`` (:func:`sweep_mesh` builds one).  ``None``: every device
        on one ``"images"`` axis.  A one-device mesh runs plain ``jax.jit``.
      chunk_size: pairs per chunk (default: from a memory budget, a multiple of the
        image-axis devices; on resume, the stored value).  Padded to the devices.
      alpha_chunk: render and classify at most this many frames of a pair at once.
      keep_frames: frames are returned only for these images: a count ``k`` (the first
        ``k``) or a sequence of image indices.  Metrics are returned for all.
      out_dir: stream chunks and a manifest there and resume from them.
      resume: with ``out_dir``: skip finished chunks (``False``: delete this sweep's
        files there and start afresh).
      progress: a tqdm bar over chunks (process 0 only).
      on_chunk: ``on_chunk(k, arrays)`` after chunk ``k`` is stored (or kept).

    Returns:
      A :class:`SweepResult` (a dict of them for several domains).  In a multi-process
      run with ``out_dir``, only process 0 returns it (others: ``None``).

    Raises:
      ValueError: bad shapes, values, schedule or mesh; a resume against a different
        configuration, classifier or data.

    >>> import numpy as np, jax.numpy as jnp
    >>> from lens_jax.sweep import sweep
    >>> f = lambda x: jnp.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], -1)
    >>> imgs = np.full((4, 16, 16), 0.5, np.float32)
    >>> r = sweep(f, imgs, 1, alphas=[0.0, 1.0, 2.0], domain="pixel", progress=False)
    >>> r.probs.shape, r.l2.shape, r.frames.shape
    ((4, 3, 2), (4, 3), (0, 3, 16, 16, 1))
    """
    if not isinstance(domain, str):
        domains = list(domain)
        if not domains or len(set(domains)) != len(domains):
            raise ValueError(f"domain must be a name or a sequence of distinct names; got {domain!r}")
        for d in domains:
            if d not in DOMAINS:
                raise ValueError(f"unknown domain {d!r}; choose from {DOMAINS}")
        kw = dict(sources=sources, alphas=alphas, l2_budget=l2_budget, step_cap=step_cap,
                  n_frames=n_frames, loss=loss, mode=mode, color=color, pyramid=pyramid,
                  mesh=mesh, chunk_size=chunk_size, alpha_chunk=alpha_chunk,
                  keep_frames=keep_frames, resume=resume, progress=progress,
                  on_chunk=on_chunk)
        return {d: sweep(logits_fn, images, targets, domain=d,
                         out_dir=None if out_dir is None else Path(out_dir) / d, **kw)
                for d in domains}
    return _sweep_one(logits_fn, images, targets, sources=sources, domain=domain,
                      alphas=alphas, l2_budget=l2_budget, step_cap=step_cap,
                      n_frames=n_frames, loss=loss, mode=mode, color=color, pyramid=pyramid,
                      mesh=mesh, chunk_size=chunk_size, alpha_chunk=alpha_chunk,
                      keep_frames=keep_frames, out_dir=out_dir, resume=resume,
                      progress=progress, on_chunk=on_chunk)


def _sweep_one(logits_fn, images, targets, *, sources, domain, alphas, l2_budget, step_cap,
               n_frames, loss, mode, color, pyramid, mesh, chunk_size, alpha_chunk,
               keep_frames, out_dir, resume, progress, on_chunk):
    # ---- validation (host, cheap) -------------------------------------------------
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose from {DOMAINS}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        images = np.asarray(images)
    if len(images.shape) not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C); got shape "
                         f"{tuple(images.shape)}")
    if not np.issubdtype(np.dtype(images.dtype), np.floating):
        raise ValueError(f"images must be float in [0, 1]; got dtype {images.dtype}")
    N = int(images.shape[0])
    if N == 0:
        raise ValueError("images is empty")
    H, W = int(images.shape[1]), int(images.shape[2])
    C = int(images.shape[3]) if len(images.shape) == 4 else 1
    dtype = np.dtype(images.dtype)
    if dtype in (np.dtype(np.float16),) or str(dtype) == "bfloat16":
        dtype = np.dtype(np.float32)
    out = jax.eval_shape(logits_fn, jax.ShapeDtypeStruct((1, H, W, C), dtype))
    if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[1] < 2:
        raise ValueError("logits_fn must map (B, H, W, C) images to (B, K) logits, K >= 2")
    K = int(out.shape[1])

    tg = np.asarray(targets)
    if not np.issubdtype(tg.dtype, np.integer):
        raise ValueError(f"targets must be integer classes; got dtype {tg.dtype}")
    two_d = tg.ndim == 2
    if tg.ndim == 0:
        tg = np.full((N, 1), int(tg))
    elif tg.ndim == 1:
        if tg.shape[0] != N:
            raise ValueError(f"targets has {tg.shape[0]} entries for {N} images")
        tg = tg[:, None]
    elif tg.ndim != 2 or tg.shape[0] != N or tg.shape[1] == 0:
        raise ValueError(f"targets must be an int, (N,) or (N, T) with N={N}; got shape "
                         f"{tg.shape}")
    if tg.min() < 0 or tg.max() >= K:
        raise ValueError(f"targets must lie in 0..{K - 1}; got {tg.min()}..{tg.max()}")
    tg = tg.astype(np.int32)
    T = tg.shape[1]
    src = None
    if sources is not None:
        src = np.asarray(sources)
        if src.shape != (N,) or not np.issubdtype(src.dtype, np.integer):
            raise ValueError(f"sources must be ({N},) integer classes; got {src.shape} "
                             f"{src.dtype}")
        if src.min() < 0 or src.max() >= K:
            raise ValueError(f"sources must lie in 0..{K - 1}; got {src.min()}..{src.max()}")
        src = src.astype(np.int32)

    kind, sched, n_alpha, shardable = _schedule(alphas, l2_budget, step_cap, mode, dtype)
    if n_alpha is None:
        n_alpha = int(n_frames)
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1; got {n_frames}")
    if alpha_chunk is not None and int(alpha_chunk) < 1:
        raise ValueError(f"alpha_chunk must be >= 1; got {alpha_chunk}")
    mesh = _check_mesh(mesh)
    D = int(mesh.shape["images"])
    A = int(mesh.shape.get("alphas", 1))
    if A > 1 and not shardable:
        raise ValueError("an 'alphas' mesh axis needs alphas= in fixed mode or a 1-D "
                         "l2_budget (other schedules derive every frame from one search); "
                         "use a mesh with only an 'images' axis")
    keep = _keep_index(keep_frames, N)

    # ---- configuration, manifest --------------------------------------------------
    n_pairs = N * T
    config = {
        "domain": domain, "loss": loss, "mode": mode, "color": color,
        "pyramid": None if pyramid is None else repr(pyramid),
        "schedule": kind, "schedule_values": np.asarray(sched).tolist(),
        "n_alpha": n_alpha, "n_frames": int(n_frames), "alpha_chunk": alpha_chunk,
        "n_images": N, "image_shape": [H, W, C], "images_rank": len(images.shape),
        "dtype": str(np.dtype(images.dtype)), "targets_2d": bool(two_d), "T": T,
        "num_classes": K, "sources_given": src is not None, "keep_frames": keep.tolist(),
    }
    chash = _config_hash(config)
    n_pad_alpha = -(-n_alpha // A) * A
    if n_pad_alpha != n_alpha:          # pad the alpha shards, padding dropped later
        sched = np.concatenate([sched, np.full(n_pad_alpha - n_alpha, sched[-1], dtype)])
    primary = jax.process_index() == 0
    outp = None if out_dir is None else Path(out_dir)
    probe = _probe(logits_fn, images) if outp is not None and primary else None

    stored_chunk = np.array(0, np.int64)
    man, err = None, None
    if outp is not None and primary:
        try:
            man = _read_manifest(outp)
            if man is not None and not resume:
                for p in outp.iterdir():
                    if _CHUNK_RE.match(p.name):
                        p.unlink()
                (outp / MANIFEST).unlink()
                man = None
            if man is not None:
                stored_chunk = np.array(_check_resume(man, config, chash, chunk_size, probe,
                                                      outp / MANIFEST), np.int64)
        except BaseException as e:       # noqa: BLE001 - re-raised on every process
            err = e
    if outp is not None:
        _agree_ok(err)
        stored_chunk = _agree(stored_chunk)
    if int(stored_chunk) > 0:
        cs = int(stored_chunk)
    elif chunk_size is not None:
        cs = int(chunk_size)
        if cs < 1:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    else:
        img = H * W * C * dtype.itemsize      # frames (morph path) + render intermediates
        per_pair = 2 * n_alpha * img + _INTERMEDIATE_FACTOR * min(
            n_alpha, int(alpha_chunk or n_alpha)) * img
        cs = max(1, _CHUNK_BYTES // per_pair)
        cs = int(min(cs, 1024, -(-n_pairs // D) * D))
        cs = -(-cs // D) * D
    n_chunks = -(-n_pairs // cs)

    def chunk_inputs(k):
        """``(pairs, images per pair, targets, sources, unique images)`` of chunk ``k``."""
        s, e = k * cs, min((k + 1) * cs, n_pairs)
        pairs = np.arange(s, e)
        img_idx = pairs // T
        lo, hi = int(img_idx[0]), int(img_idx[-1]) + 1    # contiguous images
        x = np.asarray(images[lo:hi])
        if x.ndim == 3:
            x = x[..., None]
        x = x.astype(dtype, copy=False)
        t = tg.reshape(-1)[pairs]
        sv = src[img_idx] if src is not None else np.zeros_like(t)
        return pairs, x[img_idx - lo], t, sv, x

    def chunk_hash(k):
        pairs, _, t, sv, x = chunk_inputs(k)
        _check_values(x, pairs[0] // T)
        return _hash_arrays(x, t, sv, pairs[[0, -1]])

    # ---- manifest; which chunks are done (process 0 decides) ----------------------
    done = np.zeros(n_chunks, bool)
    hashes: list[str] = []
    if outp is not None and primary:
        try:
            hashes = [chunk_hash(k) for k in range(n_chunks)]     # one pass over the data
            if man is None:
                atomic_save_json(outp / MANIFEST, {
                    "format": FORMAT, "config": config, "config_hash": chash,
                    "chunk_size": cs, "n_chunks": n_chunks, "n_pairs": n_pairs,
                    "probe": probe, "chunk_hashes": hashes,
                    "classifier": getattr(logits_fn, "__qualname__",
                                          type(logits_fn).__name__)})
            else:
                bad = [k for k, (h0, h1) in enumerate(zip(man["chunk_hashes"], hashes))
                       if h0 != h1]
                if bad:
                    raise ValueError(
                        f"{outp / MANIFEST}: the images, targets or sources differ from "
                        f"those that started this sweep (chunks {bad[:5]}"
                        f"{' ...' if len(bad) > 5 else ''}); use another out_dir or "
                        "resume=False")
            for k in range(n_chunks):
                path = _chunk_path(outp, k)
                done[k] = path.exists() and _valid_chunk(path, hashes[k])
        except BaseException as e:       # noqa: BLE001 - re-raised on every process
            err = e
    if outp is not None:
        _agree_ok(err)
        done = _agree(done.astype(np.int32)).astype(bool)

    # ---- compute ------------------------------------------------------------------
    static = dict(kind=kind, has_source=src is not None, domain=domain, loss=loss, mode=mode,
                  pyramid=pyramid, color=color, n_frames=int(n_frames),
                  alpha_chunk=None if alpha_chunk is None else int(alpha_chunk))
    keep_set = np.zeros(N, bool)
    keep_set[keep] = True
    kept: list[dict] = []
    todo = [k for k in range(n_chunks) if not done[k]]
    bar = None
    if progress and primary:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_chunks, initial=n_chunks - len(todo), unit="chunk",
                   desc=f"sweep {domain}", leave=False)

    def dispatch(k):
        pairs, x, t, sv, xu = chunk_inputs(k)
        h = hashes[k] if hashes else ""
        if not hashes:                       # (checked while hashing otherwise)
            _check_values(xu, pairs[0] // T)
        b = len(pairs)
        bp = -(-cs // D) * D                 # every chunk has one shape: one compile
        if bp != b:                          # pad with the chunk's first pair
            pad = np.zeros(bp - b, np.int64)
            x, t, sv = (np.concatenate([v, v[pad]]) for v in (x, t, sv))
        want = bool(keep_set[pairs // T].any())
        fn, shardings = _chunk_fn(logits_fn, mesh, alpha_sharded=A > 1, want_frames=want,
                                  **static)
        args = [_global(v, sh) for v, sh in zip((x, t, sv, sched), shardings)]
        return k, pairs, h, fn(*args)

    def finish(item):
        k, pairs, h, res = item
        b = len(pairs)
        arrays = {}
        for name in _METRICS:
            v = _to_host(res[name])[:b]
            if v.ndim >= 2 and A > 1:
                v = v[:, :n_alpha]
            arrays[name] = v
        sel = np.nonzero(keep_set[pairs // T])[0]
        if "frames" in res:
            fr = _to_host(res["frames"])[:b]
            arrays["frames"] = (fr[:, :n_alpha] if A > 1 else fr)[sel]
        else:
            arrays["frames"] = np.zeros((0, n_alpha, H, W, C), dtype)
        arrays["frame_pairs"] = pairs[sel]
        arrays["pairs"] = np.array([pairs[0], pairs[-1] + 1], np.int64)
        if outp is not None:
            if primary:
                atomic_save_npz(_chunk_path(outp, k), input_hash=np.array(h), **arrays)
        else:
            kept.append(arrays)
        if bar is not None:
            bar.update(1)
        if on_chunk is not None:
            on_chunk(k, arrays)

    try:
        pending = None
        for k in todo:              # one chunk in flight while the previous one is stored
            item = dispatch(k)
            if pending is not None:
                finish(pending)
            pending = item
        if pending is not None:
            finish(pending)
    finally:
        if bar is not None:
            bar.close()

    if outp is None:
        return _assemble(kept, config, n_chunks)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("lens_jax.sweep:done")
    return load_sweep(outp) if primary else None


# ----------------------------------------------------------------------------------
# assembling results
# ----------------------------------------------------------------------------------

def _assemble(chunks: list[dict], config: dict, n_chunks: int) -> SweepResult:
    if len(chunks) != n_chunks:
        raise ValueError(f"{n_chunks - len(chunks)} of {n_chunks} chunks are missing")
    chunks = sorted(chunks, key=lambda c: int(c["pairs"][0]))
    N, T = config["n_images"], config["T"]
    n = config["n_alpha"]
    H, W, C = config["image_shape"]
    lead = (N, T) if config["targets_2d"] else (N,)
    out = {}
    for name in _METRICS:
        v = np.concatenate([c[name] for c in chunks])
        if v.shape[0] != N * T:
            raise ValueError(f"chunks hold {v.shape[0]} pairs; expected {N * T}")
        out[name] = v.reshape(lead + v.shape[1:])
    keep = np.asarray(config["keep_frames"], np.int64)
    fp = np.concatenate([c["frame_pairs"] for c in chunks])
    dtype = np.dtype(config["dtype"]) if config["dtype"] in ("float32", "float64") \
        else np.dtype(np.float32)
    fr = np.concatenate([c["frames"] for c in chunks]) if chunks else \
        np.zeros((0, n, H, W, C), dtype)
    order = np.argsort(fp, kind="stable")
    fr = fr[order].reshape(((keep.size, T) if config["targets_2d"] else (keep.size,))
                           + (n, H, W, C))
    return SweepResult(frames=fr, frame_index=keep, info=dict(config), **out)


def load_sweep(out_dir: str | os.PathLike) -> SweepResult | dict[str, SweepResult]:
    """Concatenate the chunks a finished :func:`sweep` wrote to ``out_dir``.

    A folder of several domains (``out_dir/<domain>/sweep.json``) gives a dict.

    Raises:
      FileNotFoundError: no sweep there.  ValueError: chunks missing (rerun the sweep
      to finish it) or written by another configuration.
    """
    out_dir = Path(out_dir)
    man = _read_manifest(out_dir)
    if man is None:
        subs = {p.name: p for p in sorted(out_dir.iterdir()) if (p / MANIFEST).exists()} \
            if out_dir.is_dir() else {}
        if not subs:
            raise FileNotFoundError(f"no {MANIFEST} in {out_dir} or its subfolders")
        return {name: load_sweep(p) for name, p in subs.items()}
    n_chunks = int(man["n_chunks"])
    missing = [k for k in range(n_chunks) if not _chunk_path(out_dir, k).exists()]
    if missing:
        raise ValueError(f"{out_dir}: sweep incomplete, {len(missing)} of {n_chunks} chunks "
                         f"missing (first: {missing[:5]}); rerun sweep() with this out_dir "
                         "to finish it")
    chunks = []
    for k in range(n_chunks):
        with np.load(_chunk_path(out_dir, k)) as z:
            chunks.append({name: z[name] for name in z.files if name != "input_hash"})
    return _assemble(chunks, man["config"], n_chunks)
