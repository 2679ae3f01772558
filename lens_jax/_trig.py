"""A fused, vectorised ``(sin, cos)`` for float32 phase rotations.

Every CSP-phase frame rotates every band coefficient by ``exp(i * delta)``; on CPU, XLA
lowers ``jnp.sin``/``jnp.cos`` to scalar library calls that cost about 3 ns an element
each, which made the trigonometry of a sweep cost as much as its FFTs and classifier
together (``benchmarks/bench_lens.py``).  :func:`sincos` is the Cephes ``sinf``/``cosf``
scheme written in ``jnp`` so XLA fuses it into one vectorised loop:

* reduce ``x = j * pi/2 + r``, ``|r| <= pi/4``, with a three-part Cody-Waite constant;
* minimax polynomials for ``sin r`` and ``cos r``; the quadrant ``j mod 4`` picks and
  signs them.

Accuracy (float32, measured against float64 numpy in ``tests/test_trig.py``): absolute
error <= 1.2e-7 for ``|x| <= 2**13``, i.e. within about an ulp of ``jnp.sin``.  Beyond
``|x| ~ 1e5`` the product ``j * pi/2`` is rounded, so the result is the sine of an
argument within a few ulps *of x* -- the same uncertainty that a float32 ``x`` already
carries there.  The values stay in ``[-1, 1]`` for every finite input (huge phases do not
produce NaN); NaN and +-inf give NaN, as ``jnp.sin`` does.

Derivatives are exact by construction (``custom_jvp``: ``d sin = cos dx``,
``d cos = -sin dx``), so ``jax.grad``/``jax.jvp``/``vmap`` behave as with ``jnp.sin``.
float64 (and complex) inputs go to ``jnp.sin``/``jnp.cos`` unchanged; float16/bfloat16
are computed in float32 and cast back.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["sincos", "rotation"]

# pi/2 split so that j * _P1 is exact for |j| < 2**16 (Cephes DP1..DP3, doubled)
_P1, _P2, _P3 = 1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8
_TWO_OVER_PI = float(np.float32(2.0 / np.pi))


def _sincos32(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    j = jnp.round(x * _TWO_OVER_PI)
    r = ((x - j * _P1) - j * _P2) - j * _P3
    # |r| <= pi/4 (+ rounding) for |x| < ~1e5; the clip only matters for huge x, where it
    # keeps the polynomials (and so the outputs) bounded instead of overflowing to NaN
    r = jnp.clip(r, -0.8, 0.8)
    z = r * r
    s = r + r * z * ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1)
    c = (((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2)
         * (z * z) - 0.5 * z + 1.0)
    q = j - 4.0 * jnp.floor(j * 0.25)           # quadrant in {0, 1, 2, 3}
    odd = (q == 1.0) | (q == 3.0)
    sn = jnp.where(odd, c, s)
    cs = jnp.where(odd, s, c)
    sn = jnp.where(q >= 2.0, -sn, sn)
    cs = jnp.where((q == 1.0) | (q == 2.0), -cs, cs)
    return sn, cs


@jax.custom_jvp
def _sincos_fast(x):
    return _sincos32(x)


@_sincos_fast.defjvp
def _sincos_fast_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    s, c = _sincos_fast(x)
    return (s, c), (c * dx, -s * dx)


def sincos(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sin(x), cos(x))`` of a real array; fast fused path for float32 and lower."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise ValueError(f"sincos takes real phases; got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.dtype == jnp.float64:
        return jnp.sin(x), jnp.cos(x)
    if x.dtype == jnp.float32:
        return _sincos_fast(x)
    s, c = _sincos_fast(x.astype(jnp.float32))
    return s.astype(x.dtype), c.astype(x.dtype)


def rotation(x: jax.Array) -> jax.Array:
    """``exp(i * x)`` for a real array ``x`` (complex64 for float32 input)."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.float32)          # lax.complex needs float32/float64 parts
    s, c = sincos(x)
    return jax.lax.complex(c, s)
