"""lens_jax.classifier: the one guarded softmax, the one predict, the classifier checks;
lens_jax._batching.map_chunks: the one chunk/pad/trim loop."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lens_jax as lj
from lens_jax import classifier as C
from lens_jax._batching import map_chunks


def _linear(w):
    return lambda x: x.reshape(len(x), -1) @ w


# ------------------------------------------------------------------ guarded softmax
def test_guarded_softmax_matches_reference_and_masks_bad_rows():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 5)).astype(np.float32) * 10
    z[1, 2] = np.nan
    z[3, 0] = np.inf
    p, ok = C.guarded_softmax(jnp.asarray(z))
    good = z[[0, 2]]
    ref = np.exp(good - good.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    assert ok.tolist() == [True, False, True, False]
    np.testing.assert_allclose(np.asarray(p)[[0, 2]], ref, rtol=1e-6)
    assert np.isnan(np.asarray(p)[[1, 3]]).all()
    # an extra mask, and finite gradients where ok
    _, ok2 = C.guarded_softmax(jnp.asarray(z), where=jnp.array([True, True, False, True]))
    assert ok2.tolist() == [True, False, False, False]
    g = jax.grad(lambda a: C.guarded_softmax(a)[0][0, 0])(jnp.asarray(z))
    assert np.isfinite(np.asarray(g)[0]).all()


def test_guarded_softmax_refuses_integer_logits():
    with pytest.raises(ValueError, match="floating"):
        C.guarded_softmax(jnp.arange(3))


# ------------------------------------------------------------------ map_chunks
def test_map_chunks_pads_with_first_row_one_shape_and_trims():
    seen = []

    def fn(x, none, y):
        seen.append((x.shape, none, np.asarray(x).tolist()))
        return {"a": x * 2, "b": (y + 1,)}
    x = np.arange(7.0)
    out = map_chunks(fn, (x, None, jnp.arange(7)), chunk=3)
    assert [s[0] for s in seen] == [(3,)] * 3 and all(s[1] is None for s in seen)
    assert seen[-1][2] == [6.0, 6.0, 6.0]                 # padded with its first row
    assert out["a"].tolist() == (2 * x).tolist()
    assert np.asarray(out["b"][0]).tolist() == list(range(1, 8))
    assert isinstance(out["a"], np.ndarray) and isinstance(out["b"][0], jax.Array)


def test_map_chunks_progress_and_errors():
    done = []
    map_chunks(lambda x: x, (np.arange(5),), chunk=2, progress=lambda d, n: done.append((d, n)))
    assert done == [(2, 5), (4, 5), (5, 5)]
    for bad in (0, 2.7, "3", True):
        with pytest.raises(ValueError, match="chunk"):
            map_chunks(lambda x: x, (np.arange(5),), chunk=bad)
    with pytest.raises(ValueError, match="leading size"):
        map_chunks(lambda x, y: x, (np.arange(5), np.arange(4)), chunk=2)


# ------------------------------------------------------------------ predict
def test_predict_every_form_agrees_and_chunks_compile_once():
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
    x = rng.uniform(size=(7, 4, 4, 1)).astype(np.float32)
    ref = x.reshape(7, -1) @ np.asarray(w)
    forms = [_linear(w), (lambda p, a: a.reshape(len(a), -1) @ p, w),
             C.Classifier(lambda p, a: a.reshape(len(a), -1) @ p, w)]
    for f in forms:
        for bs in (None, 3):
            np.testing.assert_allclose(np.asarray(C.predict(f, x, batch_size=bs)), ref,
                                       rtol=1e-5, atol=1e-5)
    p = C.predict_proba(forms[1], x, batch_size=3)
    np.testing.assert_allclose(np.asarray(p).sum(1), 1, rtol=1e-6)


def test_predict_sees_new_weights_of_a_closure():
    w = {"w": jnp.ones((4, 2), jnp.float32)}
    fn = lambda x: x.reshape(len(x), -1) @ w["w"]      # noqa: E731
    x = np.ones((2, 2, 2, 1), np.float32)
    assert C.predict(fn, x).tolist()[0] == [4.0, 4.0]
    w["w"] = jnp.zeros((4, 2), jnp.float32)
    assert C.predict(fn, x).tolist()[0] == [0.0, 0.0]


def test_predict_refuses_numpy_classifier_and_batch_ignoring_classifier():
    w = np.ones((4, 2), np.float32)
    x = np.ones((3, 2, 2, 1), np.float32)
    with pytest.raises(TypeError, match="traceable with JAX"):
        C.predict(lambda a: np.asarray(a).reshape(len(a), -1) @ w, x)
    with pytest.raises(ValueError, match="keep the batch size"):
        C.predict(lambda a: a[:1].reshape(1, -1) @ w, x)
    with pytest.raises(ValueError, match="keep the batch size"):
        C.predict(lambda a: (a.reshape(len(a), -1) @ w)[0], x)
    with pytest.raises(ValueError, match="float logits"):
        C.predict(lambda a: jnp.argsort(a.reshape(len(a), -1), axis=1), x)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        C.predict(_linear(w), x[0])


@pytest.mark.parametrize("simplified", [False, True])
def test_closures_with_new_weights_are_seen_in_either_constant_mode(simplified):
    """A plain closure's arrays are hoisted as params under JAX's default constant handling
    and under ``jax_use_simplified_jaxpr_constants`` (JAX's newer mode writes closed-over
    arrays into the jaxpr's equations; before the fix the second closure below reused the
    first one's compiled weights through ``morph`` and ``predict``)."""
    from jax._src import config as jax_config

    rng = np.random.default_rng(5)
    x = rng.uniform(size=(2, 8, 8, 1)).astype(np.float32)
    w1, w2 = (jnp.asarray(rng.normal(size=(64, 3)), jnp.float32) for _ in range(2))
    lin = lambda w: (lambda a: a.reshape(len(a), -1) @ w)         # noqa: E731
    with jax_config.use_simplified_jaxpr_constants(simplified):
        for w in (w1, w2):
            clf = C.as_classifier(lin(w), example=x[:1])
            assert len(jax.tree.leaves(clf.params)) == 1          # the weights: a param
            np.testing.assert_allclose(np.asarray(C.predict(lin(w), x)),
                                       x.reshape(2, -1) @ np.asarray(w), rtol=1e-5, atol=1e-5)
            m = lj.morph(lin(w), x[0], target=1, domain="pixel", alphas=[0.0])
            np.testing.assert_allclose(np.asarray(m.logits[0]),
                                       x[0].reshape(-1) @ np.asarray(w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wrap", ["plain", "jit", "partial"])
def test_callables_alike_at_batch_one_never_share_a_program(wrap):
    """``x[:1].reshape(1, -1) @ w`` traces to the same program as
    ``x.reshape(len(x), -1) @ w`` at batch 1 (the slice vanishes); the second must still
    be refused for ignoring the batch size, whichever was seen first — also when both
    are wrapped by one factory (``lambda x: f(x, w)``: the same code closing over different
    functions; they shared a program before), ``jax.jit``-ed or ``functools.partial``-s."""
    w = np.ones((64, 3), np.float32)
    img = np.random.default_rng(6).uniform(size=(8, 8, 1)).astype(np.float32)
    good = lambda x, w: x.reshape(len(x), -1) @ w                 # noqa: E731
    bad = lambda x, w: x[:1].reshape(1, -1) @ w                   # noqa: E731
    make = {"plain": lambda f: (lambda x: f(x, w)),
            "jit": lambda f: jax.jit(functools.partial(f, w=w)),
            "partial": lambda f: functools.partial(f, w=w)}[wrap]
    good, bad = make(good), make(bad)
    assert C.predict(good, np.stack([img, img])).shape == (2, 3)
    lj.morph(good, img, target=1, alphas=[0.0, 1.0])
    with pytest.raises(ValueError, match="keep the batch size"):
        lj.morph(bad, img, target=1, alphas=[0.0, 1.0])
    with pytest.raises(ValueError, match="keep the batch size"):
        C.predict(bad, np.stack([img, img]))


# ------------------------------------------------------------------ preprocessing
def test_preprocess_matches_a_hand_written_closure_and_is_traced():
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(3, 8, 6, 3)).astype(np.float32)
    mean = np.array([0.4, 0.5, 0.6], np.float32)
    std = np.array([0.2, 0.25, 0.3], np.float32)
    w = jnp.asarray(rng.normal(size=(3 * 4 * 4, 2)), jnp.float32)
    nchw = (lambda p, a: a.reshape(len(a), -1) @ p, w)        # a torch-style NCHW model
    clf = C.with_preprocess(nchw, mean=mean, std=std, size=4, channels_first=True)
    ref_in = (np.asarray(jax.image.resize(x, (3, 4, 4, 3), "linear")) - mean) / std
    ref = np.transpose(ref_in, (0, 3, 1, 2)).reshape(3, -1) @ np.asarray(w)
    np.testing.assert_allclose(np.asarray(C.predict(clf, x)), ref, rtol=1e-4, atol=1e-4)
    # mean/std are pytree leaves: new values reuse the compiled program
    n = C._apply_jit._cache_size()
    other = C.with_preprocess(nchw, mean=mean + 0.1, std=std, size=4, channels_first=True)
    z = np.asarray(C.predict(other, x))
    assert C._apply_jit._cache_size() == n and not np.allclose(z, ref, atol=1e-3)
    leaves = jax.tree.leaves(C.as_classifier(clf).params)
    assert any(leaf.shape == (3,) and np.allclose(leaf, mean) for leaf in leaves)
    for bad in (dict(std=[0.0]), dict(mean=[[1.0]]), dict(size=0), dict(method="bogus"),
                dict(channels_first="yes")):
        with pytest.raises(ValueError, match="Preprocess"):
            C.with_preprocess(nchw, **bad)


def test_every_documented_pattern_sees_nnx_weights_updated_in_place():
    # issue 18: a closure over an nnx model updated in place gave the old weights' results
    # (make_jaxpr cached the closure's trace by function object)
    nnx = pytest.importorskip("flax.nnx")
    import lens_jax as lj

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(64, 3, rngs=rngs)

        def __call__(self, x):
            return self.lin(x.reshape(len(x), -1))

    img = np.random.default_rng(3).uniform(size=(8, 8, 1)).astype(np.float32)
    mean, std = 0.5, 0.25
    model = Net(nnx.Rngs(0))
    graphdef = nnx.split(model)[0]

    def apply(state, x):
        return nnx.merge(graphdef, state)((x - mean) / std)
    closure = lambda x: model((x - mean) / std)                # noqa: E731
    attached = C.with_preprocess(model, mean=mean, std=std)
    kw = dict(target=2, alphas=[0.0, 1.0], domain="pixel")
    jitted = jax.jit(lambda state, im: lj.morph((apply, state), im, **kw).probs)
    patterns = {
        "closure": lambda: lj.morph(closure, img, **kw).probs,
        "with_preprocess": lambda: lj.morph(attached, img, **kw).probs,
        "pair": lambda: lj.morph((apply, nnx.state(model)), img, **kw).probs,
        "jit, state as argument": lambda: jitted(nnx.state(model), img),
        "predict(closure)": lambda: C.predict_proba(closure, img[None]),
    }
    frozen = jax.jit(lambda im: lj.morph(closure, im, **kw).probs)   # documented: frozen
    before = {k: np.asarray(f()) for k, f in patterns.items()}
    old_frozen = np.asarray(frozen(img))
    model.lin.kernel[...] = model.lin.kernel[...][::-1] * 3.0     # update in place
    fresh = Net(nnx.Rngs(0))
    fresh.lin.kernel[...] = model.lin.kernel[...]
    truth = np.asarray(lj.morph(lambda x: fresh((x - mean) / std), img, **kw).probs)
    for name, f in patterns.items():
        got = np.asarray(f())
        want = truth[:1] if name.startswith("predict") else truth
        assert not np.allclose(got, before[name], atol=1e-4), name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
    # inside the caller's own jit the closure is frozen at the first trace, as documented
    np.testing.assert_array_equal(np.asarray(frozen(img)), old_frozen)


def test_classifier_mistakes_are_named_in_every_entry_point():
    nnx = pytest.importorskip("flax.nnx")
    import lens_jax as lj

    class BN(nnx.Module):
        def __init__(self, rngs):
            self.bn = nnx.BatchNorm(64, rngs=rngs)
            self.lin = nnx.Linear(64, 3, rngs=rngs)

        def __call__(self, x):
            return self.lin(self.bn(x.reshape(len(x), -1)))

    img = np.random.default_rng(4).uniform(size=(8, 8, 1)).astype(np.float32)
    w = np.ones((64, 3), np.float32)
    net = BN(nnx.Rngs(0))                                   # left in training mode
    with pytest.raises(C.ClassifierError, match=r"model\.eval\(\)"):
        lj.morph(net, img, target=1, alphas=[0.0, 1.0])
    with pytest.raises(C.ClassifierError, match=r"model\.eval\(\)"):
        C.predict(lambda x: net(x), img[None])
    net.eval()
    assert C.predict(net, img[None]).shape == (1, 3)
    with pytest.raises(TypeError, match="traceable with JAX"):
        lj.morph(lambda x: jnp.asarray(np.asarray(x).reshape(len(x), -1) @ w), img,
                 target=1, alphas=[0.0, 1.0])
    with pytest.raises(ValueError, match="keep the batch size"):
        lj.morph(lambda x: x[:1].reshape(1, -1) @ w, img, target=1, alphas=[0.0, 1.0])


def test_fingerprint_cache_keeps_no_parameters_alive():
    """The fingerprint cache holds weak references only: dropped parameters are freed
    (a long-running process holding many checkpoints does not grow), a new array at a
    reused id is checksummed afresh, and equal values keep equal fingerprints."""
    import gc
    import weakref

    C._FINGERPRINTS.clear()
    p = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    fp = C.params_fingerprint(p)
    assert C.params_fingerprint(p) == fp and len(C._FINGERPRINTS) == 1      # a hit
    ref = weakref.ref(p["w"])
    del p
    gc.collect()
    assert ref() is None                       # the cache did not keep the array alive
    for i in range(2 * C._FINGERPRINTS_MAX):   # bounded in entries of a few refs each
        q = {"w": jnp.full((2, 3), float(i)), "b": jnp.ones(3)}
        assert C.params_fingerprint(q) != fp
    assert len(C._FINGERPRINTS) <= C._FINGERPRINTS_MAX
    assert C.params_fingerprint({"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}) == fp
