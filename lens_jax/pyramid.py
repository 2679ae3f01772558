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
  computed in float32.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._pyramid_plan import build_plan, crop_h, paste_h, plan_arrays
from ._trig import rotation, sincos

__all__ = [
    "SteerablePyramid", "PyramidCoeffs", "amplitude", "phase", "polar", "wrap_phase",
    "modulate_phase", "to_pyrtools", "from_pyrtools", "to_plenoptic", "from_plenoptic",
]


class _Coeffs(NamedTuple):
    highpass: jax.Array
    bands: tuple
    lowpass: jax.Array


class PyramidCoeffs(_Coeffs):
    """Pyramid coefficients; a pytree that carries the identity of its plan.

    A 3-tuple ``(highpass, bands, lowpass)`` (unpacks as one) with one extra static
    attribute, ``plan``: the configuration key of the :class:`SteerablePyramid` that
    produced it (``None`` for coefficients built by hand or by :func:`from_pyrtools` /
    :func:`from_plenoptic` without ``pyramid=``).  ``plan`` is pytree *aux data*, so it
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
        complex for a complex pyramid, real otherwise.
      lowpass: ``(..., h, w)`` real low-pass residual.
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
    """``amp * exp(i * ph)`` from real arrays."""
    s, c = sincos(ph)
    return amp * c + 1j * (amp * s)


def wrap_phase(ph: jax.Array) -> jax.Array:
    """Wrap a phase to [-pi, pi)."""
    return jnp.mod(ph + jnp.pi, 2 * jnp.pi) - jnp.pi


def modulate_phase(c: jax.Array, dphi: jax.Array) -> jax.Array:
    """Add ``dphi`` (real) to the phase of ``c``, keeping its amplitude: ``c*exp(i*dphi)``."""
    return c * rotation(dphi)


# ----------------------------------------------------------------------------------
# the plan
# ----------------------------------------------------------------------------------

_SYNTHESES = ("real", "adjoint")


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
        ``floor(log2(min(H, W))) - 2``.
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

    The plan is hashable and a pytree with no leaves, so it can be closed over, passed
    to ``jax.jit`` as an ordinary argument, or used as a static argument.

    >>> import jax.numpy as jnp, lens_jax as lj
    >>> pyr = lj.SteerablePyramid((64, 64), height=3)
    >>> c = pyr.forward(jnp.ones((64, 64)))
    >>> [b.shape for b in c.bands]
    [(4, 64, 64), (4, 32, 32), (4, 16, 16)]
    """

    def __init__(self, image_shape: Sequence[int], height: int | str = "auto", order: int = 3,
                 twidth: float = 1, is_complex: bool = True, downsample: bool = True,
                 tight_frame: bool = False, *, num_orientations: int | None = None,
                 masks: str = "closed", synthesis: str = "real"):
        shape = _check_shape(image_shape)
        if min(shape) < 4:
            raise ValueError(f"image_shape {shape}: each side must be at least 4 pixels")
        max_h = int(math.floor(math.log2(min(shape)))) - 2
        if height == "auto":
            height = max_h
        if isinstance(height, bool) or not isinstance(height, (int, np.integer)):
            raise ValueError(f"height must be an int or 'auto'; got {height!r}")
        height = int(height)
        if not 1 <= height <= max_h:
            raise ValueError(
                f"height={height} is invalid for image shape {shape}: "
                f"must be between 1 and the maximum {max_h} (= floor(log2(min(H, W))) - 2)")
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

    # --- identity -------------------------------------------------------------------
    def _key(self):
        return (self.image_shape, self.height, self.order, self.num_orientations,
                self.twidth, self.is_complex, self.downsample, self.tight_frame, self.masks)

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
                f"masks={self.masks!r}, synthesis={self.synthesis!r})")

    def tree_flatten(self):
        return (), self._key() + (self.synthesis,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        (shape, height, order, k, twidth, is_complex, downsample, tight, masks, synth) = aux
        return cls(shape, height, order, twidth, is_complex, downsample, tight,
                   num_orientations=k, masks=masks, synthesis=synth)

    def replace(self, **kw) -> "SteerablePyramid":
        """A copy with some options changed."""
        cfg = dict(image_shape=self.image_shape, height=self.height, order=self.order,
                   twidth=self.twidth, is_complex=self.is_complex, downsample=self.downsample,
                   tight_frame=self.tight_frame, num_orientations=self.num_orientations,
                   masks=self.masks, synthesis=self.synthesis)
        if "order" in kw and "num_orientations" not in kw \
                and self.num_orientations == self.order + 1:
            cfg["num_orientations"] = None          # keep the default K = order + 1
        cfg.update(kw)
        return SteerablePyramid(**cfg)

    # --- derived --------------------------------------------------------------------
    @property
    def band_shapes(self) -> tuple:
        """``(h_s, w_s)`` of each scale, fine -> coarse."""
        return build_plan(*self._key()).sizes

    @property
    def lowpass_shape(self) -> tuple:
        return build_plan(*self._key()).lo_fwd[-1].shape

    @staticmethod
    def max_height(image_shape: Sequence[int]) -> int:
        return int(math.floor(math.log2(min(image_shape)))) - 2

    @property
    def _norm(self):
        return "ortho" if self.tight_frame else "backward"

    def _dtype_of(self, x) -> np.dtype:
        dt = np.dtype(x.dtype)
        if dt == np.float64:
            return dt
        return np.dtype(np.float32)       # float32, bfloat16, float16, ints

    def filters(self, dtype=np.float64) -> dict:
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

    def forward(self, x: jax.Array) -> PyramidCoeffs:
        """Analyse real images ``(..., H, W)`` into :class:`PyramidCoeffs`."""
        x = self._check_image(x)
        p = plan_arrays(self._key(), x.dtype.name)
        norm = self._norm
        H, W = self.image_shape
        K = self.num_orientations
        X = jnp.fft.rfft2(x, norm=norm)
        hp = jnp.fft.irfft2(X * p.hi0_h, s=(H, W), norm=norm)
        L = X * p.lo0_h
        bands = []
        for i in range(self.height):
            h, w = p.sizes[i]
            B = jnp.fft.irfft2(L[..., None, :, :] * p.fwd_h[i], s=(h, w), norm=norm)
            if self.is_complex:
                B = jax.lax.complex(B[..., :K, :, :], B[..., K:, :, :])
            bands.append(B)
            if self.downsample:
                L = crop_h(L, p.lo_fwd[i].shape)
            L = L * p.lo_fwd_h[i]
        lp = jnp.fft.irfft2(L, s=p.lo_fwd[-1].shape, norm=norm)
        return PyramidCoeffs(hp, tuple(bands), lp, plan=self._key())

    __call__ = forward

    # --- synthesis ------------------------------------------------------------------
    def _check_coeffs(self, c) -> PyramidCoeffs:
        if not isinstance(c, PyramidCoeffs):
            if isinstance(c, (tuple, list)) and len(c) == 3:
                c = PyramidCoeffs(*c)
            else:
                raise ValueError("coefficients must be a PyramidCoeffs(highpass, bands, "
                                 f"lowpass); got {type(c).__name__}")
        if not isinstance(c.bands, (tuple, list)) or len(c.bands) != self.height:
            nb = len(c.bands) if isinstance(c.bands, (tuple, list)) else type(c.bands).__name__
            raise ValueError(f"coefficients have {nb} scales; the plan has {self.height}")
        lead = tuple(c.highpass.shape[:-2])
        if tuple(c.highpass.shape[-2:]) != self.image_shape:
            raise ValueError(f"highpass shape {tuple(c.highpass.shape)} does not match the "
                             f"plan's image shape {self.image_shape}")
        K = self.num_orientations
        for i, (b, hw) in enumerate(zip(c.bands, self.band_shapes)):
            want = lead + (K,) + tuple(hw)
            if tuple(b.shape) != want:
                raise ValueError(f"band {i} has shape {tuple(b.shape)}; expected {want}")
        want = lead + tuple(self.lowpass_shape)
        if tuple(c.lowpass.shape) != want:
            raise ValueError(f"lowpass has shape {tuple(c.lowpass.shape)}; expected {want}")
        return PyramidCoeffs(c.highpass, tuple(c.bands), c.lowpass, plan=c.plan)

    def attach(self, c) -> PyramidCoeffs:
        """``c`` (a :class:`PyramidCoeffs` or a 3-tuple, shapes checked) carrying this
        plan's identity: for coefficients built by hand that must match :meth:`forward`'s
        output as a pytree (e.g. a cotangent for ``jax.vjp(pyr.forward, x)``)."""
        self._check_plan(c)
        return self._check_coeffs(c)._replace(plan=self._key())

    def _check_plan(self, c) -> None:
        """Refuse coefficients made by a differently configured pyramid."""
        plan = getattr(c, "plan", None)
        if plan is None or plan == self._key():
            return
        names = ("image_shape", "height", "order", "num_orientations", "twidth",
                 "is_complex", "downsample", "tight_frame", "masks")
        try:
            diff = [f"{n}={a!r} (coefficients) vs {b!r} (this pyramid)"
                    for n, a, b in zip(names, plan, self._key()) if a != b]
        except TypeError:
            diff = [repr(plan)]
        raise ValueError("coefficients were made by a differently configured pyramid: "
                         + "; ".join(diff) + ". Synthesise them with the pyramid that "
                         "analysed them (or drop the identity with c._replace(plan=None) "
                         "if the configuration really matches)")

    def inverse(self, c: PyramidCoeffs, *, synthesis: str | None = None,
                levels: Any = "all", bands: Any = "all") -> jax.Array:
        """Synthesise an image ``(..., H, W)`` from coefficients.

        Args:
          c: coefficients shaped as :meth:`forward` returns them.
          synthesis: ``"real"`` or ``"adjoint"`` (default: the plan's ``synthesis``).
          levels: ``"all"`` or a list of scale indices and/or ``"residual_highpass"``,
            ``"residual_lowpass"`` to include (partial reconstruction, as plenoptic).
          bands: ``"all"`` or a list of orientation indices to include.
        """
        synthesis = self.synthesis if synthesis is None else synthesis
        if synthesis not in _SYNTHESES:
            raise ValueError(f"synthesis must be one of {_SYNTHESES}; got {synthesis!r}")
        self._check_plan(c)
        c = self._check_coeffs(c)
        use_levels = self._parse_levels(levels)
        use_bands = self._parse_bands(bands)
        rdt = self._dtype_of(c.highpass)
        p = plan_arrays(self._key(), rdt.name)
        norm = self._norm
        adjoint = synthesis == "adjoint" and self.is_complex
        masks = p.rec_adj if adjoint else p.rec_real_h
        lp = jnp.asarray(c.lowpass, rdt)
        Y = jnp.fft.rfft2(lp, norm=norm)
        if "residual_lowpass" not in use_levels:
            Y = jnp.zeros_like(Y)
        for i in reversed(range(self.height)):
            Y = Y * p.lo_inv_h[i]
            if self.downsample:
                Y = paste_h(Y, p.sizes[i])
            if i in use_levels:
                b = c.bands[i]
                m = masks[i]
                if use_bands is not None:      # a static subset (slices, not a gather)
                    sel = np.asarray(use_bands)
                    b = jnp.concatenate([b[..., k:k + 1, :, :] for k in sel], axis=-3)
                    m = m[sel]
                if adjoint:
                    # S = sum_k M_k fft2(c_k) on the full grid; the image is Re ifft2(S),
                    # i.e. irfft2 of S's Hermitian part (S(k) + conj S(-k)) / 2.  One complex
                    # FFT per band: the inverse ran 1.25-1.33x faster on CPU than with rfft2
                    # of Re and Im separately (interleaved A/B, benchmarks/RESULTS.md)
                    S = jnp.sum(jnp.fft.fft2(b.astype(m.dtype), norm=norm) * m, axis=-3)
                    wh = S.shape[-1] // 2 + 1
                    S_neg = jnp.roll(jnp.flip(S, (-2, -1)), 1, axis=(-2, -1))[..., :wh]
                    Y = Y + (S[..., :wh] + jnp.conj(S_neg)) / 2
                else:
                    b = jnp.real(b).astype(rdt)
                    Y = Y + jnp.sum(jnp.fft.rfft2(b, norm=norm) * m, axis=-3)
        Y = Y * p.lo0_h
        if "residual_highpass" in use_levels:
            Y = Y + jnp.fft.rfft2(jnp.asarray(c.highpass, rdt), norm=norm) * p.hi0_h
        return jnp.fft.irfft2(Y, s=self.image_shape, norm=norm)

    def adjoint(self, c: PyramidCoeffs) -> jax.Array:
        """``inverse(c, synthesis="adjoint")``; the exact adjoint for a tight frame."""
        return self.inverse(c, synthesis="adjoint")

    def _parse_levels(self, levels):
        allv = set(range(self.height)) | {"residual_highpass", "residual_lowpass"}
        if isinstance(levels, str):
            if levels != "all":
                raise ValueError(f"levels must be 'all' or a list; got {levels!r}")
            return allv
        if not isinstance(levels, (list, tuple, set, frozenset, range, np.ndarray)):
            raise ValueError(f"levels must be 'all' or a list of levels; got {levels!r}")
        out = set()
        for lv in levels:
            if isinstance(lv, (bool, np.bool_)) or not (
                    isinstance(lv, str) or isinstance(lv, (int, np.integer))) \
                    or (not isinstance(lv, str) and int(lv) not in allv) \
                    or (isinstance(lv, str) and lv not in allv):
                raise ValueError(f"unknown level {lv!r}; valid: 0..{self.height - 1}, "
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


# ----------------------------------------------------------------------------------
# converters to the anchors' layouts (numpy; no torch import)
# ----------------------------------------------------------------------------------

def to_pyrtools(c: PyramidCoeffs) -> dict:
    """One image's coefficients as pyrtools' ``pyr_coeffs`` dict (numpy arrays)."""
    if np.ndim(c.highpass) != 2:
        raise ValueError("to_pyrtools takes the coefficients of a single (H, W) image")
    out = {"residual_highpass": np.asarray(c.highpass)}
    for i, b in enumerate(c.bands):
        for k in range(b.shape[-3]):
            out[(i, k)] = np.asarray(b[k])
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
    if np.ndim(c.highpass) != 4:
        raise ValueError("to_plenoptic takes coefficients of (B, C, H, W) images")
    out = OrderedDict(residual_highpass=np.asarray(c.highpass))
    for i, b in enumerate(c.bands):
        out[i] = np.asarray(b)
    out["residual_lowpass"] = np.asarray(c.lowpass)
    return out


def from_plenoptic(d, *, pyramid: "SteerablePyramid | None" = None) -> PyramidCoeffs:
    """plenoptic's OrderedDict (tensors or arrays) to :class:`PyramidCoeffs` (``pyramid``:
    as in :func:`from_pyrtools`)."""
    def arr(t):
        t = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        return jnp.asarray(t)
    ints = sorted(k for k in d if not isinstance(k, str))
    return PyramidCoeffs(arr(d["residual_highpass"]), tuple(arr(d[i]) for i in ints),
                         arr(d["residual_lowpass"]), plan=_plan_of(pyramid))


def _plan_of(pyramid) -> tuple | None:
    if pyramid is None:
        return None
    if not isinstance(pyramid, SteerablePyramid):
        raise TypeError(f"pyramid must be a SteerablePyramid or None; got "
                        f"{type(pyramid).__name__}")
    return pyramid._key()
