"""The plan of a :func:`lens_jax.sweep`: every argument validated once, into a static
:class:`Plan` (schedule, classes, mesh axes, the configuration written to the manifest),
plus the per-chunk inputs and their hashes.  No device work here but one ``eval_shape``.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from . import _store
from .domains import domain_names, get_domain
from .lens import LOSSES, MODES
from .schedule import Schedule
from .checks import check_count, check_margin, num_classes
from .classifier import Classifier
from .pyramid import SteerablePyramid

__all__ = ["Plan", "make_plan", "sweep_mesh", "resolve_mesh", "auto_chunk_size",
           "chunk_inputs", "chunk_hash", "check_values", "check_images"]

# default chunk: about this many bytes of frames (times a factor for the transform's
# intermediates) per chunk on the devices
_CHUNK_BYTES = 2 ** 28
_INTERMEDIATE_FACTOR = 16


def sweep_mesh(*, alpha_shards: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh for :func:`sweep`: axes ``("images",)``, or ``("images", "alphas")`` with
    ``alpha_shards > 1``.  ``devices`` defaults to ``jax.devices()`` (every host's).
    Any other mesh works too (see ``image_axis`` and ``alpha_axis`` of :func:`sweep`)."""
    devices = list(jax.devices() if devices is None else devices)
    a = int(alpha_shards)
    if a < 1 or len(devices) % a:
        raise ValueError(f"alpha_shards={alpha_shards} must be >= 1 and divide the "
                         f"{len(devices)} devices")
    if a == 1:
        return Mesh(np.array(devices), ("images",))
    return Mesh(np.array(devices).reshape(len(devices) // a, a), ("images", "alphas"))


def resolve_mesh(mesh, image_axis, alpha_axis) -> tuple[Mesh, str, str | None]:
    """``(mesh, image axis, alpha axis or None)``; ValueError naming the bad argument."""
    if mesh is None:
        mesh = sweep_mesh()
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh or None; got {type(mesh).__name__}")
    names = tuple(mesh.axis_names)
    if image_axis is None:
        image_axis = names[0]
    if image_axis not in names:
        raise ValueError(f"image_axis={image_axis!r} is not an axis of the mesh {names}")
    if alpha_axis is None and "alphas" in names and image_axis != "alphas":
        alpha_axis = "alphas"
    if alpha_axis is not None:
        if alpha_axis not in names:
            raise ValueError(f"alpha_axis={alpha_axis!r} is not an axis of the mesh {names}")
        if alpha_axis == image_axis:
            raise ValueError(f"alpha_axis and image_axis must differ; both are {image_axis!r}")
        if int(mesh.shape[alpha_axis]) == 1:
            alpha_axis = None
    return mesh, image_axis, alpha_axis


class Plan(NamedTuple):
    """Everything :func:`sweep` needs, validated; ``config`` is what ``sweep.json`` holds."""
    domain: str
    loss: str
    mode: str
    color: str
    pyramid: SteerablePyramid | None
    kind: str                       # Schedule kind: alphas, budget, budgets, step_cap
    sched: np.ndarray               # schedule values (0-d step cap, else 1-D), padded to
                                    # the alpha shards
    n_alpha: int                    # frames per pair
    n_frames: int
    alpha_chunk: int | None
    shape: tuple                    # (N, H, W, C)
    dtype: np.dtype                 # compute dtype
    targets: np.ndarray             # (N, T) int32
    sources: np.ndarray | None      # (N,) int32
    keep: np.ndarray                # image indices whose frames are kept
    mesh: Mesh
    image_axis: str
    alpha_axis: str | None
    num_classes: int
    config: dict

    @property
    def n_pairs(self) -> int:
        return self.shape[0] * self.targets.shape[1]

    @property
    def devices(self) -> int:
        return int(self.mesh.shape[self.image_axis])

    @property
    def alpha_shards(self) -> int:
        return 1 if self.alpha_axis is None else int(self.mesh.shape[self.alpha_axis])


def check_images(images) -> tuple[Any, tuple, np.dtype]:
    """``(images, (N, H, W, C), compute dtype)``; ValueError for a bad rank or dtype."""
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        images = np.asarray(images)
    if len(images.shape) not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C); got shape "
                         f"{tuple(images.shape)}")
    if not np.issubdtype(np.dtype(images.dtype), np.floating):
        raise ValueError(f"images must be float in [0, 1]; got dtype {images.dtype}")
    if int(images.shape[0]) == 0:
        raise ValueError("images is empty")
    N, H, W = (int(v) for v in images.shape[:3])
    C = int(images.shape[3]) if len(images.shape) == 4 else 1
    dtype = np.dtype(images.dtype)
    if dtype == np.float16 or str(dtype) == "bfloat16":
        dtype = np.dtype(np.float32)
    return images, (N, H, W, C), dtype


