"""Flow-coherent domains (csp_flow, csp_flow_joint) and the pixel warp comparator.

References independent of the code under test: analytic complex exponentials, exact
sub-pixel translations by a Fourier phase ramp, central finite differences, bilinear
reproduction of linear fields, numpy's float64 ``angle``, and template classifiers whose
target class is the source shifted by 2 px.

Measured here (float64; ``||render - exact|| / ||exact - source||`` for a constant flow,
warp on the interior, 3 px border excluded; all with the default 8 x 8 grid):

==================================  =========  =========  ==========
flow (dy, dx) = (0.5, 0)            blob 64    blob 28    texture 64
==================================  =========  =========  ==========
csp_flow, residuals fixed           0.249      0.822      0.145
csp_flow (default: residuals move)  0.175      0.098      0.133
csp_flow, amplitude="move"          0.020      0.005      0.039
warp (Catmull-Rom, interior)        0.003      0.006      0.030
warp, interp="linear" (interior)    0.076      0.102      0.177
==================================  =========  =========  ==========
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lens_jax as lj
from lens_jax import flow as fl
from lens_jax.domains import get_domain
from lens_jax.metrics import warp_explained_energy


# ----------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------

def fourier_shift(x, d):
    """Exact periodic translation of a 2-D array by ``d = (dy, dx)`` pixels."""
    H, W = x.shape
    ky = 2 * np.pi * np.fft.fftfreq(H)[:, None]
    kx = 2 * np.pi * np.fft.fftfreq(W)[None, :]
    return np.real(np.fft.ifft2(np.fft.fft2(x) * np.exp(-1j * (ky * d[0] + kx * d[1]))))


def blob(H, sigma=4.0):
    y, x = np.mgrid[:H, :H]
    return 0.1 + 0.8 * np.exp(-((y - H / 2 + 0.3) ** 2 + (x - H / 2 - 0.2) ** 2)
                              / (2 * sigma ** 2))


def texture(H, seed=0, width=60.0):
    """Smooth periodic random texture in [0.15, 0.85]."""
    x = np.random.default_rng(seed).random((H, H))
    k = np.fft.fftfreq(H)[:, None] ** 2 + np.fft.fftfreq(H)[None, :] ** 2
    x = np.real(np.fft.ifft2(np.fft.fft2(x) * np.exp(-k * width)))
    return 0.15 + 0.7 * (x - x.min()) / (x.max() - x.min())


def camera_crop(r0, c0, H=64):
    import skimage.data
    return skimage.data.camera().astype(np.float64)[r0:r0 + H, c0:c0 + H] / 255.0


def template_classifier(templates, temperature):
    """logits_k = -||x - T_k||^2 / temperature."""
    T = jnp.asarray(np.stack(templates))[..., None]

    def f(x):
        return -jnp.sum((x[:, None] - T[None]) ** 2, axis=(2, 3, 4)) / temperature
    return f


def smooth_classifier(H, W, K=3, seed=0):
    r = np.random.default_rng(seed)
    w1 = jnp.asarray(r.standard_normal((H * W, 16)) / np.sqrt(H * W) * 3)
    w2 = jnp.asarray(r.standard_normal((16, K)))
    return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


_RENDERERS = {}


def render_const(name, img, d, **opts):
    """Render a constant flow ``d`` (one jitted function per domain, shape and options)."""
    H, W = img.shape
    key = (name, H, W, tuple(sorted(opts.items())))
    if key not in _RENDERERS:
        dom = get_domain(name, (H, W), **opts)

        @jax.jit
        def run(x, d):
            st = dom.analyse(x[None])
            p = dom.zeros(st)
            p["flow"] = jnp.broadcast_to(d[:, None, None], (2, 8, 8))
            return dom.render(st, p, (H, W))[0]
        _RENDERERS[key] = run
    return np.asarray(_RENDERERS[key](jnp.asarray(img), jnp.asarray(d, jnp.float64)))


def rel_err(out, exact, src, border=0):
    s = slice(border, -border if border else None)
    return float(np.linalg.norm((out - exact)[s, s]) / np.linalg.norm((exact - src)[s, s]))


# ----------------------------------------------------------------------------------
# local frequency
# ----------------------------------------------------------------------------------

@pytest.mark.x64
@pytest.mark.parametrize("wy,wx", [(5, -3), (11, 7), (-13, 2)])
def test_local_frequency_exact_for_complex_exponential(wy, wx):
    H, W = 32, 24
    oy, ox = 2 * np.pi * wy / H, 2 * np.pi * wx / W
    y, x = np.mgrid[:H, :W]
    c = 0.7 * np.exp(1j * (oy * y + ox * x + 0.3))
    ey, ex = fl.local_frequency(jnp.asarray(c)[None])
    np.testing.assert_allclose(np.asarray(ey), oy, atol=1e-9)
    np.testing.assert_allclose(np.asarray(ex), ox, atol=1e-9)
    # the central difference Im(conj(c) dc) / |c|^2 reads sin(omega), not omega
    cd = np.imag(np.conj(c) * (np.roll(c, -1, 0) - np.roll(c, 1, 0)) / 2) / np.abs(c) ** 2
    np.testing.assert_allclose(cd, np.sin(oy), atol=1e-12)
    assert abs(np.sin(oy) - oy) > 1e-3


@pytest.mark.x64
def test_local_frequency_zero_amplitude_falls_back_to_nominal():
    c = jnp.zeros((2, 8, 8), jnp.complex128)
    nom = jnp.asarray([[0.4, -1.1], [1.5, 0.2]])
    ey, ex = fl.local_frequency(c, nominal=nom)
    np.testing.assert_allclose(np.asarray(ey), np.broadcast_to([[[0.4]], [[1.5]]], (2, 8, 8)))
    np.testing.assert_allclose(np.asarray(ex), np.broadcast_to([[[-1.1]], [[0.2]]], (2, 8, 8)))


def test_fast_float32_angle_matches_numpy():
    r = np.random.default_rng(0)
    z = (r.standard_normal(20000) + 1j * r.standard_normal(20000)) * 10.0 ** r.uniform(-6, 3, 20000)
    z = np.concatenate([z, [0, 1, -1, 1j, -1j, -1 + 0j, 1 + 1j, -1 - 1j],
                        np.exp(1j * np.linspace(-np.pi, np.pi, 4001))]).astype(np.complex64)
    got = np.asarray(fl._angle(jnp.asarray(z)))
    ref = np.angle(z.astype(np.complex128))
    err = np.abs(got - ref)
    err = np.minimum(err, 2 * np.pi - err)
    assert err.max() <= 4e-7, err.max()


def test_nominal_frequencies_point_along_the_orientations():
    pyr = lj.default_pyramid((64, 64))
    for nom in fl.nominal_frequencies(pyr):
        K = nom.shape[0]
        for k in range(K):
            ang = np.arctan2(nom[k, 0], nom[k, 1])
            # within 0.15 rad (the grids are not point-symmetric at even sizes)
            assert abs(np.angle(np.exp(1j * (ang - np.pi * k / K)))) < 0.15
            assert np.pi / 4 < np.hypot(*nom[k]) < np.pi


# ----------------------------------------------------------------------------------
# control grid, residual interpolation
# ----------------------------------------------------------------------------------

@pytest.mark.x64
def test_band_flow_reproduces_linear_fields_in_band_pixels():
    H = W = 64
    G = 8
    pos = np.linspace(0, H - 1, G)
    # control values of the linear field d(y, x) = (0.02 y - 0.5, -0.01 x + 0.3)
    flow = np.stack([np.broadcast_to((0.02 * pos - 0.5)[:, None], (G, G)),
                     np.broadcast_to((-0.01 * pos + 0.3)[None, :], (G, G))])
    for h in (64, 32, 16):
        f = H // h
        d = np.asarray(fl.band_flow(jnp.asarray(flow), (h, h), (H, W)))
        yb = np.arange(h)[:, None] * f            # band sample positions in image pixels
        xb = np.arange(h)[None, :] * f
        np.testing.assert_allclose(d[0], np.broadcast_to((0.02 * yb - 0.5) / f, (h, h)),
                                   atol=1e-12)
        np.testing.assert_allclose(d[1], np.broadcast_to((-0.01 * xb + 0.3) / f, (h, h)),
                                   atol=1e-12)


@pytest.mark.x64
def test_trig_resample_is_an_exact_constant_shift():
    r = np.random.default_rng(0)
    x = r.standard_normal((7, 9))
    d = (0.37, -1.21)
    got = fl.trig_resample(jnp.asarray(np.fft.fft2(x)),
                           jnp.broadcast_to(jnp.asarray(d)[:, None, None], (2, 7, 9)))
    np.testing.assert_allclose(np.asarray(got), fourier_shift(x, d), atol=1e-12)


# ----------------------------------------------------------------------------------
# identity and translation
# ----------------------------------------------------------------------------------

@pytest.mark.x64
@pytest.mark.parametrize("name,opts", [
    ("csp_flow", {}), ("csp_flow", {"residuals": "fixed"}), ("csp_flow", {"amplitude": "move"}),
    ("csp_flow_joint", {}), ("csp_flow_joint", {"balance": "gradient"}),
    ("warp", {}), ("warp", {"interp": "linear"})])
def test_zero_flow_renders_the_source(name, opts):
    img = texture(32, width=20.0)
    dom = get_domain(name, (32, 32), **opts)

    @jax.jit
    def identity(x):
        st = dom.analyse(x)
        return dom.render(st, dom.zeros(st), (32, 32))
    out = np.asarray(identity(jnp.asarray(img)[None]))[0]
    assert np.max(np.abs(out - img)) < 1e-12


@pytest.mark.x64
@pytest.mark.parametrize("d", [(0.5, 0.0), (0.3, -0.4)])
def test_constant_flow_reproduces_a_subpixel_translation(d):
    """Errors relative to the shift's own change (see the module docstring)."""
    cases = {"blob64": (blob(64), 0.20, 0.03, 0.015),
             "texture64": (texture(64), 0.16, 0.06, 0.06)}
    for name, (img, tol_phase, tol_amp, tol_warp) in cases.items():
        exact = fourier_shift(img, d)
        e_fixed = rel_err(render_const("csp_flow", img, d, residuals="fixed"), exact, img)
        e_flow = rel_err(render_const("csp_flow", img, d), exact, img)
        e_amp = rel_err(render_const("csp_flow", img, d, amplitude="move"), exact, img)
        e_warp = rel_err(render_const("warp", img, d), exact, img, border=3)
        e_lin = rel_err(render_const("warp", img, d, interp="linear"), exact, img, border=3)
        assert e_flow < tol_phase, (name, e_flow)
        assert e_flow < e_fixed, (name, e_flow, e_fixed)     # moving residuals helps
        assert e_amp < tol_amp, (name, e_amp)
        assert e_warp < tol_warp and e_warp < e_lin, (name, e_warp, e_lin)


