"""Edit domains: where the class gradient is taken and the extrapolation happens.

Every domain is one entry of :data:`REGISTRY`: a :class:`DomainSpec` of pure functions
over the *edited channels* ``x`` of shape ``(Ce, H, W)`` (one channel for grey or
luminance, three for RGB per channel), with its label, unit and default final change:

* ``analyse(dom, x) -> state``: the fixed decomposition of the source (a pytree);
* ``zeros(dom, state) -> params``: the identity edit, a dict of real arrays;
* ``render(dom, state, params, shape) -> x'``: synthesise the edited channels (unclipped);
* ``change`` / ``wrapped``: the edit's size and the fraction of phases moved past pi.

Adding a domain is one ``register(DomainSpec(...))`` call.

The parameterisation (edits are multiplicative on the complex bands; residuals fixed
unless a domain says otherwise):

==================  ===================================================================
``pixel``           ``x' = x + d``
``fourier_phase``   ``X = rfft2(x)``, ``x' = irfft2(X * exp(i*phi))`` (Hermitian kept by
                    parameterising half the spectrum)
``csp_phase``       bands ``c * exp(i*delta)``; residuals fixed
``csp_amplitude``   bands ``c * exp(eta)``; residuals fixed
``csp_joint``       bands ``c * exp(eta + i*delta)``; residuals fixed
``csp_flow``        one smooth displacement field ``d`` (control grid) drives every band's
                    phase, ``delta = -<omega, d>`` with ``omega`` the band's local
                    frequency; residuals resampled along ``d`` (:mod:`lens_jax.flow`)
``csp_flow_joint``  ``csp_flow`` plus the bands' log-amplitude, each part balanced
``warp``            the source resampled along a smooth field (pixel-space comparator)
==================  ===================================================================

Edits are multiplicative, so a zero coefficient stays zero, ``dc/ddelta = i*c`` and
``dc/deta = c``.  The log-amplitude edit is bounded to ``|eta| <= LOGAMP_MAX`` so huge
amplification factors saturate instead of overflowing to ``inf``/NaN.

Colour (:func:`split_color` / :func:`merge_color`): ``"luminance"`` edits Y of YIQ and
keeps I, Q (Wadhwa et al.); ``"rgb"`` edits every channel; ``"gray"`` needs one channel.
A one-channel image is edited as is under ``"luminance"`` too.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._trig import rotation
from .pyramid import PyramidCoeffs, SteerablePyramid

__all__ = ["DOMAINS", "PAPER_DOMAINS", "PROTOCOL_DOMAINS", "COLORS", "LOGAMP_MAX", "Domain",
           "DomainSpec", "REGISTRY", "RegistryView", "register", "get_domain", "domain_names",
           "split_color", "merge_color", "default_pyramid", "RGB_TO_YIQ"]

COLORS = ("luminance", "rgb", "gray")

#: The four domains the evaluation protocol compares at matched L2 budgets (Pixel,
#: Fourier phase, CSP phase, Joint CSP; Mahdisoltani & Fleet's follow-up).
PROTOCOL_DOMAINS = ("pixel", "fourier_phase", "csp_phase", "csp_joint")
#: The named group of the paper's comparison (the same four); ``--domain paper`` in the CLI.
PAPER_DOMAINS = PROTOCOL_DOMAINS
_GROUPS = ("all", "paper")       # group names (not domain names) in the CLI's --domain
LOGAMP_MAX = 8.0      # |eta| bound: amplitudes scale by at most e**8 ~ 2981

RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.59590059, -0.27455667, -0.32134392],
                       [0.21153661, -0.52273617, 0.31119955]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


# ----------------------------------------------------------------------------------
# colour
# ----------------------------------------------------------------------------------

def split_color(image: jax.Array, *, color: str) -> tuple[jax.Array, Any]:
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


def merge_color(x: jax.Array, rest: Any, *, color: str) -> jax.Array:
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
# domains: a registry of small records of pure functions
# ----------------------------------------------------------------------------------

class DomainSpec(NamedTuple):
    """One edit domain: what it edits and how (an entry of :data:`REGISTRY`).

    ``analyse(dom, x) -> state``, ``zeros(dom, state) -> params`` (a dict of real
    arrays), ``render(dom, state, params, shape) -> x'`` (unclipped edited channels) and
    ``change(dom, state, params) -> ()`` (the size of an edit reported as
    ``Morph.max_change``, in ``unit``) are pure functions; ``dom`` is the static
    :class:`Domain` (its pyramid and options).  ``final_change`` is the automatic
    schedule's last-frame change, in ``unit``.  ``wrapped(dom, state, params) -> ()``
    (optional) is the fraction of coefficients whose phase the edit moved by more than pi.
    ``has_phase``: the edit has a phase part; ``change`` then reports the largest phase
    change in radians and scales linearly with the edit (``change(a * p) == |a| *
    change(p)``), and ``wrapped`` must be given.  ``check(dom) -> dom`` (optional)
    validates the options once, when :func:`get_domain` builds the domain, and may
    normalise them (e.g. a list to a tuple).
    """
    name: str
    label: str
    unit: str
    final_change: float
    uses_pyramid: bool
    analyse: Callable[..., Any]
    zeros: Callable[..., dict]
    render: Callable[..., jax.Array]
    change: Callable[..., jax.Array]
    defaults: tuple = ()          # ((option, default value), ...) for Domain.options
    wrapped: Callable[..., jax.Array] | None = None   # (dom, state, params) -> fraction of
    #                               coefficients whose phase moved by more than pi (None: n/a)
    has_phase: bool = False       # the edit moves phases: ``change`` is then the largest
    #                               phase change in radians, linear in the edit's scale
    #                               (``stop_before_wrap`` and the wrapping reports use it)
    check: Callable[..., Any] | None = None   # (dom) -> dom: validate / normalise the
    #                               options once, in get_domain (ValueError naming them)


REGISTRY: dict[str, DomainSpec] = {}


class RegistryView(Mapping):
    """Read-only live view ``{domain: getattr(spec, field)}`` of :data:`REGISTRY`
    (e.g. every domain's ``label``); new registrations show up at once."""

    def __init__(self, field: str):
        if field not in DomainSpec._fields:
            raise ValueError(f"field must be one of {DomainSpec._fields}; got {field!r}")
        self._field = field

    def __getitem__(self, name: str) -> Any:
        return getattr(REGISTRY[name], self._field)

    def __iter__(self):
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


def register(spec: DomainSpec) -> DomainSpec:
    """Add (or replace) a domain in :data:`REGISTRY`."""
    if not isinstance(spec, DomainSpec):
        raise TypeError(f"register needs a DomainSpec; got {type(spec).__name__}")
    if not isinstance(spec.name, str) or not spec.name.isidentifier():
        raise ValueError(f"a domain's name must be an identifier (it names files, options "
                         f"and report columns); got {spec.name!r}")
    if spec.name in _GROUPS:
        raise ValueError(f"{spec.name!r} names a group of domains; choose another name")
    if not isinstance(spec.has_phase, bool):
        raise ValueError(f"has_phase must be a bool; got {spec.has_phase!r}")
    if spec.has_phase and spec.wrapped is None:
        raise ValueError(f"domain {spec.name!r} has has_phase=True but no wrapped function")
    REGISTRY[spec.name] = spec
    return spec


class Domain(NamedTuple):
    """A static, hashable edit domain: a registry name, the pyramid plan (for pyramid
    domains) and options as sorted ``(key, value)`` pairs."""
    name: str
    pyramid: SteerablePyramid | None = None
    options: tuple = ()

    @property
    def spec(self) -> DomainSpec:
        return REGISTRY[self.name]

    def option(self, key: str) -> Any:
        return dict(self.spec.defaults, **dict(self.options))[key]

    def analyse(self, x: jax.Array) -> Any:
        return self.spec.analyse(self, x)

    def zeros(self, state: Any) -> dict:
        return self.spec.zeros(self, state)

    def render(self, state: Any, params: dict, shape: tuple[int, int]) -> jax.Array:
        return self.spec.render(self, state, params, shape)

    def change(self, state: Any, params: dict) -> jax.Array:
        return self.spec.change(self, state, params)

    def wrapped(self, state: Any, params: dict) -> jax.Array:
        """Fraction of coefficients whose phase moved by more than pi (NaN: not a phase
        domain)."""
        if self.spec.wrapped is None:
            return jnp.asarray(jnp.nan)
        return self.spec.wrapped(self, state, params)


def _max_abs(tree) -> jax.Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(l)) for l in jax.tree.leaves(tree)]))


