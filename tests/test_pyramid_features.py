"""The plenoptic features of the pyramid (issue 20) and its bounded caches and plan
identity (issue 19): ``forward(x, scales=...)``, ``height=0``, ``steer_coeffs``,
``convert_pyr_to_tensor`` / ``convert_tensor_to_pyr``, phase scaling and Fourier
up-sampling, the anchors' grid (``grid="peers"``), strict dtype/rank promotion.

Each feature is checked for the property plenoptic / pyrtools assert, against those
libraries on the same input (float64; through ``to_plenoptic`` / ``from_plenoptic``),
at odd and non-square sizes, float32 and float64, and under ``jit`` / ``vmap`` /
``grad``.  Small sizes only (16x16, 19x17, 32x24, 31x33).
"""
import contextlib
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from lens_jax import _pyramid_plan
from lens_jax.pyramid import (
    PyrTensorInfo,
    SteerablePyramid,
    amplitude,
    cache_info,
    convert_pyr_to_tensor,
    convert_tensor_to_pyr,
    expand,
    from_plenoptic,
    phase,
    scale_phase,
    set_cache_limits,
    steering_weights,
    to_plenoptic,
    to_pyrtools,
    wrap_phase,
)
from test_pyramid import _jit, image, max_band_rel_err

ODD, NONSQ, SQ = (19, 17), (32, 24), (16, 16)
# float64 only in the tests (or parametrisations) marked x64 (tests/conftest.py)
DTYPES = [np.float32, pytest.param(np.float64, marks=pytest.mark.x64)]


@contextlib.contextmanager
def strict():
    """The strict JAX configuration the suite runs under."""
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


@contextlib.contextmanager
def precision(dtype):
    """float64 only inside the tests that ask for it."""
    with jax.enable_x64(dtype == np.float64), strict():
        yield


def tol(dtype, f64=1e-12, f32=2e-5):
    return f64 if dtype == np.float64 else f32


