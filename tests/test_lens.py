"""The lens: gradients, extrapolation, schedules, colour, batching and bad input.

References are independent of the code under test: finite differences, the analytic
pixel-domain update on a linear classifier, and a blob whose class is set by position.
"""
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lens_jax as lj
from lens_jax.metrics import best_translation

DOMAINS = lj.DOMAINS


def linear_classifier(H, W, C=1, K=3, seed=0, dtype=np.float32):
    w = np.random.default_rng(seed).standard_normal((H * W * C, K)).astype(dtype) * 0.1
    w = jnp.asarray(w)
    return lambda x: x.reshape(x.shape[0], -1) @ w


def smooth_classifier(H, W, C=1, K=3, seed=0, dtype=np.float32):
    """A small nonlinear classifier (tanh features), smooth everywhere."""
    r = np.random.default_rng(seed)
    w1 = jnp.asarray((r.standard_normal((H * W * C, 16)) / np.sqrt(H * W * C) * 3).astype(dtype))
    w2 = jnp.asarray(r.standard_normal((16, K)).astype(dtype))
    return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


def smooth_image(H, W, C=1, seed=0, dtype=np.float32):
    r = np.random.default_rng(seed)
    x = r.random((H, W, C))
    k = np.fft.fftfreq(H)[:, None] ** 2 + np.fft.fftfreq(W)[None, :] ** 2
    x = np.real(np.fft.ifft2(np.fft.fft2(x, axes=(0, 1)) * np.exp(-k * 60)[..., None],
                             axes=(0, 1)))
    x = (x - x.min()) / (x.max() - x.min())
    return jnp.asarray((0.15 + 0.7 * x).astype(dtype))


# ----------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------

@pytest.mark.x64
@pytest.mark.parametrize("domain", DOMAINS)
def test_transform_gradient_matches_finite_differences(domain):
    H = W = 16
    f = smooth_classifier(H, W, dtype=np.float64)
    img = smooth_image(H, W, dtype=np.float64)
    ed = lj.prepare_edit(f, img, target=2, domain=domain)
    # one compiled loss and one compiled gradient (eagerly, every shift below dispatched
    # the pyramid op by op: several seconds of tiny compilations per domain)
    loss = jax.jit(ed.loss)
    g = jax.jit(jax.grad(ed.loss))(ed.zeros)
    leaves, tdef = jax.tree.flatten(ed.zeros)
    gl = jax.tree.leaves(g)
    rng = np.random.default_rng(1)
    eps = 1e-6
    for li, leaf in enumerate(leaves):
        for _ in range(3):
            idx = tuple(int(rng.integers(s)) for s in leaf.shape)
            # pick a coordinate with a non-negligible gradient half of the time
            if rng.random() < 0.5:
                idx = np.unravel_index(int(np.argmax(np.abs(np.asarray(gl[li])))), leaf.shape)
            def shifted(d):
                moved = np.array(leaves[li])
                moved[idx] += d
                new = [jnp.asarray(moved) if j == li else l for j, l in enumerate(leaves)]
                return float(loss(jax.tree.unflatten(tdef, new)))
            fd = (shifted(eps) - shifted(-eps)) / (2 * eps)
            np.testing.assert_allclose(float(gl[li][idx]), fd, rtol=1e-5, atol=1e-9)


@pytest.mark.x64
def test_complex_gradient_convention():
    """jax.grad w.r.t. a complex c is the conjugate convention; polar_grads undoes it
    and agrees with the gradient w.r.t. the real phase / log-amplitude parameters."""
    np.testing.assert_allclose(jax.grad(lambda z: jnp.abs(z) ** 2)(3.0 + 4.0j), 6 - 8j)
    H = W = 16
    f = smooth_classifier(H, W, dtype=np.float64)
    img = smooth_image(H, W, dtype=np.float64)
    pyr = lj.default_pyramid((H, W))
    c0 = pyr.forward(img[..., 0][None])

    def loss_c(bands):
        x = pyr.inverse(c0._replace(bands=bands))
        return -jax.nn.log_softmax(f(jnp.moveaxis(x, 0, -1)[None])[0])[1]

    gj = jax.grad(loss_c)(c0.bands)

    def loss_polar(d, e):
        bands = tuple(b * jnp.exp(jax.lax.complex(ee, dd)) for b, dd, ee in zip(c0.bands, d, e))
        return loss_c(bands)

    z = tuple(jnp.zeros(b.shape) for b in c0.bands)
    gd, ge = jax.grad(loss_polar, argnums=(0, 1))(z, z)
    for b, g, d, e in zip(c0.bands, gj, gd, ge):
        dphi, dlog = lj.polar_grads(b, g)
        np.testing.assert_allclose(dphi, d, atol=1e-12)
        np.testing.assert_allclose(dlog, e, atol=1e-12)
        # the trap: treating gj as the descent direction flips the phase step
        assert not np.allclose(jnp.imag(jnp.conj(b) * g), d, atol=1e-6) or \
            np.allclose(d, 0, atol=1e-9)


@pytest.mark.x64
def test_straight_through_clip_keeps_boundary_gradients():
    """An MNIST-like image (background exactly 0): the hard clip loses gradient at the
    background after a round-trip through the pyramid; the straight-through clip keeps it."""
    H = W = 16
    img = np.zeros((H, W, 1), np.float64)
    img[5:11, 6:10] = 1.0
    img = jnp.asarray(img)
    f = linear_classifier(H, W, dtype=np.float64)
    ed = lj.prepare_edit(f, img, target=2, domain="csp_phase")
    g_st = jax.grad(lambda p: ed.loss(p, True))(ed.zeros)
    g_hard = jax.grad(lambda p: ed.loss(p, False))(ed.zeros)
    # reference: the same loss without any clip
    pyr = ed.domain.pyramid
    c0 = pyr.forward(jnp.moveaxis(img, -1, 0))

    def loss_noclip(d):
        bands = tuple(b * jnp.exp(jax.lax.complex(jnp.zeros_like(dd), dd))
                      for b, dd in zip(c0.bands, d))
        x = jnp.moveaxis(pyr.inverse(c0._replace(bands=bands)), 0, -1)
        return -jax.nn.log_softmax(f(x[None])[0])[2]

    g_ref = jax.grad(loss_noclip)(ed.zeros["phase"])
    for a, b in zip(g_st["phase"], g_ref):
        np.testing.assert_allclose(a, b, atol=1e-12)
    diff = sum(float(jnp.abs(a - b).sum()) for a, b in zip(g_hard["phase"], g_ref))
    assert diff > 1e-3          # the hard clip really does lose gradient here