def _max_abs_of(part: str) -> Callable:
    """``change``: the largest |value| of one part of the edit."""
    def change(dom, state, params) -> jax.Array:
        return _max_abs(params[part])
    return change


def _phase_wrapped(dom, state, params) -> jax.Array:
    """Fraction of phase parameters with |edit| > pi (the coefficient's phase wrapped)."""
    leaves = jax.tree.leaves(params["phase"])
    over = sum(jnp.sum(jnp.abs(l) > math.pi) for l in leaves)
    return over / sum(l.size for l in leaves)


# zeros_like (not jnp.zeros) so the parameters inherit the state's sharding /
# varying-manual-axes type: under shard_map a replicated zero would make jax.grad sum
# the gradients of every device's images

def _band_zeros(state: PyramidCoeffs) -> tuple:
    return tuple(jnp.zeros_like(jnp.real(b)) for b in state.bands)


def _csp_render(dom, c: PyramidCoeffs, params, shape):
    ph = params.get("phase")
    la = params.get("logamp")
    scales = dom.option("scales")
    bands = []
    for i, b in enumerate(c.bands):
        if scales is not None and i not in scales:      # an unedited scale
            bands.append(b)
            continue
        f = None
        if la is not None:
            f = jnp.exp(jnp.clip(la[i], -LOGAMP_MAX, LOGAMP_MAX)).astype(b.dtype)
        if ph is not None:
            rot = rotation(ph[i]).astype(b.dtype)
            f = rot if f is None else f * rot
        bands.append(b * f)
    return dom.pyramid.inverse(c._replace(bands=tuple(bands)))


