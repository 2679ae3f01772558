"""Sweeps on a mesh of 8 (forced CPU) devices equal the same sweep on one device, for
every schedule (raw alphas, scalar and 1-D ``l2_budget``, ``step_cap``, automatic), fixed
and live modes, ``mesh=None`` with several devices, user axis names and an alpha axis
(issue 18.1: everything but raw alphas and a 1-D budget crashed inside ``shard_map``).

The test processes run on eight forced host devices (tests/conftest.py), so each case runs
in-process, as a user's sweep on a multi-device host does (this file once started a
subprocess of its own for the device count: one more jax start, and no compiled program
shared with the other sweep tests).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lens_jax.domains import domain_names
from lens_jax.sweep import run, sweep_mesh

H = W = 16
K = 3


def _problem():
    w = jnp.asarray(np.random.default_rng(0).standard_normal((H * W, K)) * 0.1, jnp.float32)

    def f(x):
        return x.reshape(x.shape[0], -1) @ w

    r = np.random.default_rng(1)
    x = (0.15 + 0.7 * r.random((11, H, W))).astype(np.float32)     # 11: padded chunks
    t = (np.arange(11) * 2) % K
    return f, x, t


def _check(name, rtol=1e-5, atol=1e-6, **kw):
    f, x, t = _problem()
    kw = dict(dict(domain="pixel", progress=False, keep_frames=[0, 10]), **kw)
    a = run(f, x, t, **kw)
    ref = {k: v for k, v in kw.items() if k not in ("image_axis", "alpha_axis")}
    b = run(f, x, t, **{**ref, "mesh": sweep_mesh(devices=jax.devices()[:1])})
    for field in ("probs", "logits", "l2", "alphas", "max_change", "frames"):
        u, v = getattr(a, field), getattr(b, field)
        assert u.shape == v.shape, (name, field, u.shape, v.shape)
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol, err_msg=f"{name} {field}")
    for field in ("reached", "problem", "target", "source", "frame_index"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field),
                                      err_msg=f"{name} {field}")
    assert np.isfinite(a.probs).all(), name
    return a


ALPHAS = np.array([0.0, 0.7, 1.4, 2.1, 2.8], np.float32)   # 5: padded on 2 shards
BUDGETS = np.array([0.3, 0.6, 0.9], np.float32)


def _devs():
    assert len(jax.devices()) == 8, jax.devices()
    return np.array(jax.devices())


CASES = {
    "alphas_default_mesh": lambda: dict(domain="fourier_phase", alphas=ALPHAS, chunk_size=8),
    "budget_default_mesh": lambda: dict(l2_budget=1.0, n_frames=3, rtol=1e-4, atol=1e-5),
    "step_cap_user_axis": lambda: dict(step_cap=0.3, n_frames=3,
                                       mesh=jax.make_mesh((8,), ("data",))),
    "auto_live_2d_mesh": lambda: dict(n_frames=3, mode="live", image_axis="batch",
                                      mesh=jax.sharding.Mesh(_devs().reshape(2, 4),
                                                             ("rep", "batch"))),
    "budget_live_local": lambda: dict(l2_budget=1.0, n_frames=3, mode="live_local",
                                      mesh=jax.make_mesh((8,), ("data",)), rtol=1e-4,
                                      atol=1e-5),
    "budgets_alpha_axis": lambda: dict(l2_budget=BUDGETS, alpha_axis="frames", rtol=1e-4,
                                       atol=1e-5, mesh=jax.sharding.Mesh(
                                           _devs().reshape(4, 2), ("imgs", "frames"))),
    "alphas_alpha_axis": lambda: dict(alphas=ALPHAS, mesh=sweep_mesh(alpha_shards=2)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_schedule_on_8_devices_matches_one_device(case):
    _devs()
    a = _check(case, **CASES[case]())
    if case == "budget_default_mesh":
        np.testing.assert_allclose(a.l2[:, -1], 1.0, rtol=1e-3)
    if case == "budgets_alpha_axis":
        np.testing.assert_allclose(a.l2, np.broadcast_to(BUDGETS, a.l2.shape), rtol=1e-3)


def test_scalar_budget_on_an_alpha_axis_is_refused():
    f, x, t = _problem()
    with pytest.raises(ValueError, match="alpha mesh axis"):
        run(f, x, t, domain="pixel", l2_budget=1.0, mesh=sweep_mesh(alpha_shards=2),
            progress=False)


@pytest.mark.parametrize("domain", domain_names())
def test_every_domain_on_8_devices_matches_one_device(domain):
    """Each domain builds its edit parameters inside the per-device program: a psum of
    gradients across devices would show here.  One image per device."""
    _devs()
    f, x, t = _problem()
    one = sweep_mesh(devices=jax.devices()[:1])
    kw = dict(domain=domain, alphas=np.array([0.0, 3.0], np.float32), progress=False)
    a = run(f, x[:8], t[:8], **kw)
    b = run(f, x[:8], t[:8], mesh=one, **kw)
    for field in ("probs", "l2", "max_change"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-5,
                                   atol=1e-6, err_msg=f"{domain} {field}")
    assert np.isfinite(a.probs).all() and a.l2[:, 1].min() > 0, domain
