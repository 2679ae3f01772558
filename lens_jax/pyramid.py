"""The frequency-domain (complex) steerable pyramid in JAX.

A :class:`SteerablePyramid` is a static, hashable *plan*: it holds the image shape and
the configuration, and builds its Fourier masks once with numpy (cached per
configuration and dtype).  :meth:`SteerablePyramid.forward` and
:meth:`SteerablePyramid.inverse` are pure functions of arrays, so they work under
``jax.jit``, ``jax.vmap``, ``jax.grad`` and ``jax.jvp``; the coefficients are a
:class:`PyramidCoeffs` NamedTuple, i.e. a pytree.

Conventions (those of pyrtools / plenoptic):

* images ``(..., H, W)``, any leading dims, y (rows) increasing downward;
* bands fine -> coarse, each ``(..., K, h_s, w_s)``; orientation ``b`` at ``pi*b/K``;
* factor ``(-i)**order`` in analysis and ``i**order`` in synthesis;
* ``height="auto"`` is ``floor(log2(min(H, W))) - 2``.

Going past the anchors:

* closed-form masks (``masks="closed"``, default): ``lo**2 + hi**2 == 1`` exactly, and a
  centred frequency grid that is point-symmetric for odd sizes, so reconstruction is
  exact (float64 ~1e-15) at *every* size, odd and non-square included.  ``masks="lut"``
  reproduces the anchors' lookup-table filters for near-exact comparison.
* ``num_orientations`` may exceed ``order + 1`` (an overcomplete steerable set,
  complex too).
* two synthesis operators: ``"real"`` (the anchors' inverse, uses ``Re`` of each band)
  and ``"adjoint"`` (uses ``Re`` and ``Im``; one complex FFT per band).  With
  ``tight_frame=True`` the adjoint synthesis is exactly the adjoint of :meth:`forward`
  (and its VJP), hence the least-squares inverse of edited coefficients; in every mode
  both are exact inverses of unedited coefficients.  **The lens uses ``tight_frame=True`` with
  ``"adjoint"``**: an edited coefficient set is generally outside the range of the
  analysis, and the adjoint maps it to the image whose pyramid is closest to it,
  using the phase (imaginary part) that the edit changed, whereas ``"real"`` throws
  the imaginary part away.
* float64 stays float64 (with ``jax_enable_x64``); bfloat16/float16 inputs are
  computed in float32.  Clean under ``jax_numpy_dtype_promotion="strict"`` and
  ``jax_numpy_rank_promotion="raise"`` (explicit casts and ranks throughout).

Porting from plenoptic (``plenoptic.process.SteerablePyramidFreq``): the methods keep
their names and meaning: :meth:`~SteerablePyramid.forward` (with ``scales``),
:meth:`~SteerablePyramid.recon_pyr` (an alias of :meth:`~SteerablePyramid.inverse`),
:meth:`~SteerablePyramid.steer_coeffs`, :meth:`~SteerablePyramid.convert_pyr_to_tensor`,
:meth:`~SteerablePyramid.convert_tensor_to_pyr`, ``height=0``; plenoptic's
``modulate_phase(x, k)`` is :func:`scale_phase` here (this module's
:func:`modulate_phase` *adds* a phase) and its ``expand`` is :func:`expand`.  The
deliberate differences:

* ``is_complex`` defaults to ``True`` (plenoptic: ``False``): pass it explicitly;
* images are ``(..., H, W)`` with any leading dims (plenoptic: exactly ``(B, C, H, W)``);
* coefficients are a :class:`PyramidCoeffs` pytree (``c.highpass``, ``c.bands[i]``,
  ``c.lowpass``; plenoptic's ``coeffs[i]`` is ``c.bands[i]``, while ``c[i]`` indexes the
  3-tuple), not an OrderedDict; :func:`to_plenoptic` / :func:`from_plenoptic` convert;
  scales not computed by ``forward(x, scales=...)`` are ``None``;
* the default frequency grid is centred (exact reconstruction at odd sizes) and DC
  always belongs to the low-pass; ``grid="peers"`` (with ``masks="lut"``) reproduces
  the peers' coefficients at odd sizes and ``twidth >= 2``;
* a non-numeric ``image_shape`` raises ``TypeError`` (plenoptic: ``ValueError``): the
  value has the wrong type, which is what ``TypeError`` means in Python; a value of the
  right type that is not a whole number (``32.5``) raises ``ValueError``;
* ``steer_coeffs`` also steers complex bands (plenoptic: real only).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import _pyramid_plan
from ._pyramid_plan import (band_sizes, crop_full, crop_h, paste_full, paste_h,
                            plan_arrays)
from ._trig import rotation, sincos

__all__ = [
    "SteerablePyramid", "PyramidCoeffs", "PyrTensorInfo", "amplitude", "phase", "polar",
    "wrap_phase", "modulate_phase", "scale_phase", "expand", "steering_weights",
    "convert_pyr_to_tensor", "convert_tensor_to_pyr", "to_pyrtools", "from_pyrtools",
    "to_plenoptic", "from_plenoptic", "cache_info", "set_cache_limits",
]

_RESIDUALS = ("residual_highpass", "residual_lowpass")


def _real_dtype(dt) -> np.dtype:
    """The real dtype of a real or complex dtype (complex64 -> float32)."""
    return np.empty(0, np.dtype(dt)).real.dtype


def _lead(m, nlead: int):
    """``m`` with ``nlead`` leading singleton axes (explicit ranks: no implicit rank
    promotion when a mask meets a batch of spectra)."""
    return m.reshape((1,) * nlead + tuple(m.shape)) if nlead else m


class _Coeffs(NamedTuple):
    highpass: jax.Array
    bands: tuple
    lowpass: jax.Array


class PyramidCoeffs(_Coeffs):
    """Pyramid coefficients; a pytree that carries the identity of its plan.

    A 3-tuple ``(highpass, bands, lowpass)`` (unpacks as one, but
    :meth:`SteerablePyramid.inverse` takes only a :class:`PyramidCoeffs`: a plain tuple
    has lost the identity below) with one extra static attribute, ``plan``: the
    configuration key of the :class:`SteerablePyramid` that produced it (``None`` for
    coefficients built by hand or by :func:`from_pyrtools` / :func:`from_plenoptic`
    without ``pyramid=``).  ``plan`` is pytree *aux data*, so it
    survives ``jax.jit``, ``jax.vmap``, ``jax.tree.map`` and ``_replace``;
    :meth:`SteerablePyramid.inverse` refuses coefficients whose ``plan`` names a
    differently configured pyramid (same shapes, other ``tight_frame`` or ``twidth``
    would otherwise give a wrong image without a word).  Coefficients without a plan are
    checked by shape only.  Because ``plan`` is part of the tree structure, hand-made
    coefficients that must match :meth:`SteerablePyramid.forward`'s output as a pytree
    (a ``jax.vjp`` cotangent, ``jax.tree.map`` with a forward result) need it too:
    ``pyr.attach(c)``.

    Attributes:
      highpass: ``(..., H, W)`` real high-pass residual.
      bands: tuple over scales (fine -> coarse) of ``(..., K, h_s, w_s)`` arrays,
        complex for a complex pyramid, real otherwise (``()`` for ``height=0``).
      lowpass: ``(..., h, w)`` real low-pass residual.

    Entries that ``forward(x, scales=...)`` did not compute are ``None`` (a pytree
    node without leaves, so ``jit`` / ``vmap`` still apply).
      plan: hashable configuration key of the producing plan, or ``None``.
    """
    plan = None

    def __new__(cls, highpass, bands, lowpass, plan=None):
        self = super().__new__(cls, highpass, bands, lowpass)
        if plan is not None:
            hash(plan)                        # static aux data must be hashable
            self.plan = plan
        return self

    def _replace(self, **kw) -> "PyramidCoeffs":
        """A copy with some arrays replaced; the plan identity is kept."""
        plan = kw.pop("plan", self.plan)
        bad = set(kw) - set(self._fields)
        if bad:
            raise ValueError(f"PyramidCoeffs has no field(s) {sorted(bad)}")
        vals = {f: kw.get(f, getattr(self, f)) for f in self._fields}
        return PyramidCoeffs(**vals, plan=plan)

    def __repr__(self):
        return (f"PyramidCoeffs(highpass={self.highpass!r}, bands={self.bands!r}, "
                f"lowpass={self.lowpass!r}, plan={self.plan!r})")

    def stack(self) -> jax.Array:
        """Bands as one ``(..., S, K, H, W)`` array (only without downsampling)."""
        if any(b is None for b in self.bands):
            raise ValueError("stack() needs every scale; some were not computed "
                             "(forward(x, scales=...))")
        shapes = {b.shape[-2:] for b in self.bands}
        if len(shapes) != 1:
            raise ValueError(
                f"stack() needs equal band sizes (downsample=False); got {sorted(shapes)}")
        return jnp.stack(self.bands, axis=-4)


jax.tree_util.register_pytree_with_keys(
    PyramidCoeffs,
    lambda c: (((jax.tree_util.GetAttrKey("highpass"), c.highpass),
                (jax.tree_util.GetAttrKey("bands"), c.bands),
                (jax.tree_util.GetAttrKey("lowpass"), c.lowpass)), c.plan),
    lambda plan, ch: PyramidCoeffs(*ch, plan=plan),
    flatten_func=lambda c: ((c.highpass, c.bands, c.lowpass), c.plan))


# ----------------------------------------------------------------------------------
# amplitude / phase helpers, finite values and gradients at zero amplitude
# ----------------------------------------------------------------------------------

def amplitude(c: jax.Array) -> jax.Array:
    """``|c|`` with a finite (zero) gradient where ``c == 0``."""
    re, im = jnp.real(c), jnp.imag(c)
    r2 = re * re + im * im
    nz = r2 > 0
    return jnp.where(nz, jnp.sqrt(jnp.where(nz, r2, 1.0)), 0.0)


def phase(c: jax.Array) -> jax.Array:
    """``angle(c)`` in (-pi, pi]; 0 with a zero gradient where ``c == 0``."""
    re, im = jnp.real(c), jnp.imag(c)
    nz = (re * re + im * im) > 0
    return jnp.where(nz, jnp.arctan2(jnp.where(nz, im, 0.0), jnp.where(nz, re, 1.0)), 0.0)


def polar(amp: jax.Array, ph: jax.Array) -> jax.Array:
    """``amp * exp(i * ph)`` from real arrays (of one dtype)."""
    s, c = sincos(ph)
    return jax.lax.complex(amp * c, amp * s)


def wrap_phase(ph: jax.Array) -> jax.Array:
    """Wrap a phase to [-pi, pi)."""
    return jnp.mod(ph + jnp.pi, 2 * jnp.pi) - jnp.pi


def modulate_phase(c: jax.Array, dphi: jax.Array) -> jax.Array:
    """Add ``dphi`` (real) to the phase of ``c``, keeping its amplitude: ``c*exp(i*dphi)``.

    Not plenoptic's ``modulate_phase(x, k)``, which *multiplies* the phase by ``k``:
    that is :func:`scale_phase` here.  The result has ``c``'s precision (real ``c``
    becomes complex); ``dphi`` is cast to it."""
    c = jnp.asarray(c)
    if not jnp.issubdtype(c.dtype, jnp.complexfloating):
        c = c.astype(jnp.result_type(c.dtype, jnp.complex64))
    return c * rotation(jnp.asarray(dphi).astype(_real_dtype(c.dtype)))


def scale_phase(c: jax.Array, *, factor: float = 2.0) -> jax.Array:
    """Multiply the phase of complex ``c`` by ``factor``, keeping its amplitude:
    ``|c| exp(i factor angle(c))`` (plenoptic's ``modulate_phase(x, phase_factor)``).

    Phase doubling (``factor=2``) of an up-sampled coarse band (:func:`expand`) makes
    it comparable with the next finer band, as texture statistics do (Portilla and
    Simoncelli, 2000).  Finite, with a zero gradient, where ``c == 0``.

    >>> import jax.numpy as jnp
    >>> z = scale_phase(jnp.asarray([2j]), factor=2.0)  # angle pi/2 -> pi, amplitude 2
    >>> [round(float(z.real[0]), 5), round(float(abs(z.imag[0])), 5)]
    [-2.0, 0.0]
    """
    c = jnp.asarray(c)
    if not jnp.issubdtype(c.dtype, jnp.complexfloating):
        raise TypeError(f"scale_phase takes complex coefficients; got dtype {c.dtype}")
    rdt = _real_dtype(c.dtype)
    return polar(amplitude(c), jnp.asarray(factor).astype(rdt) * phase(c))


def _expand_axis(F: jax.Array, m: int, axis: int) -> jax.Array:
    """Zero-pad an unshifted spectrum along ``axis`` from ``n`` to ``m > n`` bins; an even
    ``n``'s Nyquist bin is split in halves between ``+n/2`` and ``-n/2``."""
    F = jnp.moveaxis(F, axis, -1)
    n = F.shape[-1]
    lead = F.shape[:-1]
    if n % 2:
        p = (n + 1) // 2
        out = jnp.concatenate([F[..., :p], jnp.zeros(lead + (m - n,), F.dtype), F[..., p:]],
                              axis=-1)
    else:
        h = n // 2
        nyq = F[..., h:h + 1] / 2
        out = jnp.concatenate([F[..., :h], nyq, jnp.zeros(lead + (m - n - 1,), F.dtype), nyq,
                               F[..., h + 1:]], axis=-1)
    return jnp.moveaxis(out, -1, axis)


def expand(x: jax.Array, factor: float) -> jax.Array:
    """Up-sample ``(..., h, w)`` by ``factor`` in the Fourier domain (plenoptic's
    ``expand``): the spectrum is zero-padded to ``(factor*h, factor*w)`` and scaled by
    ``factor**2``, so the result interpolates ``x`` (band-limited, periodic).

    ``factor`` (static) must be > 1 with ``factor*h`` and ``factor*w`` whole numbers.
    Real input gives real output; complex (pyramid bands) stays complex.  Deliberate
    difference: an even size's Nyquist row/column is split exactly (half at ``+n/2``,
    half at ``-n/2``), so ``expand(x, 2)[..., ::2, ::2] == x`` for every ``x`` and odd
    sizes are handled; plenoptic pastes a mirrored copy there (and mishandles odd sizes).
    The two agree on signals without Nyquist content, such as pyramid bands.
    """
    if isinstance(factor, (bool, np.bool_)) or not isinstance(
            factor, (int, float, np.integer, np.floating)):
        raise TypeError(f"factor must be a number > 1; got {factor!r}")
    if not factor > 1:
        raise ValueError(f"factor must be strictly greater than 1; got {factor!r}")
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"expand takes arrays (..., h, w); got shape {x.shape}")
    h, w = x.shape[-2:]
    mh, mw = factor * h, factor * w
    for name, v in (("x.shape[-2]", mh), ("x.shape[-1]", mw)):
        if not float(v).is_integer():
            raise ValueError(f"factor * {name} must be a whole number; got {v}")
    mh, mw = int(mh), int(mw)
    complex_in = jnp.issubdtype(x.dtype, jnp.complexfloating)
    if not complex_in and not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    F = jnp.fft.fft2(x)
    F = _expand_axis(_expand_axis(F, mh, -2), mw, -1)
    out = jnp.fft.ifft2(F * jnp.asarray(factor ** 2, _real_dtype(F.dtype)).astype(F.dtype))
    return out if complex_in else jnp.real(out)


