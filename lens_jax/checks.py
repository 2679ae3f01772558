"""Input checks shared by every lens entry point: images, classes, classifier output,
counts.  Each raises ``ValueError`` naming the argument (never a silent NaN or clamp).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .classifier import Classifier

__all__ = ["check_image", "check_classes", "check_count", "check_margin", "num_classes"]


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
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise ValueError(f"{name} must be float in [0, 1]; got dtype {image.dtype}")
    if concrete(image):
        a = np.asarray(image)
        bad = ~np.isfinite(a)
        if bad.any():
            where = f" (image {int(np.argwhere(bad)[0][0])})" if batch else ""
            raise ValueError(f"{name} contains {int(bad.sum())} NaN/Inf values{where}")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name} values must lie in [0, 1]; got range [{lo:.4g}, {hi:.4g}]")
    image = jnp.asarray(image)
    if image.dtype in (jnp.bfloat16, jnp.float16):
        image = image.astype(jnp.float32)
    return image


def check_classes(name: str, value, K: int, n: int | None = None):
    """Integer class(es) in 0..K-1 (range checked when concrete) as int32; ``n``: the
    batch size (``value`` a scalar or ``(n,)``, broadcast to ``(n,)``).

    >>> check_classes("target", 2, 3).tolist(), check_classes("target", 1, 3, 2).tolist()
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


def check_count(name, value) -> int:
    """A Python int >= 1 (bools, floats and strings rejected).

    >>> check_count("chunk_size", 4)
    4
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1; got {value}")
    return int(value)
