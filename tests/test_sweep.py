"""Sweeps: == lens_jax.morph (one core), chunking, guards, result properties, two hosts.

The reference for every sweep result is :func:`lens_jax.morph` per image (the same
single-image core) or the same sweep on a one-device mesh.  Sharded meshes are tested on
8 forced CPU devices in ``tests/test_sweep_mesh.py``; the store in
``tests/test_sweep_store.py``.
"""
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lens_jax as lj
from lens_jax.sweep import SweepResult, load, run, sweep_mesh

from conftest import xla_flags

ROOT = Path(__file__).resolve().parent.parent
H = W = 16
K = 3
FLOATS = ("probs", "logits", "l2", "alphas", "max_change", "frames")
EXACT = ("reached", "problem", "target", "source", "frame_index")


def linear_classifier(seed=0):
    w = np.random.default_rng(seed).standard_normal((H * W, K)).astype(np.float32) * 0.1
    w = jnp.asarray(w)
    return lambda x: x.reshape(x.shape[0], -1) @ w


def images(n, seed=0):
    r = np.random.default_rng(seed)
    x = r.random((n, H, W))
    k = np.fft.fftfreq(H)[:, None] ** 2 + np.fft.fftfreq(W)[None, :] ** 2
    x = np.real(np.fft.ifft2(np.fft.fft2(x) * np.exp(-k * 40)))
    lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    return (0.15 + 0.7 * (x - lo) / (hi - lo)).astype(np.float32)


F = linear_classifier()
ALPHAS = np.array([0.0, 1.0, 2.5, 4.0], np.float32)


def one_device():
    return sweep_mesh(devices=jax.devices()[:1])


def assert_same(a: SweepResult, b: SweepResult, rtol=1e-5, atol=1e-6):
    for name in FLOATS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=name)
    for name in EXACT:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# ----------------------------------------------------------------------------------
# the module is the module (issue 17)
# ----------------------------------------------------------------------------------

@pytest.mark.skipif(callable(getattr(lj, "sweep", None)),
                    reason="lens_jax/__init__.py still binds the transitional function")
def test_import_sweep_gives_the_module():
    sw = importlib.import_module("lens_jax.sweep")
    import lens_jax.sweep as s                       # noqa: E402 - the property tested
    assert s is sw and callable(s.run) and callable(s.load)