# ----------------------------------------------------------------------------------
# extrapolation
# ----------------------------------------------------------------------------------

@pytest.mark.x64
def test_pixel_domain_is_exact_gradient_step_on_linear_classifier():
    H = W = 12
    f = linear_classifier(H, W, dtype=np.float64)
    img = smooth_image(H, W, dtype=np.float64)
    alphas = jnp.array([0.0, 0.01, 0.05, 0.2])
    m = lj.morph(f, img, target=1, domain="pixel", alphas=alphas)
    gx = jax.grad(lambda x: -jax.nn.log_softmax(f(x[None])[0])[1])(img)
    want = jnp.clip(img[None] - alphas[:, None, None, None] * gx[None], 0, 1)
    # equal up to float64 rounding (XLA may fuse x - a*g into one FMA)
    np.testing.assert_allclose(np.asarray(m.frames), np.asarray(want), rtol=0, atol=4e-16)
    np.testing.assert_allclose(np.asarray(m.grad["pixel"]), np.asarray(jnp.moveaxis(gx, -1, 0)),
                               rtol=1e-14, atol=1e-16)
    # and the loss goes down along alpha
    assert np.all(np.diff(np.asarray(m.target_prob)) > 0)


@pytest.mark.parametrize("domain", DOMAINS)
def test_vmap_equals_loop_jit_equals_nojit_live_one_step_equals_fixed(domain):
    """Per domain, four compiled programs (eager; jit + chunked; live and live_local),
    all run under strict dtype and rank promotion: the library's own code never promotes
    implicitly.  Each frame depends on its own alpha only: the same program run on other
    alphas (repeated, reordered) gives, for each alpha, the frame it gave before (this
    was a separate one-alpha program per domain; the flow domains' programs are the
    slowest of the suite to compile).  The live modes are compared with the first step
    of the eager run."""
    H = W = 16
    f = smooth_classifier(H, W)
    img = smooth_image(H, W)
    alphas = jnp.array([0.0, 0.5, 2.0, 7.0])
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        m = lj.morph(f, img, target=0, domain=domain, alphas=alphas)
        assert m.frames.shape == (4, H, W, 1) and m.probs.shape == (4, 3)
        np.testing.assert_array_equal(m.frames[0], img)           # frames[0] is the source
        order = jnp.array([3, 1, 1, 0])                  # other companions, same program
        mo = lj.morph(f, img, target=0, domain=domain, alphas=alphas[order])
        np.testing.assert_allclose(mo.frames, m.frames[order], atol=2e-6)
        np.testing.assert_allclose(mo.probs, m.probs[order], atol=1e-5)
        mj = jax.jit(lambda x: lj.morph(f, x, target=0, domain=domain, alphas=alphas,
                                        chunk_size=3))(img)
        np.testing.assert_allclose(mj.frames, m.frames, atol=2e-6)
        np.testing.assert_allclose(mj.probs, m.probs, atol=1e-5)
        np.testing.assert_allclose(mj.l2, m.l2, rtol=1e-5, atol=1e-7)
        two = alphas[:2]
        for mode in ("live", "live_local"):
            lv = lj.morph(f, img, target=0, domain=domain, alphas=two, mode=mode)
            np.testing.assert_allclose(lv.frames, m.frames[:2], atol=2e-6)
            np.testing.assert_allclose(lv.max_change, m.max_change[:2], rtol=1e-6)


def test_vmap_over_images_with_per_image_targets():
    H = W = 16
    f = smooth_classifier(H, W)
    imgs = jnp.stack([smooth_image(H, W, seed=s) for s in range(3)])
    targets = jnp.array([0, 2, 1])
    alphas = jnp.linspace(0, 3, 4)
    run = jax.jit(jax.vmap(lambda x, t: lj.morph(f, x, target=t, alphas=alphas)))
    mb = run(imgs, targets)
    for i in range(3):
        mi = lj.morph(f, imgs[i], target=int(targets[i]), alphas=alphas)
        np.testing.assert_allclose(mb.frames[i], mi.frames, atol=2e-6)
        assert int(mb.target[i]) == int(targets[i])
    assert mb.target_prob.shape == (3, 4)


def test_large_alphas_never_nan():
    H = W = 16
    f = smooth_classifier(H, W)
    img = smooth_image(H, W)
    alphas = jnp.array([0.0, 1e3, 1e9, 3e38])     # 4: the programs of the test above
    for domain in DOMAINS:
        m = lj.morph(f, img, target=1, domain=domain, alphas=alphas)
        assert np.all(np.isfinite(m.frames)), domain
        assert float(m.frames.min()) >= 0 and float(m.frames.max()) <= 1
        assert np.all(np.isfinite(m.probs))


# ----------------------------------------------------------------------------------
# the method does what it claims on a case with a known answer
# ----------------------------------------------------------------------------------

