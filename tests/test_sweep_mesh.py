"""Sweeps on a mesh of 8 (forced CPU) devices equal the same sweep on one device, for
every schedule (raw alphas, scalar and 1-D ``l2_budget``, ``step_cap``, automatic), fixed
and live modes, ``mesh=None`` with several devices, user axis names and an alpha axis
(issue 18.1: everything but raw alphas and a 1-D budget crashed inside ``shard_map``).

The device count is fixed when jax starts, so every case runs in ONE subprocess (this
file run as a script, with ``--xla_force_host_platform_device_count=8``): one jax start
and one compile per configuration and mesh.
"""
import os
import subprocess
import sys

CASES = ("alphas_default_mesh", "budget_default_mesh", "step_cap_user_axis",
         "auto_live_2d_mesh", "budget_live_local", "budgets_alpha_axis",
         "alphas_alpha_axis", "scalar_budget_alpha_axis_refused", "every_domain")


def test_every_schedule_on_8_devices_matches_one_device():
    from conftest import xla_flags
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUMPY_DTYPE_PROMOTION="strict",
               JAX_NUMPY_RANK_PROMOTION="raise",
               XLA_FLAGS=xla_flags(8))
    p = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    done = [line.split()[1] for line in p.stdout.splitlines() if line.startswith("ok ")]
    assert done == list(CASES), p.stdout


def _main() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from lens_jax.domains import domain_names
    from lens_jax.sweep import run, sweep_mesh

    assert len(jax.devices()) == 8, jax.devices()
    H = W = 16
    K = 3
    w = jnp.asarray(np.random.default_rng(0).standard_normal((H * W, K)) * 0.1, jnp.float32)

    def f(x):
        return x.reshape(x.shape[0], -1) @ w

    r = np.random.default_rng(1)
    x = (0.15 + 0.7 * r.random((11, H, W))).astype(np.float32)     # 11: padded chunks
    t = (np.arange(11) * 2) % K
    one = sweep_mesh(devices=jax.devices()[:1])
    devs = np.array(jax.devices())

    def check(name, rtol=1e-5, atol=1e-6, **kw):
        kw = dict(dict(domain="pixel", progress=False, keep_frames=[0, 10]), **kw)
        a = run(f, x, t, **kw)
        ref = {k: v for k, v in kw.items() if k not in ("image_axis", "alpha_axis")}
        b = run(f, x, t, **{**ref, "mesh": one})
        for field in ("probs", "logits", "l2", "alphas", "max_change", "frames"):
            u, v = getattr(a, field), getattr(b, field)
            assert u.shape == v.shape, (name, field, u.shape, v.shape)
            np.testing.assert_allclose(u, v, rtol=rtol, atol=atol, err_msg=f"{name} {field}")
        for field in ("reached", "problem", "target", "source", "frame_index"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field),
                                          err_msg=f"{name} {field}")
        assert np.isfinite(a.probs).all(), name
        print("ok", name, flush=True)
        return a

    alphas = np.array([0.0, 0.7, 1.4, 2.1, 2.8], np.float32)   # 5: padded on 2 shards
    check("alphas_default_mesh", domain="fourier_phase", alphas=alphas, chunk_size=8)
    a = check("budget_default_mesh", l2_budget=1.0, n_frames=3, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.l2[:, -1], 1.0, rtol=1e-3)
    check("step_cap_user_axis", step_cap=0.3, n_frames=3,
          mesh=jax.make_mesh((8,), ("data",)))
    check("auto_live_2d_mesh", n_frames=3, mode="live",
          mesh=jax.sharding.Mesh(devs.reshape(2, 4), ("rep", "batch")), image_axis="batch")
    check("budget_live_local", l2_budget=1.0, n_frames=3, mode="live_local",
          mesh=jax.make_mesh((8,), ("data",)), rtol=1e-4, atol=1e-5)
    alpha_mesh = jax.sharding.Mesh(devs.reshape(4, 2), ("imgs", "frames"))
    budgets = np.array([0.3, 0.6, 0.9], np.float32)
    a = check("budgets_alpha_axis", l2_budget=budgets, mesh=alpha_mesh, alpha_axis="frames",
              rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.l2, np.broadcast_to(budgets, a.l2.shape), rtol=1e-3)
    check("alphas_alpha_axis", alphas=alphas, mesh=sweep_mesh(alpha_shards=2))
    try:
        run(f, x, t, domain="pixel", l2_budget=1.0, mesh=sweep_mesh(alpha_shards=2),
            progress=False)
    except ValueError as e:
        assert "alpha mesh axis" in str(e), e
        print("ok scalar_budget_alpha_axis_refused", flush=True)
    # every registered domain (each builds its edit parameters inside the per-device
    # program: a psum of gradients across devices would show here); one image per device
    for d in domain_names():
        a = run(f, x[:8], t[:8], domain=d, alphas=np.array([0.0, 3.0], np.float32),
                progress=False)
        b = run(f, x[:8], t[:8], domain=d, alphas=np.array([0.0, 3.0], np.float32),
                mesh=one, progress=False)
        for field in ("probs", "l2", "max_change"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-5,
                                       atol=1e-6, err_msg=f"{d} {field}")
        assert np.isfinite(a.probs).all() and a.l2[:, 1].min() > 0, d
    print("ok every_domain", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    _main()