def _plenoptic(shape, height, order, **kw):
    torch = pytest.importorskip("torch")
    po = pytest.importorskip("plenoptic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # plenoptic warns on odd sizes
        pyr = po.process.SteerablePyramidFreq(shape, height, order, **kw).to(torch.float64)
    return torch, po, pyr


def n_ffts(fn, *args):
    """Number of FFT primitives in the traced program, nested calls included (work
    actually done: nothing is computed and then discarded)."""
    return str(jax.make_jaxpr(fn)(*args)).count("fft_type=")


# ------------------------------------------------------------------ forward(x, scales=...)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_scales_computes_only_what_is_asked(dtype):
    pyr = SteerablePyramid(ODD, 2, 1)
    x = image((2,) + ODD, dtype=dtype)
    cases = {(0,): 2, (1,): 2, ("residual_highpass",): 2, ("residual_lowpass",): 2,
             ("residual_highpass", 0, "residual_lowpass"): 4, (): 1,
             (1, "residual_lowpass"): 3, None: 5}
    with precision(dtype):
        for scales, ffts in cases.items():
            # one rfft2 of the image plus one inverse FFT per requested entry
            assert n_ffts(functools.partial(pyr.forward, scales=scales), x) == ffts, scales
        outs = _jit(lambda x: [pyr.forward(x, scales=s) for s in cases])(x)
        full = outs[-1]
        for scales, got in zip(cases, outs):
            want = pyr.scales if scales is None else scales
            for k, v in zip(["residual_highpass", 0, 1, "residual_lowpass"],
                            [got.highpass, *got.bands, got.lowpass]):
                ref = {"residual_highpass": full.highpass, "residual_lowpass": full.lowpass,
                       0: full.bands[0], 1: full.bands[1]}[k]
                if k in want:
                    np.testing.assert_allclose(v, ref, rtol=0, atol=tol(dtype, 1e-15, 1e-6))
                else:
                    assert v is None, (scales, k)
            assert got.plan == full.plan
        # a reduced set synthesises with the levels it has, and names them otherwise
        part = outs[-2]
        with pytest.raises(ValueError, match=r"levels=\[1, 'residual_lowpass'\]"):
            pyr.inverse(part)
        lv = [1, "residual_lowpass"]
        a, b = _jit(lambda p, f: (pyr.inverse(p, levels=lv), pyr.inverse(f, levels=lv)))(
            part, full)
        np.testing.assert_allclose(a, b, atol=tol(dtype, 1e-14, 1e-6))
    with pytest.raises(ValueError, match="unknown scale 2 in scales"):
        pyr.forward(x, scales=[2])
    with pytest.raises(ValueError, match="scales"):
        pyr.forward(x, scales="residual_lowpass")


@pytest.mark.x64
def test_forward_scales_vmap_grad_and_plenoptic():
    torch, _, ref = _plenoptic(NONSQ, 2, 2, is_complex=True)
    pyr = SteerablePyramid(NONSQ, 2, 2, masks="lut")
    x = image((1, 1) + NONSQ)
    all_scales = ([0], ["residual_highpass", 1], ["residual_lowpass"])
    xb = image((3,) + NONSQ)
    loss = lambda s: lambda x: jnp.sum(jnp.abs(pyr.forward(x, scales=s).bands[1]) ** 2)

    @_jit
    def run(x, xb):
        return ([pyr.forward(x, scales=s) for s in all_scales],
                jax.vmap(functools.partial(pyr.forward, scales=[1]))(xb).bands[1],
                pyr.forward(xb).bands[1], jax.grad(loss([1]))(xb[0]), jax.grad(loss(None))(xb[0]))

    with precision(np.float64):
        outs, v, full, g1, g2 = run(x, xb)
    for scales, got in zip(all_scales, outs):
        ours = to_plenoptic(got)
        theirs = {k: v.numpy() for k, v in ref.forward(torch.as_tensor(x), scales).items()}
        assert list(ours) == list(theirs)          # same keys, same (fine -> coarse) order
        assert max_band_rel_err(ours, theirs) <= 1e-7
    np.testing.assert_allclose(v, full, atol=1e-14)
    # the gradient of a loss on one scale equals that through the full analysis
    np.testing.assert_allclose(g1, g2, atol=1e-12)


# ------------------------------------------------------------------ height=0
@pytest.mark.parametrize("dtype", DTYPES)
def test_height_zero_is_residuals_only(dtype):
    pyr = SteerablePyramid(ODD, 0, tight_frame=True)
    assert pyr.band_shapes == () and pyr.lowpass_shape == ODD
    assert SteerablePyramid((6, 9)).height == 0          # "auto" below 8 pixels
    x = image((2,) + ODD, dtype=dtype)

    @_jit
    def run(x):
        c = pyr.forward(x)
        return (c, [pyr.inverse(c, synthesis=s) for s in ("real", "adjoint")],
                pyr.inverse(c, levels=["residual_lowpass"])
                + pyr.inverse(c, levels=["residual_highpass"]),
                jax.grad(lambda x: jnp.sum(pyr.inverse(pyr.forward(x)) ** 2))(x[0]))

    with precision(dtype):
        c, recs, parts, g = run(x)
    assert c.bands == () and c.lowpass.shape == x.shape
    for r in recs + [parts]:
        np.testing.assert_allclose(r, x, atol=tol(dtype))
    # tight frame: Parseval
    e = float(np.sum(np.asarray(c.highpass, np.float64) ** 2 + np.asarray(c.lowpass) ** 2))
    assert abs(e / float(np.sum(x.astype(np.float64) ** 2)) - 1) <= tol(dtype, 1e-12, 1e-5)
    np.testing.assert_allclose(g, 2 * x[0], atol=tol(dtype, 1e-12, 1e-4))
    if dtype != np.float64:
        return
    torch, _, ref = _plenoptic(NONSQ, 0, 3, is_complex=True)
    xs = image((1, 1) + NONSQ)
    with precision(np.float64):
        ours = to_plenoptic(_jit(SteerablePyramid(NONSQ, 0, masks="lut").forward)(xs))
    theirs = {k: v.numpy() for k, v in ref.forward(torch.as_tensor(xs)).items()}
    assert list(ours) == list(theirs) == ["residual_highpass", "residual_lowpass"]
    assert max_band_rel_err(ours, theirs) <= 1e-7


@pytest.mark.x64
# ------------------------------------------------------------------ steer_coeffs
def test_steer_real_pyramid_matches_plenoptic():
    """plenoptic's own steer_coeffs on the same image, through the converters: its
    coefficients steered by ours, and ours (LUT masks) against its result."""
    torch, _, ref = _plenoptic(NONSQ, 2, 3, is_complex=False)
    pyr = SteerablePyramid(NONSQ, 2, 3, is_complex=False, masks="lut")
    x = image((1, 1) + NONSQ)
    angles = [0.3, 1.2, 2.9, -0.7]
    pc = ref.forward(torch.as_tensor(x))

    @_jit
    def run(x, theirs):
        ours = pyr.forward(x)
        return ours, [(pyr.steer_coeffs(theirs, angles, even_phase=e),
                       pyr.steer_coeffs(ours, angles, even_phase=e)[0]) for e in (True, False)]

    with precision(np.float64):
        ours_c, steered = run(x, from_plenoptic(pc, pyramid=pyr))
    assert max_band_rel_err(to_plenoptic(ours_c), {k: v.numpy() for k, v in pc.items()}) <= 1e-7
    for even, ((mine, w), mine2) in zip((True, False), steered):
        st, wt = ref.steer_coeffs(pc, angles, even_phase=even)
        for s in range(2):
            np.testing.assert_allclose(w[s], wt[s].numpy(), atol=1e-12)
            want = st[s].numpy()
            np.testing.assert_allclose(mine[s], want, atol=1e-12 * np.abs(want).max())
            np.testing.assert_allclose(mine2[s], want, atol=1e-7 * np.abs(want).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,order,K", [(ODD, 3, 4), (NONSQ, 1, 3)],
                         ids=["19x17-o3-K4", "32x24-o1-K3"])
def test_steer_complex_bands_to_any_angle(shape, order, K, dtype):
    """Beyond plenoptic (real only): complex bands steered to the basis angles are the
    bands themselves, and to the angles of a K'-orientation pyramid are its bands
    (angular gain sqrt(K / K'))."""
    pyr = SteerablePyramid(shape, 2, order, num_orientations=K, tight_frame=True)
    K2 = K + 2
    x = image((2,) + shape, seed=K, dtype=dtype)
    rpyr = pyr.replace(is_complex=False)

    @_jit
    def run(x, basis, angles):
        c, c2 = pyr.forward(x), pyr.replace(num_orientations=K2).forward(x)
        return (c, c2, pyr.steer_coeffs(c, basis)[0], pyr.steer_coeffs(c, angles),
                jax.vmap(lambda ci: pyr.steer_coeffs(ci, [0.4]))(c)[0],
                rpyr.steer_coeffs(rpyr.forward(x), [0.4])[0])

    with precision(dtype):
        c, c2, same, (other, w), v, real = run(
            x, np.pi * np.arange(K) / K, np.pi * np.arange(K2) / K2)
    assert w[0].shape == (K, K2) and other[1].dtype == c.bands[1].dtype
    for s in range(2):
        scale = float(np.abs(c.bands[s]).max())
        np.testing.assert_allclose(same[s], c.bands[s], atol=tol(dtype, 1e-12, 1e-5) * scale)
        np.testing.assert_allclose(np.sqrt(K / K2) * np.asarray(other[s]), c2.bands[s],
                                   atol=tol(dtype, 1e-12, 1e-5) * scale)
    # vmap over images, and the real part is the steered real pyramid
    np.testing.assert_allclose(np.sqrt(2) * np.real(v[1]), real[1],
                               atol=tol(dtype, 1e-12, 1e-5) * float(np.abs(real[1]).max()))


@pytest.mark.x64
def test_steer_gradient_in_the_angle_and_missing_scales():
    pyr = SteerablePyramid(SQ, 2, 2)
    c = _jit(pyr.forward)(image(SQ))
    f = jax.jit(lambda a: pyr.steer_coeffs(c, a)[0][1])
    check_grads(f, (jnp.asarray([0.3, 2.0]),), order=1, modes=["rev"], eps=1e-5)
    part = jax.eval_shape(functools.partial(pyr.forward, scales=[1]), image(SQ))
    st, w = jax.eval_shape(lambda p: pyr.steer_coeffs(p, 0.5), part)  # scalar angle
    assert st[0] is None and st[1].shape == (1, 8, 8)
    np.testing.assert_allclose(np.asarray(steering_weights(2, 3, [0.0, np.pi / 3])),
                               np.eye(3)[:, :2], atol=1e-12)
    with pytest.raises(ValueError, match="angles"):
        pyr.steer_coeffs(c, np.zeros((2, 2)))


@pytest.mark.x64
# ------------------------------------------------------------------ one array
@pytest.mark.parametrize("scales", [None, [0], ["residual_highpass", "residual_lowpass"],
                                    ["residual_highpass", 1]])
def test_pyr_to_tensor_round_trip_and_plenoptic_layout(scales):
    torch, _, ref = _plenoptic(ODD, 2, 1, is_complex=True, downsample=False)
    pyr = SteerablePyramid(ODD, 2, 1, downsample=False, masks="lut")
    x = image((1, 2) + ODD)                      # (B, C, H, W): two channels
    with precision(np.float64):
        c = _jit(functools.partial(pyr.forward, scales=scales))(x)
        pc = {k: torch.as_tensor(np.array(v)) for k, v in to_plenoptic(c).items()}
        has_bands = any(b is not None for b in c.bands)
        for split in (False, True):
            # under jit: the info is static data, known while tracing
            held = {}

            def to_tensor(c, split=split):
                t, held["info"] = convert_pyr_to_tensor(c, split_complex=split)
                return t

            t = _jit(to_tensor)(c)
            info = held["info"]
            back = _jit(lambda t: convert_tensor_to_pyr(t, info))(t)
            assert jax.tree.structure(back) == jax.tree.structure(c) and back.plan == c.plan
            jax.tree.map(np.testing.assert_array_equal, back, c)
            # plenoptic's layout is ours with the channel axis folded in: (B, C * N, H, W)
            pt, _ = ref.convert_pyr_to_tensor(pc, split_complex=split)
            np.testing.assert_array_equal(np.asarray(t).reshape(1, -1, *ODD), pt.numpy())
            assert t.dtype == (jnp.complex128 if has_bands and not split else jnp.float64)


def test_pyr_to_tensor_errors_and_real_pyramids():
    pyr = SteerablePyramid(SQ, 2, 2, is_complex=False, downsample=False)
    x = image((3,) + SQ, dtype=np.float32)
    with strict():
        c = _jit(pyr.forward)(x)
        t, info = SteerablePyramid.convert_pyr_to_tensor(c)         # plenoptic's spelling
        assert t.shape == (3, 2 + 2 * 3, 16, 16) and t.dtype == jnp.float32
        assert isinstance(info, PyrTensorInfo)
        jax.tree.map(np.testing.assert_array_equal, pyr.convert_tensor_to_pyr(t, info), c)
        with pytest.raises(ValueError, match="split_complex=True but the bands are real"):
            convert_pyr_to_tensor(c, split_complex=True)
        with pytest.raises(ValueError, match="downsample=False"):
            convert_pyr_to_tensor(jax.eval_shape(pyr.replace(downsample=True).forward, x))
        with pytest.raises(ValueError, match="channels"):
            convert_tensor_to_pyr(t[..., 1:, :, :], info)


# ------------------------------------------------------------------ phase doubling, expand
@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_phase_matches_plenoptic_modulate_phase(dtype):
    torch = pytest.importorskip("torch")
    po = pytest.importorskip("plenoptic")
    rng = np.random.default_rng(3)
    cdt = np.result_type(dtype, np.complex64)
    z = (rng.standard_normal(64) + 1j * rng.standard_normal(64)).astype(cdt)
    z[:4] = 0
    factors = (2.0, 0.5, 3)

    @_jit
    def run(z):
        outs = [scale_phase(z, factor=k) for k in factors]
        g = jax.grad(lambda r: jnp.sum(jnp.real(scale_phase(jax.lax.complex(r, r), factor=2.0))))(
            jnp.real(z))
        return outs, [amplitude(o) for o in outs], phase(outs[-1]), g

    with precision(dtype):
        outs, amps, ph, g = run(z)
    for k, got, amp in zip(factors, outs, amps):
        assert got.dtype == cdt
        want = po.process.modulate_phase(torch.as_tensor(z), k).numpy()
        np.testing.assert_allclose(got, want, atol=tol(dtype, 1e-12, 1e-5))
        np.testing.assert_allclose(amp, np.abs(z), atol=tol(dtype, 1e-12, 1e-5))
    np.testing.assert_allclose(np.asarray(wrap_phase(ph[4:] - 3 * np.angle(z[4:]))), 0,
                               atol=tol(dtype, 1e-9, 1e-3))
    assert np.all(np.isfinite(np.asarray(g)))          # also where z == 0
    with pytest.raises(TypeError, match="complex"):
        scale_phase(np.ones(3), factor=2)


@pytest.mark.x64
@pytest.mark.parametrize("shape", [SQ, ODD, NONSQ], ids=lambda s: f"{s[0]}x{s[1]}")
def test_expand_interpolates_and_matches_plenoptic_on_bands(shape):
    torch = pytest.importorskip("torch")
    po = pytest.importorskip("plenoptic")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2,) + shape)
    z = x + 1j * rng.standard_normal((2,) + shape)
    even = shape[0] % 2 == 0 and shape[1] % 2 == 0
    pyr = SteerablePyramid(shape, 2, 3, masks="lut")

    @_jit
    def run(x, z, img):
        band = pyr.forward(img).bands[1]                              # (1, 1, 4, h, w)
        return ([expand(a, 2) for a in (x, z)], expand(x, 1.5 if even else 3), band,
                scale_phase(expand(band, 2) / 4.0, factor=2))

    with precision(np.float64):
        (ex, ez), e3, band, ours = run(x, z, image((1, 1) + shape))
        check_grads(jax.jit(lambda a: expand(a, 2)), (jnp.asarray(x[0]),), order=1,
                    modes=["rev"])
    for a, e in ((x, ex), (z, ez)):   # band-limited interpolation: samples kept, every size
        assert e.shape == (2, 2 * shape[0], 2 * shape[1]) and e.dtype == a.dtype
        np.testing.assert_allclose(e[..., ::2, ::2], a, atol=1e-12)
    assert e3.dtype == x.dtype and e3.shape[-1] == shape[1] * (1.5 if even else 3)
    if not even:
        return              # plenoptic's expand mishandles odd sizes (documented)
    # plenoptic's texture statistics: double the phase of an up-sampled coarse band
    tc = torch.as_tensor(np.array(band))
    theirs = po.process.modulate_phase(po.process.expand(tc, 2) / 4.0, 2).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-12 * np.abs(theirs).max())
    with pytest.raises(ValueError, match="greater than 1"):
        expand(x, 1)
    with pytest.raises(ValueError, match="whole number"):
        expand(np.ones((5, 5)), 1.5)


