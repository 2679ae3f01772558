"""Flow-coherent edits: one smooth displacement field drives every pyramid band.

A translation ``x'(u) = x(u - d)`` changes the phase of a narrow-band complex coefficient
by ``-<omega, d>`` (``omega``: the band's local frequency), and phase-based motion
magnification amplifies exactly that.  ``csp_phase`` edits every band's phase on its own,
so the bands need not agree on one displacement.  Here the edit *is* a displacement:

* ``flow``: ``(2, G, G)`` control values ``(dy, dx)`` in image pixels on a ``G x G`` grid
  spanning the image corner to corner (the grid of :func:`lens_jax.metrics.warp_image`),
  upsampled bilinearly to each band's sample positions and divided by the band's
  downsampling factor (band pixels);
* each band ``c_{s,k}`` is rotated by ``delta = -(omega_y d_y + omega_x d_x)``, with the
  local frequency ``omega`` estimated once from the source coefficients;
* the residuals move with the same field: the low-pass by exact band-limited
  (trigonometric) interpolation at the displaced positions, the high-pass split into
  ``K`` analytic orientations (one-sided angular masks, no extra FFT per frame) whose
  phases are rotated like a band's;
* optionally (``amplitude="move"``) the band envelopes ``|c|`` are resampled along the
  field as well (about 8x more exact on a smooth blob, about 2x the cost per frame).

Relative error ``||render - exact|| / ||exact - source||`` of a constant 0.5 px flow
against an exact (Fourier) shift, 64x64: blob 0.175 (residuals fixed: 0.249;
``amplitude="move"``: 0.020), a camera crop 0.168 (0.590; 0.110); 28x28 blob 0.098
(0.822; 0.005).  Numbers and their tests: ``tests/test_flow.py``.

Displacements follow :mod:`lens_jax.metrics`: ``(dy, dx)`` in pixels, content moves by
``+d`` (``x0`` becomes ``x0(u - d)``).  Everything here is a pure function of arrays
(``jit``/``vmap``/``grad``-able); the pyramid is periodic, so neighbours wrap around.

Also here: :func:`warp_channels`, the pixel-space comparator (resample the source along
the same kind of field, Catmull-Rom cubic or bilinear), and :func:`balance_scale`, the
per-part scale of the joint flow + log-amplitude edit.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _grid
from ._grid import interp_matrix   # noqa: F401  (re-exported: the control grid's weights)
from ._pyramid_plan import ARRAYS_CACHE
from .pyramid import PyramidCoeffs, SteerablePyramid, modulate_phase

__all__ = ["local_frequency", "nominal_frequencies", "interp_matrix", "band_flow",
           "FlowState", "analyse_flow", "flow_phases", "render_flow", "trig_resample",
           "resample_periodic",
           "warp_channels", "balance_scale", "balance_gate", "max_phase_change",
           "wrapped_fraction"]

_REL_EPS = 1e-9      # fallback weight of the nominal frequency, relative to band energy


# ----------------------------------------------------------------------------------
# local frequency
# ----------------------------------------------------------------------------------

def _angle(z: jax.Array) -> jax.Array:
    """``angle(z)`` in [-pi, pi].  float32: a vectorised Cephes ``atanf`` scheme (XLA on
    CPU lowers ``arctan2`` to scalar library calls, about 20 ns an element, which made
    the local frequencies most of an analysis); abs error <= 4e-7 (measured in
    tests/test_flow.py).  float64: ``jnp.angle``."""
    y, x = jnp.imag(z), jnp.real(z)
    if y.dtype != jnp.float32:
        return jnp.angle(z)
    ay, ax = jnp.abs(y), jnp.abs(x)
    hi, lo = jnp.maximum(ay, ax), jnp.minimum(ay, ax)
    a = lo / jnp.where(hi > 0, hi, 1.0)                       # in [0, 1]
    big = a > 0.41421356237309503                            # tan(pi/8)
    r = jnp.where(big, (a - 1.0) / (a + 1.0), a)
    zz = r * r
    t = ((((8.05374449538e-2 * zz - 1.38776856032e-1) * zz + 1.99777106478e-1) * zz
          - 3.33329491539e-1) * zz * r + r)
    t = jnp.where(big, t + np.float32(np.pi / 4), t)
    t = jnp.where(ay > ax, np.float32(np.pi / 2) - t, t)
    t = jnp.where(x < 0, np.float32(np.pi) - t, t)
    return jnp.where(y < 0, -t, t)


def local_frequency(c: jax.Array, *, nominal: jax.Array | None = None
                    ) -> tuple[jax.Array, jax.Array]:
    """Local frequency ``(omega_y, omega_x)`` of complex bands ``c`` ``(..., h, w)``, in
    radians per band pixel, along rows and columns.

    ``omega = angle(conj(c_{u}) c_{u+1} + conj(c_{u-1}) c_u)`` (both neighbours,
    periodic): exact for a complex exponential ``exp(i <w, u>)`` with ``|w| < pi``,
    whereas the central difference ``Im(conj(c) dc) / |c|^2`` reads ``sin(w)``.  The sum
    weights the two neighbour pairs by their amplitudes.  Where the amplitude vanishes,
    ``nominal`` (``(..., 2)`` broadcastable over the leading dims, e.g. the band's
    centre frequency) takes over smoothly: it is added with weight ``1e-9`` of the band's
    mean energy, so no NaN and no measurable bias where the band has energy.
    """
    def along(axis):
        nxt = jnp.roll(c, -1, axis=axis)
        prv = jnp.roll(c, 1, axis=axis)
        return jnp.conj(c) * nxt + jnp.conj(prv) * c

    zy, zx = along(-2), along(-1)
    e = jnp.mean(jnp.real(c) ** 2 + jnp.imag(c) ** 2, axis=(-2, -1), keepdims=True)
    rdt = jnp.real(c).dtype
    eps = _REL_EPS * e + 1e-30        # 1e-30: a normal number in float32 too (CPUs
    #                                   flush subnormals, and an all-zero band needs eps > 0)
    if nominal is None:
        ny = nx = jnp.zeros((), rdt)
    else:
        nominal = jnp.asarray(nominal, rdt)
        ny, nx = nominal[..., 0, None, None], nominal[..., 1, None, None]
    cdt = zy.dtype

    def phasor(v):                 # exp(i v), lifted to the bands' rank
        v = v.reshape((1,) * (eps.ndim - v.ndim) + v.shape)
        return eps.astype(cdt) * jax.lax.complex(jnp.cos(v), jnp.sin(v))
    zy = zy + phasor(ny)
    zx = zx + phasor(nx)
    return _angle(zy), _angle(zx)


def _mask_centroid(mask: np.ndarray) -> np.ndarray:
    """Energy-weighted centre frequency ``(omega_y, omega_x)`` (rad/sample) of full-grid
    unshifted masks ``(K, h, w)``; ``(K, 2)``."""
    h, w = mask.shape[-2:]
    wy = 2 * np.pi * np.fft.fftfreq(h)[:, None] * np.ones((1, w))
    wx = 2 * np.pi * np.fft.fftfreq(w)[None, :] * np.ones((h, 1))
    p = np.abs(mask) ** 2
    tot = np.maximum(p.sum(axis=(-2, -1)), 1e-300)
    return np.stack([(p * wy).sum(axis=(-2, -1)) / tot,
                     (p * wx).sum(axis=(-2, -1)) / tot], axis=-1)


def _hp_masks(pyr: SteerablePyramid) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_build_hp_masks`, kept in the pyramid's array cache (bounded in bytes: the
    masks are ``K x H x W`` float64, 8 MiB for 4 orientations at 512 x 512)."""
    return ARRAYS_CACHE.get(("flow_hp_masks", pyr), lambda: _build_hp_masks(pyr))