def test_csp_phase_moves_the_blob_where_pixel_crossfades():
    """Two Gaussian templates 8 px apart; the source blob sits under template 0.
    At matched image change (L2 = 2) the CSP-phase morph translates the blob toward
    the target template, and a translated copy of the source explains more of its
    change than of the pixel morph's (a calibration case with a known answer)."""
    N, s = 64, 4.0
    yy, xx = np.mgrid[:N, :N].astype(np.float32)

    def blob(cx):
        return np.exp(-((xx - cx) ** 2 + (yy - 32.0) ** 2) / (2 * s * s)).astype(np.float32)

    T = jnp.asarray(np.stack([blob(28), blob(36)]))
    f = lambda x: 0.05 * jnp.einsum("nhwc,khw->nk", x, T)
    src = jnp.asarray(0.1 + 0.8 * blob(28))[..., None]
    out = {}
    for dom in ("pixel", "csp_phase"):
        m = lj.morph(f, src, target=1, domain=dom, l2_budget=jnp.array([2.0]))
        assert bool(m.reached[0])
        np.testing.assert_allclose(float(m.l2[0]), 2.0, rtol=1e-3)
        assert float(m.target_prob[0]) > float(lj.morph(f, src, target=1, domain=dom,
                                                        alphas=jnp.zeros(1)).target_prob[0])
        tr = best_translation(src, m.frames[0], max_shift=4)
        out[dom] = (np.asarray(tr.shift), float(tr.explained))
    (dy, dx), expl_csp = out["csp_phase"]
    assert 0.8 < dx < 3.0 and abs(dy) < 0.3, out
    assert expl_csp > out["pixel"][1] + 0.05, out


# ----------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["fixed", "live"])
def test_l2_budget_is_matched(mode):
    H = W = 16
    f = smooth_classifier(H, W)
    img = smooth_image(H, W)
    for domain in ("pixel", "csp_phase", "fourier_phase"):
        m = lj.morph(f, img, target=1, domain=domain, mode=mode,
                     l2_budget=jnp.array([0.5, 1.0, 1e6]))
        np.testing.assert_allclose(np.asarray(m.l2[:2]), [0.5, 1.0], rtol=1e-3)
        assert list(np.asarray(m.reached)) == [True, True, False]
        assert np.all(np.isfinite(m.frames))
        strip = lj.morph(f, img, target=1, domain=domain, mode=mode, l2_budget=1.0,
                         n_frames=5)
        assert strip.frames.shape[0] == 5
        np.testing.assert_allclose(float(strip.l2[-1]), 1.0, rtol=1e-3)
        assert float(strip.l2[0]) == 0.0


def test_step_cap_schedule():
    H = W = 16
    f = smooth_classifier(H, W)
    img = smooth_image(H, W)
    m = lj.morph(f, img, target=1, domain="csp_phase", step_cap=0.25, n_frames=5)
    gmax = max(float(jnp.abs(l).max()) for l in jax.tree.leaves(m.grad))
    np.testing.assert_allclose(np.asarray(m.alphas) * gmax, 0.25 * np.arange(5), rtol=1e-5)
    lv = lj.morph(f, img, target=1, domain="csp_phase", step_cap=0.25, n_frames=5, mode="live")
    assert lv.frames.shape == (5, H, W, 1)
    assert np.all(np.diff(np.asarray(lv.alphas)) >= 0)
    # the automatic schedule ends at a phase change of pi
    auto = lj.morph(f, img, target=1, domain="csp_phase", n_frames=4)
    np.testing.assert_allclose(float(auto.alphas[-1]) * gmax, np.pi, rtol=1e-5)


@pytest.mark.parametrize("domain", ["csp_phase", "csp_joint", "fourier_phase", "pixel"])
def test_max_change_reports_the_largest_edit(domain):
    H = W = 16
    f = smooth_classifier(H, W)
    img = smooth_image(H, W)
    alphas = jnp.array([0.0, 0.3, 2.0, 7.0])      # 4: the programs of the tests above
    m = lj.morph(f, img, target=1, domain=domain, alphas=alphas)
    # independently: the edit parameters of each frame are -alpha * grad
    part = m.grad["phase"] if "phase" in m.grad else m.grad
    want = [a * max(float(jnp.abs(l).max()) for l in jax.tree.leaves(part)) for a in alphas]
    np.testing.assert_allclose(m.max_change, want, rtol=1e-6)
    assert float(m.max_change[0]) == 0.0
    # a per-step cap of c gives n * c at frame n: fixed (one gradient), live (params
    # accumulate along the scan) and live_local (sum of per-step maxima)
    for mode in ("fixed", "live", "live_local"):
        mc = lj.morph(f, img, target=1, domain=domain, step_cap=0.25, n_frames=4, mode=mode)
        if mode == "live" or domain == "csp_joint":
            # live params accumulate (max at most n * c); csp_joint's cap binds the larger
            # of phase and log-amplitude, and max_change reports the phase
            assert np.all(np.asarray(mc.max_change) <= 0.25 * np.arange(4) * (1 + 1e-5))
            if domain != "csp_joint":
                np.testing.assert_allclose(mc.max_change[:2], [0.0, 0.25], rtol=1e-5)
        else:
            np.testing.assert_allclose(mc.max_change, 0.25 * np.arange(4), rtol=1e-5)


# ----------------------------------------------------------------------------------
# colour
# ----------------------------------------------------------------------------------

def test_luminance_mode_keeps_chroma_and_rgb_edits_all_channels():
    H = W = 16
    f = smooth_classifier(H, W, C=3)
    img = jnp.concatenate([smooth_image(H, W, seed=s) for s in range(3)], -1) * 0.8 + 0.1
    m = lj.morph(f, img, target=1, color="luminance", alphas=jnp.array([0.0, 4.0]))
    yiq = lambda x: jnp.einsum("...c,dc->...d", x, lj.domains.RGB_TO_YIQ)
    inside = np.all((np.asarray(m.frames[1]) > 0) & (np.asarray(m.frames[1]) < 1), -1)
    assert inside.mean() > 0.9
    np.testing.assert_allclose(np.asarray(yiq(m.frames[1]))[inside][:, 1:],
                               np.asarray(yiq(img))[inside][:, 1:], atol=1e-5)
    assert float(jnp.abs(yiq(m.frames[1])[..., 0] - yiq(img)[..., 0]).max()) > 1e-3
    r = lj.morph(f, img, target=1, color="rgb", alphas=jnp.array([0.0, 4.0]))
    assert jax.tree.leaves(r.grad)[0].shape[0] == 3
    changed = [float(jnp.abs(r.frames[1][..., c] - img[..., c]).max()) for c in range(3)]
    assert min(changed) > 1e-3
    with pytest.raises(ValueError, match="gray"):
        lj.morph(f, img, target=1, color="gray")


