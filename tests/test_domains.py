"""The domain registry: every entry is complete, the identity edit reproduces the source,
changes and wrapped fractions match independent computations, and bad names/options are
refused."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lens_jax as lj
from lens_jax import domains as D


def _image(H=16, W=16, C=1, seed=0):
    r = np.random.default_rng(seed)
    x = r.random((C, H, W))
    k = np.fft.fftfreq(H)[:, None] ** 2 + np.fft.fftfreq(W)[None, :] ** 2
    x = np.real(np.fft.ifft2(np.fft.fft2(x) * np.exp(-k * 60)))
    return jnp.asarray(0.1 + 0.8 * (x - x.min()) / (x.max() - x.min()))


@pytest.mark.parametrize("name", list(D.REGISTRY))
def test_every_entry_is_complete(name):
    spec = D.REGISTRY[name]
    assert spec.name == name
    assert isinstance(spec.label, str) and spec.label
    assert isinstance(spec.unit, str) and spec.unit
    assert math.isfinite(spec.final_change) and spec.final_change > 0
    for fn in (spec.analyse, spec.zeros, spec.render, spec.change):
        assert callable(fn)
    assert spec.wrapped is None or callable(spec.wrapped)
    assert name in lj.DOMAINS or name in D.REGISTRY


@pytest.mark.x64
@pytest.mark.parametrize("name", list(D.REGISTRY))
def test_identity_edit_reproduces_the_source(name):
    """zeros -> render equals the analysed image (tight-frame pyramid: up to round-off)."""
    x = _image()
    dom = D.get_domain(name, (16, 16))
    state = dom.analyse(x)
    params = dom.zeros(state)
    y = dom.render(state, params, (16, 16))
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=1e-10)
    assert float(dom.change(state, params)) == 0.0
    w = float(dom.wrapped(state, params))
    assert w == 0.0 or (math.isnan(w) and D.REGISTRY[name].wrapped is None)


@pytest.mark.x64
@pytest.mark.parametrize("name", ["fourier_phase", "csp_phase", "csp_joint"])
def test_wrapped_and_change_of_a_known_edit(name):
    x = _image()
    dom = D.get_domain(name, (16, 16))
    state = dom.analyse(x)
    zeros = dom.zeros(state)
    r = np.random.default_rng(1)
    # phases uniform in [-2 pi, 2 pi]: about half of them exceed pi in magnitude
    params = jax.tree.map(lambda z: jnp.asarray(r.uniform(-2 * np.pi, 2 * np.pi, z.shape)),
                          zeros)
    leaves = [np.asarray(l) for l in jax.tree.leaves(params["phase"])]
    want = sum(int(np.sum(np.abs(l) > np.pi)) for l in leaves) / sum(l.size for l in leaves)
    np.testing.assert_allclose(float(dom.wrapped(state, params)), want, rtol=1e-12)
    assert 0.3 < want < 0.7
    np.testing.assert_allclose(float(dom.change(state, params)),
                               max(float(np.abs(l).max()) for l in leaves), rtol=1e-12)


@pytest.mark.x64
def test_phase_rotation_by_two_pi_is_the_identity():
    """An independent check of the phase parameterisation: rotating every coefficient by
    2 pi changes nothing."""
    x = _image()
    for name in ("fourier_phase", "csp_phase"):
        dom = D.get_domain(name, (16, 16))
        state = dom.analyse(x)
        params = jax.tree.map(lambda z: z + 2 * np.pi, dom.zeros(state))
        np.testing.assert_allclose(np.asarray(dom.render(state, params, (16, 16))),
                                   np.asarray(x), atol=1e-9)


def test_get_domain_errors_and_domain_values():
    with pytest.raises(ValueError, match="unknown domain"):
        D.get_domain("wavelet", (16, 16))
    with pytest.raises(ValueError, match="option"):
        D.get_domain("csp_phase", (16, 16), bogus=1)
    with pytest.raises(ValueError, match="plan"):
        D.get_domain("csp_phase", (16, 16), pyramid=lj.SteerablePyramid((32, 32)))
    with pytest.raises(ValueError, match="complex"):
        D.get_domain("csp_phase", (16, 16), pyramid=lj.SteerablePyramid((16, 16), is_complex=False))
    # a Domain without a pyramid gets the default plan for the image size
    d = D.get_domain(D.Domain("csp_phase"), (16, 16))
    assert d.pyramid is not None and tuple(d.pyramid.image_shape) == (16, 16)
    assert D.get_domain("pixel", (16, 16)).pyramid is None
    with pytest.raises(ValueError, match="unknown domain"):
        D.get_domain(D.Domain("nope"), (16, 16))
    with pytest.raises(TypeError, match="DomainSpec"):
        D.register(("not", "a", "spec"))


def test_register_one_entry_adds_a_domain():
    """Adding a domain is one entry: morph, schedules and labels pick it up."""
    spec = D.DomainSpec("test_gain", "Gain", "log-gain", 0.5, False,
                        analyse=lambda dom, x: x,
                        zeros=lambda dom, x: {"gain": jnp.zeros((), x.dtype)},
                        render=lambda dom, x, p, shape: x * jnp.exp(p["gain"]),
                        change=lambda dom, x, p: jnp.abs(p["gain"]),
                        check=lambda dom: checked.append(dom) or dom)
    checked = []
    D.register(spec)
    try:
        f = lambda x: jnp.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], -1)
        img = jnp.moveaxis(_image(), 0, -1) * 0.5
        m = lj.morph(f, img, target=0, domain="test_gain", n_frames=3)
        np.testing.assert_allclose(m.max_change, [0.0, 0.25, 0.5], rtol=1e-6)
        assert len(checked) == 1            # the domain is validated once per morph
        # brighter toward class 0: the gain moves up, frames = source * exp(gain)
        np.testing.assert_allclose(m.frames[-1], np.clip(img * np.exp(0.5), 0, 1), rtol=1e-5)
        assert np.all(np.isnan(m.wrapped))
        assert lj.lens.DEFAULT_FINAL_CHANGE["test_gain"] == 0.5
        from lens_jax.compare import DOMAIN_LABELS
        assert DOMAIN_LABELS["test_gain"] == "Gain"
        # the registry is the only list: every view sees the new domain
        assert "test_gain" in D.DOMAINS and "test_gain" in lj.DOMAINS
        assert D.domain_names()[-1] == "test_gain" and D.DOMAINS[-1] == "test_gain"
        mb = lj.morph_batch(f, jnp.stack([img, img * 0.8]), target=0, domain="test_gain",
                            n_frames=3)
        np.testing.assert_allclose(mb.frames[0], m.frames, rtol=1e-6)
        rows = lj.compare.compare_domains(f, img, target=0, domains=("pixel", "test_gain"),
                                          l2_budget=0.5, n_frames=3, warp=False,
                                          verbose=False)
        assert [r["domain"] for r in rows] == ["pixel", "test_gain"]
        assert rows[1]["reached"] and abs(rows[1]["l2"] - 0.5) < 1e-3
    finally:
        del D.REGISTRY["test_gain"]
    assert "test_gain" not in D.DOMAINS


def test_domain_traits_are_declared_not_spelled():
    """has_phase is a declared trait (no "phase" in the name or the params' keys)."""
    phase = {n for n in D.domain_names() if D.REGISTRY[n].has_phase}
    assert phase == {"fourier_phase", "csp_phase", "csp_joint", "csp_flow", "csp_flow_joint"}
    assert set(D.PROTOCOL_DOMAINS) <= set(D.DOMAINS) and D.PAPER_DOMAINS == D.PROTOCOL_DOMAINS
    for bad in (dict(name="a-b"), dict(name="all"), dict(has_phase="yes"),
                dict(has_phase=True, wrapped=None)):
        spec = D.DomainSpec(**dict(dict(
            name="x_dom", label="X", unit="u", final_change=1.0, uses_pyramid=False,
            analyse=lambda dom, x: x, zeros=lambda dom, x: {"d": jnp.zeros_like(x)},
            render=lambda dom, x, p, shape: x + p["d"],
            change=lambda dom, x, p: jnp.max(jnp.abs(p["d"]))), **bad))
        with pytest.raises(ValueError):
            D.register(spec)
    assert "x_dom" not in D.REGISTRY


def test_scales_option_edits_only_those_scales():
    f = lambda x: jnp.stack([x[:, :8].mean((1, 2, 3)), x[:, 8:].mean((1, 2, 3))], -1)
    img = jnp.moveaxis(_image(), 0, -1)
    m = lj.morph(f, img, target=0, domain="csp_phase", domain_options={"scales": [1]},
                 n_frames=3)
    g = m.grad["phase"]
    assert float(jnp.abs(g[0]).max()) == 0.0 and float(jnp.abs(g[1]).max()) > 0.0
    full = lj.morph(f, img, target=0, domain="csp_phase", n_frames=3)
    # the scale-1 part of the gradient is the full gradient's scale-1 part
    np.testing.assert_allclose(g[1], full.grad["phase"][1], rtol=1e-5, atol=1e-9)
    assert float(jnp.abs(m.frames[-1] - img).max()) > 1e-3
    for bad in ([7], [0, 0], "fine", [True]):
        with pytest.raises(ValueError, match="scales"):
            D.get_domain("csp_joint", (16, 16), scales=bad)


def test_own_pyramid_without_the_lens_conventions_warns_with_the_fix():
    """A SteerablePyramid built with its own defaults (no tight frame, real synthesis)
    silently changed the frames (by up to 0.088); now a warning names the fix."""
    with pytest.warns(UserWarning, match=r"default_pyramid\(\(16, 16\)\)\.replace"):
        D.get_domain("csp_phase", (16, 16), pyramid=lj.SteerablePyramid((16, 16)))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        D.get_domain("csp_phase", (16, 16), pyramid=lj.default_pyramid((16, 16)).replace(height=1))
