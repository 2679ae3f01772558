"""Smooth fields on a control grid, and resampling along them: the one home of both.

A field (a displacement ``(dy, dx)`` or a log-gain) is given on a ``G0 x G1`` control
grid spanning the image corner to corner ("align corners": control point ``j`` sits at
image position ``j (n - 1) / (G - 1)``) and upsampled bilinearly.  Images are resampled
at real coordinates with linear or Catmull-Rom cubic interpolation and 'nearest'
(replicated) or periodic edges.  Used by the flow domains and the warp domain
(:mod:`lens_jax.flow`) and by the warp-explained energy (:mod:`lens_jax.warp`).
Arrays are channels-first ``(..., H, W)``; every broadcast is explicit (clean under
``jax_numpy_rank_promotion="raise"``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["interp_matrix", "upsample", "sample", "INTERPS"]

INTERPS = ("linear", "cubic")


@functools.lru_cache(maxsize=256)
def interp_matrix(n_out: int, n_img: int, grid: int) -> np.ndarray:
    """``(n_out, grid)`` bilinear weights of a corner-aligned control grid (control point
    ``j`` at image position ``j (n_img - 1) / (grid - 1)``), sampled at the positions
    ``i n_img / n_out`` of a band downsampled to ``n_out`` samples (its sample ``i``
    sits at image pixel ``i * n_img / n_out``; ``n_out == n_img``: every pixel).  Rows
    sum to one.

    >>> interp_matrix(5, 5, 2).tolist()[2]
    [0.5, 0.5]
    """
    m = np.zeros((n_out, grid), np.float64)
    if grid == 1:
        m[:, 0] = 1.0
        return m
    pos = np.arange(n_out, dtype=np.float64) * n_img / n_out
    t = np.clip(pos * (grid - 1) / max(n_img - 1, 1), 0.0, grid - 1)
    i0 = np.clip(np.floor(t).astype(int), 0, grid - 2)
    w = t - i0
    m[np.arange(n_out), i0] = 1.0 - w
    m[np.arange(n_out), i0 + 1] += w
    return m


def upsample(field: jax.Array, out_shape: tuple[int, int],
             image_shape: tuple[int, int] | None = None) -> jax.Array:
    """Control values ``(..., G0, G1)`` -> ``(..., h, w)`` at the sample positions of an
    ``out_shape`` grid over an ``image_shape`` image (default: the image itself)."""
    h, w = out_shape
    H, W = out_shape if image_shape is None else image_shape
    G0, G1 = field.shape[-2:]
    uy = jnp.asarray(interp_matrix(h, H, G0), field.dtype)
    ux = jnp.asarray(interp_matrix(w, W, G1), field.dtype)
    return jnp.einsum("hg,...gk,wk->...hw", uy, field, ux)


def _weights(t: jax.Array, interp: str) -> tuple[tuple[int, ...], tuple]:
    """Offsets and weights of the samples around ``floor(coordinate)``."""
    if interp == "linear":
        return (0, 1), (1 - t, t)
    if interp == "cubic":          # Catmull-Rom (Keys a = -1/2): C1, exact for quadratics
        t2, t3 = t * t, t * t * t
        return (-1, 0, 1, 2), (0.5 * (-t3 + 2 * t2 - t), 0.5 * (3 * t3 - 5 * t2 + 2),
                               0.5 * (-3 * t3 + 4 * t2 + t), 0.5 * (t3 - t2))
    raise ValueError(f"interp must be one of {INTERPS}; got {interp!r}")


def sample(x: jax.Array, yy: jax.Array, xx: jax.Array, *, interp: str = "cubic",
           edge: str = "nearest") -> jax.Array:
    """``x`` ``(..., H, W)`` at real coordinates ``(yy, xx)`` (each ``(h, w)``).

    ``interp``: ``"linear"`` (the same values as
    ``jax.scipy.ndimage.map_coordinates(order=1, mode="nearest")``) or ``"cubic"``
    (Catmull-Rom).  ``edge``: ``"nearest"`` (replicate the border) or ``"periodic"``.
    Differentiable in ``x`` and the coordinates.
    """
    H, W = x.shape[-2:]
    if edge == "nearest":
        def index(i, n):
            return jnp.clip(i, 0, n - 1)
    elif edge == "periodic":
        def index(i, n):
            return jnp.mod(i, n)
    else:
        raise ValueError(f"edge must be 'nearest' or 'periodic'; got {edge!r}")
    y0, x0 = jnp.floor(yy), jnp.floor(xx)
    offs, wy = _weights(yy - y0, interp)
    _, wx = _weights(xx - x0, interp)
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
    lead = (1,) * (x.ndim - 2)

    def w(v):                       # (h, w) weights against (..., h, w) samples
        return v.astype(x.dtype).reshape(lead + v.shape)

    out = None
    for i, oy in enumerate(offs):
        yi = index(y0 + oy, H)
        row = None
        for j, ox in enumerate(offs):
            t = x[..., yi, index(x0 + ox, W)] * w(wx[j])
            row = t if row is None else row + t
        out = row * w(wy[i]) if out is None else out + row * w(wy[i])
    return out
