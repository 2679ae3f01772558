"""Tests for lens_jax.pyramid: analytic invariants plus the pyrtools / plenoptic anchors.

Invariants (exact reconstruction, Parseval energy, adjointness, steerability,
linearity of partial reconstructions) are checked on random [0, 1] images at even,
odd and non-square sizes; coefficients and syntheses are compared with pyrtools 1.1.1
and plenoptic 2.1.1 (float64) at these tolerances:
per band, max abs difference <= 1e-5 x the band's max with the closed-form masks,
<= 1e-7 x with ``masks="lut"``.  Anchors are compared at even sizes only (odd sizes
are a known anchor defect).
"""
import functools
import itertools
import math
import warnings
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from lens_jax.pyramid import (
    PyramidCoeffs,
    SteerablePyramid,
    amplitude,
    from_plenoptic,
    from_pyrtools,
    modulate_phase,
    phase,
    polar,
    to_plenoptic,
    to_pyrtools,
    wrap_phase,
)

# the anchors are compared in float64 (float32 paths cast explicitly): every test here runs
# with jax_enable_x64 (tests/conftest.py runs only marked tests so)
pytestmark = pytest.mark.x64

F64_RECON = 1e-12          # float64 perfect reconstruction, max abs, [0, 1] images
F32_RECON = 1e-5           # float32 perfect reconstruction
CLOSED_VS_ANCHOR = 1e-5    # per band, x band max (observed <= 5.5e-6)
LUT_VS_ANCHOR = 1e-7       # per band, x band max (observed ~1e-12 pyrtools, 3e-8 plenoptic)

# (order, is_complex, tight_frame, downsample): the real pyramid at order 0, complex 1..3
CONFIGS = [(o, o > 0, t, d) for o in (0, 1, 2, 3) for t in (False, True) for d in (True, False)]


def _cfg_id(cfg):
    o, cx, t, d = cfg
    return f"{'c' if cx else 'r'}{o}-{'tight' if t else 'std'}-{'ds' if d else 'nods'}"


def image(shape, seed=0, dtype=np.float64):
    """A [0, 1] test image: noise plus a smooth blob and an edge, so every band has content."""
    rng = np.random.default_rng(seed)
    h, w = shape[-2:]
    y, x = np.mgrid[:h, :w]
    smooth = np.exp(-((y - h / 3) ** 2 + (x - w / 2) ** 2) / (2 * (min(h, w) / 5) ** 2))
    edge = (x + 0.5 * y > 0.6 * w).astype(float)
    img = 0.4 * rng.uniform(size=shape) + 0.3 * smooth + 0.3 * edge
    return img.astype(dtype)


def random_coeffs(pyr, seed=0, lead=()):
    """Arbitrary (edited) coefficients: random real residuals and random complex bands."""
    rng = np.random.default_rng(seed)
    K = pyr.num_orientations

    def band(s):
        shape = lead + (K,) + tuple(s)
        b = rng.standard_normal(shape)
        return b + 1j * rng.standard_normal(shape) if pyr.is_complex else b

    return pyr.attach(PyramidCoeffs(rng.standard_normal(lead + pyr.image_shape),
                                    tuple(band(s) for s in pyr.band_shapes),
                                    rng.standard_normal(lead + tuple(pyr.lowpass_shape))))