def _csp_analyse(dom, x):
    return dom.pyramid.forward(x)


def _check_scales(dom):
    """``scales``: None (every scale) or distinct scale indices (0 = finest)."""
    scales = dom.option("scales")
    if scales is None:
        return dom
    n = dom.pyramid.height
    if isinstance(scales, (int, np.integer)) and not isinstance(scales, bool):
        scales = (scales,)
    ok = isinstance(scales, (tuple, list)) and len(scales) > 0 and all(
        isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < n
        for i in scales) and len(set(scales)) == len(scales)
    if not ok:
        raise ValueError(f"option scales must be None or distinct scale indices in 0..{n - 1} "
                         f"(0 = finest; this pyramid has {n} scales); got {dom.option('scales')!r}")
    opts = dict(dom.options, scales=tuple(sorted(int(i) for i in scales)))
    return dom._replace(options=tuple(sorted(opts.items())))


def _csp_zeros(names):
    def zeros(dom, state):
        z = _band_zeros(state)
        return {k: z for k in names}
    return zeros


register(DomainSpec(
    "pixel", "Pixel", "grey levels", 1.0, False,
    analyse=lambda dom, x: x,
    zeros=lambda dom, x: {"pixel": jnp.zeros_like(x)},
    render=lambda dom, x, p, shape: x + p["pixel"],
    change=_max_abs_of("pixel")))
register(DomainSpec(
    "fourier_phase", "Fourier phase", "rad", math.pi, False,
    analyse=lambda dom, x: jnp.fft.rfft2(x),
    zeros=lambda dom, X: {"phase": jnp.zeros_like(jnp.real(X))},
    render=lambda dom, X, p, shape: jnp.fft.irfft2(X * rotation(p["phase"]), s=shape),
    change=_max_abs_of("phase"), wrapped=_phase_wrapped, has_phase=True))
# ``scales``: edit only these scales (0 = finest); the others and the residuals stay fixed
_SCALES = (("scales", None),)
register(DomainSpec("csp_phase", "CSP phase", "rad", math.pi, True, _csp_analyse,
                    _csp_zeros(("phase",)), _csp_render, _max_abs_of("phase"),
                    defaults=_SCALES, wrapped=_phase_wrapped, has_phase=True,
                    check=_check_scales))
register(DomainSpec("csp_amplitude", "CSP amplitude", "log-amplitude", 1.0, True,
                    _csp_analyse, _csp_zeros(("logamp",)), _csp_render,
                    _max_abs_of("logamp"), defaults=_SCALES, check=_check_scales))
register(DomainSpec("csp_joint", "Joint CSP", "rad", math.pi, True, _csp_analyse,
                    _csp_zeros(("phase", "logamp")), _csp_render, _max_abs_of("phase"),
                    defaults=_SCALES, wrapped=_phase_wrapped, has_phase=True,
                    check=_check_scales))


# flow-coherent domains (lens_jax/flow.py): one smooth displacement field on a G x G
# control grid drives every band's phase (delta = -<omega, d>) and moves the residuals;
# csp_flow_joint adds the bands' log-amplitude, the flow scaled by a balance factor;
# warp resamples the pixels along the same kind of field (the pixel-space comparator)
from . import flow as _fl  # noqa: E402  (the math; imports only jax, numpy and pyramid)