# ----------------------------------------------------------------------------------
# one core: the sweep equals morph, with and without kept frames
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("domain", ["pixel", "fourier_phase"])
def test_matches_morph_with_and_without_kept_frames(domain):
    x = images(5)
    t = np.arange(5) % K
    kw = dict(domain=domain, alphas=ALPHAS, mesh=one_device(), progress=False)
    a = run(F, x, t, keep_frames=[0], chunk_size=3, alpha_chunk=3, **kw)
    b = run(F, x, t, keep_frames=5, chunk_size=3, **kw)
    assert a.probs.shape == (5, 4, K) and a.frames.shape == (1, 4, H, W, 1)
    assert_same(a, b._replace(frames=b.frames[:1], frame_index=b.frame_index[:1]))
    for i in (0, 4):
        m = lj.morph(F, x[i], target=int(t[i]), domain=domain, alphas=ALPHAS)
        for name in ("probs", "logits", "l2", "max_change", "alphas"):
            np.testing.assert_allclose(getattr(a, name)[i], getattr(m, name), rtol=1e-5,
                                       atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(a.reached[i], m.reached)
        assert a.source[i] == int(m.source) and a.target[i] == int(m.target)
        np.testing.assert_allclose(b.frames[i], m.frames, atol=1e-6)
    np.testing.assert_array_equal(a.frames[0, 0, ..., 0], x[0])   # alpha 0: the source
    assert np.all(a.reached) and np.all(a.problem == 0)


def _nan_late(x):
    """Logits of F, NaN for an image with a clipped (0) pixel: the large alphas only."""
    bad = jnp.min(x.reshape(x.shape[0], -1), axis=1) <= 1e-3
    return jnp.where(bad[:, None], jnp.nan, F(x))


def test_nan_logits_at_a_late_frame_as_morph(capfd):
    """The streamed path had no NaN guard: reached all True with keep_frames=0 but not 2."""
    x = images(3, seed=2)
    alphas = np.array([0.0, 1.0, 60.0], np.float32)
    kw = dict(domain="pixel", alphas=alphas, mesh=one_device(), progress=False)
    a = run(_nan_late, x, 1, keep_frames=0, **kw)
    b = run(_nan_late, x, 1, keep_frames=2, **kw)
    np.testing.assert_array_equal(a.reached, b.reached)
    np.testing.assert_array_equal(a.reached, np.array([[True, True, False]] * 3))
    assert np.isnan(a.probs[:, 2]).all() and np.isfinite(a.probs[:, :2]).all()
    np.testing.assert_array_equal(a.problem, 0)
    assert "non-finite logits at 3 frame(s)" in capfd.readouterr().err
    with pytest.raises(ValueError, match="non-finite logits .* at frame 2"):
        lj.morph(_nan_late, x[0], target=1, domain="pixel", alphas=alphas)


@pytest.mark.parametrize("bad", ["nan_all", "inf_one"])
def test_non_finite_logits_give_nan_never_made_up_probabilities(bad, capfd):
    x = images(4, seed=3)
    x[2] = 0.95                                      # the one odd image (inf_one)
    if bad == "nan_all":
        f = lambda v: F(v) * jnp.nan                 # noqa: E731
        hit = np.ones(4, bool)
    else:
        f = lambda v: jnp.where(v.mean((1, 2, 3))[:, None] > 0.9, jnp.inf, F(v))  # noqa
        hit = np.arange(4) == 2
    r = run(f, x, 1, domain="pixel", alphas=ALPHAS, sources=np.zeros(4, np.int32),
            mesh=one_device(), keep_frames=0, progress=False)
    assert np.isnan(r.probs[hit]).all() and not r.reached[hit].any()
    np.testing.assert_array_equal(r.problem, np.where(hit, 3, 0))
    assert np.isfinite(r.probs[~hit]).all() and r.reached[~hit].all()
    assert "have a problem" in capfd.readouterr().err
    with pytest.raises(ValueError, match="non-finite logits"):
        lj.morph(f, x[2], target=1, domain="pixel", alphas=ALPHAS)


def test_margin_loss_with_source_equal_to_target():
    x = images(3, seed=4)
    kw = dict(domain="pixel", alphas=ALPHAS, loss="margin", mesh=one_device(),
              progress=False)
    with pytest.raises(ValueError, match="loss='margin' with source == target == 1"):
        run(F, x, 1, sources=np.array([0, 1, 2], np.int32), **kw)
    with pytest.raises(ValueError, match="loss='margin' with source == target"):
        lj.morph(F, x[1], target=1, source=1, domain="pixel", alphas=ALPHAS, loss="margin")
    # the predicted source equals the target: NaN and a problem code, not a zero edit
    pred = np.asarray(jnp.argmax(F(jnp.asarray(x[..., None])), -1))
    r = run(F, x, pred[0], **kw)
    same = pred == pred[0]
    np.testing.assert_array_equal(r.problem, np.where(same, 5, 0))
    assert np.isnan(r.l2[same]).all() and not r.reached[same].any()


def test_a_registered_domain_works_in_a_sweep(monkeypatch):
    """A domain added with ``register`` (issue 17.4: the sweep checked a frozen list)."""
    from lens_jax.domains import REGISTRY
    monkeypatch.setitem(REGISTRY, "my_pixel", REGISTRY["pixel"]._replace(name="my_pixel"))
    x = images(3, seed=6)
    kw = dict(alphas=ALPHAS, mesh=one_device(), progress=False)
    a = run(F, x, 1, domain="my_pixel", **kw)
    b = run(F, x, 1, domain="pixel", **kw)
    assert a.info["domain"] == "my_pixel"
    assert_same(a, b, rtol=0, atol=0)
    assert set(run(F, x, 1, domain=("my_pixel", "pixel"), **kw)) == {"my_pixel", "pixel"}


def test_chunked_matches_unchunked_with_several_targets():
    x = images(10, seed=3)
    t = np.stack([np.arange(10) % K, (np.arange(10) + 1) % K], axis=1)     # (N, T=2)
    alphas = np.linspace(0.0, 3.0, 5).astype(np.float32)
    kw = dict(domain="fourier_phase", alphas=alphas, keep_frames=[2, 7], progress=False,
              mesh=one_device())
    seen = []
    a = run(F, x, t, chunk_size=6, alpha_chunk=2, on_chunk=lambda k, _: seen.append(k),
            **kw)
    b = run(F, x, t, chunk_size=24, **kw)
    assert seen == [0, 1, 2, 3]                      # 20 pairs in chunks of 6
    assert a.probs.shape == (10, 2, 5, K) and a.target.shape == (10, 2)
    assert a.frames.shape == (2, 2, 5, H, W, 1)
    np.testing.assert_array_equal(a.frame_index, [2, 7])
    np.testing.assert_array_equal(a.target, t)
    assert_same(a, b)
    # the two targets of one image share the source but not the frames
    assert np.all(a.source[:, 0] == a.source[:, 1])
    assert not np.allclose(a.frames[0, 0, -1], a.frames[0, 1, -1])


def test_params_are_traced_not_constants():
    """``(apply, params)``: new parameters of the same shapes reuse the compiled chunk
    program and give the new model's results (not the first one's)."""
    sweep_mod = importlib.import_module("lens_jax.sweep")
    apply = lambda p, x: x.reshape(x.shape[0], -1) @ p          # noqa: E731
    w1 = jnp.asarray(np.random.default_rng(1).standard_normal((H * W, K)) * 0.1, jnp.float32)
    w2 = jnp.asarray(np.random.default_rng(2).standard_normal((H * W, K)) * 0.1, jnp.float32)
    x = images(4, seed=3)
    kw = dict(domain="pixel", alphas=ALPHAS, mesh=one_device(), progress=False)
    sweep_mod._FN_CACHE.clear()
    a = run((apply, w1), x, 1, **kw)
    (fn, _), = sweep_mod._FN_CACHE.values()
    b = run((apply, w2), x, 1, **kw)
    assert len(sweep_mod._FN_CACHE) == 1 and fn._cache_size() == 1     # no recompile
    assert_same(a, run(lambda v: apply(w1, v), x, 1, **kw))
    assert_same(b, run(lambda v: apply(w2, v), x, 1, **kw))
    assert not np.allclose(a.probs, b.probs)


# ----------------------------------------------------------------------------------
# results and bad input
# ----------------------------------------------------------------------------------

def test_result_properties_and_bad_input(tmp_path):
    x = images(4)
    r = run(F, x, 1, domain="pixel", alphas=ALPHAS, sources=np.zeros(4, int),
            loss="margin", progress=False, mesh=one_device())
    np.testing.assert_allclose(r.target_prob, r.probs[..., 1])
    np.testing.assert_allclose(r.margin, r.logits[..., 1] - r.logits[..., 0], rtol=1e-6)
    assert r.pred.shape == (4, 4) and np.all(r.source == 0)
    kw = dict(domain="pixel", alphas=ALPHAS, progress=False)
    bad = x.copy()
    bad[2, 3, 3] = 1.5
    with pytest.raises(ValueError, match="image 2 has range"):
        run(F, bad, 1, **kw)
    with pytest.raises(ValueError, match="targets must lie"):
        run(F, x, 3, **kw)
    with pytest.raises(ValueError, match="keep_frames"):
        run(F, x, 1, keep_frames=[4], **kw)
    with pytest.raises(ValueError, match="one schedule"):
        run(F, x, 1, alphas=ALPHAS, l2_budget=1.0, progress=False)
    devs = jax.devices()
    with pytest.raises(ValueError, match="image_axis='images' is not an axis"):
        run(F, x, 1, image_axis="images", mesh=jax.make_mesh((len(devs),), ("batch",)), **kw)
    with pytest.raises(ValueError, match="alpha_axis='a'"):
        run(F, x, 1, alpha_axis="a", mesh=jax.make_mesh((len(devs),), ("batch",)), **kw)
    with pytest.raises(TypeError, match="mesh"):
        run(F, x, 1, mesh="cpu", **kw)
    for bad in (2.7, 0, True):
        with pytest.raises(ValueError, match="n_frames"):
            run(F, x, 1, domain="pixel", n_frames=bad, progress=False)
    with pytest.raises(ValueError, match="unknown domain"):
        run(F, x, 1, domain=("pixel", "nope"), alphas=ALPHAS, progress=False)
    # weak answers of issue 19: bools and fractional counts were taken (and truncated)
    for flag in (True, False):
        with pytest.raises(ValueError, match="keep_frames must be a count .* not a bool"):
            run(F, x, 1, keep_frames=flag, **kw)
    with pytest.raises(ValueError, match="keep_frames .* integer"):
        run(F, x, 1, keep_frames=[1.5], **kw)
    for bad in (2.7, "3", 0, True):
        with pytest.raises(ValueError, match="chunk_size must be"):
            run(F, x, 1, chunk_size=bad, **kw)
    for bad in (1.5, "2", 0):
        with pytest.raises(ValueError, match="alpha_chunk must be"):
            run(F, x, 1, alpha_chunk=bad, **kw)
    f = tmp_path / "a_file"
    f.write_text("x")
    for resume in (True, False):
        with pytest.raises(ValueError, match="out_dir=.*a_file.* is an existing file"):
            run(F, x, 1, out_dir=f, resume=resume, **kw)


# ----------------------------------------------------------------------------------
# two processes (jax.distributed over localhost, 2 CPU devices each)
# ----------------------------------------------------------------------------------

def _script():
    spec = importlib.util.spec_from_file_location(
        "multihost_sweep", ROOT / "experiments" / "multihost_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_two_processes_match_one_process(tmp_path):
    out = tmp_path / "mh"
    cmd = [sys.executable, str(ROOT / "experiments" / "multihost_sweep.py"), "--quick",
           "--domain", "pixel", "--out", str(out), "--spawn-local", "2", "--cpu-devices", "2",
           "--spawn-timeout", "240"]
    env = dict(os.environ, XLA_FLAGS=xla_flags())      # the script forces its own devices
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 4
    assert summary["local_devices"] == 2
    # the store written by the two-process run equals a sweep in this process
    images_, targets, logits_fn = _script().build_problem(24, 16, 0)
    ref = run(logits_fn, images_, targets, domain="pixel",
              alphas=np.linspace(0.0, 6.0, 4).astype(np.float32), chunk_size=8,
              keep_frames=4, progress=False, mesh=one_device())
    assert_same(load(out / "sweep"), ref)