@pytest.mark.x64
def test_moving_residuals_matters_at_two_scales():
    """28x28 (two scales): the low-pass residual carries most of a blob's shift."""
    img = blob(28, 3.0)
    d = (0.5, 0.0)
    exact = fourier_shift(img, d)
    e_fixed = rel_err(render_const("csp_flow", img, d, residuals="fixed"), exact, img)
    e_flow = rel_err(render_const("csp_flow", img, d), exact, img)
    assert e_fixed > 0.5 and e_flow < 0.12, (e_fixed, e_flow)


# ----------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------

def _fd_check(loss, params, n=3, eps=1e-6, seed=1):
    g = jax.jit(jax.grad(loss))(params)
    loss = jax.jit(loss)
    leaves, tdef = jax.tree.flatten(params)
    gl = jax.tree.leaves(g)
    rng = np.random.default_rng(seed)
    for li, leaf in enumerate(leaves):
        for t in range(n):
            if t == 0:
                idx = np.unravel_index(int(np.argmax(np.abs(np.asarray(gl[li])))), leaf.shape)
            else:
                idx = tuple(int(rng.integers(s)) for s in leaf.shape)

            def shifted(e):
                new = [l.at[idx].add(e) if j == li else l for j, l in enumerate(leaves)]
                return float(loss(jax.tree.unflatten(tdef, new)))
            fd = (shifted(eps) - shifted(-eps)) / (2 * eps)
            np.testing.assert_allclose(float(gl[li][idx]), fd, rtol=1e-5, atol=1e-9)