def real_inner(a, b):
    """Real inner product of two pytrees: sum Re(conj(a) * b)."""
    return sum(float(np.sum(np.real(np.conj(np.asarray(u)) * np.asarray(v))))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def energy(c):
    return sum(float(np.sum(np.abs(np.asarray(v)) ** 2)) for v in jax.tree.leaves(c))


def max_band_rel_err(ours: dict, ref: dict) -> float:
    """max over bands of max|ours - ref| / max|ref|; the key sets must agree."""
    assert set(ours) == set(ref)
    errs = {}
    for k, r in ref.items():
        r = np.asarray(r)
        o = np.asarray(ours[k])
        assert o.shape == r.shape, (k, o.shape, r.shape)
        errs[k] = np.abs(o - r).max() / np.abs(r).max()
    return max(errs.values())


# Compiling a whole analysis/synthesis once is far cheaper than eager dispatch of each
# op, and compiling several plans in one program is cheaper than one program per plan.
# XLA's backend optimisations (which only make the program faster) would double the
# compile time that dominates this file: the helpers compile with them off.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@functools.partial(_jit, static_argnums=0)
def fwd(pyr, x):
    """Jitted analysis; ``pyr`` may be a plan or a tuple of plans (then a tuple out)."""
    if isinstance(pyr, tuple):
        return tuple(p.forward(x) for p in pyr)
    return pyr.forward(x)


@functools.partial(_jit, static_argnames=("pyr", "synthesis", "levels", "bands"))
def _inv(c, *, pyr, synthesis, levels, bands):
    return pyr.inverse(c, synthesis=synthesis, levels=levels, bands=bands)


def inv(pyr, c, synthesis=None, levels="all", bands="all"):
    """Jitted synthesis; ``levels`` / ``bands`` lists become (hashable) tuples."""
    tup = lambda v: v if isinstance(v, str) else tuple(v)
    return _inv(c, pyr=pyr, synthesis=synthesis, levels=tup(levels), bands=tup(bands))


@functools.partial(_jit, static_argnums=0)
def _roundtrips(pairs, xs):
    """Per (plan, image index): max abs error of both syntheses, coefficient energy."""
    out = []
    for pyr, j in pairs:
        x = xs[j]
        c = pyr.forward(x)
        errs = [jnp.max(jnp.abs(pyr.inverse(c, synthesis=s) - x)).astype(jnp.float64)
                for s in ("real", "adjoint")]
        out.append(jnp.stack(errs + [sum(jnp.sum(jnp.abs(v).astype(jnp.float64) ** 2)
                                         for v in jax.tree.leaves(c))]))
    return jnp.stack(out)


def assert_reconstructs(pyrs, xs, atols=None, pairs=None):
    """Both synthesis operators invert the analysis (max abs <= F64_RECON / F32_RECON by
    dtype) for every plan in ``pyrs`` and image in ``xs`` (or the ``(plan index, image
    index)`` ``pairs``), compiled as one program.  Returns the energy ratios
    ||coeffs||^2 / ||x||^2 (NaN for pairs not run), shape (len(pyrs), len(xs))."""
    pyrs = pyrs if isinstance(pyrs, tuple) else (pyrs,)
    xs = xs if isinstance(xs, tuple) else (xs,)
    if pairs is None:
        pairs = list(itertools.product(range(len(pyrs)), range(len(xs))))
    res = np.asarray(_roundtrips(tuple((pyrs[i], j) for i, j in pairs), xs))
    ratios = np.full((len(pyrs), len(xs)), np.nan)
    for (i, j), r in zip(pairs, res, strict=True):
        x = xs[j]
        atol = atols[j] if atols else (F64_RECON if x.dtype == np.float64 else F32_RECON)
        assert r[:2].max() <= atol, (pyrs[i], x.dtype, dict(zip(("real", "adjoint"), r[:2])))
        ratios[i, j] = r[2] / float(np.sum(np.square(x, dtype=np.float64)))
    return ratios


# ------------------------------------------------------------------ perfect reconstruction
SMALL_SWEEP = (33, 47)
SWEEP_HEIGHTS = {(100, 200): (1, 2, 3, 4), (128, 256): (1, 2, 3, 4, 5),
                 (255, 255): (1, 3, 5), (256, 256): (1, 3, 4, 6)}


def _large_cases():
    """One config per (size, height) at the larger sizes, all 16 configs used once."""
    cases = [(shape, h) for shape, hs in SWEEP_HEIGHTS.items() for h in hs]
    assert len(cases) == len(CONFIGS)
    return [(shape, h, CONFIGS[(7 * i) % len(CONFIGS)]) for i, (shape, h) in enumerate(cases)]


@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("height", [1, 2, 3])
def test_perfect_reconstruction_all_configs_small(height, order):
    """33x47 (odd, non-square), every height, order, tight/not, downsample/not, both
    syntheses; float64 <= 1e-12, float32 <= 1e-5 (on [0, 1] images)."""
    pyrs = tuple(SteerablePyramid(SMALL_SWEEP, height, order, is_complex=order > 0,
                                  tight_frame=t, downsample=d)
                 for t in (False, True) for d in (True, False))
    x = image(SMALL_SWEEP, seed=height)
    # float64 for all four; float32 for two of them (the larger sizes all run float32)
    pairs = [(0, 0), (1, 0), (2, 0), (3, 0), (height % 2, 1), (2 + (height + order) % 2, 1)]
    ratios = assert_reconstructs(pyrs, (x, x.astype(np.float32)), pairs=pairs)
    for pyr, r in zip(pyrs, ratios):
        if pyr.tight_frame:
            assert abs(r[0] - 1) <= 1e-12


@pytest.mark.parametrize("shape,height,cfg", _large_cases(),
                         ids=[f"{a}x{b}-h{h}-{_cfg_id(c)}" for (a, b), h, c in _large_cases()])
def test_perfect_reconstruction(shape, height, cfg):
    order, is_complex, tight, down = cfg
    pyr = SteerablePyramid(shape, height, order, is_complex=is_complex, tight_frame=tight,
                           downsample=down)
    x = image(shape, seed=height)
    ratio = assert_reconstructs(pyr, (x, x.astype(np.float32)))[0, 0]
    if tight:
        assert abs(ratio - 1) <= 1e-12


def test_large_sweep_covers_all_configs():
    assert {cfg for _, _, cfg in _large_cases()} == set(CONFIGS)
    assert {s for s, _, _ in _large_cases()} == set(SWEEP_HEIGHTS)
    for shape in [(100, 200), (128, 256)]:     # all heights at the mid sizes too
        assert set(SWEEP_HEIGHTS[shape]) == set(range(1, SteerablePyramid.max_height(shape) + 1))


@pytest.mark.parametrize("shape", [(64, 64), (33, 47)])
def test_perfect_reconstruction_lut_masks_at_anchor_level(shape):
    # the anchors' LUT masks break lo^2 + hi^2 = 1 by ~1e-5: reconstruction at their level
    assert_reconstructs(SteerablePyramid(shape, masks="lut"), image(shape), atols=(2e-5,))


def test_closed_masks_are_a_partition_of_unity():
    f = SteerablePyramid((64, 48), 3).filters()
    np.testing.assert_allclose(f["hi0"] ** 2 + f["lo0"] ** 2, 1.0, atol=1e-15)
    lut = SteerablePyramid((64, 48), 3, masks="lut").filters()
    gap = np.abs(lut["hi0"] ** 2 + lut["lo0"] ** 2 - 1).max()
    assert 1e-7 < gap < 2e-5          # the anchors' documented defect, reproduced in lut mode


def test_band_shapes_follow_the_anchor_crop_rule():
    pyr = SteerablePyramid((255, 100), "auto")
    assert pyr.height == SteerablePyramid.max_height((255, 100)) == 4
    shapes, cur = [], (255, 100)
    for _ in range(pyr.height):
        shapes.append(cur)
        cur = tuple(math.ceil((n - 0.5) / 2) for n in cur)
    assert pyr.band_shapes == tuple(shapes)
    assert pyr.lowpass_shape == cur
    nods = pyr.replace(downsample=False)
    assert nods.band_shapes == ((255, 100),) * 4 and nods.lowpass_shape == (255, 100)


# ------------------------------------------------------------------ pyrtools anchor
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("shape", [(256, 256), (128, 256), (100, 200), (240, 320)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_matches_pyrtools_complex(shape, order):
    pt = pytest.importorskip("pyrtools")
    x = image(shape, seed=order)
    height = (2, SteerablePyramid.max_height(shape), 3)[order - 1]   # a couple of heights
    ref = pt.pyramids.SteerablePyramidFreq(x, height, order, 1, is_complex=True)
    pyrs = tuple(SteerablePyramid(shape, height, order, masks=m) for m in ("closed", "lut"))
    for c, tol in zip(fwd(pyrs, x), (CLOSED_VS_ANCHOR, LUT_VS_ANCHOR)):
        assert c.bands[0].dtype == jnp.complex128
        err = max_band_rel_err(to_pyrtools(c), ref.pyr_coeffs)
        assert err <= tol, (height, tol, err)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_matches_pyrtools_real(order):
    pt = pytest.importorskip("pyrtools")
    shape = (128, 256)
    x = image(shape, seed=10 + order)
    ref = pt.pyramids.SteerablePyramidFreq(x, 3, order, 1, is_complex=False)
    pyrs = tuple(SteerablePyramid(shape, 3, order, is_complex=False, masks=m)
                 for m in ("closed", "lut"))
    for c, tol in zip(fwd(pyrs, x), (CLOSED_VS_ANCHOR, LUT_VS_ANCHOR)):
        assert c.bands[0].dtype == jnp.float64
        assert max_band_rel_err(to_pyrtools(c), ref.pyr_coeffs) <= tol


@pytest.mark.parametrize("is_complex,order", [(True, 1), (True, 3), (False, 2)])
def test_real_synthesis_matches_pyrtools_on_arbitrary_coefficients(is_complex, order):
    # the "real" synthesis is the anchors' recon_pyr, also on edited coefficients
    pt = pytest.importorskip("pyrtools")
    shape = (100, 200)
    pyr = SteerablePyramid(shape, 3, order, is_complex=is_complex, masks="lut")
    c = random_coeffs(pyr, seed=order)
    ref = pt.pyramids.SteerablePyramidFreq(image(shape), 3, order, 1, is_complex=is_complex)
    ref.pyr_coeffs = to_pyrtools(c)
    want = ref.recon_pyr()
    got = np.asarray(inv(pyr, c, synthesis="real"))
    assert np.abs(got - want).max() <= 1e-10 * np.abs(want).max()


# ------------------------------------------------------------------ plenoptic anchor
PLENOPTIC_MODES = {"default": {}, "tight": {"tight_frame": True},
                   "nodownsample": {"downsample": False}}


def _plenoptic(shape, height, order, **kw):
    torch = pytest.importorskip("torch")
    po = pytest.importorskip("plenoptic")
    return torch, po.process.SteerablePyramidFreq(shape, height, order, is_complex=True,
                                                  **kw).to(torch.float64)


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("mode", list(PLENOPTIC_MODES))
def test_matches_plenoptic(mode, order):
    kw = PLENOPTIC_MODES[mode]
    shape = (64, 96) if order == 1 else (128, 128)
    torch, ref_pyr = _plenoptic(shape, 3, order, **kw)
    x = image((2, 1) + shape, seed=order)              # plenoptic needs (B, C, H, W)
    ref = ref_pyr(torch.as_tensor(x))
    pyrs = tuple(SteerablePyramid(shape, 3, order, masks=m, **kw) for m in ("closed", "lut"))
    for c, tol in zip(fwd(pyrs, x), (CLOSED_VS_ANCHOR, LUT_VS_ANCHOR)):
        ours = to_plenoptic(c)
        assert list(ours) == list(ref)                   # same keys, same order
        err = max_band_rel_err(ours, {k: v.numpy() for k, v in ref.items()})
        assert err <= tol, (tol, err)


@pytest.mark.parametrize("mode", list(PLENOPTIC_MODES))
def test_partial_real_synthesis_matches_plenoptic(mode):
    # plenoptic's float64 inverse runs through a complex64 buffer (anchor defect): 1e-6
    kw = PLENOPTIC_MODES[mode]
    shape = (64, 96)
    torch, ref_pyr = _plenoptic(shape, 3, 2, **kw)
    ref_pyr(torch.zeros((1, 1) + shape, dtype=torch.float64))   # sets pyr_size
    pyr = SteerablePyramid(shape, 3, 2, masks="lut", **kw)
    c = random_coeffs(pyr, seed=3, lead=(1, 2))
    ref_c = OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in to_plenoptic(c).items())
    for levels, bands in [("all", "all"), ([0], "all"), ([1, "residual_lowpass"], [0, 2]),
                          (["residual_highpass"], "all"), ([0, 2], [1])]:
        want = ref_pyr.recon_pyr(ref_c, levels=levels, bands=bands).numpy()
        got = np.asarray(inv(pyr, c, synthesis="real", levels=levels, bands=bands))
        assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max(), (levels, bands)


def test_plenoptic_converters_round_trip():
    pyr = SteerablePyramid((32, 48), 2, 1)
    c = fwd(pyr, image((2, 3, 32, 48)))
    d = to_plenoptic(c)
    assert list(d) == ["residual_highpass", 0, 1, "residual_lowpass"]
    assert d[0].shape == (2, 3, 2, 32, 48) and d[1].shape == (2, 3, 2, 16, 24)
    back = from_plenoptic(d, pyramid=pyr)
    jax.tree.map(np.testing.assert_array_equal, back, c)
    assert from_plenoptic(d).plan is None
    torch = pytest.importorskip("torch")
    back_t = from_plenoptic(OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in d.items()),
                            pyramid=pyr)
    jax.tree.map(np.testing.assert_array_equal, back_t, c)
    with pytest.raises(ValueError, match="B, C, H, W"):
        to_plenoptic(jax.eval_shape(pyr.forward, jax.ShapeDtypeStruct((32, 48), np.float64)))


# ------------------------------------------------------------------ tight frame, adjoint
TIGHT_CASES = [((32, 32), 3, True, None), ((33, 47), 1, True, None), ((48, 40), 0, False, None),
               ((31, 30), 2, False, None), ((40, 40), 3, True, 6), ((33, 47), 1, True, 4)]


@pytest.mark.parametrize("down", [True, False], ids=["ds", "nods"])
@pytest.mark.parametrize("shape,order,is_complex,K", TIGHT_CASES, ids=[
    f"{a}x{b}-{'c' if cx else 'r'}{o}-K{k or o + 1}" for (a, b), o, cx, k in TIGHT_CASES])
def test_tight_frame_energy_and_adjoint(shape, order, is_complex, K, down):
    pyr = SteerablePyramid(shape, "auto", order, is_complex=is_complex, tight_frame=True,
                           downsample=down, num_orientations=K)
    x = jnp.asarray(image(shape, seed=order))
    c = jax.tree.map(jnp.asarray, random_coeffs(pyr, seed=1))

    @_jit
    def run(x, c):
        Tx, vjp = jax.vjp(pyr.forward, x)
        (g,) = vjp(jax.tree.map(jnp.conj, c))
        return Tx, pyr.adjoint(c), g, pyr.adjoint(Tx), pyr.inverse(Tx, synthesis="real")

    Tx, Tsc, g, TsTx, rec = run(x, c)
    # Parseval: ||h||^2 + sum |c|^2 + ||l||^2 == ||x||^2
    assert abs(energy(Tx) / float(jnp.sum(x * x)) - 1) <= 1e-12
    # <T x, c>_R == <x, T* c> for arbitrary complex c
    scale = math.sqrt(energy(c) * float(jnp.sum(x * x)))
    assert abs(real_inner(Tx, c) - float(jnp.sum(x * Tsc))) <= 1e-12 * scale
    # the VJP of the analysis is the adjoint synthesis: vjp(conj g) == T* g
    np.testing.assert_allclose(g, Tsc, atol=1e-12 * float(jnp.abs(Tsc).max()))
    # T* T = I, and the "real" synthesis inverts too
    np.testing.assert_allclose(TsTx, x, atol=F64_RECON)
    np.testing.assert_allclose(rec, x, atol=F64_RECON)


def test_real_synthesis_is_not_the_adjoint_on_edited_coefficients():
    # the anchors' inverse ignores Im(c); the adjoint (exact VJP of the analysis) does not
    pyr = SteerablePyramid((32, 32), 2, 3, tight_frame=True)
    c = random_coeffs(pyr, seed=2)
    c_re = c._replace(bands=tuple(np.real(b) + 0j for b in c.bands))
    np.testing.assert_allclose(inv(pyr, c, "real"), inv(pyr, c_re, "real"), atol=1e-13)
    real, adj = inv(pyr, c, "real"), inv(pyr, c, "adjoint")
    assert float(jnp.linalg.norm(real - adj) / jnp.linalg.norm(adj)) > 0.1


# ------------------------------------------------------------------ real vs complex bands
@pytest.mark.parametrize("tight,down,masks,orders", [
    (False, True, "closed", (1, 2, 3)), (False, True, "lut", (2,)),
    (True, True, "closed", (3,)), (False, False, "closed", (1,))])
def test_real_part_of_complex_band_is_the_real_band(tight, down, masks, orders):
    shape = (64, 96)
    x = image(shape, seed=4)
    for order in orders:
        kw = dict(tight_frame=tight, downsample=down, masks=masks)
        cc = fwd(SteerablePyramid(shape, 3, order, is_complex=True, **kw), x)
        cr = fwd(SteerablePyramid(shape, 3, order, is_complex=False, **kw), x)
        scale = math.sqrt(2) if tight else 1.0          # tight complex bands are / sqrt(2)
        for bc, br in zip(cc.bands, cr.bands, strict=True):
            np.testing.assert_allclose(scale * np.real(bc), br, atol=1e-12 * np.abs(br).max())
        np.testing.assert_allclose(cc.highpass, cr.highpass, atol=1e-15)
        np.testing.assert_allclose(cc.lowpass, cr.lowpass, rtol=1e-13)


# ------------------------------------------------------------------ transformations
SMALL = (32, 32)


def test_check_grads_forward_and_both_syntheses():
    pyr = SteerablePyramid(SMALL, 2, 1)
    x = jnp.asarray(image(SMALL))
    check_grads(jax.jit(pyr.forward), (x,), order=1, modes=["fwd", "rev"])
    c = jax.tree.map(jnp.asarray, random_coeffs(pyr, seed=5))
    for synthesis in ("real", "adjoint"):
        check_grads(jax.jit(functools.partial(pyr.inverse, synthesis=synthesis)), (c,),
                    order=1, modes=["fwd", "rev"])
    # a scalar through both: d/dx sum(inverse(forward(x))^2) = 2 x (perfect reconstruction)
    grads = _jit(lambda x: [
        jax.grad(lambda x: jnp.sum(pyr.inverse(pyr.forward(x), synthesis=s) ** 2))(x)
        for s in ("real", "adjoint")])(x)
    for g in grads:
        np.testing.assert_allclose(g, 2 * x, atol=1e-12)


def test_jit_matches_eager():
    pyr = SteerablePyramid((24, 36), 2, 2)
    x = image((24, 36))
    c_eager, c_jit = pyr.forward(x), jax.jit(pyr.forward)(x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-14),
                 c_eager, c_jit)
    for synthesis in ("real", "adjoint"):
        syn = lambda c, s=synthesis: pyr.inverse(c, synthesis=s)
        np.testing.assert_allclose(syn(c_eager), jax.jit(syn)(c_eager), atol=1e-14)


