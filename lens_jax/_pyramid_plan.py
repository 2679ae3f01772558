"""Fourier masks of the steerable pyramid (numpy, built once per configuration and
dtype) and the crop / paste of half spectra between scales (the private part of
:mod:`lens_jax.pyramid`)."""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------------
# masks (numpy, once per configuration)
# ----------------------------------------------------------------------------------

_LUT_SIZE_RCOS = 256
_LUT_SIZE_COS = 1024


def _raised_cosine_lut(width: float, position: float):
    """pyrtools' ``rcosFn(width, position, [0, 1])``: 259-point LUT of cos^2."""
    sz = _LUT_SIZE_RCOS
    x = np.pi * np.arange(-sz - 1, 2) / (2 * sz)
    y = np.cos(x) ** 2
    y[0] = y[1]
    y[sz + 2] = y[sz + 1]
    x = position + (2 * width / np.pi) * (x + np.pi / 4)
    return x, y


def _crop_index(n: int, m: int) -> tuple[int, int]:
    """Keep the ``m`` lowest frequencies of an ``n``-point unshifted spectrum.

    Returns ``(p, q)``: the first ``p`` (non-negative) and last ``q`` (negative) bins.
    This is the anchors' centred crop to ``ceil((n - 0.5) / 2)`` in unshifted layout.
    """
    return (m + 1) // 2, m // 2


def _crop_np(a: np.ndarray, m: tuple[int, int]) -> np.ndarray:
    (pr, qr), (pc, qc) = _crop_index(a.shape[-2], m[0]), _crop_index(a.shape[-1], m[1])
    rows = np.concatenate([a[..., :pr, :], a[..., a.shape[-2] - qr:, :]], axis=-2)
    return np.concatenate([rows[..., :pc], rows[..., rows.shape[-1] - qc:]], axis=-1)


class _Plan(NamedTuple):
    """Masks in unshifted layout: full-grid masks and half-spectrum (``rfft2`` layout,
    ``w // 2 + 1`` columns) versions.

    Analysis with only real-input FFTs: for a one-sided band mask ``M`` and the spectrum
    ``L`` of a real image, ``Re ifft2(L M) = irfft2(L Mh)`` and ``Im ifft2(L M) =
    irfft2(L Ma)`` where ``Mh(k) = (M(k) + conj M(-k)) / 2`` and ``Ma(k) =
    -i (M(k) - conj M(-k)) / 2`` are Hermitian, so a complex band costs two ``irfft2``.
    The adjoint synthesis instead takes one complex ``fft2`` per band with the full-grid
    ``rec_adj`` masks (measured faster on CPU for that direction).
    """
    sizes: tuple            # band size per scale
    hi0: np.ndarray         # (H, W) real
    lo0: np.ndarray         # (H, W) real
    fwd: tuple              # per scale (K, h, w) complex: analysis masks, constants folded
    rec_real: tuple         # per scale (K, h, w) complex: "real" synthesis masks
    rec_adj: tuple          # per scale (K, h, w) complex: "adjoint" synthesis masks
    lo_fwd: tuple           # per scale (h', w') real: low-pass after the crop (analysis)
    lo_inv: tuple           # per scale (h', w') real: low-pass before the paste (synthesis)
    # half-spectrum versions
    hi0_h: np.ndarray = None
    lo0_h: np.ndarray = None
    fwd_h: tuple = ()       # per scale (2K, h, w//2+1): [Mh; Ma] (complex) or (K, ...) Mh (real)
    rec_real_h: tuple = ()  # per scale (K, h, w//2+1)
    lo_fwd_h: tuple = ()
    lo_inv_h: tuple = ()


