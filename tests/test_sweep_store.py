"""The sweep store: a Zarr v3 group through TensorStore (issue 19).

Resume recomputes only what is missing and is bitwise equal to an uninterrupted run;
zarr reads the arrays; chunks from another sweep, edited records, a second writer, a
classifier that agrees on a few probe images, the old npz format and damaged chunks are
all named.  One tiny configuration (pixel domain, 16x16, one device) throughout, so the
chunk program compiles once.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lens_jax import _store
from lens_jax.sweep import load, run, sweep_mesh

from conftest import xla_flags

H = W = 16
K = 3
ALPHAS = np.array([0.0, 1.0, 2.5, 4.0], np.float32)
FIELDS = ("probs", "logits", "l2", "alphas", "reached", "max_change", "problem", "target",
          "source", "frames", "frame_index")


def _w(seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((H * W, K)) * 0.1,
                       jnp.float32)


W0, W1 = _w(0), _w(1)


def F(x):
    return x.reshape(x.shape[0], -1) @ W0


def G(x):
    return x.reshape(x.shape[0], -1) @ W1


def images(n, seed=5):
    r = np.random.default_rng(seed)
    return (0.15 + 0.7 * r.random((n, H, W))).astype(np.float32)


X = images(12)
T = np.arange(12) % K
KW = dict(domain="pixel", alphas=ALPHAS, chunk_size=4, keep_frames=[1, 6], progress=False,
          mesh=sweep_mesh(devices=jax.devices()[:1]))


def same(a, b):
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.fixture(scope="module")
def full():
    return run(F, X, T, **KW)                         # in memory, uninterrupted


@pytest.fixture
def stored(tmp_path, full):
    out = tmp_path / "s"
    res = run(F, X, T, out_dir=out, **KW)
    same(res, full)
    return out


class Stop(Exception):
    pass


def chunk_files(out, k):
    """Every file of sweep chunk ``k`` (pairs 4k..4k+3; kept pair 6 is in chunk 1)."""
    files = [p for p in out.rglob("*") if p.is_file() and p.parent.name == "c"
             and p.name == str(k)]                    # 1-D arrays: <name>/c/<k>
    files += [p for p in out.rglob(f"c/{k}/*") if p.is_file()]
    return files


def test_interrupted_sweep_resumes_bitwise_recomputing_only_what_is_missing(tmp_path, full):
    out = tmp_path / "s"

    def crash_after_1(k, arrays):
        if k == 1:
            raise Stop
    with pytest.raises(Stop):
        run(F, X, T, out_dir=out, on_chunk=crash_after_1, **KW)
    with pytest.raises(ValueError, match=r"incomplete, 1 of 3 chunks missing \(first: \[2\]\)"):
        load(out)
    stamp0 = (out / "stamps" / "c" / "0" / "0").stat().st_mtime_ns
    computed = []
    res = run(F, X, T, out_dir=out, on_chunk=lambda k, _: computed.append(k), **KW)
    assert computed == [2]                           # only what was missing
    assert (out / "stamps" / "c" / "0" / "0").stat().st_mtime_ns == stamp0
    same(res, full)
    same(load(out), full)
    computed.clear()                                 # finished: nothing to do
    run(F, X, T, out_dir=out, on_chunk=lambda k, _: computed.append(k), **KW)
    assert computed == []
    # no temporary files left behind by the atomic writes
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".__lock"))]


def test_zarr_reads_the_store(stored, full):
    zarr = pytest.importorskip("zarr")
    g = zarr.open_group(str(stored), mode="r")
    np.testing.assert_array_equal(g["probs"][:], full.probs.reshape(12, 4, K))
    np.testing.assert_array_equal(g["reached"][:], full.reached.reshape(12, 4))
    np.testing.assert_array_equal(g["frames"][:], full.frames)
    rec = g.attrs["lens_jax"]
    assert rec["format"] == _store.FORMAT and rec["config"]["domain"] == "pixel"
    assert rec["config_hash"] == _store.config_hash(rec["config"])
    assert g["probs"].metadata.codecs[-1].to_dict()["name"] == "crc32c"
    assert sorted(g.array_keys()) == sorted(_store.ARRAYS)


def test_a_chunk_from_another_sweep_of_the_same_images_is_refused(tmp_path, stored, full):
    """Case 3: chunks of another classifier's sweep copied into the same slot."""
    other = tmp_path / "other"
    run(G, X, T, out_dir=other, **KW)
    for p in chunk_files(other, 1):
        dst = stored / p.relative_to(other)
        dst.write_bytes(p.read_bytes())
    with pytest.raises(ValueError, match=r"chunk 1 \(pairs 4\.\.7\) does not match its stamp"):
        load(stored)
    computed = []
    res = run(F, X, T, out_dir=stored, on_chunk=lambda k, _: computed.append(k), **KW)
    assert computed == [1]
    same(res, full)