def _build_hp_masks(pyr: SteerablePyramid) -> tuple[np.ndarray, np.ndarray]:
    """One-sided angular masks splitting the high-pass into ``K`` analytic parts with
    ``sum_k Re(part_k) == highpass``, and their centre frequencies ``(K, 2)``.

    ``w_k = 2 a cos^(2n)(theta - theta_k)`` on the half plane around ``theta_k``, where
    ``sum_k a cos^(2n)(theta - theta_k) == 1`` (the pyramid's angular identity), so the
    Hermitian parts of the ``w_k`` sum to one."""
    H, W = pyr.image_shape
    K, n = pyr.num_orientations, pyr.order
    yy = 2.0 * np.fft.fftfreq(H)[:, None] * np.ones((1, W))
    xx = 2.0 * np.fft.fftfreq(W)[None, :] * np.ones((H, 1))
    theta = np.arctan2(yy, xx)
    # bins whose mirror -k is not the negated frequency on this grid: DC and, for even
    # sizes, the Nyquist row / column (+pi and -pi are one bin).  One-sided weights do not
    # pair up there; the symmetric weight keeps the real parts summing to one
    unpaired = (yy == -1.0) | (xx == -1.0) | ((yy == 0.0) & (xx == 0.0))
    a = (2.0 ** (2 * n)) * (math.factorial(n) ** 2) / (K * math.factorial(2 * n))
    ws = []
    for k in range(K):
        d = np.mod(theta - np.pi * k / K + np.pi, 2 * np.pi) - np.pi
        sym = a * np.cos(d) ** (2 * n)
        ws.append(np.where(unpaired, sym, 2.0 * sym * (np.abs(d) < np.pi / 2)))
    ws = np.stack(ws)
    hi0 = pyr.filters(dtype=np.float64)["hi0"]
    return ws, _mask_centroid(ws * hi0)