@pytest.mark.x64
# ------------------------------------------------------------------ the anchors' grid
@pytest.mark.parametrize("shape,twidth,order,kw", [
    (ODD, 1, 3, {}), ((31, 33), 1, 2, {"is_complex": False}),
    (NONSQ, 2, 3, {}), ((31, 33), 2, 1, {"tight_frame": True}),
    (ODD, 1, 1, {"downsample": False})], ids=["19x17", "31x33-real", "32x24-tw2",
                                             "31x33-tw2-tight", "19x17-nods"])
def test_peers_grid_reproduces_plenoptic_at_odd_sizes_and_wide_transitions(
        shape, twidth, order, kw):
    torch, _, ref = _plenoptic(shape, SteerablePyramid.max_height(shape), order,
                               twidth=twidth, **{"is_complex": True, **kw})
    pyr = SteerablePyramid(shape, "auto", order, twidth=twidth, masks="lut", grid="peers", **kw)
    x = image((1, 1) + shape)
    pc = ref.forward(torch.as_tensor(x))
    exact = pyr.replace(grid="centred", masks="closed")

    @_jit
    def run(x):
        c = pyr.forward(x)
        return c, pyr.inverse(c), exact.inverse(exact.forward(x))

    with precision(np.float64):
        c, rec, rec_exact = run(x)
    assert max_band_rel_err(to_plenoptic(c), {k: v.numpy() for k, v in pc.items()}) <= 1e-7
    # their reconstruction too (plenoptic accumulates in complex64)
    np.testing.assert_allclose(rec, ref.recon_pyr(pc).numpy(), atol=1e-6)
    # the default grid reconstructs these sizes exactly, the anchors' cannot
    np.testing.assert_allclose(rec_exact, x, atol=1e-12)
    assert float(np.abs(rec - x).max()) > 1e-3