@pytest.mark.x64
@pytest.mark.parametrize("name,opts,at_zero", [
    ("csp_flow", {}, True), ("csp_flow", {}, False),
    ("csp_flow", {"amplitude": "move"}, False),
    ("csp_flow_joint", {}, False),
    ("warp", {}, True), ("warp", {"interp": "linear"}, False)])
def test_gradients_match_finite_differences(name, opts, at_zero):
    H = W = 16
    f = smooth_classifier(H, W)
    img = jnp.asarray(texture(H, width=8.0)[..., None])
    ed = lj.prepare_edit(f, img, target=2, domain=get_domain(name, (H, W), **opts))
    p0 = ed.zeros
    if not at_zero:     # away from integer sample positions (bilinear's kinks)
        r = np.random.default_rng(3)
        p0 = jax.tree.map(lambda a: a + jnp.asarray(0.3 * r.standard_normal(a.shape) + 0.13),
                          p0)
    _fd_check(ed.loss, p0)


# ----------------------------------------------------------------------------------
# the joint domain's balance
# ----------------------------------------------------------------------------------

def _part_changes(f, img, balance):
    """First-order image change of each part of the step -g at the source."""
    H = img.shape[0]
    dom = get_domain("csp_flow_joint", (H, H), balance=balance)
    # Jacobians of the render at unit flow scale (balance='none'), so every balance's
    # gradient is measured in the same coordinates: d = scale * p
    ref_dom = get_domain("csp_flow_joint", (H, H), balance="none")

    @jax.jit
    def run(x):
        ed = lj.prepare_edit(f, x, target=1, source=0, domain=dom)
        g = jax.grad(ed.loss)(ed.zeros)
        scale = ed.domain.analyse(x[..., 0][None]).scale
        ref = lj.prepare_edit(f, x, target=1, source=0, domain=ref_dom)
        z = ref.zeros
        _, jf = jax.jvp(lambda a: ref.render({"flow": a, "logamp": z["logamp"]}),
                        (z["flow"],), (scale * g["flow"],))
        _, ja = jax.jvp(lambda a: ref.render({"flow": z["flow"], "logamp": a}),
                        (z["logamp"],), (g["logamp"],))
        return jnp.linalg.norm(jf), jnp.linalg.norm(ja), g
    nf, na, g = run(jnp.asarray(img[..., None]))
    return float(nf), float(na), g