@functools.lru_cache(maxsize=32)
def nominal_frequencies(pyr: SteerablePyramid) -> tuple[np.ndarray, ...]:
    """Centre frequency ``(K, 2)`` (rad per band pixel, ``(y, x)``) of every scale's
    orientations: the energy-weighted mean frequency of the analysis masks."""
    return tuple(_mask_centroid(m) for m in pyr.filters(dtype=np.float64)["bands"])


# ----------------------------------------------------------------------------------
# the control grid
# ----------------------------------------------------------------------------------

def band_flow(flow: jax.Array, band_shape: tuple[int, int],
              image_shape: tuple[int, int]) -> jax.Array:
    """Control flow ``(2, G, G)`` in image pixels -> ``(2, h, w)`` at a band's sample
    positions, in *band* pixels (divided by the downsampling factor per axis)."""
    h, w = band_shape
    H, W = image_shape
    d = _grid.upsample(flow, (h, w), (H, W))
    scale = jnp.asarray([h / H, w / W], flow.dtype)[:, None, None]
    return d * scale


# ----------------------------------------------------------------------------------
# analysis and render
# ----------------------------------------------------------------------------------

class FlowState(NamedTuple):
    """What ``csp_flow`` keeps from the source (a pytree).

    ``coeffs``: the pyramid coefficients; ``freq``: per scale ``(2, ..., K, h, w)`` local
    frequency (rad per band pixel); ``hp_parts``: ``(..., K, H, W)`` complex analytic
    parts of the high-pass (``sum Re == highpass``) or None; ``hp_freq``: their local
    frequency ``(2, ..., K, H, W)`` or None; ``lp_spec``: ``fft2`` of the low-pass or None
    (residuals fixed); ``scale``: ``()`` factor applied to the flow parameters
    (``csp_flow_joint``'s balance; 1 otherwise); ``amps`` / ``hp_amps``: per scale
    ``(amplitude, unit phasor)`` of the bands / of the high-pass parts when the amplitudes
    move with the flow (``amplitude="move"``), else None.
    """
    coeffs: PyramidCoeffs
    freq: tuple
    hp_parts: jax.Array | None
    hp_freq: jax.Array | None
    lp_spec: jax.Array | None
    scale: jax.Array
    amps: tuple | None = None
    hp_amps: jax.Array | None = None


def analyse_flow(pyr: SteerablePyramid, x: jax.Array, *, residuals: str = "move",
                 amplitude: str = "fixed") -> FlowState:
    """Analyse edited channels ``x`` ``(Ce, H, W)`` for flow edits.

    ``residuals``: ``"move"`` (the residuals follow the field) or ``"fixed"``.
    ``amplitude``: ``"fixed"`` (a pure phase edit) or ``"move"`` (the band envelopes are
    resampled along the field too); see :func:`_analyse_flow`."""
    if residuals not in ("move", "fixed"):
        raise ValueError(f"residuals must be 'move' or 'fixed'; got {residuals!r}")
    if amplitude not in ("fixed", "move"):
        raise ValueError(f"amplitude must be 'fixed' or 'move'; got {amplitude!r}")
    return _analyse_flow(pyr, x, residuals=residuals, amplitude=amplitude)