@pytest.mark.x64
def test_peers_grid_matches_pyrtools_and_equals_the_default_at_even_sizes():
    pt = pytest.importorskip("pyrtools")
    x = image(ODD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # pyrtools warns on odd sizes
        ref = pt.pyramids.SteerablePyramidFreq(x, 2, 3, 1, is_complex=True)
    pyr = SteerablePyramid(ODD, 2, 3, masks="lut", grid="peers")
    peers, centred = SteerablePyramid(NONSQ, 2, 2, grid="peers"), SteerablePyramid(NONSQ, 2, 2)
    with precision(np.float64):
        c, a, b = _jit(lambda x, xe: (pyr.forward(x), peers.forward(xe), centred.forward(xe)))(
            x, image(NONSQ))
    assert max_band_rel_err(to_pyrtools(c), ref.pyr_coeffs) <= 1e-10
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, atol=1e-12)
    assert a.plan != b.plan                      # still distinct configurations
    with pytest.raises(ValueError, match="grid"):
        SteerablePyramid(ODD, grid="shifted")


@pytest.mark.x64
# ------------------------------------------------------------------ issue 19, case 12
def test_inverse_refuses_plain_tuples_from_another_plan():
    """Coefficients unpacked into a plain tuple lost their plan, so a differently
    configured pyramid synthesised them into a wrong image (error 0.66).  Now a
    TypeError naming the fix."""
    made = SteerablePyramid((32, 32), 3, 3, tight_frame=True)
    other = made.replace(tight_frame=False)
    x = image((32, 32))
    t = tuple(jax.eval_shape(made.forward, x))
    for p in (other, made):
        with pytest.raises(TypeError, match=r"plain tuple.*attach"):
            p.inverse(t)
        with pytest.raises(TypeError, match="attach"):
            jax.jit(p.inverse)(t)
    with pytest.raises(TypeError, match="plain list"):
        other.inverse(list(t))
    # the fixes the message names: keep the PyramidCoeffs, or state its pyramid
    rec = _jit(lambda x: made.inverse(made.attach(tuple(made.forward(x)))))(x)
    np.testing.assert_allclose(rec, x, atol=1e-12)
    with pytest.raises(ValueError, match="tight_frame"):
        other.inverse(made.attach(t))