def test_an_eager_call_is_one_compiled_program_per_plan_and_shape():
    """Called eagerly, forward and inverse each run as one compiled program (they used to
    dispatch -- and compile -- each of their ~60 operations alone); an equal pyramid built
    again, and a second image of the same shape, compile nothing new; an inverse with a
    different static option (levels) is its own program."""
    import collections

    import jax.monitoring as mon
    compiles = collections.Counter()

    def count(name, secs, **kw):     # every program lowered (compiled or read from a cache)
        if name == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            compiles["n"] += 1
    x = jnp.asarray(image((37, 29)), jnp.float32)            # a shape no other test uses
    half = jnp.asarray(np.asarray(x) * 0.5)
    mon.register_event_duration_secs_listener(count)
    try:
        pyr = SteerablePyramid((37, 29), height=2, order=3)
        pyr.inverse(pyr.forward(x))
        first = compiles["n"]
        assert first == 2, first                              # forward, inverse
        again = SteerablePyramid((37, 29), height=2, order=3)
        y = again.inverse(again.forward(half))
        assert compiles["n"] == first
        partial = again.inverse(again.forward(x), levels=[0, "residual_lowpass"])
        assert compiles["n"] == first + 1
        np.testing.assert_allclose(np.asarray(y), np.asarray(x) * 0.5, atol=2e-6)
        assert partial.shape == x.shape
    finally:
        mon.unregister_event_duration_listener(count)
    # under a transformation both are traced inline into the caller's program (no nested
    # compiled call: a user's jit compiles what it compiled before)
    jaxpr = jax.make_jaxpr(lambda z: pyr.inverse(pyr.forward(z)))(x)
    names = {str(e.params.get("name")) for e in jaxpr.eqns if e.primitive.name in ("pjit", "jit")}
    assert not names & {"_forward", "_inverse"}, names


