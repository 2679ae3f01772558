"""Sweeps: sharded == one device == lens_jax.morph, chunking, streaming, resume, two hosts.

Runs on 8 forced CPU devices (``tests/conftest.py``).  The reference for every sharded
result is the same sweep on a one-device mesh (plain ``jax.jit``) and, per image,
:func:`lens_jax.morph` itself.
"""
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
from lens_jax.sweep import SweepResult, load_sweep, sweep, sweep_mesh

ROOT = Path(__file__).resolve().parent.parent
H = W = 16
K = 3
FLOATS = ("probs", "logits", "l2", "alphas", "max_change", "frames")
EXACT = ("reached", "target", "source", "frame_index")


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


def test_eight_devices():
    assert len(jax.devices()) == 8, "conftest.py should force 8 CPU devices"


# ----------------------------------------------------------------------------------
# sharded == one device == morph
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("domain", lj.DOMAINS)
def test_sharded_matches_one_device_and_morph(domain):
    x = images(12)
    t = np.arange(12) % K
    # 8 devices, chunks of 8 (the last one padded from 4 to 8; it keeps no frames, so it
    # takes the streamed metrics-only path) vs one device, one chunk (through morph)
    a = sweep(F, x, t, domain=domain, alphas=ALPHAS, chunk_size=8, keep_frames=[0],
              progress=False)
    b = sweep(F, x, t, domain=domain, alphas=ALPHAS, mesh=one_device(), keep_frames=[0],
              progress=False)
    assert a.probs.shape == (12, 4, K) and a.frames.shape == (1, 4, H, W, 1)
    assert_same(a, b)
    for i in (0, 11):                        # single-image results match morph
        m = lj.morph(F, x[i], target=int(t[i]), domain=domain, alphas=ALPHAS)
        np.testing.assert_allclose(a.probs[i], m.probs, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.logits[i], m.logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.l2[i], m.l2, rtol=1e-5, atol=1e-6)
        # the streamed path (i == 11) computes max_change itself
        np.testing.assert_allclose(a.max_change[i], m.max_change, rtol=1e-5, atol=1e-7)
        assert a.source[i] == int(m.source) and a.target[i] == int(m.target)
        if i == 0:
            np.testing.assert_allclose(a.frames[0], m.frames, atol=1e-6)
    assert np.all(a.reached)
    # frame 0 (alpha 0) is the source image
    np.testing.assert_array_equal(a.frames[0, 0, ..., 0], x[0])


def test_alpha_axis_mesh_matches_one_device():
    x = images(6)
    t = np.arange(6) % K
    mesh = sweep_mesh(alpha_shards=2)
    assert dict(mesh.shape) == {"images": 4, "alphas": 2}
    alphas = np.array([0.0, 0.7, 1.4, 2.1, 2.8], np.float32)     # 5 -> padded to 6
    a = sweep(F, x, t, domain="fourier_phase", alphas=alphas, mesh=mesh, keep_frames=2,
              progress=False)
    b = sweep(F, x, t, domain="fourier_phase", alphas=alphas, mesh=one_device(),
              keep_frames=2, progress=False)
    assert a.probs.shape == (6, 5, K)
    assert_same(a, b)
    # one frame per L2 budget, found by each alpha shard's own search
    budgets = np.array([0.3, 0.6, 0.9], np.float32)
    a = sweep(F, x, t, domain="pixel", l2_budget=budgets, mesh=mesh, progress=False)
    b = sweep(F, x, t, domain="pixel", l2_budget=budgets, mesh=one_device(), progress=False)
    assert_same(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.l2, np.broadcast_to(budgets, a.l2.shape), rtol=1e-3)
    with pytest.raises(ValueError, match="alpha mesh axis"):
        sweep(F, x, t, domain="pixel", l2_budget=1.0, mesh=mesh, progress=False)


def test_chunked_matches_unchunked_with_several_targets():
    x = images(10, seed=3)
    t = np.stack([np.arange(10) % K, (np.arange(10) + 1) % K], axis=1)     # (N, T=2)
    alphas = np.linspace(0.0, 3.0, 5).astype(np.float32)
    kw = dict(domain="fourier_phase", alphas=alphas, keep_frames=[2, 7], progress=False)
    seen = []
    a = sweep(F, x, t, chunk_size=6, alpha_chunk=2, on_chunk=lambda k, _: seen.append(k),
              **kw)
    b = sweep(F, x, t, chunk_size=24, **kw)
    assert seen == [0, 1, 2, 3]                      # 20 pairs in chunks of 6
    assert a.probs.shape == (10, 2, 5, K) and a.target.shape == (10, 2)
    assert a.frames.shape == (2, 2, 5, H, W, 1)
    np.testing.assert_array_equal(a.frame_index, [2, 7])
    np.testing.assert_array_equal(a.target, t)
    assert_same(a, b)
    # the two targets of one image share the source but not the frames
    assert np.all(a.source[:, 0] == a.source[:, 1])
    assert not np.allclose(a.frames[0, 0, -1], a.frames[0, 1, -1])


