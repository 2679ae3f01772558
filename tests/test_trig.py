"""The fused float32 sincos against float64 numpy (an independent reference)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lens_jax._trig import rotation, sincos


def _ref(x):
    xd = np.asarray(x, np.float64)          # the float32 value, exactly
    return np.sin(xd), np.cos(xd)


@pytest.mark.parametrize("scale,tol", [(1.0, 1.2e-7), (10.0, 1.2e-7), (1e3, 1.2e-7),
                                       (8192.0, 2e-7)])
def test_sincos_float32_accuracy(scale, tol):
    rng = np.random.default_rng(0)
    x = (rng.uniform(-1, 1, 200_000) * scale).astype(np.float32)
    # quadrant boundaries and special points too
    k = np.arange(-40, 41)
    x = np.concatenate([x, (k * np.pi / 4).astype(np.float32), np.float32([0.0, -0.0])])
    s, c = jax.jit(sincos)(jnp.asarray(x))
    assert s.dtype == jnp.float32 and c.dtype == jnp.float32
    rs, rc = _ref(x)
    assert np.abs(np.asarray(s) - rs).max() <= tol
    assert np.abs(np.asarray(c) - rc).max() <= tol


def test_sincos_huge_and_nonfinite():
    x = np.float32([1e5, -3e6, 1e20, 3.0e38, -3.0e38, np.inf, -np.inf, np.nan])
    s, c = map(np.asarray, sincos(jnp.asarray(x)))
    fin = np.isfinite(x)
    assert np.all(np.abs(s[fin]) <= 1.0) and np.all(np.abs(c[fin]) <= 1.0)
    # |x| ~ 1e5: the sine of an argument within a few float32 ulps of x
    rs, rc = _ref(x[:1])
    assert abs(s[0] - rs[0]) < 4 * np.spacing(np.float32(1e5)) and \
        abs(c[0] - rc[0]) < 4 * np.spacing(np.float32(1e5))
    assert np.all(np.isnan(s[~fin])) and np.all(np.isnan(c[~fin]))


@pytest.mark.x64
def test_sincos_float64_and_low_precision():
    x64 = np.linspace(-50, 50, 1001)
    s, c = sincos(jnp.asarray(x64, jnp.float64))
    assert s.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(s), np.sin(x64), atol=1e-15)
    np.testing.assert_allclose(np.asarray(c), np.cos(x64), atol=1e-15)
    for dt in (jnp.bfloat16, jnp.float16):
        s, c = sincos(jnp.asarray(x64[:200] / 10, dt))
        assert s.dtype == dt and c.dtype == dt
        xr = np.asarray(jnp.asarray(x64[:200] / 10, dt), np.float64)
        assert np.abs(np.asarray(s, np.float64) - np.sin(xr)).max() < 1e-2
    with pytest.raises(ValueError, match="real"):
        sincos(jnp.ones(3, jnp.complex64))


def test_sincos_derivatives_exact():
    x = jnp.linspace(-20.0, 20.0, 101, dtype=jnp.float32)
    ds = jax.vmap(jax.grad(lambda v: sincos(v)[0]))(x)
    dc = jax.vmap(jax.grad(lambda v: sincos(v)[1]))(x)
    xd = np.asarray(x, np.float64)
    assert np.abs(np.asarray(ds) - np.cos(xd)).max() < 2e-7
    assert np.abs(np.asarray(dc) + np.sin(xd)).max() < 2e-7
    # forward mode too (jax.jvp), and second derivatives
    _, t = jax.jvp(lambda v: sincos(v)[0], (x,), (jnp.ones_like(x),))
    np.testing.assert_allclose(np.asarray(t), np.asarray(ds), atol=0)
    d2 = jax.vmap(jax.grad(jax.grad(lambda v: sincos(v)[0])))(x)
    assert np.abs(np.asarray(d2) + np.sin(xd)).max() < 2e-7


def test_rotation_matches_exp():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 5, 1000).astype(np.float32)
    r = rotation(jnp.asarray(x))
    assert r.dtype == jnp.complex64
    assert np.abs(np.asarray(r) - np.exp(1j * x.astype(np.float64))).max() < 2e-7
    assert rotation(jnp.asarray(x, jnp.bfloat16)).dtype == jnp.complex64
