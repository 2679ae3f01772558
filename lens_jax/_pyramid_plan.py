"""Fourier masks of the steerable pyramid (numpy, built once per configuration and
dtype, kept in caches bounded in bytes) and the crop / paste of spectra between
scales (the private part of :mod:`lens_jax.pyramid`)."""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
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
    lowpass_shape: tuple = ()
    band_angles: tuple = ()   # per scale (2, h, w): cos and sin of the frequency angle


# ----------------------------------------------------------------------------------
# caches bounded in bytes
# ----------------------------------------------------------------------------------

#: Byte budgets of the two mask caches (the masks of one configuration, and those cast
#: to one computation dtype).  A 256x256 plan of height 4, order 3 takes about 26 MB
#: (complex128 masks) and its float32 arrays about 9 MB.
PLAN_CACHE_BYTES = 256 * 2 ** 20
ARRAYS_CACHE_BYTES = 256 * 2 ** 20


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


class ByteLRU:
    """A least-recently-used cache bounded by the total ``nbytes`` of its values.

    Entries are evicted oldest first while the total exceeds ``max_bytes``; the most
    recent entry is always kept, so the cache holds at most ``max(max_bytes, size of
    the newest entry)`` bytes.  Thread-safe."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._d: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self.bytes = 0
        self._lock = threading.Lock()

    def get(self, key, build):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = build()
        size = _nbytes(value)
        with self._lock:
            if key not in self._d:
                self._d[key] = value
                self._sizes[key] = size
                self.bytes += size
            self._evict()
            return self._d.get(key, value)

    def _evict(self):
        while self.bytes > self.max_bytes and len(self._d) > 1:
            k, _ = self._d.popitem(last=False)
            self.bytes -= self._sizes.pop(k)

    def set_limit(self, max_bytes: int):
        with self._lock:
            self.max_bytes = int(max_bytes)
            self._evict()

    def clear(self):
        with self._lock:
            self._d.clear()
            self._sizes.clear()
            self.bytes = 0

    def info(self) -> dict:
        with self._lock:
            return {"entries": len(self._d), "bytes": self.bytes, "max_bytes": self.max_bytes}


PLAN_CACHE = ByteLRU(PLAN_CACHE_BYTES)
ARRAYS_CACHE = ByteLRU(ARRAYS_CACHE_BYTES)


def band_sizes(shape, height, downsample) -> tuple[tuple, tuple]:
    """``(band sizes per scale, low-pass size)`` without building any mask."""
    sizes, cur = [], tuple(shape)
    for _ in range(height):
        sizes.append(cur)
        if downsample:
            cur = (math.ceil((cur[0] - 0.5) / 2), math.ceil((cur[1] - 0.5) / 2))
    return tuple(sizes), cur


def build_plan(*key) -> _Plan:
    """The masks of one configuration (cached, bounded in bytes)."""
    return PLAN_CACHE.get(key, lambda: _build_plan(*key))


def _peers_grid(H, W):
    """The anchors' (pyrtools / plenoptic) grid, moved to unshifted layout: their
    ``linspace(-1, 1, N + 1)[:-1]`` ramps in fftshift layout (half a bin off centre for
    odd ``N``), and the DC radius replaced by its left neighbour's."""
    xr, yr = np.meshgrid(np.linspace(-1, 1, W + 1)[:-1], np.linspace(-1, 1, H + 1)[:-1])
    angle = np.arctan2(yr, xr)
    rad = np.sqrt(xr ** 2 + yr ** 2)
    ctr = np.ceil((np.array([H, W]) + 0.5) / 2).astype(int)
    rad[ctr[0] - 1, ctr[1] - 1] = rad[ctr[0] - 1, ctr[1] - 2]
    log_rad = np.log2(rad)
    return np.fft.ifftshift(log_rad), np.fft.ifftshift(angle)