def test_a_second_writer_is_refused(stored):
    """Case 4: another process holds the folder (a real second process)."""
    code = textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(stored)!r}, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.readline()
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout.readline().strip() == "locked"
            with pytest.raises(RuntimeError, match=rf"being written by another sweep "
                                                   rf"\(process {p.pid} .*another out_dir"):
                run(F, X, T, out_dir=stored, **{**KW, "alphas": ALPHAS * 2})
        finally:
            p.stdin.close()
            p.wait(timeout=30)
    load(stored)                                     # untouched


def _edit_record(out, change, rehash):
    meta = json.loads((out / "zarr.json").read_text())
    change(meta["attributes"]["lens_jax"])
    if rehash:
        meta["attributes"]["lens_jax_sha256"] = _store.record_hash(meta["attributes"]["lens_jax"])
    (out / "zarr.json").write_text(json.dumps(meta))


def test_an_edited_record_is_refused_on_load_and_resume(stored):
    """Case 5: an alpha 1.0 -> 0.0 in the stored configuration; an edited n_chunks."""
    good = (stored / "zarr.json").read_bytes()

    def alpha(rec):
        rec["config"]["schedule_values"][1] = 0.0
    _edit_record(stored, alpha, rehash=False)
    for call in (lambda: load(stored), lambda: run(F, X, T, out_dir=stored, **KW)):
        with pytest.raises(ValueError, match=r"zarr\.json: the sweep's record does not match "
                                             r"its sha256.*resume=False"):
            call()
    (stored / "zarr.json").write_bytes(good)
    _edit_record(stored, alpha, rehash=True)          # the record's own hash redone too
    with pytest.raises(ValueError, match=r"zarr\.json: the configuration does not match"):
        load(stored)

    def n_chunks(rec):
        rec["n_chunks"] = 2
    (stored / "zarr.json").write_bytes(good)
    _edit_record(stored, n_chunks, rehash=True)
    with pytest.raises(ValueError, match=r"zarr\.json: n_chunks, n_pairs, chunk_size and "
                                         r"chunk_hashes disagree"):
        load(stored)
    (stored / "zarr.json").write_bytes(good)
    meta = json.loads((stored / "probs" / "zarr.json").read_text())
    meta["shape"][0] = 8
    (stored / "probs" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"probs: the array belongs to another sweep or was "
                                         r"edited \(shape \(8, 4, 3\), expected \(12, 4, 3\)\)"):
        load(stored)
    computed = []                                    # the named fix works
    run(F, X, T, out_dir=stored, resume=False, on_chunk=lambda k, _: computed.append(k), **KW)
    assert computed == [0, 1, 2]


def test_resume_refuses_a_different_sweep(stored):
    with pytest.raises(ValueError, match="different sweep.*schedule_values"):
        run(F, X, T, out_dir=stored, **{**KW, "alphas": ALPHAS * 2})
    with pytest.raises(ValueError, match="classifier differs"):
        run(G, X, T, out_dir=stored, **KW)
    y = X.copy()
    y[5, 0, 0] = 0.5 if y[5, 0, 0] != 0.5 else 0.6
    with pytest.raises(ValueError, match=r"images, targets or sources differ.*\[1\]"):
        run(F, y, T, out_dir=stored, **KW)
    with pytest.raises(ValueError, match="chunk_size=4"):
        run(F, X, T, out_dir=stored, **{**KW, "chunk_size": 2})


def test_resume_refuses_a_classifier_that_agrees_on_the_probe_images(stored):
    """Case 13: a function equal to F on the eight images the old fingerprint probed
    (0, 2, 3, 5, 6, 8, 9, 11 of 12) but not on image 1; it closes over the same weights,
    so the hash of its arrays matches and its traced program tells them apart."""
    m1 = float(X[1].mean())

    def g(v):
        hit = jnp.abs(v.mean((1, 2, 3)) - m1) < 1e-6
        return F(v) + jnp.where(hit, 5.0, 0.0)[:, None] * jnp.arange(K, dtype=jnp.float32)[None]
    old_probes = np.unique(np.linspace(0, 11, 8).round().astype(int))
    xs = jnp.asarray(X[old_probes, ..., None])
    np.testing.assert_allclose(g(xs), F(xs), atol=1e-6)
    with pytest.raises(ValueError, match=r"classifier differs .*traced program differs"):
        run(g, X, T, out_dir=stored, **KW)
    # with parameters their sha256 decides, even when every logit agrees
    apply = lambda p, v: F(v) + 0.0 * p                 # noqa: E731
    out = stored.parent / "p"
    run((apply, jnp.zeros(())), X, T, out_dir=out, **KW)
    with pytest.raises(ValueError, match="parameters' sha256"):
        run((apply, jnp.ones(())), X, T, out_dir=out, **KW)