# ----------------------------------------------------------------------------------
# streaming and resume
# ----------------------------------------------------------------------------------

class Stop(Exception):
    pass


def test_interrupted_sweep_resumes_without_recomputing(tmp_path):
    x = images(14, seed=1)
    t = (np.arange(14) + 1) % K
    kw = dict(domain="csp_phase", alphas=ALPHAS, chunk_size=4, keep_frames=[1, 13],
              progress=False)
    full = sweep(F, x, t, **kw)                      # in memory, uninterrupted

    def crash_after_1(k, arrays):
        if k == 1:
            raise Stop
    with pytest.raises(Stop):
        sweep(F, x, t, out_dir=tmp_path, on_chunk=crash_after_1, **kw)
    assert sorted(p.name for p in tmp_path.glob("chunk_*.npz")) == \
        ["chunk_000000.npz", "chunk_000001.npz"]
    assert not list(tmp_path.glob(".*.tmp"))         # atomic writes leave no debris
    with pytest.raises(ValueError, match="incomplete"):
        load_sweep(tmp_path)
    stamp = (tmp_path / "chunk_000000.npz").stat().st_mtime_ns

    computed = []
    res = sweep(F, x, t, out_dir=tmp_path, on_chunk=lambda k, _: computed.append(k), **kw)
    assert computed == [2, 3]                        # only what was missing
    assert (tmp_path / "chunk_000000.npz").stat().st_mtime_ns == stamp
    assert_same(res, full, rtol=0, atol=0)
    assert_same(load_sweep(tmp_path), full, rtol=0, atol=0)
    man = json.loads((tmp_path / "sweep.json").read_text())
    assert man["n_chunks"] == 4 and man["chunk_size"] == 4

    computed.clear()                                 # finished: nothing to do
    sweep(F, x, t, out_dir=tmp_path, on_chunk=lambda k, _: computed.append(k), **kw)
    assert computed == []


def test_resume_refuses_a_different_sweep(tmp_path):
    x = images(6, seed=2)
    t = np.zeros(6, int)
    kw = dict(domain="pixel", alphas=ALPHAS, chunk_size=4, progress=False)
    sweep(F, x, t, out_dir=tmp_path, **kw)
    with pytest.raises(ValueError, match="different sweep.*schedule_values"):
        sweep(F, x, t, out_dir=tmp_path, **{**kw, "alphas": ALPHAS * 2})
    with pytest.raises(ValueError, match="classifier differs"):
        sweep(linear_classifier(seed=5), x, t, out_dir=tmp_path, **kw)
    y = x.copy()
    y[5, 0, 0] = 0.5 if y[5, 0, 0] != 0.5 else 0.6
    with pytest.raises(ValueError, match=r"images, targets or sources differ.*\[1\]"):
        sweep(F, y, t, out_dir=tmp_path, **kw)
    with pytest.raises(ValueError, match="chunk_size=4"):
        sweep(F, x, t, out_dir=tmp_path, **{**kw, "chunk_size": 2})
    computed = []                                    # start afresh on request
    r = sweep(F, y, t, out_dir=tmp_path, resume=False,
              on_chunk=lambda k, _: computed.append(k), **kw)
    assert computed == [0, 1]
    np.testing.assert_allclose(r.frames.shape, (0, 4, H, W, 1))


def test_several_domains_stream_to_subfolders(tmp_path):
    x = images(5, seed=4)
    res = sweep(F, x, 2, domain=("pixel", "fourier_phase"), alphas=ALPHAS, keep_frames=1,
                out_dir=tmp_path, progress=False)
    assert set(res) == {"pixel", "fourier_phase"}
    back = load_sweep(tmp_path)
    for d in res:
        assert (tmp_path / d / "sweep.json").exists()
        assert res[d].info["domain"] == d
        assert_same(res[d], back[d], rtol=0, atol=0)
        np.testing.assert_array_equal(res[d].target, 2)
    assert not np.allclose(res["pixel"].frames, res["fourier_phase"].frames)