@functools.lru_cache(maxsize=64)
def build_plan(shape, height, order, num_orientations, twidth, is_complex, downsample,
                tight_frame, masks) -> _Plan:
    H, W = shape
    K, n = num_orientations, order
    # centred grid, unshifted layout: coordinate of bin j is 2 * fftfreq(N)[j]
    # (identical to the anchors' linspace grid for even N, point-symmetric for odd N)
    yy = 2.0 * np.fft.fftfreq(H)[:, None] * np.ones((1, W))
    xx = 2.0 * np.fft.fftfreq(W)[None, :] * np.ones((H, 1))
    angle = np.arctan2(yy, xx)
    rad = np.hypot(xx, yy)
    rad[0, 0] = 1.0
    log_rad = np.log2(rad)
    log_rad[0, 0] = -np.inf      # DC: handled explicitly (see _with_dc)

    if masks == "lut":
        xr, yr = _raised_cosine_lut(twidth, -twidth / 2.0)
        yr = np.sqrt(yr)
        yir = np.sqrt(1.0 - yr ** 2)

        def hi(l):
            return np.interp(l, xr, yr)

        def lo(l):
            return np.interp(l, xr, yir)

        xc = np.pi * np.arange(-(2 * _LUT_SIZE_COS + 1), _LUT_SIZE_COS + 2) / _LUT_SIZE_COS
        alfa = np.mod(np.pi + xc, 2 * np.pi) - np.pi

        def ang(theta, b, one_sided):
            const = _angular_const(n, K)
            yc = np.sqrt(const) * np.cos(xc) ** n
            if one_sided:
                yc = 2.0 * yc * (np.abs(alfa) < np.pi / 2)
            return np.interp(theta, xc + np.pi * b / K, yc)
    else:
        def _t(l):
            return np.clip(l * np.pi / (2.0 * twidth), -np.pi / 2, 0.0)

        def hi(l):
            return np.where(l <= -twidth, 0.0, np.where(l >= 0, 1.0, np.cos(_t(l))))

        def lo(l):
            return np.where(l <= -twidth, 1.0, np.where(l >= 0, 0.0, -np.sin(_t(l))))

        def ang(theta, b, one_sided):
            const = _angular_const(n, K)
            d = np.mod(theta - np.pi * b / K + np.pi, 2 * np.pi) - np.pi
            m = np.sqrt(const) * np.cos(d) ** n
            if one_sided:
                m = 2.0 * m * (np.abs(d) < np.pi / 2)
            return m

    # DC always belongs to the low-pass: with twidth > 1 the coarsest band masks would
    # otherwise reach the DC bin, which an odd-order (or one-sided) band cannot carry
    hi = _with_dc(hi, 0.0)
    lo = _with_dc(lo, 1.0)
    hi0, lo0 = hi(log_rad), lo(log_rad)
    ifac, cfac = (-1j) ** n, (1j) ** n
    sq2 = math.sqrt(2.0)
    fwd, rec_real, rec_adj, lo_fwd, lo_inv, sizes = [], [], [], [], [], []
    cur_shape = (H, W)
    lr, an = log_rad, angle
    for i in range(height):
        sizes.append(cur_shape)
        himask = hi(lr + (i + 1))
        if is_complex:
            f = np.stack([ifac * ang(an, b, True) * himask for b in range(K)])
            if tight_frame:
                f = f / sq2
            rr = np.stack([cfac * ang(an, b, False) * himask for b in range(K)])
            if tight_frame:
                rr = rr * sq2
            ra = np.conj(f) * (1.0 if tight_frame else 0.5)
        else:
            f = np.stack([ifac * ang(an, b, False) * himask for b in range(K)])
            rr = np.stack([cfac * ang(an, b, False) * himask for b in range(K)])
            ra = rr
        fwd.append(f.astype(np.complex128))
        rec_real.append(rr.astype(np.complex128))
        rec_adj.append(ra.astype(np.complex128))
        if downsample:
            nxt = (math.ceil((cur_shape[0] - 0.5) / 2), math.ceil((cur_shape[1] - 0.5) / 2))
            lr, an = _crop_np(lr, nxt), _crop_np(an, nxt)
            cur_shape = nxt
        lomask = lo(lr + (i + 1))
        scale = 2.0 if (not downsample and not tight_frame) else 1.0
        lo_fwd.append(lomask * scale)
        lo_inv.append(lomask / scale)
    half = lambda a: np.ascontiguousarray(a[..., : a.shape[-1] // 2 + 1])
    fwd_h = []
    for f in fwd:
        fn = _reflect(f)
        mh = (f + np.conj(fn)) / 2
        if is_complex:
            ma = -1j * (f - np.conj(fn)) / 2
            fwd_h.append(half(np.concatenate([mh, ma])))
        else:
            fwd_h.append(half(mh))
    return _Plan(tuple(sizes), hi0, lo0, tuple(fwd), tuple(rec_real), tuple(rec_adj),
                 tuple(lo_fwd), tuple(lo_inv), half(hi0), half(lo0), tuple(fwd_h),
                 tuple(half(r) for r in rec_real),
                 tuple(half(a) for a in lo_fwd), tuple(half(a) for a in lo_inv))


def _reflect(a: np.ndarray) -> np.ndarray:
    """``a(-k)`` on an unshifted frequency grid (last two axes)."""
    h, w = a.shape[-2:]
    return a[..., (-np.arange(h)) % h, :][..., (-np.arange(w)) % w]


def _with_dc(fn, value):
    """Wrap a radial mask so the DC bin (marked by log radius -inf) gets ``value``."""
    def wrapped(l):
        l = np.asarray(l, dtype=float)
        out = fn(np.where(np.isneginf(l), 0.0, l))
        return np.where(np.isneginf(l), value, out)
    return wrapped


def _angular_const(n: int, K: int) -> float:
    # sum_b const * cos(theta - pi b / K)^(2n) == 1 for every K > n
    return (2.0 ** (2 * n)) * (math.factorial(n) ** 2) / (K * math.factorial(2 * n))


@functools.lru_cache(maxsize=128)
def plan_arrays(plan_key, dtype_name):
    """The plan's masks cast once to the computation dtype (numpy constants)."""
    plan = build_plan(*plan_key)
    rdt = np.dtype(dtype_name)
    cdt = np.result_type(rdt, np.complex64)
    c = lambda a: a.astype(cdt)
    r = lambda a: a.astype(rdt)
    # full-grid masks: analysis (inspection) and the adjoint synthesis (complex FFTs)
    return _Plan(plan.sizes, r(plan.hi0), r(plan.lo0), tuple(map(c, plan.fwd)), (),
                 tuple(map(c, plan.rec_adj)),
                 tuple(map(r, plan.lo_fwd)), tuple(map(r, plan.lo_inv)),
                 r(plan.hi0_h), r(plan.lo0_h), tuple(map(c, plan.fwd_h)),
                 tuple(map(c, plan.rec_real_h)),
                 tuple(map(r, plan.lo_fwd_h)), tuple(map(r, plan.lo_inv_h)))


# ----------------------------------------------------------------------------------
# spectrum crop / paste in unshifted layout
# ----------------------------------------------------------------------------------

def crop_h(a: jax.Array, m: tuple[int, int]) -> jax.Array:
    """Crop a half spectrum (rfft2 layout) to the ``m = (h, w)`` lowest frequencies.

    The column of the small grid's Nyquist (even ``w``) takes the big grid's ``+w/2``
    bin; the low-pass mask applied next is zero there, so the choice does not matter.
    """
    pr, qr = _crop_index(a.shape[-2], m[0])
    rows = jnp.concatenate([a[..., :pr, :], a[..., a.shape[-2] - qr:, :]], axis=-2)
    return rows[..., : m[1] // 2 + 1]


def paste_h(a: jax.Array, n: tuple[int, int]) -> jax.Array:
    """Zero-pad a half spectrum of size ``a.shape[-2], m_w`` into an ``n`` grid."""
    m0 = a.shape[-2]
    pr, _ = _crop_index(n[0], m0)
    lead = a.shape[:-2]
    zr = jnp.zeros(lead + (n[0] - m0, a.shape[-1]), a.dtype)
    rows = jnp.concatenate([a[..., :pr, :], zr, a[..., pr:, :]], axis=-2)
    zc = jnp.zeros(lead + (n[0], n[1] // 2 + 1 - a.shape[-1]), a.dtype)
    return jnp.concatenate([rows, zc], axis=-1)