# ----------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, kwargs, match", [
    ("nan", {}, "NaN"),
    ("range", {}, r"\[0, 1\]"),
    (None, {"target": 7}, "outside"),
    (None, {"target": -1}, "outside"),
    (None, {"alphas": jnp.zeros((0,))}, "non-empty"),
    (None, {"alphas": jnp.array([0.0, jnp.inf])}, "NaN/Inf"),
    (None, {"domain": "wavelet"}, "unknown domain"),
    (None, {"loss": "hinge"}, "unknown loss"),
    (None, {"mode": "slow"}, "unknown mode"),
    (None, {"color": "hsv"}, "unknown color"),
    (None, {"l2_budget": 1.0, "alphas": jnp.ones(2)}, "at most one schedule"),
    ("rank", {}, "image must be"),
    ("int", {}, "float"),
])
def test_bad_input_raises_value_error(bad, kwargs, match):
    H = W = 16
    f = smooth_classifier(H, W)
    img = np.asarray(smooth_image(H, W))
    if bad == "nan":
        img = img.copy()
        img[3, 3] = np.nan
    elif bad == "range":
        img = img * 2.0
    elif bad == "rank":
        img = img[None, None]
    elif bad == "int":
        img = (img * 255).astype(np.uint8)
    kw = dict(target=1)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        lj.morph(f, img, **kw)


def test_bad_classifier_and_size_raise():
    img = smooth_image(16, 16)
    with pytest.raises(ValueError, match="logits_fn|classifier must map"):
        lj.morph(lambda x: x.reshape(x.shape[0], -1)[:, 0], img, target=0)
    with pytest.raises(ValueError, match="logits_fn|classifier must map|batch size"):
        lj.morph(lambda x: jnp.zeros((3, 2)), img, target=0)
    small = jnp.full((6, 6, 1), 0.5)
    with pytest.raises(ValueError, match="height"):
        lj.morph(lambda x: jnp.zeros((x.shape[0], 2)), small, target=0, domain="csp_phase")
    with pytest.raises(ValueError, match="plan"):
        lj.morph(smooth_classifier(16, 16), img, target=0,
                 pyramid=lj.SteerablePyramid((32, 32)))