def test_vmap_and_leading_dims_match_per_image():
    pyr = SteerablePyramid((24, 40), 2, 3)
    xs = image((2, 3, 24, 40), seed=6)
    per = [[fwd(pyr, xs[i, j]) for j in range(3)] for i in range(2)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *[jax.tree.map(lambda *b: jnp.stack(b), *row)
                                                      for row in per])
    batched = fwd(pyr, xs)
    vmapped = _jit(jax.vmap(jax.vmap(pyr.forward)))(xs)
    for got in (batched, vmapped):
        assert jax.tree.structure(got) == jax.tree.structure(stacked)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-14), got, stacked)
    assert batched.bands[1].shape == (2, 3, 4, 12, 20)
    for synthesis in ("real", "adjoint"):
        rec = inv(pyr, batched, synthesis)
        rec_v = _jit(jax.vmap(functools.partial(pyr.inverse, synthesis=synthesis)))(batched)
        assert rec.shape == xs.shape
        np.testing.assert_allclose(rec, xs, atol=F64_RECON)
        np.testing.assert_allclose(rec_v, rec, atol=1e-14)
        np.testing.assert_allclose(
            rec[1, 2], inv(pyr, jax.tree.map(lambda a: a[1, 2], batched), synthesis), atol=1e-14)


# ------------------------------------------------------------------ dtypes
def test_float64_and_float32_dtypes():
    pyr = SteerablePyramid((32, 48), 2, 1)
    for dt, cdt in ((np.float64, jnp.complex128), (np.float32, jnp.complex64)):
        c = jax.eval_shape(pyr.forward, jax.ShapeDtypeStruct((32, 48), dt))
        assert c.highpass.dtype == dt and c.lowpass.dtype == dt
        assert all(b.dtype == cdt for b in c.bands)
        for synthesis in ("real", "adjoint"):
            assert jax.eval_shape(functools.partial(pyr.inverse, synthesis=synthesis),
                                  c).dtype == dt
    creal = jax.eval_shape(pyr.replace(is_complex=False).forward,
                           jax.ShapeDtypeStruct((32, 48), np.float32))
    assert all(b.dtype == jnp.float32 for b in creal.bands)
    ints = jax.eval_shape(pyr.forward, jax.ShapeDtypeStruct((32, 48), np.uint8))
    assert ints.highpass.dtype == jnp.float32 and ints.bands[0].dtype == jnp.complex64


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_inputs_are_computed_in_float32(dtype):
    pyr = SteerablePyramid((32, 48), 2, 3)
    x = jnp.asarray(image((32, 48)), dtype)
    c = fwd(pyr, x)
    assert c.highpass.dtype == jnp.float32 and c.bands[0].dtype == jnp.complex64
    rec = inv(pyr, c)
    assert rec.dtype == jnp.float32
    # computed in float32 from the rounded input: float32-level error, well inside 1e-2
    assert float(jnp.max(jnp.abs(rec - x.astype(jnp.float32)))) <= F32_RECON
    g = _jit(jax.grad(lambda x: jnp.sum(pyr.inverse(pyr.forward(x)) ** 2)))(x)
    assert g.dtype == dtype
    np.testing.assert_allclose(g.astype(np.float32), 2 * x.astype(np.float32), atol=2e-2)


