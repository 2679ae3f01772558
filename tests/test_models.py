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


# ----------------------------------------------------------------------------------
# classifiers as pytrees: every form, traced parameters, no stale or extra programs
# ----------------------------------------------------------------------------------

from lens_jax import classifier as C                     # noqa: E402
from lens_jax import lens as L                           # noqa: E402

H = W = 16
K = 3


def _weights(seed=0):
    r = np.random.default_rng(seed)
    return (jnp.asarray(r.standard_normal((H * W, K)).astype(np.float32) * 0.3),
            jnp.asarray(r.standard_normal(K).astype(np.float32)))


def _image(seed=0):
    r = np.random.default_rng(seed)
    x = r.random((H, W, 1))
    k = np.fft.fftfreq(H)[:, None] ** 2 + np.fft.fftfreq(W)[None, :] ** 2
    x = np.real(np.fft.ifft2(np.fft.fft2(x, axes=(0, 1)) * np.exp(-k * 60)[..., None],
                             axes=(0, 1)))
    return jnp.asarray((0.15 + 0.7 * (x - x.min()) / (x.max() - x.min())).astype(np.float32))


def _flat_apply(p, x):
    return jnp.tanh(x.reshape(x.shape[0], -1) @ p["w"] + p["b"][None]) * 3.0


class _LinenFlat(models.nn.Module):
    @models.nn.compact
    def __call__(self, x):
        return jnp.tanh(models.nn.Dense(K)(x.reshape(x.shape[0], -1))) * 3.0


def _nnx_net(w, b):
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self):
            self.l2 = nnx.Linear(H * W, K, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return jnp.tanh(self.l2(x.reshape(x.shape[0], -1))) * 3.0

    net = Net()
    net.l2.kernel[...] = w
    net.l2.bias[...] = b
    return net


def _all_forms(w, b):
    mod = _LinenFlat()
    variables = {"params": {"Dense_0": {"kernel": w, "bias": b}}}
    return {
        "callable": lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w + b[None]) * 3.0,
        "pair": (_flat_apply, {"w": w, "b": b}),
        "Classifier": C.Classifier(_flat_apply, {"w": w, "b": b}),
        "linen": (mod.apply, variables),
        "make_logits_fn": models.make_logits_fn(mod, variables["params"]),
        "nnx": _nnx_net(w, b),
    }


KW = dict(target=2, domain="csp_phase", alphas=jnp.array([0.0, 1.0, 4.0]))


def test_all_forms_give_identical_frames():
    w, b = _weights()
    img = _image()
    ref = L.morph(lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w + b[None]) * 3.0, img, **KW)
    # independent reference for the probabilities of the frames
    want = jax.nn.softmax(jnp.tanh(ref.frames.reshape(3, -1) @ w + b[None]) * 3.0, -1)
    np.testing.assert_allclose(ref.probs, want, atol=1e-6)
    for name, model in _all_forms(w, b).items():
        m = L.morph(model, img, **KW)
        np.testing.assert_allclose(m.frames, ref.frames, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(m.probs, ref.probs, atol=1e-6, err_msg=name)
        mb = L.morph_batch(model, jnp.stack([img, img]), **KW)
        np.testing.assert_allclose(mb.probs[1], ref.probs, atol=1e-6, err_msg=name)


def test_nnx_module_updated_in_place_is_seen():
    """The stale-weights case: morph, change a kernel in place, morph again."""
    w, b = _weights()
    w2, _ = _weights(seed=5)
    net = _nnx_net(w, b)
    img = _image()
    before = L.morph(net, img, **KW)
    n_programs = L._core_jit._cache_size()
    net.l2.kernel[...] = w2                       # what a training loop does
    after = L.morph(net, img, **KW)
    assert L._core_jit._cache_size() == n_programs        # same shapes: same program
    fresh = L.morph(_nnx_net(w2, b), img, **KW)
    np.testing.assert_allclose(after.probs, fresh.probs, atol=1e-6)
    assert float(jnp.abs(after.probs - before.probs).max()) > 0.05


def test_new_closure_does_not_recompile():
    mod = _LinenFlat()
    w, b = _weights()
    params = {"params": {"Dense_0": {"kernel": w, "bias": b}}}
    img = _image()
    closure = lambda p: (lambda x: mod.apply(p, x))       # noqa: E731  (one line of code)
    L.morph(closure(params), img, **KW)                   # compile once
    n_core, n_cls = L._core_jit._cache_size(), L._classify_jit._cache_size()
    for seed in (1, 2):
        w2, b2 = _weights(seed)
        p2 = {"params": {"Dense_0": {"kernel": w2, "bias": b2}}}
        m = L.morph(closure(p2), img, **KW)                    # a new closure each time
        want = jax.nn.softmax(jnp.tanh(m.frames.reshape(3, -1) @ w2 + b2[None]) * 3.0, -1)
        np.testing.assert_allclose(m.probs, want, atol=1e-6)   # its own weights, not stale
    assert (L._core_jit._cache_size(), L._classify_jit._cache_size()) == (n_core, n_cls)


def test_new_params_same_shapes_reuse_the_program():
    w, b = _weights()
    img = _image()
    L.morph((_flat_apply, {"w": w, "b": b}), img, **KW)
    n = L._core_jit._cache_size()
    w2, b2 = _weights(7)
    m = L.morph((_flat_apply, {"w": w2, "b": b2}), img, **KW)
    assert L._core_jit._cache_size() == n
    want = jax.nn.softmax(jnp.tanh(m.frames.reshape(3, -1) @ w2 + b2[None]) * 3.0, -1)
    np.testing.assert_allclose(m.probs, want, atol=1e-6)
    # parameters are traced: the gradient w.r.t. them exists (not compile-time constants)
    g = jax.grad(lambda p: L.morph((_flat_apply, p), img, **KW).probs[-1, 2])({"w": w2, "b": b2})
    assert float(jnp.abs(g["w"]).max()) > 0


def test_jitted_closure_and_constant_params_notice_changed_weights():
    img = _image()
    w, b = _weights()
    w2, b2 = _weights(3)
    f1 = jax.jit(lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w + b[None]) * 3.0)
    f2 = jax.jit(lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w2 + b2[None]) * 3.0)
    m1, m2 = L.morph(f1, img, **KW), L.morph(f2, img, **KW)
    for m, (ww, bb) in ((m1, (w, b)), (m2, (w2, b2))):
        want = jax.nn.softmax(jnp.tanh(m.frames.reshape(3, -1) @ ww + bb[None]) * 3.0, -1)
        np.testing.assert_allclose(m.probs, want, atol=1e-6)
    # opt-in constant folding: same results, and a changed weight is noticed
    p = {"w": w, "b": b}
    c1 = L.morph((_flat_apply, p), img, constant_params=True, **KW)
    np.testing.assert_allclose(c1.probs, L.morph((_flat_apply, p), img, **KW).probs,
                               atol=1e-6)
    p2 = {"w": w.at[0, 0].add(1e-3), "b": b}
    assert C.params_fingerprint(p2) != C.params_fingerprint(p)
    c2 = L.morph((_flat_apply, p2), img, constant_params=True, **KW)
    np.testing.assert_allclose(c2.probs, L.morph((_flat_apply, p2), img, **KW).probs,
                               atol=1e-6)