def _check_classes(targets, sources, N: int, K: int) -> tuple[np.ndarray, np.ndarray | None]:
    tg = np.asarray(targets)
    if not np.issubdtype(tg.dtype, np.integer):
        raise ValueError(f"targets must be integer classes; got dtype {tg.dtype}")
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
    if sources is None:
        return tg.astype(np.int32), None
    src = np.asarray(sources)
    if src.shape != (N,) or not np.issubdtype(src.dtype, np.integer):
        raise ValueError(f"sources must be ({N},) integer classes; got {src.shape} "
                         f"{src.dtype}")
    if src.min() < 0 or src.max() >= K:
        raise ValueError(f"sources must lie in 0..{K - 1}; got {src.min()}..{src.max()}")
    return tg.astype(np.int32), src.astype(np.int32)


def make_plan(clf: Classifier, images, targets, *, sources, domain, alphas, l2_budget,
               step_cap, n_frames, loss, mode, color, pyramid, mesh, image_axis, alpha_axis,
               alpha_chunk, keep_frames) -> tuple[Plan, Any]:
    """Validate every argument of one domain's sweep; ``(plan, images)``."""
    if not isinstance(domain, str) or domain not in domain_names():
        raise ValueError(f"unknown domain {domain!r}; choose from {domain_names()}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    images, shape, dtype = check_images(images)
    N, H, W, C = shape
    get_domain(domain, (H, W), pyramid=pyramid)     # pyramid and size fit the domain
    K = num_classes(clf, jax.ShapeDtypeStruct((1, H, W, C), dtype))
    tg, src = _check_classes(targets, sources, N, K)
    if src is not None:                     # the check morph makes (zero gradient)
        check_margin(loss, tg.reshape(-1), np.repeat(src, tg.shape[1]))
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) \
            or n_frames < 1:
        raise ValueError(f"n_frames must be an int >= 1; got {n_frames!r}")
    kind, sched, n_alpha, shardable, auto = _schedule(alphas, l2_budget, step_cap, n_frames,
                                                      mode, domain, dtype)
    if alpha_chunk is not None:
        alpha_chunk = check_count("alpha_chunk", alpha_chunk)
    mesh, image_axis, alpha_axis = resolve_mesh(mesh, image_axis, alpha_axis)
    if alpha_axis is not None and not shardable:
        raise ValueError(f"an alpha mesh axis ({alpha_axis!r}) needs alphas= in fixed mode "
                         "or a 1-D l2_budget (other schedules derive every frame from one "
                         "search); pass a mesh without it, or image_axis= only")
    values = np.asarray(sched).tolist()
    A = 1 if alpha_axis is None else int(mesh.shape[alpha_axis])
    n_pad = -(-n_alpha // A) * A
    if n_pad != n_alpha:              # pad the alpha shards; the padding is dropped later
        sched = np.concatenate([sched, np.full(n_pad - n_alpha, sched[-1], dtype)])
    keep = _keep_index(keep_frames, N)
    config = {
        "domain": domain, "loss": loss, "mode": mode, "color": color,
        "pyramid": None if pyramid is None else repr(pyramid),
        "schedule": kind, "schedule_auto": auto, "schedule_values": values,
        "n_alpha": n_alpha, "n_frames": int(n_frames), "alpha_chunk": alpha_chunk,
        "n_images": N, "image_shape": [H, W, C], "images_rank": len(images.shape),
        "dtype": str(np.dtype(images.dtype)), "compute_dtype": str(dtype),
        "targets_2d": np.ndim(targets) == 2,
        "T": int(tg.shape[1]), "num_classes": K, "sources_given": src is not None,
        "keep_frames": keep.tolist(),
    }
    plan = Plan(domain, loss, mode, color, pyramid, kind, sched, n_alpha, int(n_frames),
                 None if alpha_chunk is None else int(alpha_chunk), shape, dtype, tg, src,
                 keep, mesh, image_axis, alpha_axis, K, config)
    return plan, images


def auto_chunk_size(plan: Plan) -> int:
    """Pairs per chunk from a memory budget, a multiple of the image-axis devices."""
    _, H, W, C = plan.shape
    img = H * W * C * plan.dtype.itemsize       # frames (morph path) + render intermediates
    n = plan.n_alpha
    per_pair = 2 * n * img + _INTERMEDIATE_FACTOR * min(n, plan.alpha_chunk or n) * img
    D = plan.devices
    cs = max(1, _CHUNK_BYTES // per_pair)
    cs = int(min(cs, 1024, -(-plan.n_pairs // D) * D))
    return -(-cs // D) * D


def chunk_inputs(plan: Plan, images, cs: int, k: int):
    """``(pairs, images per pair, targets, sources, the chunk's unique images)``."""
    T = plan.targets.shape[1]
    s, e = _store.pair_range(k, cs, plan.n_pairs)
    pairs = np.arange(s, e)
    img_idx = pairs // T
    lo, hi = int(img_idx[0]), int(img_idx[-1]) + 1          # contiguous images
    x = np.asarray(images[lo:hi])
    if x.ndim == 3:
        x = x[..., None]
    x = x.astype(plan.dtype, copy=False)
    t = plan.targets.reshape(-1)[pairs]
    sv = plan.sources[img_idx] if plan.sources is not None else np.zeros_like(t)
    return pairs, x[img_idx - lo], t, sv, x


def chunk_hash(plan: Plan, images, cs: int, k: int) -> str:
    pairs, _, t, sv, x = chunk_inputs(plan, images, cs, k)
    check_values(x, pairs[0] // plan.targets.shape[1])
    return _store.hash_arrays(x, t, sv, pairs[[0, -1]])


def _schedule(alphas, l2_budget, step_cap, n_frames, mode, domain, dtype):
    """``(Schedule kind, host values, n_alpha, shardable over an alpha axis, auto)``.

    Checked by :meth:`Schedule.parse`, the check :func:`lens_jax.morph` uses, so a sweep
    refuses exactly what a morph refuses.  The host values are the parsed schedule's
    (alphas, budgets or the step cap, also the automatic one) as ``dtype``: they are
    recorded in the store's configuration and compared on resume.
    """
    s = Schedule.parse(alphas=alphas, step_cap=step_cap, l2_budget=l2_budget,
                       n_frames=n_frames, domain=domain, mode=mode, dtype=dtype)
    if s.kind == "alphas":
        return s.kind, np.asarray(s.alphas, dtype), s.length, mode == "fixed", False
    if s.kind in ("budget", "budgets"):
        return s.kind, np.asarray(s.budgets, dtype), s.length, s.kind == "budgets", False
    return s.kind, np.asarray(s.step_cap, dtype), s.length, False, bool(s.auto)


def _keep_index(keep_frames, n_images: int) -> np.ndarray:
    if keep_frames is None:
        return np.zeros((0,), np.int64)
    if isinstance(keep_frames, (bool, np.bool_)):
        raise ValueError(f"keep_frames must be a count or a sequence of image indices, not "
                         f"a bool; got {keep_frames!r} (keep_frames=k keeps the first k "
                         "images' frames; 0 or None keeps none)")
    if isinstance(keep_frames, (int, np.integer)) and not isinstance(keep_frames, bool):
        k = int(keep_frames)
        if k < 0:
            raise ValueError(f"keep_frames must be >= 0; got {k}")
        return np.arange(min(k, n_images), dtype=np.int64)
    raw = np.asarray(keep_frames)
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"keep_frames must be a count or a sequence of integer image "
                         f"indices; got {keep_frames!r}")
    idx = np.unique(raw.astype(np.int64).reshape(-1))
    if idx.size and (idx[0] < 0 or idx[-1] >= n_images):
        raise ValueError(f"keep_frames indices must lie in [0, {n_images}); got "
                         f"{idx[(idx < 0) | (idx >= n_images)].tolist()}")
    return idx


def check_values(x: np.ndarray, first: int) -> None:
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