# ------------------------------------------------------------------ more orientations
def _steering_weights(order, src_angles, theta):
    """w with cos^n(phi - theta) == sum_b w_b cos^n(phi - theta_b) for all phi."""
    phi = np.linspace(0, 2 * np.pi, 257)[:-1]
    A = np.cos(phi[:, None] - np.asarray(src_angles)[None, :]) ** order
    w, *_ = np.linalg.lstsq(A, np.cos(phi - theta) ** order, rcond=None)
    assert np.abs(A @ w - np.cos(phi - theta) ** order).max() < 1e-12
    return w


@pytest.mark.parametrize("order,K,K_target", [(3, 8, 6), (3, 6, 4), (1, 4, 3)])
def test_more_orientations_than_order_plus_one(order, K, K_target):
    shape = (48, 64)
    x = image(shape, seed=K)
    pyr = SteerablePyramid(shape, 3, order, num_orientations=K)
    tight = pyr.replace(tight_frame=True)
    ratios = assert_reconstructs((pyr, tight), x)
    assert abs(ratios[1, 0] - 1) <= 1e-12
    # steerable: the K bands (real parts) synthesise the band at any other angle, here
    # those of a K_target pyramid (angular gain sqrt(const) ~ 1/sqrt(K))
    c, target, real_src = fwd((pyr, pyr.replace(num_orientations=K_target),
                               pyr.replace(is_complex=False)), x)
    assert c.bands[0].shape == (K, 48, 64) and real_src.bands[2].shape == (K, 12, 16)
    for s in range(3):
        for b in range(K_target):
            w = _steering_weights(order, np.pi * np.arange(K) / K, np.pi * b / K_target)
            steered = np.sqrt(K / K_target) * np.tensordot(w, np.real(c.bands[s]), axes=(0, 0))
            want = np.real(target.bands[s][b])
            np.testing.assert_allclose(steered, want, atol=1e-12 * np.abs(want).max())
            steered_r = np.sqrt(K / K_target) * np.tensordot(w, real_src.bands[s], axes=(0, 0))
            np.testing.assert_allclose(steered_r, want, atol=1e-12 * np.abs(want).max())


# ------------------------------------------------------------------ partial reconstruction
@pytest.mark.parametrize("synthesis", ["real", "adjoint"])
@pytest.mark.parametrize("tight,down", [(False, True), (True, False)])
def test_partial_reconstructions_sum_to_the_whole(synthesis, tight, down):
    pyr = SteerablePyramid((40, 48), 3, 2, tight_frame=tight, downsample=down)
    c = random_coeffs(pyr, seed=7)        # linearity holds for any coefficients
    residuals = ["residual_highpass", "residual_lowpass"]

    @_jit                              # one compile for all the partial syntheses
    def parts(c):
        rec = functools.partial(pyr.inverse, c, synthesis=synthesis)
        return dict(
            full=rec(),
            by_level=sum(rec(levels=[lv]) for lv in list(range(pyr.height)) + residuals),
            by_band=sum(rec(levels=[0, 1, 2], bands=[b]) for b in range(3))
            + rec(levels=residuals),
            subsets=rec(bands=[0, 2]) + rec(levels=(0, 1, 2), bands=(1,)),
            nothing=rec(levels=[]))

    out = parts(c)
    for key in ("by_level", "by_band", "subsets"):
        np.testing.assert_allclose(out[key], out["full"], atol=1e-12, err_msg=key)
    np.testing.assert_array_equal(out["nothing"], 0.0)


