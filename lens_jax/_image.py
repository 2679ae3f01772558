"""Shared helpers of :mod:`lens_jax.metrics` and :mod:`lens_jax.warp`: the floating dtype of
the inputs, image shape checks and separable filters (two small matmuls)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


def float_dtype(*xs: ArrayLike) -> jnp.dtype:
    """Common floating dtype of ``xs`` (float32 for integer/bool inputs)."""
    dt = jnp.result_type(*xs)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.dtype(jnp.float32)
    return dt


def as_images(frames: ArrayLike, source: ArrayLike) -> tuple[Array, Array]:
    dt = float_dtype(frames, source)
    frames = jnp.asarray(frames, dt)
    source = jnp.asarray(source, dt)
    if source.ndim != 3:
        raise ValueError(f"source must be one image (H, W, C), got shape {source.shape}")
    if frames.ndim < 3 or frames.shape[-3:] != source.shape:
        raise ValueError(f"frames must be (..., H, W, C) = (..., {source.shape}), "
                         f"got shape {frames.shape}")
    return frames, source


def check_pair(source: ArrayLike, frame: ArrayLike) -> tuple[Array, Array]:
    dt = float_dtype(source, frame)
    source = jnp.asarray(source, dt)
    frame = jnp.asarray(frame, dt)
    if source.ndim != 3 or frame.shape != source.shape:
        raise ValueError("source and frame must both be one image (H, W, C) of the same "
                         f"shape, got {source.shape} and {frame.shape}")
    return source, frame


def sum_hwc(x: Array) -> Array:
    return jnp.sum(x, axis=(-3, -2, -1))


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-0.5 * (r / sigma) ** 2)
    return k / k.sum()


def _filter_matrix(n: int, kernel: np.ndarray, mode: str) -> np.ndarray:
    """Correlation with ``kernel`` along an axis of length ``n`` as a matrix.

    ``mode="valid"``: ``(n - k + 1, n)``, no padding; ``mode="edge"``: ``(n, n)``, the signal
    extended by replicating its end samples.
    """
    k = len(kernel)
    if mode == "valid":
        m = np.zeros((n - k + 1, n))
        for i in range(n - k + 1):
            m[i, i:i + k] = kernel
        return m
    r = (k - 1) // 2
    m = np.zeros((n, n))
    for i in range(n):
        for j, w in enumerate(kernel):
            m[i, min(max(i + j - r, 0), n - 1)] += w
    return m


def filter_hw(x: Array, kernel: np.ndarray, mode: str) -> Array:
    """Separable correlation of ``x`` (..., H, W, C) along H and W (two small matmuls)."""
    mh = jnp.asarray(_filter_matrix(x.shape[-3], kernel, mode), x.dtype)
    mw = jnp.asarray(_filter_matrix(x.shape[-2], kernel, mode), x.dtype)
    x = jnp.einsum("ih,...hwc->...iwc", mh, x)
    return jnp.einsum("jw,...iwc->...ijc", mw, x)