def test_a_function_without_arrays_is_probed_on_every_image():
    """Without parameters the logits are all there is: every image (up to 1024) and four
    fixed random images are probed, not eight."""
    import importlib
    from lens_jax import _sweep_plan
    sweep_mod = importlib.import_module("lens_jax.sweep")
    from lens_jax.classifier import as_classifier
    h = lambda v: jnp.stack([v[:, :8].mean((1, 2, 3)), v[:, 8:].mean((1, 2, 3)),  # noqa
                             v.std((1, 2, 3))], -1)
    clf = as_classifier(h, example=jnp.zeros((1, H, W, 1), jnp.float32))
    assert jax.tree.leaves(clf.params) == []
    plan, _ = _sweep_plan.make_plan(clf, X, T, sources=None, domain="pixel", alphas=ALPHAS,
                                    l2_budget=None, step_cap=None, n_frames=12, loss="nll",
                                    mode="fixed", color="luminance", pyramid=None,
                                    mesh=KW["mesh"], image_axis=None, alpha_axis=None,
                                    alpha_chunk=None, keep_frames=0)
    fp, logits = sweep_mod._fingerprint(clf, X, plan)
    assert fp["params"] is None and fp["probe_index"] == list(range(12)) + [-1, -2, -3, -4]
    np.testing.assert_allclose(logits[:12], h(jnp.asarray(X[..., None])), rtol=1e-6)


def test_resume_from_another_process(stored):
    """The fingerprint (parameters, traced program, probes) is the same in a fresh
    process: a finished sweep resumes there with nothing to compute."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_sweep_store as t
        from lens_jax.sweep import run
        done = []
        r = run(t.F, t.X, t.T, out_dir={str(stored)!r}, on_chunk=lambda k, a: done.append(k),
                **t.KW)
        assert done == [] and r.probs.shape == (12, 4, 3), done
        print("resumed")
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUMPY_DTYPE_PROMOTION="strict",
               JAX_NUMPY_RANK_PROMOTION="raise",
               JAX_ENABLE_X64=str(bool(jax.config.jax_enable_x64)))
    env["XLA_FLAGS"] = xla_flags()                     # one device
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and "resumed" in p.stdout, p.stderr[-3000:]


@pytest.mark.parametrize("damage", ["crc", "truncate", "garbage"])
def test_damaged_chunk_is_named_and_recomputed_on_resume(stored, full, capfd, damage):
    path = stored / "probs" / "c" / "1" / "0" / "0"
    data = bytearray(path.read_bytes())
    if damage == "crc":                               # one bit inside the data
        data[20] ^= 0x01
    elif damage == "truncate":
        data = data[:len(data) // 2]
    else:
        data = bytearray(b"not a chunk")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"chunk 1 \(pairs 4\.\.7\) is damaged: probs.*rerun"):
        load(stored)
    computed = []
    res = run(F, X, T, out_dir=stored, on_chunk=lambda k, _: computed.append(k), **KW)
    assert computed == [1]
    assert "chunk 1 (pairs 4..7) is damaged: probs" in capfd.readouterr().err
    same(res, full)
    same(load(stored), full)


def test_damaged_record_and_the_old_format_are_named(stored, tmp_path):
    (stored / "zarr.json").write_text('{"zarr_format": 3, "attrib')
    with pytest.raises(ValueError, match=r"zarr\.json is damaged.*resume=False"):
        run(F, X, T, out_dir=stored, **KW)
    with pytest.raises(ValueError, match=r"zarr\.json is damaged"):
        load(stored)
    old = tmp_path / "old"
    old.mkdir()
    (old / "sweep.json").write_text('{"format": "lens_jax.sweep/3"}')
    (old / "chunk_000000.npz").write_bytes(b"PK")
    for call in (lambda: load(old), lambda: run(F, X, T, out_dir=old, **KW)):
        with pytest.raises(ValueError, match=r"old format .*sweep\.json.*resume=False"):
            call()
    with pytest.raises(ValueError, match="old format"):
        load(tmp_path)                               # a parent folder: the subfolder named
    foreign = tmp_path / "foreign"                    # someone else's Zarr group
    foreign.mkdir()
    (foreign / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    with pytest.raises(ValueError, match=r"not a lens_jax\.sweep/4 sweep"):
        run(F, X, T, out_dir=foreign, **KW)
    with pytest.raises(ValueError, match="not a lens_jax sweep; resume=False deletes only"):
        run(F, X, T, out_dir=foreign, resume=False, **KW)
    assert (foreign / "zarr.json").exists()
    shutil.rmtree(stored)
    res = run(F, X, T, out_dir=old, resume=False, **KW)   # the named fix works
    assert not (old / "sweep.json").exists() and not list(old.glob("chunk_*.npz"))
    same(load(old), res)


def test_several_domains_stream_to_subfolders(tmp_path):
    x = X[:5]
    kw = {**KW, "keep_frames": 1}
    del kw["domain"]
    res = run(F, x, 2, domain=("pixel", "fourier_phase"), out_dir=tmp_path, **kw)
    assert set(res) == {"pixel", "fourier_phase"}
    back = load(tmp_path)
    for d in res:
        assert (tmp_path / d / "zarr.json").exists()
        assert res[d].info["domain"] == d
        same(res[d], back[d])
        np.testing.assert_array_equal(res[d].target, 2)
    assert not np.allclose(res["pixel"].frames, res["fourier_phase"].frames)