# ------------------------------------------------------------------ amplitude / phase
def test_amplitude_phase_helpers():
    rng = np.random.default_rng(8)
    c = jnp.asarray(rng.standard_normal(50) + 1j * rng.standard_normal(50)).at[:5].set(0)
    a, p = amplitude(c), phase(c)
    np.testing.assert_allclose(a, np.abs(c), atol=1e-15)
    np.testing.assert_allclose(p[5:], np.angle(c[5:]), atol=1e-15)
    assert np.all(p[:5] == 0) and np.all(a[:5] == 0)
    np.testing.assert_allclose(polar(a, p), c, atol=1e-15)
    # finite gradients at zero amplitude (|c| and angle are not differentiable there)
    for f in (amplitude, phase):
        for part in (lambda z: z, jnp.real, jnp.imag):
            g = jax.grad(lambda z, f=f, part=part: jnp.sum(part(f(z))))(c)
            assert bool(jnp.all(jnp.isfinite(g))), f.__name__
            assert np.all(np.asarray(g)[:5] == 0)
    gz = jax.grad(lambda r: amplitude(r + 0j))(0.0)
    assert np.isfinite(gz)
    # float32 keeps float32
    c32 = c.astype(jnp.complex64)
    assert amplitude(c32).dtype == jnp.float32 and phase(c32).dtype == jnp.float32
    # wrap_phase lands in [-pi, pi) and only adds multiples of 2 pi
    ph = jnp.linspace(-20, 20, 1001)
    w = wrap_phase(ph)
    assert float(w.min()) >= -np.pi and float(w.max()) < np.pi
    np.testing.assert_allclose(np.cos(w), np.cos(ph), atol=1e-12)
    np.testing.assert_allclose(np.sin(w), np.sin(ph), atol=1e-12)
    # modulate_phase keeps the amplitude and adds the phase
    d = jnp.asarray(rng.uniform(-3, 3, 50))
    m = modulate_phase(c, d)
    np.testing.assert_allclose(amplitude(m), amplitude(c), atol=1e-14)
    np.testing.assert_allclose(wrap_phase(phase(m[5:]) - phase(c[5:]) - d[5:]), 0, atol=1e-12)


# ------------------------------------------------------------------ pytrees, plans
def test_coefficients_are_a_pytree_and_the_plan_is_hashable():
    pyr = SteerablePyramid((32, 48), 3, 1)
    c = fwd(pyr, image((32, 48)))
    assert len(jax.tree.leaves(c)) == 2 + pyr.height
    doubled = jax.tree.map(lambda a: 2 * a, c)
    assert isinstance(doubled, PyramidCoeffs)
    np.testing.assert_allclose(inv(pyr, doubled), 2 * inv(pyr, c), atol=1e-14)
    # equal plans are equal and hash equal; any option changes identity
    same = SteerablePyramid([32, 48], np.int64(3), 1, twidth=1.0)
    assert same == pyr and hash(same) == hash(pyr)
    assert len({pyr, same, pyr.replace(synthesis="adjoint"), pyr.replace(masks="lut")}) == 3
    assert pyr != pyr.replace(tight_frame=True) and pyr.replace() == pyr
    assert jax.tree.leaves(pyr) == []
    # as an ordinary jit argument (leafless pytree) and as a static argument
    f = jax.jit(lambda p, x: p.inverse(p.forward(x)))
    g = jax.jit(lambda p, x: p.inverse(p.forward(x)), static_argnums=0)
    x = image((32, 48))
    np.testing.assert_allclose(f(pyr, x), x, atol=F64_RECON)
    np.testing.assert_allclose(g(same, x), x, atol=F64_RECON)
    h = jax.jit(lambda p, c: p.adjoint(c))
    tight = pyr.replace(tight_frame=True)
    np.testing.assert_allclose(h(tight, fwd(tight, x)), x, atol=F64_RECON)
    # plan round-trips through flatten / unflatten
    leaves, tree = jax.tree.flatten(pyr.replace(num_orientations=5, synthesis="adjoint"))
    assert jax.tree.unflatten(tree, leaves) == pyr.replace(num_orientations=5, synthesis="adjoint")
    # plan.synthesis is the default operator of inverse()
    ca = random_coeffs(pyr, seed=9)
    np.testing.assert_array_equal(inv(pyr.replace(synthesis="adjoint"), ca),
                                  inv(pyr, ca, synthesis="adjoint"))


def test_stack_without_downsampling():
    pyr = SteerablePyramid((32, 40), 3, 1, downsample=False)
    c = fwd(pyr, image((2, 32, 40)))
    s = c.stack()
    assert s.shape == (2, 3, 2, 32, 40)
    np.testing.assert_array_equal(s[:, 1], c.bands[1])
    with pytest.raises(ValueError, match="equal band sizes"):
        fwd(pyr.replace(downsample=True), image((32, 40))).stack()


def test_pyrtools_converters_round_trip():
    pyr = SteerablePyramid((32, 48), 3, 2)
    c = fwd(pyr, image((32, 48)))
    d = to_pyrtools(c)
    assert set(d) == {"residual_highpass", "residual_lowpass"} | set(
        itertools.product(range(3), range(3)))
    assert d[(1, 2)].shape == (16, 24)
    jax.tree.map(np.testing.assert_array_equal, from_pyrtools(d, 3, 3, pyramid=pyr), c)
    back = from_pyrtools(d, 3, 3)                 # no identity: any plan of these shapes
    assert back.plan is None
    np.testing.assert_allclose(inv(pyr, back), inv(pyr, c), atol=1e-14)
    with pytest.raises(ValueError, match="single"):
        to_pyrtools(jax.eval_shape(pyr.forward, jax.ShapeDtypeStruct((2, 32, 48), np.float64)))