def test_transform_gradient_under_shard_map_matches_vmap():
    """Edit parameters must not be replicated constants: under shard_map (default
    check_vma) a replicated zero makes jax.grad sum every device's gradient."""
    from jax.sharding import PartitionSpec as P
    n = min(len(jax.devices()), 4)
    if n < 2:
        pytest.skip("needs several (forced CPU) devices")
    H = W = 16
    f = smooth_classifier(H, W)
    x = jnp.stack([smooth_image(H, W, seed=s) for s in range(n)])
    t = jnp.arange(n) % 3

    def g(img, tt):
        ed = lj.prepare_edit(f, img, target=tt, domain="csp_phase", source=0)
        return jax.grad(ed.loss)(ed.zeros)

    ref = jax.jit(jax.vmap(g))(x, t)
    mesh = jax.make_mesh((n,), ("i",), devices=jax.devices()[:n])
    put = lambda a: jax.device_put(a, jax.sharding.NamedSharding(mesh, P("i")))
    out = jax.jit(jax.shard_map(jax.vmap(g), mesh=mesh, in_specs=P("i"),
                                out_specs=P("i")))(put(x), put(t))
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(out)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("per_call", [None, 2])
def test_morph_batch_equals_vmap_of_morph(per_call):
    # per_call=2: the batch of 3 runs as two calls of 2 images, the last padded;
    # results must not change
    H = W = 16
    f = smooth_classifier(H, W)
    imgs = jnp.stack([smooth_image(H, W, seed=s) for s in range(3)])
    targets = jnp.array([0, 2, 1])
    for kw in (dict(alphas=jnp.linspace(0, 3, 4)), dict(l2_budget=jnp.array([0.5, 1.0]))):
        mb = lj.morph_batch(f, imgs, target=targets, images_per_call=per_call, **kw)
        mv = jax.vmap(lambda x, t: lj.morph(f, x, target=t, **kw))(imgs, targets)
        assert mb.frames.shape == mv.frames.shape
        for a, b in zip(jax.tree.leaves(mb), jax.tree.leaves(mv)):
            np.testing.assert_allclose(a, b, atol=2e-6)
    with pytest.raises(ValueError, match="outside"):
        lj.morph_batch(f, imgs, target=jnp.array([0, 5, 1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lj.morph_batch(f, imgs * 3, target=0)


# ----------------------------------------------------------------------------------
# nothing silent: each case gave a valid-looking wrong result before
# ----------------------------------------------------------------------------------

def test_traced_out_of_range_target_gives_nan_for_that_image_only():
    """jit(vmap(morph)): target 7 of 3 classes used to give exactly class 2's frames."""
    H = W = 16
    f = smooth_classifier(H, W)
    imgs = jnp.stack([smooth_image(H, W, seed=s) for s in range(3)])
    run = jax.jit(jax.vmap(lambda x, t: lj.morph(f, x, target=t, n_frames=3)))
    m = run(imgs, jnp.array([0, 7, -1]))
    for i in (1, 2):
        assert np.all(np.isnan(m.frames[i])) and np.all(np.isnan(m.probs[i]))
        assert not np.any(m.reached[i]) and np.all(np.isnan(m.l2[i]))
    good = lj.morph(f, imgs[0], target=0, n_frames=3)
    np.testing.assert_allclose(m.probs[0], good.probs, atol=1e-5)
    assert np.all(m.reached[0])
    assert [int(t) for t in m.target] == [0, 7, -1]      # reported as given, not clamped


def test_budget_needs_two_frames():
    f = smooth_classifier(16, 16)
    img = smooth_image(16, 16)
    with pytest.raises(ValueError, match="n_frames"):
        lj.morph(f, img, target=1, l2_budget=2.0, n_frames=1)
    with pytest.raises(ValueError, match="n_frames"):
        lj.morph(f, img, target=1, n_frames=1)             # automatic schedule
    for bad in (2.7, "3", True):
        with pytest.raises(ValueError, match="n_frames"):
            lj.morph(f, img, target=1, n_frames=bad)


@pytest.mark.parametrize("kind", ["nan", "inf", "overflow"])
def test_non_finite_logits_raise_eagerly_and_are_nan_under_jit(kind):
    H = W = 16
    g = smooth_classifier(H, W)
    # NaN logits, an inf logit, or float32 overflow to +-inf, each from the weights (arrays
    # the classifier closes over are its parameters: the three kinds share one program)
    a, b, c = {"nan": (jnp.nan, 1.0, [0.0, 0.0, 0.0]), "inf": (1.0, 1.0, [jnp.inf, 0.0, 0.0]),
               "overflow": (1e20, 1e20, [0.0, 0.0, 0.0])}[kind]
    a, b, c = jnp.float32(a), jnp.float32(b), jnp.asarray([c], jnp.float32)
    f = lambda x: g(x) * a * b + c
    img = smooth_image(H, W)
    with pytest.raises(ValueError, match="non-finite|not finite"):
        lj.morph(f, img, target=1, n_frames=3)
    with pytest.raises(ValueError, match="non-finite|not finite"):
        lj.morph(f, img, target=1, n_frames=3, source=0)
    m = jax.jit(lambda x: lj.morph(f, x, target=1, n_frames=3))(img)
    assert np.all(np.isnan(m.probs)) and np.all(np.isnan(m.frames))
    assert not np.any(m.reached)
    mb = jax.jit(lambda x: lj.morph(f, x, target=1, l2_budget=jnp.array([0.5])))(img)
    assert not np.any(mb.reached) and np.all(np.isnan(mb.probs))


def test_non_finite_logits_at_a_later_frame_raise():
    """Finite at the source, inf once the image darkens (toward class 1): eager ValueError
    names the frame; under jit that frame's probabilities are NaN and it is not 'reached'."""
    H = W = 16
    f = lambda x: jnp.stack([jnp.where(x.mean((1, 2, 3)) < 0.4, jnp.inf, 0.0),
                             -x.mean((1, 2, 3))], -1)
    img = jnp.full((H, W, 1), 0.5)
    alphas = jnp.array([0.0, 1e-4, 1e3])
    with pytest.raises(ValueError, match="frame 2"):
        lj.morph(f, img, target=1, domain="pixel", alphas=alphas)
    m = jax.jit(lambda x: lj.morph(f, x, target=1, domain="pixel", alphas=alphas))(img)
    assert np.all(np.isfinite(m.probs[:2])) and np.all(np.isnan(m.probs[2]))
    assert list(np.asarray(m.reached)) == [True, True, False]


def _stream(f, img, target, source=None, *, keep_frames, chunk_size=None, loss="nll",
            domain="pixel", **schedule):
    """``lens.morph_stream`` under jit (the sweep's use): ``(Morph, problem)``."""
    from lens_jax.lens import morph_stream
    clf = lj.classifier.as_classifier(f)
    dom = lj.get_domain(domain, img.shape[:2])
    sched = lj.Schedule.parse(**schedule, domain=dom)
    run = jax.jit(lambda x, t, s: morph_stream(
        clf, x, t, s, sched, domain=dom, num_classes=2, loss=loss, chunk_size=chunk_size,
        keep_frames=keep_frames))
    return run(img, jnp.int32(target), None if source is None else jnp.int32(source))


def test_morph_stream_keep_frames_changes_no_value():
    """Issue 17: logits that turn inf at a late frame gave reached [T, T, T] in the
    sweep's streamed path and [T, T, F] with kept frames.  One core: every combination
    of keep_frames and chunk_size gives the same reached, probabilities and L2."""
    f = lambda x: jnp.stack([jnp.where(x.mean((1, 2, 3)) < 0.4, jnp.inf, 0.0),
                             -x.mean((1, 2, 3))], -1)
    img = jnp.full((16, 16, 1), 0.5)
    alphas = jnp.array([0.0, 1e-4, 1e3])
    ref, p0 = _stream(f, img, 1, keep_frames=True, alphas=alphas)
    assert int(p0) == 0 and ref.frames.shape == (3, 16, 16, 1)
    assert list(np.asarray(ref.reached)) == [True, True, False]
    assert np.all(np.isfinite(ref.probs[:2])) and np.all(np.isnan(ref.probs[2]))
    for keep, chunk in ((False, None), (False, 2), (True, 2)):
        m, _ = _stream(f, img, 1, keep_frames=keep, chunk_size=chunk, alphas=alphas)
        assert (m.frames is None) == (not keep)
        # the same values: NaN exactly where ref is NaN, and equal up to the last bit
        # (at most 2 ulp: keep_frames and chunk_size compile different programs, whose
        # fusions XLA may round differently; no value is recomputed another way)
        np.testing.assert_array_equal(m.reached, ref.reached)
        _same_to_ulp(m.probs, ref.probs)
        _same_to_ulp(m.l2, ref.l2)
        np.testing.assert_array_equal(m.alphas, ref.alphas)
    # a budget schedule streams the same way
    b1, _ = _stream(f, img, 1, keep_frames=True, l2_budget=jnp.array([0.5, 1.0]))
    b0, _ = _stream(f, img, 1, keep_frames=False, chunk_size=1,
                    l2_budget=jnp.array([0.5, 1.0]))
    _same_to_ulp(b0.probs, b1.probs)
    np.testing.assert_array_equal(b0.reached, b1.reached)


def _same_to_ulp(a, b, maxulp=2):
    a, b = np.asarray(a), np.asarray(b)
    ok = ~np.isnan(b)
    np.testing.assert_array_equal(np.isnan(a), ~ok)
    np.testing.assert_array_max_ulp(a[ok], b[ok], maxulp=maxulp)


@pytest.mark.parametrize("keep_frames", [True, False])
def test_morph_stream_never_makes_up_probabilities(keep_frames):
    """All-NaN / inf logits give NaN probabilities and reached False (the sweep's old
    path returned a finite softmax of NaN logits); margin with source == target is a
    problem (code 5), not a silent no-op."""
    g = smooth_classifier(16, 16, K=2)
    img = smooth_image(16, 16)
    for f in (lambda x: g(x) * jnp.nan, lambda x: g(x).at[:, 1].set(jnp.inf)):
        m, problem = _stream(f, img, 1, keep_frames=keep_frames, alphas=jnp.array([0.0, 1.0]))
        assert int(problem) == 3
        assert np.all(np.isnan(m.probs)) and not np.any(m.reached)
    m, problem = _stream(g, img, 1, 1, keep_frames=keep_frames, loss="margin",
                         alphas=jnp.array([0.0, 1.0]))
    assert lj.lens.PROBLEMS[int(problem)].startswith("loss='margin' with source == target")
    assert np.all(np.isnan(m.probs)) and np.all(np.isnan(m.l2)) and not np.any(m.reached)


def test_gradient_through_the_l2_budget_matches_finite_differences():
    """Issue 18: jax.grad w.r.t. l2_budget was silently 0.0; the budget search is now
    differentiated implicitly (fixed mode) and refused in live modes."""
    H = W = 16
    f = smooth_classifier(H, W)
    img = smooth_image(H, W)

    def p_end(b, domain):
        return lj.morph(f, img, target=1, domain=domain, l2_budget=b[None]).target_prob[0]

    for domain in ("pixel", "csp_phase"):
        g = float(jax.grad(p_end)(jnp.float32(0.5), domain))
        eps = 0.02
        fd = (float(p_end(jnp.float32(0.5 + eps), domain))
              - float(p_end(jnp.float32(0.5 - eps), domain))) / (2 * eps)
        assert abs(fd) > 1e-4 and abs(g - fd) <= 0.05 * abs(fd) + 1e-6, (domain, g, fd)
    with pytest.raises(ValueError, match="l2_budget.*mode='fixed'"):
        jax.grad(lambda b: lj.morph(f, img, target=1, mode="live", n_frames=2,
                                    l2_budget=b).target_prob[-1])(0.5)


def test_weak_answers_become_errors_naming_the_argument():
    """Issue 19: truncated counts, a string flag, huge requests and a round-off pixel;
    issue 18: channels-first images."""
    H = W = 16
    f = smooth_classifier(H, W)
    img = smooth_image(H, W)
    for kw, match in ((dict(chunk_size=2.7), "chunk_size"), (dict(chunk_size="3"), "chunk_size"),
                      (dict(chunk_size=1.0), "chunk_size"),
                      (dict(stop_before_wrap="no"), "stop_before_wrap"),
                      (dict(n_frames=10**6, l2_budget=1.0), "n_frames.*chunk_size")):
        with pytest.raises(ValueError, match=match):
            lj.morph(f, img, target=1, **kw)
    with pytest.raises(ValueError, match="images_per_call"):
        lj.morph_batch(f, img[None], target=1, images_per_call=1.5)
    huge = jax.ShapeDtypeStruct((3000, 3000), jnp.float32)     # never allocated
    g = lambda x: jnp.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], -1)
    with pytest.raises(ValueError, match="GiB.*chunk_size"):
        jax.eval_shape(lambda x: lj.morph(g, x, target=1, l2_budget=1.0), huge)
    bad = np.asarray(img).copy()
    bad[0, 0] = np.float32(1.0000001)
    with pytest.raises(ValueError, match=r"1 of 256 lie outside.*max 1\.0000001"):
        lj.morph(f, bad, target=1)
    with pytest.raises(ValueError, match=r"channels-first \(C, H, W\).*moveaxis"):
        lj.morph(f, jnp.zeros((3, 16, 8)), target=1, color="rgb")
    with pytest.raises(ValueError, match=r"channels-first \(N, C, H, W\)"):
        lj.morph_batch(f, jnp.zeros((2, 3, 16, 16)), target=1)


def test_morph_batch_takes_n_by_t_targets_as_the_sweep_does():
    H = W = 16
    f = smooth_classifier(H, W)
    imgs = jnp.stack([smooth_image(H, W, seed=0), smooth_image(H, W, seed=1)])
    alphas = jnp.array([0.0, 2.0])
    m = lj.morph_batch(f, imgs, target=jnp.array([[0, 2], [1, 0]]), alphas=alphas)
    assert m.frames.shape == (2, 2, 2, H, W, 1) and m.target.tolist() == [[0, 2], [1, 0]]
    for t in range(2):
        one = lj.morph_batch(f, imgs, target=m.target[:, t], alphas=alphas)
        np.testing.assert_allclose(m.frames[:, t], one.frames, atol=1e-6)
        np.testing.assert_allclose(m.probs[:, t], one.probs, atol=1e-6)
    with pytest.raises(ValueError, match="one row per image"):
        lj.morph_batch(f, imgs, target=jnp.zeros((3, 2), jnp.int32), alphas=alphas)


def test_integer_logits_margin_same_class_and_target_count():
    H = W = 16
    f = smooth_classifier(H, W)
    img = smooth_image(H, W)
    with pytest.raises(ValueError, match="int32 logits"):
        lj.morph(lambda x: jnp.round(f(x) * 100).astype(jnp.int32), img, target=1)
    with pytest.raises(ValueError, match="margin"):
        lj.morph(f, img, target=1, source=1, loss="margin")
    src = int(jnp.argmax(f(img[None])[0]))
    with pytest.raises(ValueError, match="margin"):          # source defaults to the argmax
        lj.morph(f, img, target=src, loss="margin")
    m = jax.jit(lambda t: lj.morph(f, img, target=t, source=1, loss="margin"))(1)
    assert np.all(np.isnan(m.probs))                          # traced: NaN, not a no-op
    imgs = jnp.stack([img, img, img])
    with pytest.raises(ValueError, match=r"target.*3 images.*\(2,\)"):
        lj.morph_batch(f, imgs, target=jnp.array([0, 1]))
    with pytest.raises(ValueError, match="margin"):
        lj.morph_batch(f, imgs, target=jnp.array([0, 1, 2]), source=2, loss="margin")


def test_schedule_parse():
    S = lj.Schedule
    s = S.parse(n_frames=5, domain="csp_phase")
    assert s.kind == "step_cap" and s.auto and np.isclose(float(s.step_cap), np.pi / 4)
    assert np.isclose(float(S.parse(n_frames=3, domain="pixel").step_cap), 0.5)
    assert S.parse(l2_budget=2.0).kind == "budget" and S.parse(l2_budget=2.0).length == 12
    assert S.parse(l2_budget=[1.0, 2.0]).length == 2
    assert S.parse(alphas=[0.0, 1.0, 2.0]).length == 3
    for kwargs, match in [(dict(alphas=[1.0], step_cap=1.0), "at most one"),
                          (dict(n_frames=2.7), "n_frames"),
                          (dict(l2_budget=[1.0, -1.0]), "l2_budget"),
                          (dict(l2_budget=jnp.nan), "l2_budget"),
                          (dict(step_cap=0.0), "step_cap"),
                          (dict(step_cap=[1.0, 2.0]), "step_cap"),
                          (dict(alphas=[[1.0]]), "alphas"),
                          (dict(alphas=[0.0, 2.0, 1.0], mode="live"), "non-decreasing"),
                          (dict(domain="wavelet"), "unknown domain")]:
        with pytest.raises(ValueError, match=match):
            S.parse(**kwargs)
    # the automatic schedule follows the registry's final_change
    assert lj.lens.DEFAULT_FINAL_CHANGE["csp_phase"] == lj.REGISTRY["csp_phase"].final_change


# ----------------------------------------------------------------------------------
# phase wrapping
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("domain", ["csp_phase", "fourier_phase", "csp_joint", "pixel"])
def test_wrapped_fraction_matches_an_independent_count(domain):
    H = W = 16
    f = smooth_classifier(H, W)
    img = smooth_image(H, W)
    alphas = jnp.array([0.0, 1.0, 30.0, 300.0])
    m = lj.morph(f, img, target=1, domain=domain, alphas=alphas)
    if domain == "pixel":
        assert np.all(np.isnan(m.wrapped))
        return
    leaves = [np.asarray(l) for l in jax.tree.leaves(m.grad["phase"])]
    total = sum(l.size for l in leaves)
    want = [sum(int(np.sum(np.abs(a * l) > np.pi)) for l in leaves) / total
            for a in np.asarray(alphas)]
    np.testing.assert_allclose(m.wrapped, want, atol=1e-7)
    assert float(m.wrapped[0]) == 0.0 and float(m.wrapped[-1]) > 0.0


@pytest.mark.parametrize("domain", ["csp_phase", "fourier_phase"])
def test_stop_before_wrap_caps_the_phase_change_at_pi(domain):
    H = W = 16
    f = smooth_classifier(H, W)
    img = smooth_image(H, W)
    free = lj.morph(f, img, target=1, domain=domain, step_cap=1.0, n_frames=6)
    capped = lj.morph(f, img, target=1, domain=domain, step_cap=1.0, n_frames=6,
                      stop_before_wrap=True)
    # frames up to a change of pi are untouched; beyond, they hold the cap
    assert np.all(np.asarray(capped.max_change) <= np.pi * (1 + 1e-6))
    assert np.all(np.asarray(capped.wrapped) == 0.0)
    assert float(free.wrapped[-1]) > 0
    below = np.asarray(free.max_change) <= np.pi
    np.testing.assert_allclose(capped.frames[below], free.frames[below], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(capped.reached), below)
    np.testing.assert_allclose(capped.max_change[~below], np.pi, rtol=1e-5)
    np.testing.assert_allclose(capped.frames[-1], capped.frames[~below][0], atol=1e-6)
    # an L2 budget beyond the cap is not reached; one below it is, and matches
    far = lj.morph(f, img, target=1, domain=domain, l2_budget=jnp.array([0.2, 1e3]),
                   stop_before_wrap=True)
    assert list(np.asarray(far.reached)) == [True, False]
    np.testing.assert_allclose(float(far.l2[0]), 0.2, rtol=1e-3)
    assert float(far.max_change[1]) <= np.pi * (1 + 1e-6)
    with pytest.raises(ValueError, match="stop_before_wrap"):
        lj.morph(f, img, target=1, domain=domain, mode="live", stop_before_wrap=True)
    with pytest.raises(ValueError, match="stop_before_wrap"):
        lj.morph(f, img, target=1, domain="pixel", stop_before_wrap=True)


def test_domain_object_and_options():
    H = W = 16
    f = smooth_classifier(H, W)
    img = smooth_image(H, W)
    pyr = lj.default_pyramid((H, W)).replace(synthesis="real")
    with pytest.warns(UserWarning, match="synthesis='real'"):
        dom = lj.get_domain("csp_phase", (H, W), pyramid=pyr)
    with pytest.warns(UserWarning, match="conventions"):
        a = lj.morph(f, img, target=1, domain=dom, n_frames=3)
    with pytest.warns(UserWarning, match="conventions"):
        b = lj.morph(f, img, target=1, domain="csp_phase", pyramid=pyr, n_frames=3)
    np.testing.assert_array_equal(a.frames, b.frames)
    with pytest.raises(ValueError, match="pyramid"):
        lj.morph(f, img, target=1, domain=dom, pyramid=pyr)
    with pytest.raises(ValueError, match="option"):
        lj.morph(f, img, target=1, domain="csp_phase", domain_options={"bogus": 1})


# ----------------------------------------------------------------------------------
# property: finite inputs never give non-finite outputs; rejections name the argument
# ----------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings, strategies as st   # noqa: E402

_ARGS = ("image", "target", "source", "domain", "alphas", "loss", "mode", "step_cap",
         "l2_budget", "n_frames", "color", "pyramid", "stop_before_wrap", "logits_fn")


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(domain=st.sampled_from(["pixel", "fourier_phase", "csp_phase", "csp_amplitude",
                               "csp_joint"]),
       mode=st.sampled_from(["fixed", "fixed", "live", "live_local"]),
       kind=st.sampled_from(["alphas", "step_cap", "budget", "budgets", "auto"]),
       value=st.floats(-2.0, 40.0, allow_nan=False),
       n_frames=st.sampled_from([2, 3, 3, 4, 1, 2.7]),
       loss=st.sampled_from(["nll", "nll", "margin"]),
       target=st.sampled_from([0, 1, 2, 0, 1, 2, -1, 3]), size=st.sampled_from([8, 16]),
       seed=st.integers(0, 3), wrap=st.sampled_from([False, False, True]))
def test_morph_property(domain, mode, kind, value, n_frames, loss, target, size, seed, wrap):
    f = smooth_classifier(size, size, seed=seed)
    img = smooth_image(size, size, seed=seed)
    kw = dict(target=target, domain=domain, mode=mode, loss=loss, n_frames=n_frames,
              stop_before_wrap=wrap)
    if kind == "alphas":
        kw["alphas"] = jnp.array([0.0, abs(value) if mode != "fixed" else value])
    elif kind == "step_cap":
        kw["step_cap"] = value
    elif kind == "budget":
        kw["l2_budget"] = value
    elif kind == "budgets":
        kw["l2_budget"] = jnp.array([value, 2 * value])
    try:
        m = lj.morph(f, img, **kw)
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert any(a in msg for a in _ARGS) or "classifier" in msg or "logits" in msg \
            or "schedule" in msg or "gradient" in msg, msg
        return
    for name in ("frames", "alphas", "probs", "logits", "l2", "max_change"):
        assert np.all(np.isfinite(np.asarray(getattr(m, name)))), name
    assert float(m.frames.min()) >= 0 and float(m.frames.max()) <= 1
    _RAN.append(1)


_RAN: list = []


def test_morph_property_ran_real_morphs():
    """The property test above must not pass by rejecting everything."""
    if not _RAN:
        test_morph_property()
    assert len(_RAN) >= 5, len(_RAN)


def test_prepare_edit_traced_bad_target_gives_nan_loss():
    f = smooth_classifier(16, 16)
    img = smooth_image(16, 16)

    def loss_at_zero(t):
        ed = lj.prepare_edit(f, img, target=t)
        return ed.loss(ed.zeros)

    run = jax.jit(loss_at_zero)
    assert np.isfinite(float(run(2))) and np.isnan(float(run(3)))
    with pytest.raises(ValueError, match="target"):
        lj.prepare_edit(f, img, target=3)


def test_quick_test_codegen_gives_the_results_of_xlas_default(tmp_path):
    """The suite compiles with XLA's quick CPU code generation and, in the test processes,
    LLVM at -O0 (tests/conftest.py); a morph compiled with XLA's defaults (what users run)
    in a fresh process gives the same frames and probabilities, for a pixel, a pyramid and
    a flow domain."""
    import subprocess
    import sys

    from conftest import xla_flags

    domains = ("pixel", "csp_phase", "csp_flow_joint")
    code = (
        "import sys, numpy as np, jax.numpy as jnp, lens_jax as lj\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_lens import smooth_classifier, smooth_image\n"
        "f, img = smooth_classifier(16, 16), smooth_image(16, 16)\n"
        "out = {}\n"
        f"for d in {domains!r}:\n"
        "    m = lj.morph(f, img, target=0, domain=d, alphas=jnp.array([0.0, 0.5, 2.0]))\n"
        "    out[d + '_frames'], out[d + '_probs'] = np.asarray(m.frames), np.asarray(m.probs)\n"
        f"np.savez({str(tmp_path / 'default.npz')!r}, **out)\n")
    env = dict(os.environ, XLA_FLAGS=xla_flags(codegen="default"), JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    if os.environ.get("LENS_JAX_TEST_CODEGEN", "quick") == "quick":   # this process: quick
        assert "xla_cpu_use_fusion_emitters" in os.environ["XLA_FLAGS"]
        from jax._src import compiler                   # and unoptimised machine code
        opts = compiler.get_compile_options(num_replicas=1, num_partitions=1)
        assert ("xla_backend_optimization_level", 0) in list(opts.env_option_overrides)
    ref = np.load(tmp_path / "default.npz")
    f, img = smooth_classifier(16, 16), smooth_image(16, 16)
    for d in domains:
        m = lj.morph(f, img, target=0, domain=d, alphas=jnp.array([0.0, 0.5, 2.0]))
        np.testing.assert_allclose(m.frames, ref[d + "_frames"], atol=2e-6, err_msg=d)
        np.testing.assert_allclose(m.probs, ref[d + "_probs"], atol=2e-6, err_msg=d)
