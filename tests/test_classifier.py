"""lens_jax.classifier: the one guarded softmax, the one predict, the classifier checks;
lens_jax._batching.map_chunks: the one chunk/pad/trim loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