# ------------------------------------------------------------------ errors
def test_bad_plans_raise_value_errors():
    with pytest.raises(ValueError, match="image_shape"):
        SteerablePyramid((32, 32, 3))
    with pytest.raises(ValueError, match="at least 4"):
        SteerablePyramid((3, 32))
    with pytest.raises(ValueError, match=r"height=6 .*maximum 5"):
        SteerablePyramid((128, 200), 6)
    with pytest.raises(ValueError, match="height"):
        SteerablePyramid((128, 200), -1)
    with pytest.raises(ValueError, match="height"):
        SteerablePyramid((128, 200), 2.0)
    for order in (-1, 16, 1.5, True):
        with pytest.raises(ValueError, match="order"):
            SteerablePyramid((64, 64), 2, order)
    with pytest.raises(ValueError, match="order=0.*complex"):
        SteerablePyramid((64, 64), 2, 0, is_complex=True)
    with pytest.raises(ValueError, match="num_orientations"):
        SteerablePyramid((64, 64), 2, 3, num_orientations=3)
    with pytest.raises(ValueError, match="twidth"):
        SteerablePyramid((64, 64), 2, twidth=0)
    with pytest.raises(ValueError, match="masks"):
        SteerablePyramid((64, 64), 2, masks="cubic")
    with pytest.raises(ValueError, match="synthesis"):
        SteerablePyramid((64, 64), 2, synthesis="pinv")


def test_bad_inputs_raise_value_errors():
    pyr = SteerablePyramid((32, 48), 2, 1)
    with pytest.raises(ValueError, match="rank"):
        pyr.forward(np.zeros(48))
    with pytest.raises(ValueError, match="does not match"):
        pyr.forward(np.zeros((48, 32)))
    with pytest.raises(ValueError, match="real images"):
        pyr.forward(np.zeros((32, 48), np.complex128))
    x = image((32, 48))
    c = fwd(pyr, x)
    with pytest.raises(ValueError, match="3 scales.*has 2"):
        pyr.inverse(c._replace(bands=c.bands + (c.bands[-1],)))
    with pytest.raises(ValueError, match="band 1 has shape"):
        pyr.inverse(c._replace(bands=(c.bands[0], c.bands[1][..., :-1, :])))
    with pytest.raises(ValueError, match="band 0 has shape"):
        pyr.inverse(c._replace(bands=(c.bands[0][:1], c.bands[1])))   # wrong K
    with pytest.raises(ValueError, match="highpass shape"):
        pyr.inverse(c._replace(highpass=c.highpass[:-1]))
    with pytest.raises(ValueError, match="lowpass has shape"):
        pyr.inverse(c._replace(lowpass=c.lowpass[:-1]))
    with pytest.raises(TypeError, match="PyramidCoeffs"):
        pyr.inverse({"residual_highpass": c.highpass})
    with pytest.raises(ValueError, match="synthesis"):
        pyr.inverse(c, synthesis="pinv")
    with pytest.raises(ValueError, match="unknown level 2"):
        pyr.inverse(c, levels=[2])
    with pytest.raises(ValueError, match="unknown level"):
        pyr.inverse(c, levels=["residual_bandpass"])
    with pytest.raises(ValueError, match="levels"):
        pyr.inverse(c, levels="some")
    with pytest.raises(ValueError, match="band 2 out of range"):
        pyr.inverse(c, bands=[2])
    with pytest.raises(ValueError, match="band -1 out of range"):
        pyr.inverse(c, bands=[-1])
    with pytest.raises(ValueError, match="bands"):
        pyr.inverse(c, bands="first")
    # a plain 3-tuple is refused (it has lost its plan); attach() states the plan
    with pytest.raises(TypeError, match="attach"):
        pyr.inverse(tuple(c))
    np.testing.assert_allclose(inv(pyr, pyr.attach(tuple(c))), x, atol=F64_RECON)


@pytest.mark.parametrize("kw", [{"levels": 5}, {"bands": 3}], ids=["levels", "bands"])
def test_scalar_levels_or_bands_raise_value_error(kw):
    pyr = SteerablePyramid((32, 48), 2, 1)
    c = fwd(pyr, image((32, 48)))
    with pytest.raises(ValueError, match="levels" if "levels" in kw else "band"):
        pyr.inverse(c, **kw)


@pytest.mark.parametrize("kw", [{"levels": [True]}, {"bands": [1.5]}], ids=["levels", "bands"])
def test_non_integer_levels_or_bands_are_rejected(kw):
    pyr = SteerablePyramid((32, 48), 2, 1)
    c = fwd(pyr, image((32, 48)))
    with pytest.raises(ValueError):
        pyr.inverse(c, **kw)


@pytest.mark.parametrize("twidth", [1.5, 2])
def test_wide_transitions_reconstruct_at_every_valid_height(twidth):
    shape = (64, 64)
    pyrs = tuple(SteerablePyramid(shape, h, 3, twidth=twidth)
                 for h in range(1, SteerablePyramid.max_height(shape) + 1))
    assert_reconstructs(pyrs, image(shape))


def test_narrow_transitions_reconstruct():
    # sub-octave transitions (as in motion magnification) and twidth > 1 below the height
    # at which the masks reach DC
    shape = (64, 64)
    pyrs = (SteerablePyramid(shape, 4, 3, twidth=0.5), SteerablePyramid(shape, 4, 2, twidth=0.75),
            SteerablePyramid(shape, 3, 3, twidth=2, tight_frame=True))
    ratios = assert_reconstructs(pyrs, image(shape))
    assert abs(ratios[2, 0] - 1) <= 1e-12


def test_replace_order_updates_default_orientations():
    pyr = SteerablePyramid((32, 32), 2, 1).replace(order=3)
    assert pyr.num_orientations == 4


# ------------------------------------------------------------------ property test
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(8, 70), w=st.integers(8, 70), data=st.data())
def test_reconstruction_is_exact_at_random_sizes(h, w, data):
    height = data.draw(st.integers(1, SteerablePyramid.max_height((h, w))), label="height")
    order = data.draw(st.integers(1, 3), label="order")
    tight = data.draw(st.booleans(), label="tight")
    pyr = SteerablePyramid((h, w), height, order, tight_frame=tight)
    ratio = assert_reconstructs(pyr, image((h, w), seed=h * 71 + w))[0, 0]
    if tight:
        assert abs(ratio - 1) <= 1e-12