def test_result_properties_and_bad_input():
    x = images(4)
    r = sweep(F, x, 1, domain="pixel", alphas=ALPHAS, sources=np.zeros(4, int),
              loss="margin", progress=False)
    np.testing.assert_allclose(r.target_prob, r.probs[..., 1])
    np.testing.assert_allclose(r.margin, r.logits[..., 1] - r.logits[..., 0], rtol=1e-6)
    assert r.pred.shape == (4, 4) and np.all(r.source == 0)
    bad = x.copy()
    bad[2, 3, 3] = 1.5
    with pytest.raises(ValueError, match="image 2 has range"):
        sweep(F, bad, 1, domain="pixel", alphas=ALPHAS, progress=False)
    with pytest.raises(ValueError, match="targets must lie"):
        sweep(F, x, 3, domain="pixel", alphas=ALPHAS, progress=False)
    with pytest.raises(ValueError, match="keep_frames"):
        sweep(F, x, 1, domain="pixel", alphas=ALPHAS, keep_frames=[4], progress=False)
    with pytest.raises(ValueError, match="one schedule"):
        sweep(F, x, 1, alphas=ALPHAS, l2_budget=1.0, progress=False)
    with pytest.raises(ValueError, match="image_axis='images' is not an axis"):
        sweep(F, x, 1, alphas=ALPHAS, progress=False, image_axis="images",
              mesh=jax.make_mesh((8,), ("batch",)))
    with pytest.raises(ValueError, match="alpha_axis='a'"):
        sweep(F, x, 1, alphas=ALPHAS, progress=False, alpha_axis="a",
              mesh=jax.make_mesh((8,), ("batch",)))
    with pytest.raises(TypeError, match="mesh"):
        sweep(F, x, 1, alphas=ALPHAS, progress=False, mesh="cpu")
    for bad in (2.7, 0, True):
        with pytest.raises(ValueError, match="n_frames"):
            sweep(F, x, 1, domain="pixel", n_frames=bad, progress=False)
    with pytest.raises(ValueError, match="unknown domain"):
        sweep(F, x, 1, domain=("pixel", "nope"), alphas=ALPHAS, progress=False)


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
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 4
    assert summary["local_devices"] == 2
    # the chunks written by the two-process run equal a sweep in this process
    images_, targets, logits_fn = _script().build_problem(24, 16, 0)
    ref = sweep(logits_fn, images_, targets, domain="pixel",
                alphas=np.linspace(0.0, 6.0, 4).astype(np.float32), chunk_size=8,
                keep_frames=4, progress=False)
    assert_same(load_sweep(out / "sweep"), ref)


# ----------------------------------------------------------------------------------
# any mesh, traced parameters (issue 11)
# ----------------------------------------------------------------------------------

def test_any_mesh_matches_one_device():
    """A user's mesh with its own axis names: images over ``image_axis`` (default the
    first axis), alphas optionally over ``alpha_axis``, other axes replicate."""
    x = images(11, seed=7)
    t = (np.arange(11) * 2) % K
    kw = dict(domain="csp_phase", alphas=ALPHAS, keep_frames=[0, 10], progress=False)
    ref = sweep(F, x, t, mesh=one_device(), **kw)
    devs = np.array(jax.devices())
    for mesh, extra in [
            (jax.make_mesh((8,), ("data",)), {}),
            (jax.sharding.Mesh(devs.reshape(4, 2), ("data", "model")), {"alpha_axis": "model"}),
            (jax.sharding.Mesh(devs.reshape(2, 4), ("rep", "batch")), {"image_axis": "batch"})]:
        assert_same(sweep(F, x, t, mesh=mesh, **extra, **kw), ref)


def test_params_are_traced_not_constants():
    """``(apply, params)``: new parameters of the same shapes reuse the compiled chunk
    program and give the new model's results (not the first one's)."""
    sweep_mod = sys.modules["lens_jax.sweep"]
    apply = lambda p, x: x.reshape(x.shape[0], -1) @ p          # noqa: E731
    w1 = jnp.asarray(np.random.default_rng(1).standard_normal((H * W, K)) * 0.1, jnp.float32)
    w2 = jnp.asarray(np.random.default_rng(2).standard_normal((H * W, K)) * 0.1, jnp.float32)
    x = images(4, seed=3)
    kw = dict(domain="pixel", alphas=ALPHAS, mesh=one_device(), progress=False)
    sweep_mod._FN_CACHE.clear()
    a = sweep((apply, w1), x, 1, **kw)
    (fn, _), = sweep_mod._FN_CACHE.values()
    b = sweep((apply, w2), x, 1, **kw)
    assert len(sweep_mod._FN_CACHE) == 1 and fn._cache_size() == 1     # no recompile
    assert_same(a, sweep(lambda v: apply(w1, v), x, 1, **kw))
    assert_same(b, sweep(lambda v: apply(w2, v), x, 1, **kw))
    assert not np.allclose(a.probs, b.probs)