def test_closure_over_a_caller_tracer_under_jit():
    w, b = _weights()
    img = _image()

    @jax.jit
    def run(w, x):
        return L.morph(lambda z: jnp.tanh(z.reshape(z.shape[0], -1) @ w + b[None]) * 3.0, x,
                       **KW).probs

    np.testing.assert_allclose(run(w, img), L.morph((_flat_apply, {"w": w, "b": b}), img,
                                                    **KW).probs, atol=1e-6)


def test_as_classifier_forms_and_errors():
    w, b = _weights()
    x = jnp.stack([_image(), _image(1)])
    want = _flat_apply({"w": w, "b": b}, x)
    for name, model in _all_forms(w, b).items():
        clf = C.as_classifier(model, example=x[:1])
        assert isinstance(clf, C.Classifier), name
        np.testing.assert_allclose(clf(x), want, atol=1e-6, err_msg=name)
    with pytest.raises(TypeError, match="apply_fn"):
        C.as_classifier((1, 2, 3))
    with pytest.raises(TypeError, match="model must be"):
        C.as_classifier(42)
    with pytest.raises(ValueError, match="traced for images"):
        C.as_classifier(_all_forms(w, b)["callable"], example=x[:1])(jnp.zeros((2, 8, 8, 1)))


def test_constant_params_notice_a_numpy_array_mutated_in_place():
    w, b = _weights()
    img = _image()
    p = {"w": np.array(w), "b": np.array(b)}
    L.morph((_flat_apply, p), img, constant_params=True, **KW)
    p["w"][:40] += 0.5                                  # mutated in place, same objects
    m = L.morph((_flat_apply, p), img, constant_params=True, **KW)
    ref = L.morph((_flat_apply, {"w": jnp.asarray(p["w"]), "b": b}), img, **KW)
    np.testing.assert_allclose(m.probs, ref.probs, atol=1e-6)


def test_hoisted_callable_with_batch_dependent_constants():
    """A callable whose trace has batch-size-dependent arrays (here an offset built with
    numpy from the batch size) falls back to the batch-1 program under vmap: same values."""
    w, b = _weights()
    f = lambda x: x.reshape(len(x), -1) @ w + np.arange(len(x), dtype=np.float32)[:, None] * 0
    x = jnp.stack([_image(), _image(1), _image(2)])
    clf = C.as_classifier(f, example=x[:1])
    np.testing.assert_allclose(clf(x), x.reshape(3, -1) @ w, atol=1e-5)
    m = L.morph(f, x[0], **KW)
    ref = L.morph(lambda z: z.reshape(len(z), -1) @ w, x[0], **KW)
    np.testing.assert_allclose(m.probs, ref.probs, atol=1e-6)