_CHOICES = {"residuals": ("move", "fixed"), "amplitude": ("fixed", "move"),
            "interp": ("cubic", "linear")}


def _check_flow(dom):
    """The flow / warp options, checked once (in :func:`get_domain`)."""
    opts = dict(dom.spec.defaults, **dict(dom.options))
    g = opts["grid"]
    if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 2:
        raise ValueError(f"option grid must be an int >= 2; got {g!r}")
    for key, choices in _CHOICES.items():
        if key in opts and opts[key] not in choices:
            raise ValueError(f"option {key} must be one of {choices}; got {opts[key]!r}")
    bal = opts.get("balance", "auto")
    if not ((isinstance(bal, str) and bal in ("auto", "none", "gradient"))
            or (isinstance(bal, (int, float, np.number)) and not isinstance(bal, bool)
                and math.isfinite(bal) and bal > 0)):
        raise ValueError(f"option balance must be 'auto', 'gradient', 'none' or a positive "
                         f"number; got {bal!r}")
    return dom


def _flow_zeros(dom, like) -> jax.Array:
    g = int(dom.option("grid"))
    z = jnp.real(like).reshape(-1)[0]      # inherit the state's dtype / sharding type
    return jnp.zeros_like(jnp.broadcast_to(z, (2, g, g)))


def _flow_analyse(dom, x):
    return _fl.analyse_flow(dom.pyramid, x, residuals=dom.option("residuals"),
                            amplitude=dom.option("amplitude"))


def _flow_joint_analyse(dom, x):
    state = _flow_analyse(dom, x)
    bal = dom.option("balance")
    if isinstance(bal, str) and bal == "auto":
        s = _fl.balance_scale(dom.pyramid, state, grid=int(dom.option("grid")),
                              clip_logamp=LOGAMP_MAX)
    elif isinstance(bal, str):          # "none", "gradient" (checked in get_domain)
        s = 1.0
    else:
        s = float(bal)
    return state._replace(scale=jnp.asarray(s, state.coeffs.highpass.dtype))


def _flow_render(dom, state, p, shape):
    flow, logamp = p["flow"], p.get("logamp")
    if logamp is not None and dom.option("balance") == "gradient":
        flow, logamp = _fl.balance_gate(dom.pyramid, flow, logamp, state)
    return _fl.render_flow(dom.pyramid, state, flow, logamp=logamp, clip_logamp=LOGAMP_MAX)


def _flow_change(dom, state, p):
    return _fl.max_phase_change(dom.pyramid, state, p["flow"])


def _flow_wrapped(dom, state, p):
    return _fl.wrapped_fraction(dom.pyramid, state, p["flow"])


def _warp_render(dom, x, p, shape):
    return _fl.warp_channels(x, p["flow"], interp=dom.option("interp"))


def _warp_change(dom, x, p):
    d = _fl.band_flow(p["flow"], x.shape[-2:], x.shape[-2:])
    return jnp.sqrt(jnp.max(d[0] ** 2 + d[1] ** 2))


register(DomainSpec(
    name="csp_flow", label="CSP flow", unit="rad", final_change=math.pi,
    uses_pyramid=True, analyse=_flow_analyse,
    zeros=lambda dom, st: {"flow": _flow_zeros(dom, st.coeffs.highpass)},
    render=_flow_render, change=_flow_change,
    defaults=(("amplitude", "fixed"), ("grid", 8), ("residuals", "move")), wrapped=_flow_wrapped,
    has_phase=True, check=_check_flow))
register(DomainSpec(
    name="csp_flow_joint", label="Joint CSP flow", unit="rad", final_change=math.pi,
    uses_pyramid=True, analyse=_flow_joint_analyse,
    zeros=lambda dom, st: {"flow": _flow_zeros(dom, st.coeffs.highpass),
                           "logamp": _band_zeros(st.coeffs)},
    render=_flow_render, change=_flow_change,
    defaults=(("amplitude", "fixed"), ("balance", "auto"), ("grid", 8),
              ("residuals", "move")),
    wrapped=_flow_wrapped, has_phase=True, check=_check_flow))
register(DomainSpec(
    name="warp", label="Warp", unit="px", final_change=2.0, uses_pyramid=False,
    analyse=lambda dom, x: x,
    zeros=lambda dom, x: {"flow": _flow_zeros(dom, x)},
    render=_warp_render, change=_warp_change,
    defaults=(("grid", 8), ("interp", "cubic")), check=_check_flow))