@pytest.mark.x64
def test_joint_balance():
    """Unbalanced, the flow part of -alpha*g moves the image 2.4x (blob) to 32x (white
    linear classifier) more than the log-amplitude part; balance='auto' (white-probe
    Jacobian gains) brings it to 0.26-2.5x over the five cases measured; 'gradient'
    (per-gradient normalisation) to exactly 1."""
    img = blob(32, 3.0)
    tgt = fourier_shift(img, (2.0, 0.0))
    dist = np.linalg.norm(tgt - img)
    cases = {"blob_template": (img, template_classifier([img, tgt], dist ** 2 / 4))}
    tex = texture(32, width=15.0)
    w = jnp.asarray(np.random.default_rng(3).standard_normal((32 * 32, 2)) * 0.05)
    cases["texture_linear"] = (tex, lambda x: x.reshape(x.shape[0], -1) @ w)
    ratios = {}
    for name, (im, f) in cases.items():
        nf, na, g0 = _part_changes(f, im, "none")
        r_none = nf / na
        nf, na, _ = _part_changes(f, im, "auto")
        r_auto = nf / na
        nf, na, g = _part_changes(f, im, "gradient")
        r_grad = nf / na
        assert abs(r_grad - 1.0) < 1e-6, (name, r_grad)
        assert 1 / 4 < r_auto < 4, (name, r_auto)
        ratios[name] = (r_none, r_auto)
        # 'gradient' keeps the log-amplitude gradient and rescales the flow gradient
        # by a positive factor: a descent direction
        np.testing.assert_allclose(np.asarray(g["logamp"][0]), np.asarray(g0["logamp"][0]),
                                   rtol=1e-10, atol=1e-14)
        a, b = np.ravel(g["flow"]), np.ravel(g0["flow"])
        assert np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) > 1 - 1e-10
    # the white linear classifier: unbalanced, the flow part dominates by > 10x
    assert ratios["texture_linear"][0] > 10, ratios


# ----------------------------------------------------------------------------------
# change, wrapping, options
# ----------------------------------------------------------------------------------

@pytest.mark.x64
def test_change_and_wrapped():
    img = texture(32, width=15.0)
    dom = get_domain("csp_flow", (32, 32))
    st = dom.analyse(jnp.asarray(img)[None])
    r = np.random.default_rng(0)
    flow = jnp.asarray(r.standard_normal((2, 8, 8)))
    c1 = float(dom.change(st, {"flow": flow}))
    assert c1 > 0
    np.testing.assert_allclose(float(dom.change(st, {"flow": -2.5 * flow})), 2.5 * c1,
                               rtol=1e-12)
    deltas = fl.flow_phases(dom.pyramid, st, 3.0 * flow)
    n = sum(d.size for d in deltas)
    want = sum(int(np.sum(np.abs(np.asarray(d)) > np.pi)) for d in deltas) / n
    assert float(dom.wrapped(st, {"flow": 3.0 * flow})) == pytest.approx(want)
    assert float(dom.wrapped(st, {"flow": 1e-3 * flow})) == 0.0
    # warp: the largest displacement in pixels
    wd = get_domain("warp", (32, 32))
    x = wd.analyse(jnp.asarray(img)[None])
    const = jnp.broadcast_to(jnp.asarray([0.6, -0.8])[:, None, None], (2, 8, 8))
    assert float(wd.change(x, {"flow": const})) == pytest.approx(1.0)


