"""Edit domains: where the class gradient is taken and the extrapolation happens.

Every domain is one small protocol over the *edited channels* ``x`` of shape
``(Ce, H, W)`` (one channel for grey or luminance, three for RGB per channel):

* ``analyse(x) -> state``: the fixed decomposition of the source (a pytree);
* ``zeros(state) -> params``: the identity edit, a dict of real arrays;
* ``render(state, params) -> x'``: synthesise the edited channels (unclipped);

The parameterisation follows ``method.md`` section 4:

==================  ===================================================================
``pixel``           ``x' = x + d``
``fourier_phase``   ``X = rfft2(x)``, ``x' = irfft2(X * exp(i*phi))`` (Hermitian kept by
                    parameterising half the spectrum)
``csp_phase``       bands ``c * exp(i*delta)``; residuals fixed
``csp_amplitude``   bands ``c * exp(eta)``; residuals fixed
``csp_joint``       bands ``c * exp(eta + i*delta)``; residuals fixed
==================  ===================================================================

Edits are multiplicative, so a zero coefficient stays zero, ``dc/ddelta = i*c`` and
``dc/deta = c``.  The log-amplitude edit is bounded to ``|eta| <= LOGAMP_MAX`` so huge
amplification factors saturate instead of overflowing to ``inf``/NaN.

Colour (:func:`split_color` / :func:`merge_color`): ``"luminance"`` edits Y of YIQ and
keeps I, Q (Wadhwa et al.); ``"rgb"`` edits every channel; ``"gray"`` needs one channel.
A one-channel image is edited as is under ``"luminance"`` too.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._trig import rotation
from .pyramid import PyramidCoeffs, SteerablePyramid

__all__ = ["DOMAINS", "COLORS", "LOGAMP_MAX", "Domain", "get_domain", "split_color",
           "merge_color", "default_pyramid", "RGB_TO_YIQ"]

DOMAINS = ("pixel", "fourier_phase", "csp_phase", "csp_amplitude", "csp_joint")
COLORS = ("luminance", "rgb", "gray")
LOGAMP_MAX = 8.0      # |eta| bound: amplitudes scale by at most e**8 ~ 2981

RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.59590059, -0.27455667, -0.32134392],
                       [0.21153661, -0.52273617, 0.31119955]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


# ----------------------------------------------------------------------------------
# colour
# ----------------------------------------------------------------------------------

def split_color(image: jax.Array, color: str) -> tuple[jax.Array, Any]:
    """``(H, W, C)`` image -> edited channels ``(Ce, H, W)`` and the fixed rest."""
    C = image.shape[-1]
    if color == "gray" and C != 1:
        raise ValueError(f"color='gray' needs a one-channel image; got {C} channels "
                         "(use color='luminance' or 'rgb')")
    if color == "luminance" and C == 3:
        yiq = jnp.einsum("hwc,dc->dhw", image, RGB_TO_YIQ.astype(image.dtype))
        return yiq[:1], yiq[1:]
    if color == "luminance" and C not in (1, 3):
        raise ValueError(f"color='luminance' needs 1 or 3 channels; got {C}")
    return jnp.moveaxis(image, -1, 0), None


def merge_color(x: jax.Array, rest: Any, color: str) -> jax.Array:
    """Inverse of :func:`split_color` (no clipping)."""
    if rest is not None:
        yiq = jnp.concatenate([x, rest], axis=0)
        return jnp.einsum("dhw,cd->hwc", yiq, YIQ_TO_RGB.astype(x.dtype))
    return jnp.moveaxis(x, 0, -1)


def default_pyramid(shape: tuple[int, int]) -> SteerablePyramid:
    """The lens's pyramid: order 3 (4 orientations), twidth 1, all scales the size
    allows, tight frame with adjoint synthesis (least-squares inverse of edits)."""
    return SteerablePyramid(shape, height="auto", order=3, twidth=1, is_complex=True,
                            downsample=True, tight_frame=True, synthesis="adjoint")


# ----------------------------------------------------------------------------------
# domains
# ----------------------------------------------------------------------------------

class Domain(NamedTuple):
    """A static edit domain (hashable; see the module docstring)."""
    name: str
    pyramid: SteerablePyramid | None = None

    # the parameter names this domain edits
    @property
    def param_names(self) -> tuple[str, ...]:
        return {"pixel": ("pixel",), "fourier_phase": ("phase",), "csp_phase": ("phase",),
                "csp_amplitude": ("logamp",), "csp_joint": ("phase", "logamp")}[self.name]

    def analyse(self, x: jax.Array) -> Any:
        if self.name == "pixel":
            return x
        if self.name == "fourier_phase":
            return jnp.fft.rfft2(x)
        c = self.pyramid.forward(x)
        return c

    def zeros(self, state: Any) -> dict:
        if self.name == "pixel":
            return {"pixel": jnp.zeros_like(state)}
        # zeros_like (not jnp.zeros) so the parameters inherit the state's sharding /
        # varying-manual-axes type: under shard_map a replicated zero would make
        # jax.grad sum the gradients of every device's images
        if self.name == "fourier_phase":
            return {"phase": jnp.zeros_like(jnp.real(state))}
        z = tuple(jnp.zeros_like(jnp.real(b)) for b in state.bands)
        return {k: z for k in self.param_names}

    def render(self, state: Any, params: dict, shape: tuple[int, int]) -> jax.Array:
        if self.name == "pixel":
            return state + params["pixel"]
        if self.name == "fourier_phase":
            ph = params["phase"]
            return jnp.fft.irfft2(state * rotation(ph), s=shape)
        c: PyramidCoeffs = state
        ph = params.get("phase")
        la = params.get("logamp")
        bands = []
        for i, b in enumerate(c.bands):
            f = None
            if la is not None:
                f = jnp.exp(jnp.clip(la[i], -LOGAMP_MAX, LOGAMP_MAX))
            if ph is not None:
                rot = rotation(ph[i])
                f = rot if f is None else f * rot
            bands.append(b * f)
        return self.pyramid.inverse(c._replace(bands=tuple(bands)))


def get_domain(name: str, shape: tuple[int, int],
               pyramid: SteerablePyramid | None = None) -> Domain:
    """The :class:`Domain` called ``name`` for ``(H, W)`` images."""
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; choose one of {DOMAINS}")
    if not name.startswith("csp_"):
        return Domain(name)
    if pyramid is None:
        pyramid = default_pyramid(shape)       # raises ValueError for too-small images
    elif not isinstance(pyramid, SteerablePyramid):
        raise ValueError(f"pyramid must be a SteerablePyramid; got {type(pyramid).__name__}")
    if tuple(pyramid.image_shape) != tuple(shape):
        raise ValueError(f"pyramid plan is for {pyramid.image_shape} images; the image is "
                         f"{tuple(shape)}")
    if not pyramid.is_complex:
        raise ValueError("phase and amplitude edits need a complex pyramid (is_complex=True)")
    return Domain(name, pyramid)