def test_no_warnings_on_odd_sizes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_reconstructs(SteerablePyramid((33, 47), 3), image((33, 47)))


# ------------------------------------------------------------------ plan identity (issue 12)
@pytest.mark.parametrize("other", [{"tight_frame": True}, {"twidth": 0.5}, {"masks": "lut"}],
                         ids=["tight_frame", "twidth", "masks"])
def test_inverse_refuses_coefficients_of_another_configuration(other):
    """Same shapes, other configuration: synthesising gave a wrong image without a word
    (up to 0.58 off); now a ValueError naming the differing option."""
    pyr = SteerablePyramid((32, 32), 3, 3)
    alien = pyr.replace(**other)
    x = image((32, 32))
    c = fwd(alien, x)
    assert [b.shape for b in c.bands] == [b.shape for b in fwd(pyr, x).bands]
    name = next(iter(other))
    with pytest.raises(ValueError, match=f"differently configured.*{name}"):
        pyr.inverse(c)
    with pytest.raises(ValueError, match=name):
        jax.jit(pyr.inverse)(c)
    # its own plan (or another synthesis operator, which is not part of the identity)
    np.testing.assert_allclose(inv(alien, c), x, atol=1e-5)      # lut masks: ~3e-6
    inv(alien.replace(synthesis="adjoint"), c)


def test_plan_identity_survives_transforms_and_replace():
    pyr = SteerablePyramid((32, 40), 2, 1, tight_frame=True)
    other = pyr.replace(tight_frame=False)
    x = image((3, 32, 40))
    c = pyr.forward(x)
    variants = {
        "jit": jax.jit(pyr.forward)(x),
        "vmap": jax.vmap(pyr.forward)(x),
        "tree.map": jax.tree.map(lambda a: 2 * a, c),
        "_replace": c._replace(bands=tuple(b * 1j for b in c.bands)),
        "jit out of jit": jax.jit(lambda c: c)(c),
        "scan carry": jax.lax.scan(lambda c, _: (c, None), c, None, length=2)[0],
    }
    for name, v in variants.items():
        assert isinstance(v, PyramidCoeffs) and v.plan == c.plan is not None, name
        with pytest.raises(ValueError, match="tight_frame"):
            other.inverse(v)
    hp, bands, lp = c                                 # still unpacks as a 3-tuple
    assert len(c) == 3 and c._replace(plan=None).plan is None
    assert pyr.attach((hp, bands, lp)).plan == c.plan
    with pytest.raises(ValueError, match="tight_frame"):
        other.attach(c)
    # hand-made coefficients carry no identity and are checked by shape only
    np.testing.assert_allclose(other.inverse(PyramidCoeffs(hp, bands, lp)),
                               other.inverse(c._replace(plan=None)))
    with pytest.raises(TypeError):
        PyramidCoeffs(hp, bands, lp, plan=[1, 2])     # aux data must be hashable


def test_domain_render_keeps_the_identity():
    """The CSP domains edit bands with ``c._replace(bands=...)``: the plan goes along."""
    from lens_jax.domains import get_domain
    dom = get_domain("csp_phase", (32, 32))
    x = jnp.asarray(image((1, 32, 32)))
    state = dom.analyse(x)
    assert state.plan == dom.pyramid._key()
    out = dom.render(state, dom.zeros(state), (32, 32))
    np.testing.assert_allclose(out, x, atol=1e-10)
    alien = get_domain("csp_phase", (32, 32), pyramid=dom.pyramid.replace(twidth=0.5))
    with pytest.raises(ValueError, match="twidth"):
        alien.render(state, dom.zeros(state), (32, 32))


@pytest.mark.parametrize("shape,err", [((32.7, 32.2), ValueError), (("32", "32"), TypeError),
                                       ((32, None), TypeError), (32, TypeError),
                                       ((True, 32), TypeError), ((np.nan, 32), ValueError)])
def test_bad_image_shape_is_named(shape, err):
    """``(32.7, 32.2)`` silently became 32x32 and ``("32", "32")`` was accepted."""
    with pytest.raises(err, match="image_shape"):
        SteerablePyramid(shape)
    # whole numbers of any integer or float type are fine
    assert SteerablePyramid((np.int32(32), 32.0)).image_shape == (32, 32)


@pytest.mark.parametrize("kw,err,name", [
    ({"twidth": float("inf")}, ValueError, "twidth"), ({"twidth": "1"}, TypeError, "twidth"),
    ({"tight_frame": "no"}, TypeError, "tight_frame"), ({"downsample": 1}, TypeError, "downsample"),
    ({"is_complex": None}, TypeError, "is_complex")])
def test_bad_options_are_named(kw, err, name):
    with pytest.raises(err, match=name):
        SteerablePyramid((32, 32), **kw)


_CONFIG_NAMES = ("image_shape", "height", "order", "twidth", "tight_frame", "downsample",
                 "num_orientations", "is_complex")


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 40), w=st.integers(1, 40),
       height=st.one_of(st.just("auto"), st.integers(-1, 6), st.floats(0, 4)),
       order=st.integers(-1, 6), twidth=st.one_of(st.floats(-1, 4), st.just(float("nan"))),
       tight=st.booleans(), down=st.booleans(), cplx=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_any_configuration_is_finite_or_rejected_by_name(h, w, height, order, twidth, tight,
                                                         down, cplx, seed):
    """Property: for every configuration, either the plan is refused with a
    ValueError/TypeError naming one of its arguments, or a finite image gives finite
    coefficients and a finite reconstruction equal to the image."""
    try:
        pyr = SteerablePyramid((h, w), height, order, twidth=twidth, is_complex=cplx,
                               downsample=down, tight_frame=tight)
    except (ValueError, TypeError) as e:
        assert any(n in str(e) for n in _CONFIG_NAMES), str(e)
        return
    x = np.random.default_rng(seed).random((h, w))
    c = pyr.forward(x)
    for leaf in jax.tree.leaves(c):
        assert np.all(np.isfinite(np.asarray(leaf)))
    for synthesis in ("real", "adjoint"):
        y = np.asarray(pyr.inverse(c, synthesis=synthesis))
        assert np.all(np.isfinite(y))
    np.testing.assert_allclose(np.asarray(pyr.inverse(c)), x, atol=1e-9)