def _build_plan(shape, height, order, num_orientations, twidth, is_complex, downsample,
                tight_frame, masks, grid) -> _Plan:
    H, W = shape
    K, n = num_orientations, order
    if grid == "peers":
        log_rad, angle = _peers_grid(H, W)
    else:
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
    # (the anchors' grid instead gives DC its neighbour's radius, as they do)
    hi = _with_dc(hi, 0.0)
    lo = _with_dc(lo, 1.0)
    hi0, lo0 = hi(log_rad), lo(log_rad)
    ifac, cfac = (-1j) ** n, (1j) ** n
    sq2 = math.sqrt(2.0)
    fwd, rec_real, rec_adj, lo_fwd, lo_inv, sizes = [], [], [], [], [], []
    band_angles = []
    cur_shape = (H, W)
    lr, an = log_rad, angle
    for i in range(height):
        sizes.append(cur_shape)
        band_angles.append(np.stack([np.cos(an), np.sin(an)]))
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
                 tuple(half(a) for a in lo_fwd), tuple(half(a) for a in lo_inv),
                 tuple(cur_shape), tuple(band_angles))


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


def plan_arrays(plan_key, dtype_name):
    """The plan's masks cast once to the computation dtype (numpy constants; cached,
    bounded in bytes).  Masks that multiply spectra are stored complex, so no product
    relies on implicit float -> complex promotion (clean under strict promotion)."""
    return ARRAYS_CACHE.get((plan_key, dtype_name), lambda: _plan_arrays(plan_key, dtype_name))


def _plan_arrays(plan_key, dtype_name):
    plan = build_plan(*plan_key)
    rdt = np.dtype(dtype_name)
    cdt = np.result_type(rdt, np.complex64)
    c = lambda a: a.astype(cdt)
    r = lambda a: a.astype(rdt)
    full = plan_key[-1] == "peers"       # the anchors' grid runs on full complex spectra
    # full-grid masks: analysis (inspection), the adjoint synthesis (complex FFTs) and
    # the anchors'-grid path
    return _Plan(plan.sizes, r(plan.hi0), r(plan.lo0), tuple(map(c, plan.fwd)),
                 tuple(map(c, plan.rec_real)) if full else (),
                 tuple(map(c, plan.rec_adj)),
                 tuple(map(r, plan.lo_fwd)), tuple(map(r, plan.lo_inv)),
                 c(plan.hi0_h), c(plan.lo0_h), tuple(map(c, plan.fwd_h)),
                 tuple(map(c, plan.rec_real_h)),
                 tuple(map(c, plan.lo_fwd_h)), tuple(map(c, plan.lo_inv_h)),
                 plan.lowpass_shape, tuple(map(r, plan.band_angles)))


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


def crop_full(a: jax.Array, m: tuple[int, int]) -> jax.Array:
    """Crop a full (unshifted) spectrum to the ``m = (h, w)`` lowest frequencies."""
    (pr, qr), (pc, qc) = _crop_index(a.shape[-2], m[0]), _crop_index(a.shape[-1], m[1])
    rows = jnp.concatenate([a[..., :pr, :], a[..., a.shape[-2] - qr:, :]], axis=-2)
    return jnp.concatenate([rows[..., :pc], rows[..., rows.shape[-1] - qc:]], axis=-1)


def paste_full(a: jax.Array, n: tuple[int, int]) -> jax.Array:
    """Zero-pad a full (unshifted) spectrum into an ``n`` grid (inverse of crop_full)."""
    m0, m1 = a.shape[-2:]
    pr, _ = _crop_index(n[0], m0)
    pc, _ = _crop_index(n[1], m1)
    lead = a.shape[:-2]
    zr = jnp.zeros(lead + (n[0] - m0, m1), a.dtype)
    rows = jnp.concatenate([a[..., :pr, :], zr, a[..., pr:, :]], axis=-2)
    zc = jnp.zeros(lead + (n[0], n[1] - m1), a.dtype)
    return jnp.concatenate([rows[..., :pc], zc, rows[..., pc:]], axis=-1)