# ----------------------------------------------------------------------------------
# the plan
# ----------------------------------------------------------------------------------

_SYNTHESES = ("real", "adjoint")
_GRIDS = ("centred", "peers")


def _check_shape(image_shape) -> tuple[int, int]:
    """``(H, W)`` as two Python ints; TypeError/ValueError naming ``image_shape``."""
    try:
        dims = list(image_shape)
    except TypeError:
        raise TypeError(f"image_shape must be a pair (H, W) of ints; got {image_shape!r}"
                        ) from None
    if len(dims) != 2:
        raise ValueError(f"image_shape must be (H, W); got {image_shape!r}")
    out = []
    for d in dims:
        if isinstance(d, (bool, np.bool_)) or not isinstance(
                d, (int, np.integer, float, np.floating)):
            raise TypeError(f"image_shape must hold ints; got {image_shape!r} "
                            f"({type(d).__name__} {d!r})")
        if not float(d).is_integer():
            raise ValueError(f"image_shape must hold whole numbers of pixels; got "
                             f"{image_shape!r}")
        out.append(int(d))
    return out[0], out[1]


@jax.tree_util.register_pytree_node_class
class SteerablePyramid:
    """A frequency-domain steerable pyramid plan for images of one shape.

    Args:
      image_shape: ``(H, W)``; any size >= 4 in each dimension (odd, non-square fine).
      height: number of band-pass scales, or ``"auto"`` for the maximum
        ``floor(log2(min(H, W))) - 2``; ``0`` gives the residuals only (as plenoptic).
      order: derivative order ``n`` of the angular filters (0..15; complex needs >= 1).
      twidth: width of the radial transition in octaves (> 0).
      is_complex: complex (analytic, one-sided) bands; ``False`` for the real pyramid.
      downsample: crop each scale's spectrum by two (``False``: all bands full size).
      tight_frame: orthonormal FFTs and complex bands divided by sqrt(2), so the
        analysis is a Parseval frame (coefficient energy == image energy).
      num_orientations: ``K``; default ``order + 1``; any ``K > order`` is steerable.
      masks: ``"closed"`` (exact closed-form masks) or ``"lut"`` (the anchors' tables).
      synthesis: default synthesis operator of :meth:`inverse`, ``"real"`` or
        ``"adjoint"`` (see the module docstring).
      grid: ``"centred"`` (default): the frequency grid ``2 * fftfreq(N)``,
        point-symmetric at every size, with DC always in the low-pass, so
        reconstruction is exact at odd sizes and for any ``twidth``.  ``"peers"``: the
        grid of pyrtools / plenoptic (``linspace(-1, 1, N + 1)[:-1]`` in fftshift
        layout, half a bin off centre for odd ``N``; the DC bin given its left
        neighbour's radius, so with ``twidth >= 2`` the coarsest bands take some DC),
        computed with full complex FFTs as they do.  With ``masks="lut"`` it reproduces
        their coefficients (and their inexact reconstruction) at odd sizes and
        ``twidth >= 2``: for comparisons with published numbers.  At even sizes with
        ``twidth=1`` the two grids give the same coefficients.

    The plan is hashable and a pytree with no leaves, so it can be closed over, passed
    to ``jax.jit`` as an ordinary argument, or used as a static argument.

    Masks are built once per configuration (numpy) and cast once per dtype; both caches
    are bounded in bytes (``PLAN_CACHE_BYTES`` and ``ARRAYS_CACHE_BYTES`` of
    ``lens_jax._pyramid_plan``, 256 MiB each by default, least recently used evicted
    first; the newest entry is always kept): see :func:`cache_info` and
    :func:`set_cache_limits`.

    >>> import jax.numpy as jnp, lens_jax as lj
    >>> pyr = lj.SteerablePyramid((64, 64), height=3)
    >>> c = pyr.forward(jnp.ones((64, 64)))
    >>> [b.shape for b in c.bands]
    [(4, 64, 64), (4, 32, 32), (4, 16, 16)]
    """

    def __init__(self, image_shape: Sequence[int], height: int | str = "auto", order: int = 3,
                 twidth: float = 1, is_complex: bool = True, downsample: bool = True,
                 tight_frame: bool = False, *, num_orientations: int | None = None,
                 masks: str = "closed", synthesis: str = "real", grid: str = "centred"):
        shape = _check_shape(image_shape)
        if min(shape) < 4:
            raise ValueError(f"image_shape {shape}: each side must be at least 4 pixels")
        max_h = int(math.floor(math.log2(min(shape)))) - 2
        if height == "auto":
            height = max_h
        if isinstance(height, bool) or not isinstance(height, (int, np.integer)):
            raise ValueError(f"height must be an int or 'auto'; got {height!r}")
        height = int(height)
        if not 0 <= height <= max_h:
            raise ValueError(
                f"height={height} is invalid for image shape {shape}: "
                f"must be between 0 (residuals only) and the maximum {max_h} "
                "(= floor(log2(min(H, W))) - 2)")
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) \
                or not 0 <= order <= 15:
            raise ValueError(f"order must be an int in 0..15; got {order!r}")
        order = int(order)
        if is_complex and order == 0:
            raise ValueError("order=0 is only valid for the real pyramid (is_complex=False): "
                             "a complex order-0 band has no orientation to be analytic along")
        if num_orientations is None:
            num_orientations = order + 1
        if isinstance(num_orientations, bool) or not isinstance(
                num_orientations, (int, np.integer)) or num_orientations <= order:
            raise ValueError(f"num_orientations must be an int > order={order}; "
                             f"got {num_orientations!r}")
        if isinstance(twidth, (bool, np.bool_)) or not isinstance(
                twidth, (int, float, np.integer, np.floating)):
            raise TypeError(f"twidth must be a positive number; got {twidth!r}")
        if not (math.isfinite(float(twidth)) and twidth > 0):
            raise ValueError(f"twidth must be positive and finite; got {twidth!r}")
        for flag, v in (("is_complex", is_complex), ("downsample", downsample),
                        ("tight_frame", tight_frame)):
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{flag} must be a bool; got {v!r}")
        if masks not in ("closed", "lut"):
            raise ValueError(f"masks must be 'closed' or 'lut'; got {masks!r}")
        if synthesis not in _SYNTHESES:
            raise ValueError(f"synthesis must be one of {_SYNTHESES}; got {synthesis!r}")
        if grid not in _GRIDS:
            raise ValueError(f"grid must be one of {_GRIDS}; got {grid!r}")
        self.image_shape = shape
        self.height = height
        self.order = order
        self.num_orientations = int(num_orientations)
        self.twidth = float(twidth)
        self.is_complex = bool(is_complex)
        self.downsample = bool(downsample)
        self.tight_frame = bool(tight_frame)
        self.masks = masks
        self.synthesis = synthesis
        self.grid = grid

    # --- identity -------------------------------------------------------------------
    def _key(self):
        return (self.image_shape, self.height, self.order, self.num_orientations,
                self.twidth, self.is_complex, self.downsample, self.tight_frame, self.masks,
                self.grid)

    def __hash__(self):
        return hash(self._key() + (self.synthesis,))

    def __eq__(self, other):
        return isinstance(other, SteerablePyramid) and \
            self._key() + (self.synthesis,) == other._key() + (other.synthesis,)

    def __repr__(self):
        return (f"SteerablePyramid({self.image_shape}, height={self.height}, "
                f"order={self.order}, num_orientations={self.num_orientations}, "
                f"twidth={self.twidth:g}, is_complex={self.is_complex}, "
                f"downsample={self.downsample}, tight_frame={self.tight_frame}, "
                f"masks={self.masks!r}, synthesis={self.synthesis!r}"
                # the default grid is left out: reprs (hashed into sweep configurations)
                # stay as they were before the option existed
                + (f", grid={self.grid!r})" if self.grid != "centred" else ")"))

    def tree_flatten(self):
        return (), self._key() + (self.synthesis,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        (shape, height, order, k, twidth, is_complex, downsample, tight, masks, grid,
         synth) = aux
        return cls(shape, height, order, twidth, is_complex, downsample, tight,
                   num_orientations=k, masks=masks, synthesis=synth, grid=grid)

    def replace(self, **kw) -> "SteerablePyramid":
        """A copy with some options changed."""
        cfg = dict(image_shape=self.image_shape, height=self.height, order=self.order,
                   twidth=self.twidth, is_complex=self.is_complex, downsample=self.downsample,
                   tight_frame=self.tight_frame, num_orientations=self.num_orientations,
                   masks=self.masks, synthesis=self.synthesis, grid=self.grid)
        if "order" in kw and "num_orientations" not in kw \
                and self.num_orientations == self.order + 1:
            cfg["num_orientations"] = None          # keep the default K = order + 1
        cfg.update(kw)
        return SteerablePyramid(**cfg)

    # --- derived --------------------------------------------------------------------
    @property
    def band_shapes(self) -> tuple:
        """``(h_s, w_s)`` of each scale, fine -> coarse."""
        return band_sizes(self.image_shape, self.height, self.downsample)[0]

    @property
    def lowpass_shape(self) -> tuple:
        """``(h, w)`` of the low-pass residual."""
        return band_sizes(self.image_shape, self.height, self.downsample)[1]

    @property
    def num_scales(self) -> int:
        """plenoptic's name for ``height``."""
        return self.height

    @property
    def scales(self) -> list:
        """Every scale, coarse to fine, as plenoptic lists them: ``["residual_lowpass",
        height - 1, ..., 0, "residual_highpass"]`` (valid entries of ``forward``'s
        ``scales`` and ``inverse``'s ``levels``)."""
        return ["residual_lowpass"] + list(range(self.height))[::-1] + ["residual_highpass"]

    @staticmethod
    def max_height(image_shape: Sequence[int]) -> int:
        return int(math.floor(math.log2(min(image_shape)))) - 2

    @property
    def _norm(self):
        return "ortho" if self.tight_frame else "backward"

    def _dtype_of(self, x) -> np.dtype:
        dt = _real_dtype(x.dtype) if jnp.issubdtype(x.dtype, jnp.complexfloating) \
            else np.dtype(x.dtype)
        if dt == np.float64:     # float64 only where x64 is on (no warning otherwise)
            return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
        return np.dtype(np.float32)       # float32, bfloat16, float16, ints

    def filters(self, *, dtype=np.float64) -> dict:
        """The Fourier masks (unshifted layout), for inspection and plotting."""
        p = plan_arrays(self._key(), np.dtype(dtype).name)
        return {"hi0": p.hi0, "lo0": p.lo0, "bands": p.fwd, "lowpass": p.lo_fwd}

    # --- analysis -------------------------------------------------------------------
    def _check_image(self, x) -> jax.Array:
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            x = np.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.complexfloating):
            raise ValueError(f"the pyramid takes real images; got dtype {x.dtype}")
        if x.ndim < 2:
            raise ValueError(f"image must have rank >= 2 (..., H, W); got shape {x.shape}")
        if tuple(x.shape[-2:]) != self.image_shape:
            raise ValueError(f"image shape {tuple(x.shape)} does not match the plan's "
                             f"(..., {self.image_shape[0]}, {self.image_shape[1]})")
        return jnp.asarray(x, self._dtype_of(x))

    def forward(self, x: jax.Array, *, scales: Any = None) -> PyramidCoeffs:
        """Analyse real images ``(..., H, W)`` into :class:`PyramidCoeffs`.

        Args:
          x: real images ``(..., H, W)``, any leading dims.
          scales: ``None`` (everything) or a list of scale indices and/or
            ``"residual_highpass"``, ``"residual_lowpass"`` (plenoptic's ``scales``;
            order does not matter).  Only what is asked is computed: the low-pass chain
            runs only as deep as the coarsest requested entry, and each skipped band
            saves its inverse FFT.  Entries not requested are ``None``; requested ones
            equal those of a full analysis.  Static (hashable under ``jit``).
        """
        want = self._parse_levels("all" if scales is None else scales, arg="scales")
        x = self._check_image(x)
        if _traced(x):                   # inside a jit / grad / vmap: traced inline
            return self._forward(x, frozenset(want))
        # called eagerly: one compiled program per plan, shape and dtype (the analysis
        # would otherwise dispatch -- and compile -- each of its ~60 operations alone)
        return _jit_forward(self, x, frozenset(want))

    def _forward(self, x: jax.Array, want: frozenset) -> PyramidCoeffs:
        """:meth:`forward` after its checks (compiled by ``_jit_forward``)."""
        p = plan_arrays(self._key(), x.dtype.name)
        norm = self._norm
        full = self.grid == "peers"
        nl = x.ndim - 2
        cdt = np.result_type(x.dtype, np.complex64)
        H, W = self.image_shape
        K = self.num_orientations
        want_lp = "residual_lowpass" in want
        ints = [i for i in want if not isinstance(i, str)]
        last = self.height if want_lp else (max(ints) + 1 if ints else 0)
        if full:          # the anchors' grid: full complex spectra, real parts, as they do
            X = jnp.fft.fft2(x, norm=norm)
            to_img = lambda Y, s: jnp.real(jnp.fft.ifft2(Y, norm=norm))
            hi0, lo0 = p.hi0.astype(cdt), p.lo0.astype(cdt)
            crop = crop_full
        else:
            X = jnp.fft.rfft2(x, norm=norm)
            to_img = lambda Y, s: jnp.fft.irfft2(Y, s=s, norm=norm)
            hi0, lo0 = p.hi0_h, p.lo0_h
            crop = crop_h
        hp = to_img(X * _lead(hi0, nl), (H, W)) if "residual_highpass" in want else None
        bands = [None] * self.height
        lp = None
        if last or want_lp:
            L = X * _lead(lo0, nl)
            for i in range(last):
                if i in want:
                    h, w = p.sizes[i]
                    if full:
                        B = jnp.fft.ifft2(L[..., None, :, :] * _lead(p.fwd[i], nl), norm=norm)
                        bands[i] = B if self.is_complex else jnp.real(B)
                    else:
                        B = jnp.fft.irfft2(L[..., None, :, :] * _lead(p.fwd_h[i], nl),
                                           s=(h, w), norm=norm)
                        if self.is_complex:
                            B = jax.lax.complex(B[..., :K, :, :], B[..., K:, :, :])
                        bands[i] = B
                if i < last - 1 or want_lp:        # the chain goes on only if needed
                    if self.downsample:
                        L = crop(L, p.lo_fwd[i].shape)
                    lo = p.lo_fwd[i].astype(cdt) if full else p.lo_fwd_h[i]
                    L = L * _lead(lo, nl)
            if want_lp:
                lp = to_img(L, p.lowpass_shape)
        return PyramidCoeffs(hp, tuple(bands), lp, plan=self._key())

    __call__ = forward

    # --- synthesis ------------------------------------------------------------------
    def _check_coeffs(self, c) -> PyramidCoeffs:
        if not isinstance(c, PyramidCoeffs):
            if isinstance(c, (tuple, list)) and len(c) == 3:
                raise TypeError(
                    f"coefficients must be a PyramidCoeffs; got a plain {type(c).__name__}, "
                    "which has lost the identity of the pyramid that made it (a "
                    "differently configured pyramid of the same shapes would synthesise "
                    "it into a wrong image).  Pass the PyramidCoeffs that forward() "
                    "returned (keep it whole, or rebuild it with c._replace(...)), or "
                    "state which pyramid made the arrays: pyr.attach((highpass, bands, "
                    "lowpass))")
            raise TypeError("coefficients must be a PyramidCoeffs(highpass, bands, "
                            f"lowpass); got {type(c).__name__}")
        if not isinstance(c.bands, (tuple, list)) or len(c.bands) != self.height:
            nb = len(c.bands) if isinstance(c.bands, (tuple, list)) else type(c.bands).__name__
            raise ValueError(f"coefficients have {nb} scales; the plan has {self.height}")
        lead = self._lead_of(c)
        if c.highpass is not None and tuple(c.highpass.shape[-2:]) != self.image_shape:
            raise ValueError(f"highpass shape {tuple(c.highpass.shape)} does not match the "
                             f"plan's image shape {self.image_shape}")
        if c.highpass is not None and tuple(c.highpass.shape[:-2]) != lead:
            raise ValueError(f"highpass has shape {tuple(c.highpass.shape)}; expected "
                             f"{lead + self.image_shape}")
        K = self.num_orientations
        for i, (b, hw) in enumerate(zip(c.bands, self.band_shapes)):
            want = lead + (K,) + tuple(hw)
            if b is not None and tuple(b.shape) != want:
                raise ValueError(f"band {i} has shape {tuple(b.shape)}; expected {want}")
        want = lead + tuple(self.lowpass_shape)
        if c.lowpass is not None and tuple(c.lowpass.shape) != want:
            raise ValueError(f"lowpass has shape {tuple(c.lowpass.shape)}; expected {want}")
        return PyramidCoeffs(c.highpass, tuple(c.bands), c.lowpass, plan=c.plan)

    @staticmethod
    def _first_leaf(c):
        for a in (c.highpass, *c.bands, c.lowpass):
            if a is not None:
                return a
        raise ValueError("the coefficients hold no arrays (every entry is None)")

    @staticmethod
    def _lead_of(c) -> tuple:
        if c.highpass is not None:
            return tuple(c.highpass.shape[:-2])
        for b in c.bands:
            if b is not None:
                return tuple(b.shape[:-3])
        if c.lowpass is not None:
            return tuple(c.lowpass.shape[:-2])
        raise ValueError("the coefficients hold no arrays (every entry is None)")

    def attach(self, c) -> PyramidCoeffs:
        """``c`` (a :class:`PyramidCoeffs` or a 3-tuple ``(highpass, bands, lowpass)``,
        shapes checked) carrying this plan's identity: for coefficients built by hand
        (or unpacked into a tuple) that you state were made by this pyramid, or that must
        match :meth:`forward`'s output as a pytree (e.g. a cotangent for
        ``jax.vjp(pyr.forward, x)``)."""
        self._check_plan(c)
        if not isinstance(c, PyramidCoeffs) and isinstance(c, (tuple, list)) and len(c) == 3:
            c = PyramidCoeffs(*c)
        return self._check_coeffs(c)._replace(plan=self._key())

    def _check_plan(self, c) -> None:
        """Refuse coefficients made by a differently configured pyramid."""
        plan = getattr(c, "plan", None)
        if plan is None or plan == self._key():
            return
        names = ("image_shape", "height", "order", "num_orientations", "twidth",
                 "is_complex", "downsample", "tight_frame", "masks", "grid")
        try:
            diff = [f"{n}={a!r} (coefficients) vs {b!r} (this pyramid)"
                    for n, a, b in zip(names, plan, self._key()) if a != b]
        except TypeError:
            diff = [repr(plan)]
        raise ValueError("coefficients were made by a differently configured pyramid: "
                         + "; ".join(diff or [repr(plan)]) + ". Synthesise them with the "
                         "pyramid that analysed them (or drop the identity with "
                         "c._replace(plan=None) if the configuration really matches)")

    def inverse(self, c: PyramidCoeffs, *, synthesis: str | None = None,
                levels: Any = "all", bands: Any = "all") -> jax.Array:
        """Synthesise an image ``(..., H, W)`` from coefficients.

        Args:
          c: a :class:`PyramidCoeffs` shaped as :meth:`forward` returns it.  A plain
            tuple is refused (``TypeError``): it has lost the identity of the pyramid
            that made it; ``pyr.attach(t)`` states it.
          synthesis: ``"real"`` or ``"adjoint"`` (default: the plan's ``synthesis``).
          levels: ``"all"`` or a list of scale indices and/or ``"residual_highpass"``,
            ``"residual_lowpass"`` to include (partial reconstruction, as plenoptic).
            Every included entry must be present: coefficients from
            ``forward(x, scales=...)`` need ``levels`` naming only computed entries.
          bands: ``"all"`` or a list of orientation indices to include.
        """
        synthesis = self.synthesis if synthesis is None else synthesis
        if synthesis not in _SYNTHESES:
            raise ValueError(f"synthesis must be one of {_SYNTHESES}; got {synthesis!r}")
        self._check_plan(c)
        c = self._check_coeffs(c)
        use_levels = self._parse_levels(levels)
        use_bands = self._parse_bands(bands)
        entry = {"residual_highpass": c.highpass, "residual_lowpass": c.lowpass,
                 **dict(enumerate(c.bands))}
        missing = sorted((lv for lv in use_levels if entry[lv] is None), key=str)
        if missing:
            have = [k for k in self.scales[::-1] if entry[k] is not None]
            raise ValueError(
                f"coefficients lack {missing} (not computed by forward(x, scales=...)); "
                f"reconstruct with levels={have} or analyse every scale")
        static = (synthesis, frozenset(use_levels),
                  None if use_bands is None else tuple(int(b) for b in use_bands))
        if _traced(c):                   # inside a jit / grad / vmap: traced inline
            return self._inverse(c, *static)
        return _jit_inverse(self, c, *static)       # eagerly: one compiled program

    def _inverse(self, c: PyramidCoeffs, synthesis: str, use_levels: frozenset,
                 use_bands: tuple | None) -> jax.Array:
        """:meth:`inverse` after its checks (compiled by ``_jit_inverse``)."""
        leaf = self._first_leaf(c)
        lead = self._lead_of(c)
        nl = len(lead)
        rdt = self._dtype_of(leaf)
        cdt = np.result_type(rdt, np.complex64)
        p = plan_arrays(self._key(), rdt.name)
        norm = self._norm
        full = self.grid == "peers"
        adjoint = synthesis == "adjoint" and self.is_complex
        H, W = self.image_shape
        if full:
            masks = p.rec_adj if adjoint else p.rec_real
            fft = lambda a: jnp.fft.fft2(a, norm=norm)
            paste = paste_full
            lo_inv = [m.astype(cdt) for m in p.lo_inv]
            lo0, hi0 = p.lo0.astype(cdt), p.hi0.astype(cdt)
            lw = self.lowpass_shape[1]
        else:
            masks = p.rec_adj if adjoint else p.rec_real_h
            fft = lambda a: jnp.fft.rfft2(a, norm=norm)
            paste = paste_h
            lo_inv, lo0, hi0 = p.lo_inv_h, p.lo0_h, p.hi0_h
            lw = self.lowpass_shape[1] // 2 + 1
        if "residual_lowpass" in use_levels:
            Y = fft(jnp.asarray(c.lowpass).astype(rdt))
        else:
            Y = jnp.zeros(lead + (self.lowpass_shape[0], lw), cdt)
        for i in reversed(range(self.height)):
            Y = Y * _lead(lo_inv[i], nl)
            if self.downsample:
                Y = paste(Y, p.sizes[i])
            if i in use_levels:
                b = c.bands[i]
                m = masks[i]
                if use_bands is not None:      # a static subset (slices, not a gather)
                    sel = np.asarray(use_bands)
                    b = jnp.concatenate([b[..., k:k + 1, :, :] for k in sel], axis=-3)
                    m = m[sel]
                m = _lead(m, nl)
                if adjoint and not full:
                    # S = sum_k M_k fft2(c_k) on the full grid; the image is Re ifft2(S),
                    # i.e. irfft2 of S's Hermitian part (S(k) + conj S(-k)) / 2.  One complex
                    # FFT per band: the inverse ran 1.25-1.33x faster on CPU than with rfft2
                    # of Re and Im separately (interleaved A/B, benchmarks/RESULTS.md)
                    S = jnp.sum(jnp.fft.fft2(b.astype(cdt), norm=norm) * m, axis=-3)
                    wh = S.shape[-1] // 2 + 1
                    S_neg = jnp.roll(jnp.flip(S, (-2, -1)), 1, axis=(-2, -1))[..., :wh]
                    Y = Y + (S[..., :wh] + jnp.conj(S_neg)) / 2
                elif full and self.is_complex:
                    # the anchors' grid: fft2 of the complex band (as plenoptic; equal to
                    # using Re(band) wherever the grid is symmetric, i.e. even sizes)
                    Y = Y + jnp.sum(jnp.fft.fft2(b.astype(cdt), norm=norm) * m, axis=-3)
                else:
                    b = jnp.real(b).astype(rdt)
                    Y = Y + jnp.sum(fft(b) * m, axis=-3)
        Y = Y * _lead(lo0, nl)
        if "residual_highpass" in use_levels:
            Y = Y + fft(jnp.asarray(c.highpass).astype(rdt)) * _lead(hi0, nl)
        if full:
            return jnp.real(jnp.fft.ifft2(Y, norm=norm))
        return jnp.fft.irfft2(Y, s=self.image_shape, norm=norm)

    def recon_pyr(self, c: PyramidCoeffs, *, levels: Any = "all", bands: Any = "all",
                  synthesis: str | None = None) -> jax.Array:
        """plenoptic's name for :meth:`inverse`: ``recon_pyr(coeffs, levels="all",
        bands="all")`` (here ``levels`` and ``bands`` are keyword-only)."""
        return self.inverse(c, synthesis=synthesis, levels=levels, bands=bands)

    def adjoint(self, c: PyramidCoeffs) -> jax.Array:
        """``inverse(c, synthesis="adjoint")``; the exact adjoint for a tight frame."""
        return self.inverse(c, synthesis="adjoint")

    # --- steering -------------------------------------------------------------------
    def steer_coeffs(self, coeffs: PyramidCoeffs, angles: Any, *,
                     even_phase: bool = True) -> tuple[tuple, tuple]:
        """Steer every band to arbitrary ``angles`` (radians), as plenoptic's
        ``steer_coeffs``: filters of this pyramid's derivative order at any angle or
        number of orientations.

        The band at angle ``a`` is ``sum_b w_b(a) c_b`` with the weights of
        :func:`steering_weights` (the order's angular harmonics fitted through the
        ``K`` basis angles ``pi b / K``; ``even_phase=False`` aligns the harmonics in
        sine phase, giving the angular quadrature filter).  For a real pyramid that is
        plenoptic's result.  Going further, complex bands are steered too: the real part
        as above, made analytic again along ``a`` (the half-plane ``cos(theta - a) > 0``
        of the band's own frequency grid), so steering to ``pi b / K`` returns band
        ``b`` and any angle gives the band a pyramid with a basis angle there would give
        (exact with ``masks="closed"`` and the centred grid).  ``angles`` may be traced
        (``jit``, ``grad`` w.r.t. the angles).

        Args:
          coeffs: the :class:`PyramidCoeffs` of this pyramid (``None`` scales stay
            ``None``).
          angles: a scalar or 1-D array of ``A`` angles.
          even_phase: cosine- (``True``) or sine-phase harmonics, as plenoptic.

        Returns:
          ``(steered, weights)``: tuples over scales (index them like plenoptic's dicts:
          ``steered[s]``) of ``(..., A, h_s, w_s)`` bands and of the ``(K, A)`` weights.
        """
        self._check_plan(coeffs)
        c = self._check_coeffs(coeffs)
        if not isinstance(even_phase, (bool, np.bool_)):
            raise TypeError(f"even_phase must be a bool; got {even_phase!r}")
        leaf = self._first_leaf(c)
        rdt = self._dtype_of(leaf)
        cdt = np.result_type(rdt, np.complex64)
        nl = len(self._lead_of(c))
        w = steering_weights(self.order, self.num_orientations, angles,
                             even_phase=bool(even_phase), dtype=rdt)        # (K, A)
        a = _angles(angles, rdt)
        p = plan_arrays(self._key(), rdt.name)
        steered = []
        for i, b in enumerate(c.bands):
            if b is None:
                steered.append(None)
                continue
            r = jnp.einsum("...khw,ka->...ahw", jnp.real(b).astype(rdt), w)
            if self.is_complex:
                cos_t, sin_t = p.band_angles[i][0], p.band_angles[i][1]
                proj = (cos_t[None] * jnp.cos(a)[:, None, None]
                        + sin_t[None] * jnp.sin(a)[:, None, None])             # (A, h, w)
                eps = 1e-6
                side = jnp.where(jnp.abs(proj) < eps, 0.0, jnp.sign(proj)).astype(rdt)
                # analytic signal along a: 2 on the half-plane, 1 on its edge, 0 beyond
                half = (1.0 + side).astype(cdt)
                r = jnp.fft.ifft2(jnp.fft.fft2(r) * _lead(half, nl))
            steered.append(r)
        return tuple(steered), tuple(w for _ in c.bands)

    def _parse_levels(self, levels, arg="levels"):
        allv = set(range(self.height)) | set(_RESIDUALS)
        what = "level" if arg == "levels" else "scale"
        if isinstance(levels, str):
            if levels != "all":
                raise ValueError(f"{arg} must be 'all' or a list; got {levels!r}")
            return allv
        if not isinstance(levels, (list, tuple, set, frozenset, range, np.ndarray)):
            raise ValueError(f"{arg} must be 'all' or a list of {what}s; got {levels!r}")
        out = set()
        for lv in levels:
            if isinstance(lv, (bool, np.bool_)) or not (
                    isinstance(lv, str) or isinstance(lv, (int, np.integer))) \
                    or (not isinstance(lv, str) and int(lv) not in allv) \
                    or (isinstance(lv, str) and lv not in allv):
                hi = f"0..{self.height - 1}, " if self.height else ""
                raise ValueError(f"unknown {what} {lv!r} in {arg}; valid: {hi}"
                                 "'residual_highpass', 'residual_lowpass'")
            out.add(lv if isinstance(lv, str) else int(lv))
        return out

    def _parse_bands(self, bands):
        if isinstance(bands, str):
            if bands != "all":
                raise ValueError(f"bands must be 'all' or a list; got {bands!r}")
            return None
        if not isinstance(bands, (list, tuple, set, frozenset, range, np.ndarray)):
            raise ValueError(f"bands must be 'all' or a list of orientations; got {bands!r}")
        out = []
        for b in bands:
            if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, np.integer)):
                raise ValueError(f"bands must be integers; got {b!r}")
            if not 0 <= int(b) < self.num_orientations:
                raise ValueError(f"band {b} out of range 0..{self.num_orientations - 1}")
            if int(b) in out:
                raise ValueError(f"band {b} listed twice")
            out.append(int(b))
        return np.asarray(out, dtype=np.int32)