@functools.partial(jax.jit, static_argnames=("pyr", "residuals", "amplitude"))
def _analyse_flow(pyr: SteerablePyramid, x: jax.Array, *, residuals: str = "move",
                 amplitude: str = "fixed") -> FlowState:
    """The analysis behind :func:`analyse_flow` (jitted: one program per plan and
    options, inlined under an outer ``jit``).

    ``residuals``: ``"move"`` (the residuals follow the field) or ``"fixed"``.
    ``amplitude``: ``"fixed"`` (a pure phase edit, ``|c|`` kept: the band envelopes stay
    where they are) or ``"move"`` (the envelopes move too: ``|c|`` is resampled at
    ``u - d`` by periodic Catmull-Rom interpolation while the phase turns by
    ``-<omega, d>``; bounded, and about 8x more exact on a smooth blob, but a gather per
    coefficient and frame).
    """
    c = pyr.forward(x)
    nom = nominal_frequencies(pyr)
    freq = tuple(jnp.stack(local_frequency(b, nominal=nom[s])) for s, b in enumerate(c.bands))
    move = amplitude == "move"
    amp = tuple(_polar_split(b) for b in c.bands) if move else None
    rdt = c.highpass.dtype
    one = jnp.ones((), rdt)
    if residuals == "fixed":
        return FlowState(c, freq, None, None, None, one, amp, None)
    ws, hp_nom = _hp_masks(pyr)
    cdt = c.bands[0].dtype if c.bands else jnp.fft.fft2(c.highpass).dtype
    hp_spec = jnp.fft.fft2(c.highpass)[..., None, :, :]
    hp_parts = jnp.fft.ifft2(hp_spec * _lift(jnp.asarray(ws, hp_spec.dtype),
                                             hp_spec.ndim)).astype(cdt)
    hp_freq = jnp.stack(local_frequency(hp_parts, nominal=hp_nom))
    hp_amp = _polar_split(hp_parts) if move else None
    lp_spec = jnp.fft.fft2(c.lowpass)
    return FlowState(c, freq, hp_parts, hp_freq, lp_spec, one, amp, hp_amp)


def _lift(v: jax.Array, ndim: int) -> jax.Array:
    """``v`` with leading unit axes up to rank ``ndim`` (explicit broadcasting)."""
    return v.reshape((1,) * (ndim - v.ndim) + v.shape)


def _phase_of(f: jax.Array, d: jax.Array) -> jax.Array:
    """``-<omega, d>``: frequencies ``f`` ``(2, ..., K, h, w)``, displacement ``d``
    ``(2, h, w)`` broadcast over the leading dims and ``K``."""
    return -(f[0] * _lift(d[0], f[0].ndim) + f[1] * _lift(d[1], f[1].ndim))


def flow_phases(pyr: SteerablePyramid, state: FlowState, flow: jax.Array) -> tuple:
    """The phase change ``delta_s = -<omega_s, d_s>`` of every scale, ``(..., K, h, w)``."""
    d_img = state.scale * flow
    out = []
    for s, f in enumerate(state.freq):
        d = band_flow(d_img, f.shape[-2:], pyr.image_shape)
        out.append(_phase_of(f, d))
    return tuple(out)


def trig_resample(spec: jax.Array, disp: jax.Array) -> jax.Array:
    """Band-limited (trigonometric) interpolation of a periodic real image at displaced
    positions: ``out(u) = x(u - disp(u))`` from ``spec = fft2(x)`` ``(..., h, w)`` and
    ``disp`` ``(2, h, w)`` in that image's pixels.  Exact for a constant shift of a
    band-limited image without a Nyquist component; costs ``(h w)^2`` (meant for the
    small low-pass residual)."""
    h, w = spec.shape[-2:]
    rdt = disp.dtype
    fy = jnp.asarray(2 * np.pi * np.fft.fftfreq(h), rdt)
    fx = jnp.asarray(2 * np.pi * np.fft.fftfreq(w), rdt)
    py = jnp.arange(h, dtype=rdt)[:, None] - disp[0]           # (h, w)
    px = jnp.arange(w, dtype=rdt)[None, :] - disp[1]
    ty = py[..., None] * fy[None, None, :]                      # (h, w, h')
    tx = px[..., None] * fx[None, None, :]                      # (h, w, w')
    ey = jax.lax.complex(jnp.cos(ty), jnp.sin(ty))
    ex = jax.lax.complex(jnp.cos(tx), jnp.sin(tx))
    val = jnp.einsum("pqa,...ab,pqb->...pq", ey, spec.astype(ey.dtype), ex)
    return jnp.real(val) / (h * w)


