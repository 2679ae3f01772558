"""Tests for lens_jax.metrics: references (skimage, map_coordinates) and analytic invariants."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from lens_jax import metrics as M
from lens_jax import warp as W

N = 32                     # one size for the warp tests so jit compiles are shared
C = (N - 1) / 2.0


def blob(n=N, cy=C, cx=C, sigma=4.0, dtype=np.float32):
    y, x = np.mgrid[:n, :n]
    return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))[..., None].astype(dtype)


def ring(n=N, cy=C, cx=C, r=8.0, w=0.6, dtype=np.float32):
    y, x = np.mgrid[:n, :n]
    d = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    return np.exp(-((d - r) ** 2) / (2 * w**2))[..., None].astype(dtype)


# --------------------------------------------------------------------------- distances
@pytest.mark.x64
def test_l2_psnr_values_and_shapes():
    src = np.zeros((4, 5, 3), np.float32)
    frames = np.stack([src, src + 0.5, src + 1.0])
    d = M.l2(frames, src)
    assert d.shape == (3,) and d.dtype == jnp.float32
    np.testing.assert_allclose(d, [0.0, 0.5 * np.sqrt(60), np.sqrt(60)], rtol=1e-6)
    p = M.psnr(frames, src)
    assert np.isposinf(p[0])
    np.testing.assert_allclose(p[1:], [10 * np.log10(1 / 0.25), 0.0], atol=1e-5)
    # leading dims broadcast; float64 stays float64
    d64 = M.l2(np.stack([frames, frames]).astype(np.float64), src.astype(np.float64))
    assert d64.shape == (2, 3) and d64.dtype == jnp.float64
    with pytest.raises(ValueError, match="frames must be"):
        M.l2(np.zeros((3, 4, 4, 3), np.float32), src)


@pytest.mark.x64
@pytest.mark.parametrize("shape", [(2, 17, 23, 3), (1, 32, 32, 1), (3, 11, 14, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ssim_matches_skimage(shape, dtype):
    rng = np.random.default_rng(0)
    src = rng.uniform(size=shape[1:]).astype(dtype)
    frames = np.clip(src + 0.2 * rng.standard_normal(shape), 0, 1).astype(dtype)
    got = jax.jit(M.ssim)(frames, src)
    assert got.shape == shape[:1] and got.dtype == dtype
    ref = [structural_similarity(f, src, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0, channel_axis=-1)
           for f in frames]
    np.testing.assert_allclose(got, ref, atol=1e-4 if dtype == np.float32 else 1e-10)
    np.testing.assert_allclose(M.ssim(src, src), 1.0, atol=1e-6)


def test_ssim_rejects_small_images():
    with pytest.raises(ValueError, match="filter_size"):
        M.ssim(np.zeros((8, 8, 1)), np.zeros((8, 8, 1)))


# --------------------------------------------------------------------------- probabilities
def _onehot_probs(preds, k=4, p=0.7):
    preds = np.asarray(preds)
    probs = np.full(preds.shape + (k,), (1 - p) / (k - 1))
    np.put_along_axis(probs, preds[..., None], p, axis=-1)
    return probs


def test_target_prob_and_flip():
    probs = _onehot_probs([[0, 0, 2, 1, 1], [0, 0, 0, 0, 0]])  # (2, 5, 4)
    np.testing.assert_allclose(M.target_prob(probs, 1)[0], [0.1, 0.1, 0.1, 0.7, 0.7])
    np.testing.assert_allclose(M.target_prob(probs, np.array([[1], [0]]))[1], [0.7] * 5)
    idx = M.flip_index(probs, source=0, target=1)
    assert idx.dtype == jnp.int32
    np.testing.assert_array_equal(idx, [3, -1])
    np.testing.assert_array_equal(M.flip_index(probs, source=0), [2, -1])   # untargeted
    np.testing.assert_array_equal(M.flip_index(probs, source=0, target=np.array([1, 0])),
                                  [3, 0])
    jitted = jax.jit(lambda p, s, t: M.flip_index(p, source=s, target=t))
    np.testing.assert_array_equal(jitted(probs, 0, 1), [3, -1])
    alphas = np.linspace(0.0, 4.0, 5)
    a = M.first_flip_alpha(alphas, probs, 1)
    assert a[0] == 3.0 and np.isnan(a[1])
    with pytest.raises(ValueError, match="target"):
        M.flip_index(probs)


def test_transfer_shapes_and_no_gradient():
    rng = np.random.default_rng(1)
    w1 = jnp.asarray(rng.standard_normal((4 * 4 * 1, 3)))
    w2 = jnp.asarray(rng.standard_normal((4 * 4 * 1, 3)))
    fns = {"O": lambda x: x.reshape(len(x), -1) @ w1, "O2": lambda x: x.reshape(len(x), -1) @ w2}
    frames = jnp.asarray(rng.uniform(size=(5, 4, 4, 1)))
    out = M.transfer(fns, frames, 2)
    assert set(out) == {"O", "O2"}
    p, pred = out["O"]
    assert p.shape == (5,) and pred.shape == (5,) and pred.dtype == jnp.int32
    ref = jax.nn.softmax(frames.reshape(5, -1) @ w1, axis=-1)
    np.testing.assert_allclose(p, ref[:, 2], rtol=1e-12)
    np.testing.assert_array_equal(pred, np.argmax(ref, -1))
    # leading dims are kept; chunked calls give the same thing
    outb = M.transfer(fns, frames[None], 2, batch_size=2)
    np.testing.assert_allclose(outb["O"].p_target[0], p, rtol=1e-12)
    with pytest.raises(ValueError, match="jax.vmap"):
        M.transfer(fns, frames, 2, batched=False)
    # never differentiated through
    g = jax.grad(lambda f: M.transfer(fns, f, 2)["O"].p_target.sum())(frames)
    assert np.all(np.asarray(g) == 0)


# --------------------------------------------------------------------------- warps
@pytest.mark.x64
def test_bilinear_sampler_matches_map_coordinates():
    rng = np.random.default_rng(2)
    img = jnp.asarray(rng.uniform(size=(9, 11, 2)))
    yy = jnp.asarray(rng.uniform(-3, 12, size=(9, 11)))
    xx = jnp.asarray(rng.uniform(-3, 14, size=(9, 11)))
    got = W._bilinear(img, yy, xx)
    ref = jnp.stack([jax.scipy.ndimage.map_coordinates(img[..., c], [yy, xx], order=1,
                                                       mode="nearest") for c in range(2)], -1)
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_warp_image_conventions():
    src = blob(dtype=np.float64)
    # a constant displacement of +2 rows moves the content down by 2 pixels
    out = M.warp_image(src, np.full((8, 8, 2), [2.0, 0.0]))
    np.testing.assert_allclose(out[2:], src[:-2], atol=1e-12)
    np.testing.assert_allclose(out[:2], np.broadcast_to(src[:1], (2, N, 1)), atol=1e-12)
    # zero warp and zero gain are the identity; the upsampling weights are a partition of 1
    np.testing.assert_allclose(
        M.warp_image(src, np.zeros((8, 8, 2)), log_gain=np.zeros((8, 8))), src)
    u = W._upsample_matrix(28, 8)
    np.testing.assert_allclose(u.sum(1), 1.0)
    np.testing.assert_allclose(u[0, 0], 1.0)
    np.testing.assert_allclose(u[-1, -1], 1.0)


def test_warp_energy_translation_noise_and_sign():
    src = blob()
    plus = blob(cy=C + 1.5, cx=C - 0.7)
    minus = blob(cy=C - 1.5, cx=C + 0.7)
    noisy = src + 0.05 * np.random.default_rng(3).standard_normal(src.shape)  # unclipped
    frames = np.stack([plus, minus, noisy.astype(np.float32)])
    e = jax.vmap(lambda f: M.warp_explained_energy(src, f))(frames)
    assert e.dtype == jnp.float32 and e.shape == (3,)
    assert e[0] > 0.9 and e[1] > 0.9
    assert abs(float(e[0]) - float(e[1])) < 0.02          # sign of the translation
    assert 0.0 <= e[2] < 0.2                              # independent noise
    assert np.all((np.asarray(e) >= 0) & (np.asarray(e) <= 1))


def test_warp_energy_thin_strokes_need_coarse_to_fine():
    src, moved = ring(), ring(cy=C + 3.0, cx=C - 0.5)
    e = float(M.warp_explained_energy(src, moved))
    assert e > 0.95
    e_plain = float(M.warp_explained_energy(src, moved, coarse_to_fine=(0.0,)))
    assert e_plain < e


def test_warp_plus_gain_explains_intensity_change():
    src = blob()
    ramp = (1.0 + 0.4 * np.mgrid[:N, :N][1] / N)[..., None]
    frame = (blob(cy=C + 1.0) * ramp).astype(np.float32)
    e_warp = float(M.warp_explained_energy(src, frame))
    fit = M.warp_explained_energy(src, frame, gain=True, return_fields=True)
    assert isinstance(fit, M.WarpFit)
    assert fit.displacement.shape == (8, 8, 2) and fit.log_gain.shape == (8, 8)
    assert fit.fitted.shape == src.shape
    assert float(fit.energy) >= e_warp - 1e-6
    assert float(fit.energy) > 0.97 and e_warp < 0.95
    # the fitted log-gain follows the column ramp (increasing left to right); the
    # displacement is not checked: for a Gaussian blob a shift is also an exp(linear) gain
    assert float(fit.log_gain[3:5, 5:7].mean()) > float(fit.log_gain[3:5, 1:3].mean())


def test_warp_fields_of_a_translation():
    fit = M.warp_explained_energy(blob(), blob(cy=C + 1.5, cx=C - 0.7), return_fields=True)
    assert float(fit.energy) > 0.95
    # near the blob (control points 3 and 4 sit at pixels 13.3 and 17.7) d = (+1.5, -0.7)
    np.testing.assert_allclose(fit.displacement[3:5, 3:5].reshape(-1, 2).mean(0),
                               [1.5, -0.7], atol=0.2)
    np.testing.assert_allclose(fit.log_gain, 0.0)


def test_warp_energy_zero_edit_is_nan_without_warnings():
    src = blob()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = M.warp_explained_energy(src, src)
        t = M.best_translation(src, src)
    assert np.isnan(float(e)) and np.isnan(float(t.explained))
    np.testing.assert_allclose(t.shift, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        M.warp_explained_energy(src, src[:-1])
    with pytest.raises(ValueError, match="end with 0"):
        M.warp_explained_energy(src, src, coarse_to_fine=(1.0,))


@pytest.mark.x64
@pytest.mark.parametrize("shift", [(1.5, 0.0), (-1.5, 0.7), (0.3, -2.6)])
def test_best_translation_recovers_known_shift(shift):
    src = blob(dtype=np.float64)
    frame = blob(cy=C + shift[0], cx=C + shift[1], dtype=np.float64)
    t = M.best_translation(src, frame)
    np.testing.assert_allclose(t.shift, shift, atol=0.1)
    assert float(t.explained) > 0.95
    assert t.fitted.shape == src.shape and t.shift.dtype == jnp.float64


def test_best_translation_of_cross_fade_is_small():
    # a cross-fade toward a blob 8 px away is not a translation of the source
    src = blob(dtype=np.float64)
    frame = 0.8 * src + 0.2 * blob(cx=C + 8.0, dtype=np.float64)
    t = M.best_translation(src, frame)
    assert abs(float(t.shift[1])) < 1.5 and float(t.explained) < 0.8


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_basic_and_nan():
    rng = np.random.default_rng(4)
    v = rng.normal(1.0, 1.0, size=400)
    ci = M.bootstrap_ci(v, key=0)
    assert ci.low < np.median(v) < ci.high and ci.n == 400
    assert ci.estimate == pytest.approx(np.median(v))
    assert 0.1 < ci.high - ci.low < 0.5
    assert M.bootstrap_ci(v, key=0) == ci                       # reproducible
    assert M.bootstrap_ci(v, key=jax.random.key(0)).n == 400    # JAX keys work
    with_nan = np.concatenate([v, [np.nan] * 10])
    assert M.bootstrap_ci(with_nan, key=0) == ci
    mean_ci = M.bootstrap_ci(v, stat=np.mean, n_boot=500, level=0.9, key=1)
    assert mean_ci.low < v.mean() < mean_ci.high
    assert M.bootstrap_ci(v, stat=lambda a: float(np.mean(a)), n_boot=50).n == 400  # no axis
    empty = M.bootstrap_ci([np.nan, np.nan])
    assert np.isnan(empty.estimate) and np.isnan(empty.low) and empty.n == 0
    with pytest.raises(ValueError):
        M.bootstrap_ci(v, level=1.5)


def test_cluster_bootstrap_is_wider_for_correlated_clusters():
    rng = np.random.default_rng(5)
    n_src, per = 30, 8
    centres = rng.normal(0, 1, n_src)
    vals = centres[:, None] + 0.05 * rng.normal(size=(n_src, per))   # values share a source
    clusters = np.arange(n_src)[:, None]                              # broadcast labels
    naive = M.bootstrap_ci(vals, stat=np.mean, key=0)
    clust = M.bootstrap_ci(vals, stat=np.mean, key=0, clusters=clusters)
    assert clust.n == naive.n == n_src * per
    assert (clust.high - clust.low) > 2 * (naive.high - naive.low)
    assert clust.low < vals.mean() < clust.high


# --------------------------------------------------------------------------- bundle
def test_frame_metrics():
    src = blob(dtype=np.float64)
    frames = np.stack([src, blob(cy=C + 1.0, dtype=np.float64)])
    probs = _onehot_probs([3, 1], k=4)
    m = M.frame_metrics(frames, src, probs, target=1, source_class=3)
    assert set(m) == {"l2", "psnr", "ssim", "p_target", "p_source", "pred"}
    assert all(v.shape == (2,) for v in m.values())
    assert m["l2"][0] == 0 and m["ssim"][0] == pytest.approx(1.0)
    np.testing.assert_allclose(m["p_target"], [0.1, 0.7])
    np.testing.assert_allclose(m["p_source"], [0.7, 0.1])
    np.testing.assert_array_equal(m["pred"], [3, 1])
    small = M.frame_metrics(frames[:, :8, :8], src[:8, :8], probs, target=1)
    assert np.all(np.isnan(small["ssim"])) and np.all(np.isnan(small["p_source"]))


def test_warp_plus_gain_never_below_warp_only():
    """The warp-only model is nested in warp + gain (g = 0), so its E is a lower bound."""
    rng = np.random.default_rng(3)
    src = np.zeros((28, 28, 1), np.float32)
    src[6:22, 12:16] = 1.0                                   # a stroke, like a "1"
    src = jnp.asarray(src)
    for k in range(3):
        frame = jnp.clip(src + 0.15 * jnp.asarray(rng.standard_normal(src.shape),
                                                  jnp.float32), 0, 1)
        frame = jnp.roll(frame, k, axis=1)
        e_w = float(M.warp_explained_energy(src, frame))
        e_wg = float(M.warp_explained_energy(src, frame, gain=True))
        assert e_wg >= e_w - 1e-6, (k, e_w, e_wg)


def test_transfer_accepts_every_classifier_form_and_flags_non_finite_logits():
    from lens_jax.classifier import Classifier
    rng = np.random.default_rng(2)
    w = jnp.asarray(rng.standard_normal((16, 3)))
    apply = lambda p, x: x.reshape(x.shape[0], -1) @ p
    frames = jnp.asarray(rng.uniform(size=(2, 3, 4, 4, 1)))
    ref = jax.nn.softmax(frames.reshape(6, -1) @ w, axis=-1)[:, 1].reshape(2, 3)
    forms = {"pair": (apply, w), "clf": Classifier(apply, w),
             "plain": lambda x: x.reshape(len(x), -1) @ w}
    out = M.transfer(forms, frames, 1)
    for name in forms:
        np.testing.assert_allclose(out[name].p_target, ref, rtol=1e-12, err_msg=name)
    bad = M.transfer({"O": (lambda p, x: apply(p, x).at[0].set(jnp.nan), w)}, frames, 1)
    assert np.isnan(bad["O"].p_target[0, 0]) and int(bad["O"].pred[0, 0]) == -1
    assert np.all(np.isfinite(bad["O"].p_target.ravel()[1:]))
    with pytest.raises(ValueError, match="int"):
        M.transfer({"O": (lambda p, x: apply(p, x).astype(jnp.int32), w)}, frames, 1)
    with pytest.raises(TypeError, match="O"):
        M.transfer({"O": 3}, frames, 1)


def test_transfer_takes_a_batched_plain_function_like_every_other_entry_point():
    # the README's convention: a plain logits_fn maps a batch (N, H, W, C) -> (N, K).
    # transfer used to vmap it over single images (IndexError / shape errors).
    from lens_jax.models import CNN
    net = CNN(num_classes=3, features=(4,), hidden=8)
    v = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1), jnp.float32))
    logits_fn = lambda x: net.apply(v, x)                         # noqa: E731
    frames = jnp.asarray(np.random.default_rng(4).uniform(size=(2, 3, 8, 8, 1)), jnp.float32)
    out = M.transfer({"O": logits_fn}, frames, 1)
    ref = jax.nn.softmax(net.apply(v, frames.reshape(6, 8, 8, 1)), axis=-1)
    np.testing.assert_allclose(out["O"].p_target, ref[:, 1].reshape(2, 3), rtol=1e-5)
    np.testing.assert_array_equal(out["O"].pred, np.argmax(ref, -1).reshape(2, 3))


def test_target_prob_outside_the_classes_is_nan_never_another_class():
    probs = jnp.asarray([[0.2, 0.8], [0.6, 0.4]], jnp.float32)
    got = jax.jit(M.target_prob)(probs, jnp.asarray([1, 2]))
    assert float(got[0]) == pytest.approx(0.8) and np.isnan(float(got[1]))
    with pytest.raises(ValueError, match="outside"):
        M.transfer({"O": lambda x: x.reshape(len(x), -1)[:, :2]}, jnp.ones((1, 2, 2, 1)), 5)


@pytest.mark.x64
@pytest.mark.parametrize("shape", [(2, 12, 15, 3), (17, 12, 1)])
def test_ssim_and_psnr_match_dm_pix(shape):
    # dm-pix is the JAX reference; lens_jax keeps its own (dm_pix.ssim fails under
    # jax_numpy_dtype_promotion="strict" and returns float64 for float32 input under
    # x64; dm_pix.psnr has no max_val; neither broadcasts one source over frames)
    pix = pytest.importorskip("dm_pix")
    rng = np.random.default_rng(7)
    src = rng.uniform(size=shape[-3:])
    frames = np.clip(src + 0.1 * rng.normal(size=shape), 0, 1)
    for dt, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        x, x0 = jnp.asarray(frames, dt), jnp.asarray(src, dt)
        with jax.numpy_dtype_promotion("standard"):
            ref_ssim = pix.ssim(x, jnp.broadcast_to(x0, x.shape))
            ref_psnr = pix.psnr(x / 2, jnp.broadcast_to(x0, x.shape) / 2)
        ours = M.ssim(x, x0)
        assert ours.dtype == dt
        np.testing.assert_allclose(ours, ref_ssim, rtol=tol, atol=tol)
        np.testing.assert_allclose(M.psnr(x, x0, max_val=2.0), ref_psnr, rtol=tol)
