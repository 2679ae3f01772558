"""Input checks shared by every lens entry point: images, classes, classifier output,
counts.  Each raises ``ValueError`` naming the argument (never a silent NaN or clamp).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .classifier import Classifier

__all__ = ["check_image", "check_classes", "check_count", "check_bool", "check_margin",
           "check_memory", "num_classes"]


def concrete(*xs) -> bool:
    """Whether no leaf of ``xs`` is a tracer (values can be checked)."""
    return not any(isinstance(l, jax.core.Tracer) for l in jax.tree.leaves(xs))


def check_image(image, *, batch: bool = False, name: str = "image") -> jax.Array:
    """Validate one image ``(H, W[, C])`` (or with ``batch=True`` a batch
    ``(N, H, W[, C])``) and return it as a float array with a channel axis.

    Raises ``ValueError`` for a wrong rank, an empty batch, a non-float dtype and (when
    concrete) NaN/Inf or values outside [0, 1]; float16/bfloat16 become float32.

    >>> check_image(np.zeros((4, 4))).shape
    (4, 4, 1)
    """
    if not hasattr(image, "dtype"):
        image = np.asarray(image)
    rank = 4 if batch else 3
    if image.ndim == rank - 1:
        image = image[..., None]
    if image.ndim != rank or (batch and image.shape[0] == 0):
        want = "(N, H, W) or (N, H, W, C) with N >= 1" if batch else \
            "(H, W) or (H, W, C) (use morph_batch or jax.vmap for batches)"
        raise ValueError(f"{name} must be {want}; got shape {tuple(image.shape)}")
    lead, C = image.shape[-3], image.shape[-1]
    if C not in (1, 3) and lead in (1, 3):
        first = "(N, C, H, W)" if batch else "(C, H, W)"
        last = "(N, H, W, C)" if batch else "(H, W, C)"
        raise ValueError(f"{name} of shape {tuple(image.shape)} looks channels-first "
                         f"{first}; lens_jax takes channels-last {last} images: pass "
                         f"jnp.moveaxis({name}, {-3}, -1)"
                         + (" (or, for a batch of one image, use morph_batch)"
                            if lead == 1 and not batch else ""))
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise ValueError(f"{name} must be float in [0, 1]; got dtype {image.dtype}")
    if concrete(image):
        a = np.asarray(image)
        bad = ~np.isfinite(a)
        if bad.any():
            where = f" (image {int(np.argwhere(bad)[0][0])})" if batch else ""
            raise ValueError(f"{name} contains {int(bad.sum())} NaN/Inf values{where}")
        out = (a < 0) | (a > 1)
        if out.any():
            def show(v):              # every digit the dtype holds (1.0000001, not "1")
                return np.format_float_positional(v, unique=True, trim="-")
            raise ValueError(f"{name} values must lie in [0, 1]; {int(out.sum())} of "
                             f"{a.size} lie outside (min {show(a.min())}, max "
                             f"{show(a.max())}); scale the image to [0, 1], or clip it "
                             "(jnp.clip) if the excess is round-off")
    image = jnp.asarray(image)
    if image.dtype in (jnp.bfloat16, jnp.float16):
        image = image.astype(jnp.float32)
    return image


def check_classes(name: str, value, K: int, *, n: int | None = None):
    """Integer class(es) in 0..K-1 (range checked when concrete) as int32; ``n``: the
    batch size (``value`` a scalar or ``(n,)``, broadcast to ``(n,)``).

    >>> check_classes("target", 2, 3).tolist(), check_classes("target", 1, 3, n=2).tolist()
    (2, [1, 1])
    """
    if value is None:
        return None
    v = value if isinstance(value, jax.core.Tracer) else np.asarray(value)
    if not jnp.issubdtype(v.dtype, jnp.integer):
        raise ValueError(f"{name} must be integer class(es); got {value!r}")
    if n is None and v.ndim != 0:
        raise ValueError(f"{name} must be one integer class; got shape {v.shape}")
    if n is not None and v.shape not in ((), (n,)):
        raise ValueError(f"{name} must be one class or one per image: {n} images, but "
                         f"{name} has shape {tuple(v.shape)}")
    if isinstance(v, np.ndarray):
        bad = np.flatnonzero((v.ravel() < 0) | (v.ravel() >= K))
        if bad.size:
            at = f" (image {int(bad[0])})" if v.ndim else ""
            raise ValueError(f"{name} class {int(v.ravel()[bad[0]])}{at} is outside the "
                             f"classifier's {K} classes (0..{K - 1})")
    v = jnp.asarray(v).astype(jnp.int32)
    return v if n is None else jnp.broadcast_to(v, (n,))


_OUT_INFO: dict = {}


_OUT_INFO: dict = {}


def num_classes(clf: Classifier, example) -> int:
    """The class count of ``clf`` on ``example`` ``(1, H, W, C)`` (a
    ``jax.ShapeDtypeStruct``); ValueError unless its output is float
    ``(1, num_classes >= 2)``.  Cached per program and shapes."""
    leaves, treedef = jax.tree.flatten(clf.params)
    try:
        key = (clf.apply, treedef, tuple((jnp.shape(l), jnp.result_type(l)) for l in leaves),
               example.shape, example.dtype)
        hash(key)
    except TypeError:
        key = None
    if key is None or key not in _OUT_INFO:
        out = jax.eval_shape(clf.apply, clf.params, example)
        H, W, C = example.shape[1:]
        if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != 1 \
                or out.shape[1] < 2:
            raise ValueError("logits_fn must map a batch (N, H, W, C) to logits (N, "
                             f"num_classes) with num_classes >= 2; for input (1, {H}, {W}, "
                             f"{C}) it returned {getattr(out, 'shape', type(out).__name__)}")
        if not jnp.issubdtype(out.dtype, jnp.floating):
            raise ValueError(f"logits_fn returns {out.dtype} logits: their gradient is zero "
                             "and the morph would do nothing; return float logits")
        if key is None:
            return int(out.shape[1])
        if len(_OUT_INFO) > 512:
            _OUT_INFO.clear()
        _OUT_INFO[key] = int(out.shape[1])
    return _OUT_INFO[key]


def check_margin(loss, t, s) -> None:
    """Concrete margin loss with source == target: ValueError (zero gradient)."""
    if loss == "margin" and s is not None and concrete(t, s):
        tt, ss = np.broadcast_arrays(np.asarray(t), np.asarray(s))
        same = np.flatnonzero(tt.ravel() == ss.ravel())
        if same.size:
            at = f" (image {int(same[0])})" if tt.ndim else ""
            raise ValueError(f"loss='margin' with source == target == {int(tt.ravel()[same[0]])}"
                             f"{at} has a zero gradient: the morph would do nothing; choose "
                             "another target or loss='nll'")


def check_count(name: str, value, *, minimum: int = 1) -> int:
    """A Python int >= ``minimum``: the one check of counts (``chunk_size``,
    ``n_frames``, ``alpha_chunk``, ...).  Bools, floats (2.7, and 3.0 too) and strings
    ("3") are refused, never truncated.

    >>> check_count("chunk_size", 4)
    4
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r} "
                         f"({type(value).__name__})")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """A bool (Python or NumPy); anything else (``"no"``, 1, None) is refused: a
    string would otherwise count as True.

    >>> check_bool("stop_before_wrap", False)
    False
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def memory_limit() -> int:
    """Bytes one computation may plan to hold: the default device's memory (its
    ``bytes_limit``) or, on CPU, the machine's physical memory."""
    dev = jax.devices()[0]
    stats = None
    try:
        stats = dev.memory_stats()
    except Exception:            # noqa: BLE001 - backends without memory statistics
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        import os
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def check_memory(nbytes: int, *, what: str, fix: str) -> None:
    """ValueError before anything is allocated when a request needs more than
    :func:`memory_limit` (``what``: the request; ``fix``: what to lower)."""
    limit = memory_limit()
    if nbytes > limit:
        raise ValueError(f"{what} needs about {nbytes / 2**30:.1f} GiB, more than the "
                         f"{limit / 2**30:.1f} GiB this device has; {fix}")