# the pyramid's analysis and synthesis as compiled programs for eager calls, keyed by the
# plan (hashable), the static options and the shapes and dtypes of the arrays.  Under a
# transformation they are traced inline instead, so a user's compiled program is what it
# was (nested calls measured 0.95-1.37x the inlined program inside jit on CPU, not
# conclusive: benchmarks/bench_pyramid_nesting.py)
def _traced(tree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


_jit_forward = jax.jit(SteerablePyramid._forward, static_argnums=(0, 2))
_jit_inverse = jax.jit(SteerablePyramid._inverse, static_argnums=(0, 2, 3, 4))


# ----------------------------------------------------------------------------------
# steering weights
# ----------------------------------------------------------------------------------

def _angles(angles, dtype) -> jax.Array:
    a = jnp.asarray(angles)
    if jnp.issubdtype(a.dtype, jnp.complexfloating) or a.ndim > 1:
        raise ValueError(f"angles must be a real scalar or 1-D array; got shape "
                         f"{a.shape}, dtype {a.dtype}")
    return a.astype(dtype).reshape(-1)


def _harmonics_matrix(order: int, num_orientations: int, even_phase: bool):
    """``(harmonics, pinv(imtx))`` of pyrtools' ``steer_to_harmonics_mtx`` for the
    basis angles ``pi b / K``; the harmonics are those of ``cos(theta)**order``."""
    K = num_orientations
    harmonics = np.arange(1 - ((order + 1) % 2), order + 1, 2)
    ang = np.pi * np.arange(K) / K
    cols = []
    for h in harmonics:
        if h == 0:
            cols.append(np.ones(K))
        elif even_phase:
            cols += [np.cos(h * ang), np.sin(h * ang)]
        else:
            cols += [np.sin(h * ang), -np.cos(h * ang)]
    return harmonics, np.linalg.pinv(np.stack(cols, axis=1))       # (n_h, K)


def steering_weights(order: int, num_orientations: int, angles: Any, *,
                     even_phase: bool = True, dtype=None) -> jax.Array:
    """``(K, A)`` weights steering ``K`` basis bands at ``pi b / K`` to ``angles``
    (pyrtools / plenoptic ``steer``): the band at ``angles[j]`` is
    ``sum_b w[b, j] band_b``.  Exact for the angular profile ``cos(theta)**order``
    (``K > order``: a least-squares fit that is exact, as ``K = order + 1``).
    ``angles`` may be traced."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be a non-negative int; got {order!r}")
    if isinstance(num_orientations, bool) or not isinstance(
            num_orientations, (int, np.integer)) or num_orientations <= order:
        raise ValueError(f"num_orientations must be an int > order={order}; "
                         f"got {num_orientations!r}")
    harmonics, mtx = _harmonics_matrix(int(order), int(num_orientations), bool(even_phase))
    if dtype is None:
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    a = _angles(angles, dtype)
    cols = []
    for h in harmonics:
        if h == 0:
            cols.append(jnp.ones_like(a))
        else:
            cols += [jnp.cos(float(h) * a), jnp.sin(float(h) * a)]
    sv = jnp.stack(cols, axis=1)                                       # (A, n_h)
    return (sv @ jnp.asarray(mtx, dtype)).T                            # (K, A)


# ----------------------------------------------------------------------------------
# all coefficients as one array (plenoptic's convert_pyr_to_tensor)
# ----------------------------------------------------------------------------------

class PyrTensorInfo(NamedTuple):
    """What :func:`convert_tensor_to_pyr` needs to undo :func:`convert_pyr_to_tensor`
    (static, hashable): ``convert_tensor_to_pyr(t, info)``.

    Attributes:
      keys: the entries present, fine -> coarse (``"residual_highpass"``, ints,
        ``"residual_lowpass"``).
      num_orientations: bands per scale.
      split_complex: whether complex bands were split into (real, imag) channels.
      height: the pyramid's number of scales (absent ones come back as ``None``).
      plan: the coefficients' plan identity (or ``None``).
    """
    keys: tuple
    num_orientations: int
    split_complex: bool
    height: int
    plan: Any = None


def convert_pyr_to_tensor(coeffs: PyramidCoeffs, *, split_complex: bool = False
                          ) -> tuple[jax.Array, PyrTensorInfo]:
    """All coefficients as one array ``(..., N, H, W)``, and the info to undo it.

    Channels, along axis ``-3``: the high-pass residual, then every band fine to
    coarse (scale-major, orientation-minor), then the low-pass residual; entries that
    are ``None`` (``forward(x, scales=...)``) are skipped.  With ``split_complex``,
    each complex band becomes two adjacent real channels (real, imaginary), so
    ``N = 2 + 2 S K``; otherwise a complex pyramid gives a complex array with the
    residuals as complex channels.  Needs equal sizes: ``downsample=False`` (or only
    entries of one size).

    plenoptic's layout for ``(B, C, H, W)`` images is ``(B, C * N, H, W)``
    (channel-major); here leading dims are kept, ``(B, C, N, H, W)``:
    ``t.reshape(B, C * N, H, W)`` gives plenoptic's.
    """
    if not isinstance(coeffs, PyramidCoeffs):
        raise TypeError(f"coeffs must be a PyramidCoeffs; got {type(coeffs).__name__}")
    if not isinstance(split_complex, (bool, np.bool_)):
        raise TypeError(f"split_complex must be a bool; got {split_complex!r}")
    keys, parts = [], []
    if coeffs.highpass is not None:
        keys.append("residual_highpass")
        parts.append(("r", coeffs.highpass))
    bands = [(i, b) for i, b in enumerate(coeffs.bands) if b is not None]
    for i, b in bands:
        keys.append(i)
        parts.append(("b", b))
    if coeffs.lowpass is not None:
        keys.append("residual_lowpass")
        parts.append(("r", coeffs.lowpass))
    if not parts:
        raise ValueError("the coefficients hold no arrays (every entry is None)")
    sizes = {tuple(a.shape[-2:]) for _, a in parts}
    if len(sizes) != 1:
        raise ValueError(f"convert_pyr_to_tensor needs entries of one size; got {sorted(sizes)}"
                         ": use a pyramid with downsample=False")
    K = bands[0][1].shape[-3] if bands else 0
    is_cx = any(jnp.issubdtype(b.dtype, jnp.complexfloating) for _, b in bands)
    if split_complex and bands and not is_cx:
        raise ValueError("split_complex=True but the bands are real: use "
                         "split_complex=False or a complex pyramid")
    split = bool(split_complex) and bool(bands)
    rdt = _real_dtype(parts[0][1].dtype)
    cdt = np.result_type(rdt, np.complex64)
    out_dt = cdt if (is_cx and not split) else rdt
    chans = []
    for kind, a in parts:
        if kind == "r":
            chans.append(a[..., None, :, :].astype(out_dt))
        elif split:
            ri = jnp.stack([jnp.real(a), jnp.imag(a)], axis=-3)       # (..., K, 2, h, w)
            chans.append(ri.reshape(ri.shape[:-4] + (2 * K,) + ri.shape[-2:]).astype(rdt))
        else:
            chans.append(a.astype(out_dt))
    info = PyrTensorInfo(tuple(keys), int(K), split, len(coeffs.bands), coeffs.plan)
    return jnp.concatenate(chans, axis=-3), info


def convert_tensor_to_pyr(pyr_tensor: jax.Array, pyr_info: PyrTensorInfo) -> PyramidCoeffs:
    """Undo :func:`convert_pyr_to_tensor`: ``t, info = convert_pyr_to_tensor(c)``, then
    ``convert_tensor_to_pyr(t, info)`` gives ``c`` back.

    plenoptic's ``convert_tensor_to_pyr(t, num_channels, split_complex, pyr_keys)``
    takes the pieces of its info tuple as separate arguments; here the one
    :class:`PyrTensorInfo` (or a plain tuple of its fields) is passed as one argument.
    Residuals come back real; the plan identity comes back from ``pyr_info``."""
    info = pyr_info
    if not isinstance(info, PyrTensorInfo):
        try:
            if not isinstance(info, tuple):
                raise TypeError
            info = PyrTensorInfo(*info)
        except TypeError:
            raise TypeError("convert_tensor_to_pyr(t, info) takes the PyrTensorInfo returned "
                            "by convert_pyr_to_tensor (t, info = convert_pyr_to_tensor(c)); got "
                            f"{type(pyr_info).__name__}") from None
    t = jnp.asarray(pyr_tensor)
    K = info.num_orientations
    per_band = 2 * K if info.split_complex else K
    n = sum(per_band if not isinstance(k, str) else 1 for k in info.keys)
    if t.ndim < 3 or t.shape[-3] != n:
        raise ValueError(f"pyr_tensor has shape {t.shape}; the info describes {n} "
                         "channels on axis -3")
    hp = lp = None
    bands = [None] * info.height
    j = 0
    for k in info.keys:
        if isinstance(k, str):
            a = t[..., j, :, :]
            a = jnp.real(a) if jnp.issubdtype(a.dtype, jnp.complexfloating) else a
            if k == "residual_highpass":
                hp = a
            else:
                lp = a
            j += 1
        else:
            a = t[..., j:j + per_band, :, :]
            if info.split_complex:
                a = a.reshape(a.shape[:-3] + (K, 2) + a.shape[-2:])
                a = jax.lax.complex(a[..., 0, :, :], a[..., 1, :, :])
            bands[k] = a
            j += per_band
    return PyramidCoeffs(hp, tuple(bands), lp, plan=info.plan)


# ----------------------------------------------------------------------------------
# mask caches
# ----------------------------------------------------------------------------------

def cache_info() -> dict:
    """Entries, bytes and byte budgets of the pyramid's two mask caches: ``"plans"``
    (the masks of each configuration) and ``"arrays"`` (cast per dtype)."""
    return {"plans": _pyramid_plan.PLAN_CACHE.info(),
            "arrays": _pyramid_plan.ARRAYS_CACHE.info()}


def set_cache_limits(*, plans: int | None = None, arrays: int | None = None) -> None:
    """Set the byte budgets of the mask caches (evicting least recently used entries
    now if needed); ``0`` keeps only the newest entry."""
    for name, v, cache in (("plans", plans, _pyramid_plan.PLAN_CACHE),
                           ("arrays", arrays, _pyramid_plan.ARRAYS_CACHE)):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a byte count >= 0; got {v!r}")
        cache.set_limit(int(v))


# ----------------------------------------------------------------------------------
# converters to the anchors' layouts (numpy; no torch import)
# ----------------------------------------------------------------------------------

def to_pyrtools(c: PyramidCoeffs) -> dict:
    """One image's coefficients as pyrtools' ``pyr_coeffs`` dict (numpy arrays; entries
    that are ``None`` are left out)."""
    if len(SteerablePyramid._lead_of(c)) != 0:
        raise ValueError("to_pyrtools takes the coefficients of a single (H, W) image")
    out = {}
    if c.highpass is not None:
        out["residual_highpass"] = np.asarray(c.highpass)
    for i, b in enumerate(c.bands):
        if b is not None:
            for k in range(b.shape[-3]):
                out[(i, k)] = np.asarray(b[k])
    if c.lowpass is not None:
        out["residual_lowpass"] = np.asarray(c.lowpass)
    return out


def from_pyrtools(d: dict, height: int, num_orientations: int, *,
                  pyramid: "SteerablePyramid | None" = None) -> PyramidCoeffs:
    """pyrtools' ``pyr_coeffs`` dict to :class:`PyramidCoeffs`.

    Without ``pyramid`` the coefficients carry no plan identity (any pyramid of matching
    shapes synthesises them); with it they carry ``pyramid``'s, so a differently
    configured pyramid refuses them."""
    bands = tuple(jnp.stack([jnp.asarray(d[(i, k)]) for k in range(num_orientations)])
                  for i in range(height))
    return PyramidCoeffs(jnp.asarray(d["residual_highpass"]), bands,
                         jnp.asarray(d["residual_lowpass"]), plan=_plan_of(pyramid))


def to_plenoptic(c: PyramidCoeffs) -> OrderedDict:
    """Coefficients ``(B, C, ...)`` as plenoptic 2.x's OrderedDict of numpy arrays
    (convert with ``torch.as_tensor``): residuals ``(B, C, h, w)``, bands
    ``(B, C, K, h, w)``."""
    if len(SteerablePyramid._lead_of(c)) != 2:
        raise ValueError("to_plenoptic takes coefficients of (B, C, H, W) images")
    out = OrderedDict()
    if c.highpass is not None:
        out["residual_highpass"] = np.asarray(c.highpass)
    for i, b in enumerate(c.bands):
        if b is not None:
            out[i] = np.asarray(b)
    if c.lowpass is not None:
        out["residual_lowpass"] = np.asarray(c.lowpass)
    return out


def from_plenoptic(d, *, pyramid: "SteerablePyramid | None" = None) -> PyramidCoeffs:
    """plenoptic's OrderedDict (tensors or arrays) to :class:`PyramidCoeffs` (``pyramid``:
    as in :func:`from_pyrtools`).  Keys absent from ``d`` (``forward(x, scales=...)``)
    become ``None``; the number of scales is ``pyramid.height`` if given, else the
    largest scale key + 1."""
    def arr(t):
        if t is None:
            return None
        t = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        return jnp.asarray(t)
    ints = [k for k in d if not isinstance(k, str)]
    height = pyramid.height if isinstance(pyramid, SteerablePyramid) else (
        max(ints) + 1 if ints else 0)
    return PyramidCoeffs(arr(d.get("residual_highpass")),
                         tuple(arr(d.get(i)) for i in range(height)),
                         arr(d.get("residual_lowpass")), plan=_plan_of(pyramid))


def _plan_of(pyramid) -> tuple | None:
    if pyramid is None:
        return None
    if not isinstance(pyramid, SteerablePyramid):
        raise TypeError(f"pyramid must be a SteerablePyramid or None; got "
                        f"{type(pyramid).__name__}")
    return pyramid._key()


# plenoptic's static methods, under their names (``SteerablePyramid.convert_pyr_to_tensor``)
SteerablePyramid.convert_pyr_to_tensor = staticmethod(convert_pyr_to_tensor)
SteerablePyramid.convert_tensor_to_pyr = staticmethod(convert_tensor_to_pyr)