@pytest.mark.parametrize("name,opts", [
    ("csp_flow", {"grid": 1}), ("csp_flow", {"grid": 2.5}), ("csp_flow", {"residuals": "x"}),
    ("csp_flow", {"amplitude": "x"}), ("csp_flow_joint", {"balance": -1.0}),
    ("csp_flow_joint", {"balance": "x"}), ("warp", {"interp": "nearest"}),
    ("warp", {"grid": 0})])
def test_bad_options_raise(name, opts):
    """Checked once, when the domain is built (not at every analyse / render)."""
    with pytest.raises(ValueError, match="|".join(opts)):
        get_domain(name, (32, 32), **opts)


# ----------------------------------------------------------------------------------
# morphs on template classifiers
# ----------------------------------------------------------------------------------

def test_blob_morph_is_a_translation_toward_the_target():
    """Target template: the source shifted 2 px down.  At half the template distance the
    csp_flow endpoint is explained by a smooth warp (measured E = 0.995) and the blob's
    centroid moves down (measured +0.95 px)."""
    H = 32
    img = blob(H, 3.0)
    tgt = fourier_shift(img, (2.0, 0.0))
    dist = np.linalg.norm(tgt - img)
    f = template_classifier([img, tgt], dist ** 2 / 4)
    x = jnp.asarray(img[..., None])
    m = lj.morph(f, x, target=1, source=0, domain="csp_flow", l2_budget=jnp.asarray([dist / 2]))
    assert bool(m.reached[-1])
    fr = np.asarray(m.frames[-1, ..., 0])
    E = float(warp_explained_energy(x, m.frames[-1], grid=8))
    assert E >= 0.9, E
    base = img.min()
    yy = np.arange(H)[:, None]
    c0 = ((img - base) * yy).sum() / (img - base).sum()
    c1 = ((fr - base) * yy).sum() / (fr - base).sum()
    assert c1 - c0 > 0.5, c1 - c0
    p_source = float(jax.nn.softmax(f(x[None]))[0, 1])
    assert float(m.probs[-1, 1]) > p_source


def test_natural_texture_flow_edit_is_more_warp_like_than_pixel_and_csp_phase():
    """A 64x64 crop of camera, ten templates (the source, the scene shifted 2 px down --
    the target --, eight other crops), temperature 4 ||T_1 - T_0||^2, budget half the
    source-target distance.  Measured E (warp only, 8x8 grid): crop (300, 150): csp_flow
    0.875, pixel 0.778, csp_phase 0.171; crop (200, 220): 0.660, 0.585, 0.349; crop
    (100, 300): 0.955, 0.551, 0.511.  (With only the two templates the pixel edit is a
    cross-fade to the shifted crop, which the warp explains fully at the full distance:
    pixel 0.98-1.0 against csp_flow 0.75-0.94.)"""
    H = 64
    r0, c0 = 300, 150
    import skimage.data
    cam = skimage.data.camera().astype(np.float64) / 255.0
    rng = np.random.default_rng(0)
    others = [cam[r:r + H, c:c + H] for r, c in rng.integers(20, 512 - H - 20, (8, 2))]
    img = cam[r0:r0 + H, c0:c0 + H]
    tgt = cam[r0 - 2:r0 - 2 + H, c0:c0 + H]
    dist = np.linalg.norm(tgt - img)
    f = template_classifier([img, tgt] + others, 4 * dist ** 2)
    x = jnp.asarray(img[..., None])
    E = {}
    for dom in ("pixel", "csp_phase", "csp_flow"):
        m = lj.morph(f, x, target=1, source=0, domain=dom, l2_budget=jnp.asarray([dist / 2]))
        assert bool(m.reached[-1])
        np.testing.assert_allclose(float(m.l2[-1]), dist / 2, rtol=1e-3)
        E[dom] = float(warp_explained_energy(x, m.frames[-1], grid=8))
    assert E["csp_flow"] > E["pixel"] and E["csp_flow"] > E["csp_phase"], E
