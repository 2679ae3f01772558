"""Classifier zoo: shapes, dtypes, any input size/channels, differentiability."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lens_jax import models


@pytest.mark.parametrize("name", ["cnn", "resnet_mini", "mlp"])
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 1), (64, 64, 3)])
def test_shapes_and_float32(name, shape):
    model = models.get_model(name, 7)
    params = models.init_params(model, jax.random.PRNGKey(0), shape)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))
    x = np.random.default_rng(0).random((3, *shape))          # float64 under x64
    logits = models.make_logits_fn(model, params)(x)
    assert logits.shape == (3, 7)
    assert logits.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits)))


@pytest.mark.parametrize("name", ["cnn", "resnet_mini", "mlp"])
def test_gradient_wrt_input(name):
    model = models.get_model(name, 10)
    params = models.init_params(model, jax.random.PRNGKey(1), (28, 28, 1))
    logits_fn = models.make_logits_fn(model, params)
    x = jnp.asarray(np.random.default_rng(1).random((2, 28, 28, 1)), jnp.float32)
    g = jax.grad(lambda z: jax.nn.log_softmax(logits_fn(z))[:, 3].sum())(x)
    assert g.shape == x.shape and g.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g).max()) > 0
    # pure: same input, same output; per-example independence (no batch statistics)
    np.testing.assert_array_equal(np.asarray(logits_fn(x)), np.asarray(logits_fn(x)))
    np.testing.assert_allclose(np.asarray(logits_fn(x[:1])), np.asarray(logits_fn(x))[:1],
                               rtol=1e-5, atol=1e-5)


def test_cnn_architecture():
    model = models.get_model("cnn", 10)
    params = models.init_params(model, jax.random.PRNGKey(0), (28, 28, 1))
    assert params["conv0"]["kernel"].shape == (3, 3, 1, 32)
    assert params["conv1"]["kernel"].shape == (3, 3, 32, 64)
    assert params["fc"]["kernel"].shape == (7 * 7 * 64, 128)
    assert params["head"]["kernel"].shape == (128, 10)


def test_registry_and_kwargs():
    assert set(models.MODELS) == {"cnn", "resnet_mini", "mlp"}
    assert isinstance(models.get_model("resnet_mini", 2, width=8), models.ResNetMini)
    assert models.get_model("mlp", 2).width == 512
    assert models.get_model("resnet_mini", 2).width == 32
    with pytest.raises(ValueError, match="unknown model"):
        models.get_model("vgg", 10)
    with pytest.raises(ValueError, match="NHWC"):
        models.get_model("cnn", 10).init(jax.random.PRNGKey(0), jnp.zeros((28, 28, 1)))