# ------------------------------------------------------------------ caches in bytes
@pytest.fixture
def small_caches():
    old = cache_info()
    _pyramid_plan.PLAN_CACHE.clear()          # start empty: other tests in this process
    _pyramid_plan.ARRAYS_CACHE.clear()        # fill the caches in an order of their own
    set_cache_limits(plans=2 * 2 ** 20, arrays=1 * 2 ** 20)
    yield
    set_cache_limits(plans=old["plans"]["max_bytes"], arrays=old["arrays"]["max_bytes"])


def test_mask_caches_stay_under_their_byte_bounds(small_caches):
    x = image((40, 40), dtype=np.float32)
    pyrs = [SteerablePyramid((40, 40), h, o) for h in (1, 2, 3) for o in (1, 2, 3)]
    for p in pyrs:
        jax.eval_shape(p.forward, x)          # builds (or reuses) the masks
        info = cache_info()
        for name in ("plans", "arrays"):
            assert info[name]["bytes"] <= info[name]["max_bytes"], (name, info)
    assert sum(p._key() in _pyramid_plan.PLAN_CACHE._d for p in pyrs) < len(pyrs)  # evicted
    newest = pyrs[-1]._key()
    assert newest in _pyramid_plan.PLAN_CACHE._d          # least recently used goes first
    assert pyrs[0]._key() not in _pyramid_plan.PLAN_CACHE._d
    # evicted plans are rebuilt, identically
    np.testing.assert_allclose(_jit(lambda x: pyrs[0].inverse(pyrs[0].forward(x)))(x), x,
                               atol=1e-5)
    # one entry bigger than the budget is kept alone (never rebuilt on every call)
    set_cache_limits(plans=0)
    assert cache_info()["plans"]["entries"] == 1
    with pytest.raises(ValueError, match="plans"):
        set_cache_limits(plans=-1)