def _polar_split(c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(|c|, c / |c|)``, the phasor 0 where ``c == 0``."""
    a = jnp.abs(c)
    safe = jnp.where(a > 0, a, jnp.ones_like(a)).astype(c.dtype)
    return a, jnp.where(a > 0, c / safe, jnp.zeros_like(c))


def resample_periodic(a: jax.Array, disp: jax.Array) -> jax.Array:
    """``a(u - disp(u))`` for a periodic real image ``a`` ``(..., h, w)``, Catmull-Rom
    cubic interpolation, ``disp`` ``(2, h, w)`` in its pixels."""
    h, w = a.shape[-2:]
    yy = jnp.arange(h, dtype=disp.dtype)[:, None] - disp[0]
    xx = jnp.arange(w, dtype=disp.dtype)[None, :] - disp[1]
    return _grid.sample(a, yy, xx, interp="cubic", edge="periodic")


def render_flow(pyr: SteerablePyramid, state: FlowState, flow: jax.Array, *,
                logamp: tuple | None = None, clip_logamp: float = 8.0) -> jax.Array:
    """Synthesise the channels moved by ``flow`` ``(2, G, G)`` (and, optionally, the
    bands' log-amplitudes scaled by ``exp(logamp)``, clipped to ``+-clip_logamp``)."""
    c = state.coeffs
    H, W = pyr.image_shape
    d_img = state.scale * flow
    bands = []
    for s, b in enumerate(c.bands):
        d = band_flow(d_img, b.shape[-2:], (H, W))
        f = state.freq[s]
        if state.amps is not None:
            amp, ph = state.amps[s]
            b = resample_periodic(amp, d).astype(ph.dtype) * ph
        e = modulate_phase(b, _phase_of(f, d))
        if logamp is not None:
            e = e * jnp.exp(jnp.clip(logamp[s], -clip_logamp, clip_logamp)).astype(e.dtype)
        bands.append(e)
    hp, lp = c.highpass, c.lowpass
    if state.hp_parts is not None:
        d = band_flow(d_img, (H, W), (H, W))
        f = state.hp_freq
        parts = state.hp_parts
        if state.hp_amps is not None:
            parts = resample_periodic(state.hp_amps[0], d).astype(parts.dtype) \
                * state.hp_amps[1]
        parts = modulate_phase(parts, _phase_of(f, d))
        hp = jnp.sum(jnp.real(parts), axis=-3)
        dl = band_flow(d_img, state.lp_spec.shape[-2:], (H, W))
        lp = trig_resample(state.lp_spec, dl).astype(c.lowpass.dtype)
    return pyr.inverse(PyramidCoeffs(hp.astype(c.highpass.dtype), tuple(bands), lp))


def max_phase_change(pyr: SteerablePyramid, state: FlowState, flow: jax.Array) -> jax.Array:
    """Largest ``|delta|`` over every band and position (radians)."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(d)) for d in flow_phases(pyr, state, flow)]))


def wrapped_fraction(pyr: SteerablePyramid, state: FlowState, flow: jax.Array) -> jax.Array:
    """Fraction of band coefficients whose phase the flow moves by more than pi."""
    ds = flow_phases(pyr, state, flow)
    n = sum(d.size for d in ds)
    return sum(jnp.sum(jnp.abs(d) > jnp.pi) for d in ds).astype(ds[0].dtype) / n


# ----------------------------------------------------------------------------------
# pixel-space warp
# ----------------------------------------------------------------------------------

def warp_channels(x: jax.Array, flow: jax.Array, *, interp: str = "cubic") -> jax.Array:
    """Resample channels ``x`` ``(..., H, W)`` at ``u - d(u)`` (content moves by ``+d``),
    ``d`` the bilinear upsampling of the control flow ``(2, G, G)`` (image pixels); edges
    replicate the border ('nearest').

    ``interp="cubic"`` (Catmull-Rom, C1: its derivative at the source is the central
    difference, and a sub-pixel translation keeps more detail) or ``"linear"`` (bilinear,
    whose derivative at integer positions is one-sided: the forward difference)."""
    H, W = x.shape[-2:]
    d = band_flow(flow, (H, W), (H, W))
    yy = jnp.arange(H, dtype=x.dtype)[:, None] - d[0]
    xx = jnp.arange(W, dtype=x.dtype)[None, :] - d[1]
    return _grid.sample(x, yy, xx, interp=interp, edge="nearest")


# ----------------------------------------------------------------------------------
# balance of the joint edit
# ----------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("pyr", "grid", "clip_logamp", "probes", "seed"))
def balance_scale(pyr: SteerablePyramid, state: FlowState, *, grid: int,
                  clip_logamp: float = 8.0, probes: int = 4, seed: int = 0,
                  probe_images: jax.Array | None = None) -> jax.Array:
    """Scale ``s`` for the flow parameters (``d = s * p``) that gives the flow part and
    the log-amplitude part of a gradient step the same typical image change.

    A gradient step ``-alpha g`` of part ``P`` changes the image by
    ``-alpha J_P J_P^T r`` (``r``: the loss gradient in pixels, ``J_P``: the render's
    Jacobian w.r.t. part ``P`` at zero).  ``M_P = J_P J_P^T`` acts like ``lambda_P``
    times a projector onto the part's range; ``lambda_P`` is estimated as the
    energy-weighted eigenvalue ``E||M_P z||^2 / E||J_P^T z||^2`` over white probes ``z``
    (one VJP and two JVPs each, fixed seed).  With ``s^2 = lambda_logamp / lambda_flow``
    both parts have the same gain, so which part leads is set by how much of ``r`` each
    can express, not by how many parameters it has.  Jitted (one program per plan).
    """
    state = state._replace(scale=jnp.ones_like(state.scale))
    dtype = state.coeffs.highpass.dtype
    out_shape = state.coeffs.highpass.shape

    def render_parts(f, a):
        return render_flow(pyr, state, f, logamp=a, clip_logamp=clip_logamp)

    flow0 = jnp.zeros((2, grid, grid), dtype)
    logamp0 = tuple(jnp.zeros(b.shape, dtype) for b in state.coeffs.bands)
    key = jax.random.PRNGKey(seed)
    zs = jax.random.normal(key, (probes,) + tuple(out_shape), dtype) \
        if probe_images is None else probe_images
    # one linearisation at zero serves both products (J^T by transposition)
    _, jvp = jax.linearize(render_parts, flow0, logamp0)
    vjp = jax.linear_transpose(jvp, flow0, logamp0)
    zero_a = jax.tree.map(jnp.zeros_like, logamp0)

    def one(z):
        gf, ga = vjp(z)
        mf = jvp(gf, zero_a)
        ma = jvp(jnp.zeros_like(flow0), ga)
        sq = lambda t: sum(jnp.sum(jnp.abs(l) ** 2) for l in jax.tree.leaves(t))
        return sq(mf), sq(gf), sq(ma), sq(ga)

    mf, gf, ma, ga = jax.vmap(one)(zs)
    tiny = jnp.finfo(dtype).tiny
    lam_f = jnp.sum(mf) / jnp.maximum(jnp.sum(gf), tiny)
    lam_a = jnp.sum(ma) / jnp.maximum(jnp.sum(ga), tiny)
    s = jnp.sqrt(lam_a / jnp.maximum(lam_f, tiny))
    return jnp.where(jnp.isfinite(s) & (lam_f > tiny) & (lam_a > tiny), s, jnp.ones_like(s))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def balance_gate(pyr: SteerablePyramid, flow: jax.Array, logamp: tuple,
                 state: FlowState) -> tuple:
    """Identity on ``(flow, logamp)``; under reverse-mode differentiation the flow part of
    the cotangent is rescaled so that both parts change the image equally to first order.

    With ``g = (g_f, g_a)`` the true gradient, the returned "gradient" is ``(c g_f, g_a)``
    with ``c = ||J_a g_a|| / ||J_f g_f||`` (``J``: the render's Jacobians at the current
    parameters; two JVPs per gradient): a block-diagonal positive rescaling, so still a
    descent direction, and a step ``-alpha g`` moves the image as much through the flow
    as through the amplitudes.  Forward mode (``jvp``) sees the plain identity.
    """
    return flow, logamp


def _gate_fwd(pyr, flow, logamp, state):
    return (flow, logamp), (flow, logamp, state)


def _gate_bwd(pyr, res, ct):
    flow, logamp, state = res
    gf, ga = ct
    _, jf = jax.jvp(lambda f: render_flow(pyr, state, f, logamp=logamp), (flow,), (gf,))
    _, ja = jax.jvp(lambda a: render_flow(pyr, state, flow, logamp=a), (logamp,), (ga,))
    nf = jnp.sqrt(jnp.sum(jf * jf))
    na = jnp.sqrt(jnp.sum(ja * ja))
    ok = (nf > 0) & (na > 0) & jnp.isfinite(nf) & jnp.isfinite(na)
    c = jnp.where(ok, na / jnp.where(ok, nf, 1.0), 1.0).astype(gf.dtype)
    zero_state = jax.tree.map(jnp.zeros_like, state)
    return gf * c, ga, zero_state


balance_gate.defvjp(_gate_fwd, _gate_bwd)