def domain_names() -> tuple[str, ...]:
    """The names of every registered domain, in registration order (live: a domain
    added with :func:`register` is included).

    >>> domain_names()[:3]
    ('pixel', 'fourier_phase', 'csp_phase')
    """
    return tuple(REGISTRY)


class _DomainNames(Sequence):
    """A live, read-only tuple-like view of the registered domain names."""

    def __getitem__(self, i):
        return domain_names()[i]

    def __len__(self) -> int:
        return len(REGISTRY)

    def __iter__(self):
        return iter(domain_names())

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in REGISTRY

    def __eq__(self, other) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, (tuple, list, Sequence))
                               else other)

    def __hash__(self):
        return hash(domain_names())

    def __repr__(self) -> str:
        return repr(domain_names())


#: Every registered domain (a live view: :func:`register` adds to it).
DOMAINS = _DomainNames()


#: The lens's pyramid conventions (:func:`default_pyramid`); a pyramid that departs from
#: them changes the method, so :func:`get_domain` warns and names the fix.
_CONVENTIONS = (("tight_frame", True), ("synthesis", "adjoint"))


def get_domain(name: "str | Domain", shape: tuple[int, int], *,
               pyramid: SteerablePyramid | None = None, **options: Any) -> Domain:
    """The :class:`Domain` called ``name`` for ``(H, W)`` images, validated once: the
    name, the options (its :class:`DomainSpec` ``defaults`` and ``check``) and the
    pyramid (a :class:`Domain` is checked against ``shape`` and returned).

    A ``pyramid`` of your own keeps its scales, orientations and widths, but should keep
    the lens's conventions (tight frame, adjoint synthesis): build it as
    ``lj.default_pyramid(shape).replace(height=..., order=...)``.  A pyramid without them
    (``SteerablePyramid``'s own defaults: no tight frame, real synthesis) gives other
    frames; it is used as given, with a ``UserWarning`` naming the difference.

    >>> get_domain("csp_phase", (32, 32), scales=[1]).option("scales")
    (1,)
    """
    if isinstance(name, Domain):
        if options:
            raise ValueError("give a Domain's options inside it, not as keywords")
        if name.pyramid is not None:
            if pyramid is not None and pyramid != name.pyramid:
                raise ValueError("domain is a Domain with its own pyramid; do not also give "
                                 "pyramid=")
            pyramid = name.pyramid
        name, options = name.name, dict(name.options)
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown domain {name!r}; choose one of {domain_names()}")
    spec = REGISTRY[name]
    unknown = sorted(set(options) - {k for k, _ in spec.defaults})
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for domain {name!r}; it takes "
                         f"{[k for k, _ in spec.defaults] or 'none'}")
    if spec.uses_pyramid:
        if pyramid is None:
            pyramid = default_pyramid(shape)       # raises ValueError for too-small images
        elif not isinstance(pyramid, SteerablePyramid):
            raise ValueError(f"pyramid must be a SteerablePyramid; got "
                             f"{type(pyramid).__name__}")
        if tuple(pyramid.image_shape) != tuple(shape):
            raise ValueError(f"pyramid plan is for {pyramid.image_shape} images; the image "
                             f"is {tuple(shape)}")
        if not pyramid.is_complex:
            raise ValueError("phase and amplitude edits need a complex pyramid "
                             "(is_complex=True)")
        if pyramid.height < 1:
            raise ValueError(f"domain {name!r} edits band-pass scales, but the pyramid for "
                             f"{tuple(shape)} images has height {pyramid.height} (no "
                             "scales): use images of at least 8x8 pixels, or a domain "
                             "without a pyramid ('pixel', 'fourier_phase', 'warp')")
        off = [f"{k}={getattr(pyramid, k)!r}" for k, v in _CONVENTIONS
               if getattr(pyramid, k) != v]
        if off:
            import warnings
            warnings.warn(f"this pyramid departs from the lens's conventions ({', '.join(off)}; "
                          "the lens uses tight_frame=True, synthesis='adjoint'), so the frames "
                          "differ from the method's; to change only scales or orientations "
                          f"use lj.default_pyramid({tuple(shape)}).replace(...)",
                          UserWarning, stacklevel=3)
    dom = Domain(name, pyramid if spec.uses_pyramid else None, tuple(sorted(options.items())))
    if spec.check is not None:
        dom = spec.check(dom)
    try:
        hash(dom)
    except TypeError:
        raise ValueError(f"domain {name!r}: option values must be hashable (tuples, not "
                         f"lists); got {dict(dom.options)!r}") from None
    return dom