# ----------------------------------------------------------------------------------
# integrity of the store (issue 12)
# ----------------------------------------------------------------------------------

def _stream(tmp_path, f=F, n=12, **extra):
    x = images(n, seed=5)
    t = np.arange(n) % K
    kw = dict(domain="pixel", alphas=ALPHAS, chunk_size=4, keep_frames=[1], progress=False)
    kw.update(extra)
    return x, t, kw, sweep(f, x, t, out_dir=tmp_path, **kw)


def test_load_refuses_a_chunk_copied_over_another(tmp_path):
    """A chunk file replaced by a copy of another loaded as shifted, duplicated rows."""
    _stream(tmp_path)
    (tmp_path / "chunk_000000.npz").write_bytes((tmp_path / "chunk_000001.npz").read_bytes())
    with pytest.raises(ValueError, match=r"chunk_000000\.npz holds chunk 1 .*expected chunk 0"):
        load_sweep(tmp_path)


def test_resume_refuses_a_classifier_that_agrees_on_image_0(tmp_path):
    """Only image 0's logits were compared: a model equal there but not elsewhere was
    resumed into a result that mixes two models."""
    x, t, kw, _ = _stream(tmp_path)
    m0 = float(x[0].mean())
    g = lambda v: F(v) + 10.0 * (v.mean((1, 2, 3)) - m0)[:, None] * jnp.arange(K)  # noqa
    x0 = jnp.asarray(x[:1, ..., None])
    np.testing.assert_allclose(g(x0), F(x0), atol=1e-5)           # equal at image 0
    (tmp_path / "chunk_000002.npz").unlink()
    with pytest.raises(ValueError, match=r"classifier differs.*logits at image [1-9]"):
        sweep(g, x, t, out_dir=tmp_path, **kw)
    # with parameters: their hash is compared too
    apply = lambda p, v: v.reshape(v.shape[0], -1) @ p[0] + p[1]          # noqa: E731
    w = jnp.asarray(np.random.default_rng(0).standard_normal((H * W, K)) * 0.1, jnp.float32)
    out = tmp_path / "p"
    sweep((apply, (w, jnp.zeros(K))), x, t, out_dir=out, **kw)
    (out / "chunk_000002.npz").unlink()
    with pytest.raises(ValueError, match="parameters' sha256"):
        sweep((apply, (w, jnp.full(K, 1e-7))), x, t, out_dir=out, **kw)


@pytest.mark.parametrize("damage", ["crc", "truncate", "garbage"])
def test_damaged_chunk_is_named_and_recomputed_on_resume(tmp_path, capfd, damage):
    x, t, kw, full = _stream(tmp_path)
    path = tmp_path / "chunk_000001.npz"
    data = bytearray(path.read_bytes())
    if damage == "crc":                       # flip bytes inside a member's data
        i = data.index(b"\x93NUMPY", data.index(b"probs.npy")) + 200
        data[i:i + 8] = bytes(b ^ 0xFF for b in data[i:i + 8])
    elif damage == "truncate":
        data = data[:len(data) // 2]
    else:
        data = bytearray(b"not a zip file")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"chunk_000001\.npz is damaged.*rerun sweep"):
        load_sweep(tmp_path)
    computed = []
    res = sweep(F, x, t, out_dir=tmp_path, on_chunk=lambda k, _: computed.append(k), **kw)
    assert computed == [1]
    assert "chunk_000001.npz is damaged" in capfd.readouterr().err
    assert_same(res, full, rtol=0, atol=0)
    assert_same(load_sweep(tmp_path), full, rtol=0, atol=0)


def test_damaged_manifest_is_named(tmp_path):
    x, t, kw, _ = _stream(tmp_path)
    (tmp_path / "sweep.json").write_text('{"format": "lens_jax.sweep/3", "conf')
    with pytest.raises(ValueError, match=r"sweep\.json is damaged.*resume=False"):
        sweep(F, x, t, out_dir=tmp_path, **kw)
    with pytest.raises(ValueError, match=r"sweep\.json is damaged"):
        load_sweep(tmp_path)
    sweep(F, x, t, out_dir=tmp_path, resume=False, **kw)          # the named fix works
    load_sweep(tmp_path)