# ------------------------------------------------------------------ strict promotion
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [{}, {"tight_frame": True, "downsample": False},
                                {"is_complex": False, "order": 2},
                                {"grid": "peers", "masks": "lut"}],
                         ids=["default", "tight-nods", "real", "peers"])
def test_clean_under_strict_dtype_and_rank_promotion(kw, dtype):
    """Batched (rank 3) float32 and float64 images through every path, under
    ``jax_numpy_dtype_promotion="strict"`` and ``jax_numpy_rank_promotion="raise"``
    (implicit float * complex promotion used to raise there)."""
    pyr = SteerablePyramid(ODD, 2, **{"order": 1, **kw})
    x = image((2,) + ODD, dtype=dtype)

    def everything(x):
        c = pyr.forward(x)
        out = [pyr.inverse(c, synthesis=s) for s in ("real", "adjoint")]
        out.append(pyr.inverse(c, levels=[0, "residual_lowpass"], bands=[1]))
        out.append(jax.grad(lambda x: jnp.sum(pyr.inverse(pyr.forward(x)) ** 2))(x))
        out.append(jax.vmap(pyr.forward)(x))
        out.append(pyr.steer_coeffs(c, [0.1, 0.2]))
        out.append(convert_pyr_to_tensor(pyr.forward(x, scales=[1]))[0])
        if pyr.is_complex:
            out.append(scale_phase(expand(c.bands[1], 2), factor=2))
        return c, out

    with precision(dtype):                  # promotion errors are raised while tracing
        c, out = jax.eval_shape(everything, x)
    assert c.highpass.dtype == dtype and out[0].dtype == out[1].dtype == out[3].dtype == dtype


def test_flow_highpass_masks_live_in_the_byte_bounded_cache(small_caches):
    """The flow domain's K x H x W high-pass masks are counted in the pyramid's array
    cache (bounded in bytes), not kept in a cache bounded only by its entry count."""
    from lens_jax import flow

    pyr = SteerablePyramid((48, 48), 2, 3)
    ws, nom = flow._hp_masks(pyr)
    assert ws.shape == (4, 48, 48) and nom.shape == (4, 2)
    assert ("flow_hp_masks", pyr) in _pyramid_plan.ARRAYS_CACHE._d
    assert cache_info()["arrays"]["bytes"] >= ws.nbytes + nom.nbytes
    assert flow._hp_masks(pyr)[0] is ws                                 # reused
    for n in (40, 44, 52, 56):                                          # evicted in turn
        flow._hp_masks(SteerablePyramid((n, n), 2, 3))
        assert cache_info()["arrays"]["bytes"] <= cache_info()["arrays"]["max_bytes"]
    assert ("flow_hp_masks", pyr) not in _pyramid_plan.ARRAYS_CACHE._d
    np.testing.assert_array_equal(flow._hp_masks(pyr)[0], ws)           # rebuilt equal
