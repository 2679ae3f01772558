"""lens_jax.evaluate and lens_jax.tables against independent computations."""
import csv
import json

import jax.numpy as jnp
import numpy as np
import pytest

from lens_jax import evaluate as ev
from lens_jax import tables
from lens_jax.metrics import bootstrap_ci, transfer

S, K = 16, 4


def _templates(shift=0.0):
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
    cs = [(4, 4), (4, 11), (11, 4), (11, 11)]
    return np.stack([np.exp(-((yy - cy - shift) ** 2 + (xx - cx - shift) ** 2) / 6.0)
                     for cy, cx in cs])


def _linear(t, scale=3.0):
    w = jnp.asarray((t - t.mean(0)).reshape(K, -1).T, jnp.float32)
    return lambda x: scale * x.reshape(x.shape[0], -1).astype(jnp.float32) @ w


@pytest.fixture(scope="module")
def problem():
    t = _templates()
    labels = np.repeat(np.arange(K), 3).astype(np.int32)
    rng = np.random.default_rng(0)
    images = np.clip(0.8 * t[labels] + 0.05 * rng.random((labels.size, S, S)), 0, 1)
    return images.astype(np.float32)[..., None], labels, _linear(t)


def test_bootstrap_cluster_equals_plain_on_duplicated_values():
    # each source contributes 5 identical values: resampling sources is resampling values
    vals = np.random.default_rng(3).normal(size=40)
    dup = np.repeat(vals, 5)
    ids = np.repeat(np.arange(40), 5)
    a = ev.bootstrap(dup, ids, n_boot=300, seed=7)
    b = bootstrap_ci(vals, n_boot=300, key=7)
    assert a.estimate == pytest.approx(np.median(vals))
    assert (a.low, a.high) == pytest.approx((b.low, b.high))


def test_bootstrap_interval_of_known_data():
    # median of 0..99: asymptotic s.e. = 1.2533 sigma / sqrt(n) = 3.62; 95% CI about +-7.1
    ci = ev.bootstrap(np.arange(100.0), np.arange(100), n_boot=2000, seed=0)
    assert ci.estimate == 49.5
    assert 49.5 - 11 < ci.low < 49.5 - 4 and 49.5 + 4 < ci.high < 49.5 + 11


def test_predict_pads_last_batch(problem):
    images, _, fn = problem
    z = ev.predict(fn, images, batch_size=5)       # 12 images: batches 5, 5, 2 (padded)
    np.testing.assert_allclose(z, np.asarray(fn(jnp.asarray(images))), rtol=1e-5, atol=1e-5)
    assert z.shape == (12, K)
    # (apply_fn, params) form
    w = jnp.ones((S * S, K), jnp.float32)
    z2 = ev.predict((lambda p, x: x.reshape(len(x), -1) @ p, w), images, batch_size=7)
    np.testing.assert_allclose(z2, images.reshape(12, -1) @ np.ones((S * S, K)), rtol=1e-5)
    with pytest.raises(ValueError, match="images"):
        ev.predict(fn, images[0])


def test_select_sources(problem):
    images, labels, fn = problem
    images = images.copy()
    bad = np.flatnonzero(labels == 1)[0]
    images[bad] = images[np.flatnonzero(labels == 2)[0]]      # looks like a 2 now
    src = ev.select_sources(images, labels, [(1, 3), (0, 2)], n_per_pair=5, driver=fn,
                            seed=None)
    assert bad not in src.index
    assert list(src.source) == [1, 1, 0, 0, 0] and list(src.target) == [3, 3, 2, 2, 2]
    assert list(src.id) == list(range(5))
    one = ev.select_sources(images, labels, [(0, 2)], n_per_pair=1, driver=fn, seed=None)
    assert list(one.index) == [0]
    with pytest.raises(ValueError, match="n_per_pair"):
        ev.select_sources(images, labels, [(0, 2)], n_per_pair=0, driver=fn)


@pytest.mark.parametrize("domain,mode", [("pixel", "fixed"), ("csp_phase", "fixed"),
                                         ("pixel", "live")])
def test_endpoints_reach_their_budgets(problem, domain, mode):
    images, labels, fn = problem
    src = ev.select_sources(images, labels, [(0, 3), (1, 2)], n_per_pair=3, driver=fn)
    budgets = (0.5, 1.0)
    ep = ev.endpoints(fn, src, domain=domain, budgets=budgets, mode=mode, chunk=4)
    assert ep.frames.shape == (6, 2, S, S, 1) and ep.probs.shape == (6, 2, K)
    # the L2 is recomputed independently from the frames
    l2 = np.sqrt(((ep.frames - src.images[:, None]) ** 2).sum(axis=(2, 3, 4)))
    np.testing.assert_allclose(l2, ep.l2, rtol=1e-4, atol=1e-5)
    assert ep.reached.all()
    np.testing.assert_allclose(ep.l2, np.broadcast_to(budgets, ep.l2.shape), rtol=2e-3)
    assert np.all(ep.max_change[:, 1] >= ep.max_change[:, 0])
    # the driver's probabilities are its softmax at the frames
    z = np.asarray(fn(jnp.asarray(ep.frames.reshape(-1, S, S, 1))), np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(ep.probs.reshape(-1, K), p / p.sum(1, keepdims=True),
                               atol=1e-4)


def test_endpoints_needs_one_schedule(problem):
    images, labels, fn = problem
    src = ev.select_sources(images, labels, [(0, 3)], n_per_pair=1, driver=fn)
    with pytest.raises(ValueError, match="exactly one"):
        ev.endpoints(fn, src, domain="pixel", budgets=(1.0,), alphas=(1.0,))
    ep = ev.endpoints(fn, src, domain="pixel", budgets=None, alphas=(0.0, 2.0))
    assert ep.frames.shape[:2] == (1, 1) and ep.alphas[0, 0] == 2.0


def test_transfer_counts_on_hand_made_classifier():
    # classifier "bright": class 1 when the mean is above 0.5; "left": class 1 when the
    # left half is brighter than the right
    bright = lambda x: jnp.stack([0.5 - x.mean((1, 2, 3)), x.mean((1, 2, 3)) - 0.5], -1) * 20
    left = lambda x: jnp.stack([x[:, :, S // 2:].mean((1, 2, 3)),
                                x[:, :, :S // 2].mean((1, 2, 3))], -1) * 20
    frames = np.zeros((4, S, S, 1), np.float32)
    frames[0] = 0.9                           # bright, not left
    frames[1, :, :S // 2] = 1.0               # left, mean 0.5 -> dark (0.5 - 0.5 = 0 tie)
    frames[1, :, :S // 2] = 0.9               # left, dark
    frames[2, :, :S // 2] = 1.0
    frames[2, :, S // 2:] = 0.2               # left and bright (mean 0.6)
    targets = np.ones(4, np.int32)
    res = transfer({"bright": bright, "left": left}, frames, targets, batch_size=3)
    assert list(res["bright"][1]) == [1, 0, 1, 0]
    assert list(res["left"][1]) == [0, 1, 1, 0]
    assert res["bright"][0][0] == pytest.approx(1 / (1 + np.exp(-20 * 0.8)), rel=1e-4)
    recs = [{"target": 1, "pred_bright": int(a), "pred_left": int(b)}
            for a, b in zip(res["bright"][1], res["left"][1])]
    assert ev.transfer_counts(recs, ["bright", "left"]) == {"bright": 2, "left": 2, "all": 1}
    with pytest.raises(ValueError, match="outside"):
        transfer({"bright": bright}, frames, np.full(4, 5))


def test_target_specificity_known_geometry():
    e1, e2, e3 = np.eye(3)
    assert ev.target_specificity(np.stack([e1, e2, e3])) == pytest.approx(0.0)
    assert ev.target_specificity(np.stack([e1, 2 * e1, 0.5 * e1])) == pytest.approx(1.0)
    assert ev.target_specificity(np.stack([e1, -e1])) == pytest.approx(-1.0)
    # 45 degrees: cos = 1/sqrt(2); image-shaped edits are flattened
    two = np.stack([e1[:2], (e1[:2] + e2[:2])]).reshape(2, 1, 2, 1)
    assert ev.target_specificity(two) == pytest.approx(2 ** -0.5)
    with pytest.raises(ValueError, match="T >= 2"):
        ev.target_specificity(e1[None])
    with pytest.raises(ValueError, match="zero"):
        ev.target_specificity(np.stack([e1, 0 * e1]))


def test_specificity_of_a_linear_pixel_driver(problem):
    # a linear softmax driver z = W x: the pixel NLL gradient at the source toward t is
    # -(w_t - sum_k p_k w_k), so the fixed edit toward t points along w_t - sum_k p_k w_k
    images, labels, fn = problem
    src = ev.select_sources(images, labels, [(0, 3)], n_per_pair=2, driver=fn)
    sp = ev.specificity(fn, src, num_classes=K, domain="pixel", budget=0.3)
    w = (_templates() - _templates().mean(0)).reshape(K, -1)
    z = np.asarray(fn(jnp.asarray(src.images)), np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expect = [ev.target_specificity(np.stack([w[t] - p[i] @ w for t in (1, 2, 3)]))
              for i in range(2)]
    assert sp.shape == (2,)
    np.testing.assert_allclose(sp, expect, atol=0.05)   # clipping at 0/1 bends edits a bit


def test_evaluate_and_summarise_against_direct_counts(problem):
    images, labels, fn = problem
    src = ev.select_sources(images, labels, [(0, 3), (1, 2)], n_per_pair=3, driver=fn)
    other = {"O": _linear(_templates(0.5), 2.0), "O2": _linear(_templates(-0.5), 1.0)}
    _, recs = ev.run_methods(fn, src, other, methods=("pixel",), budgets=(0.5, 3.0),
                             warp=False, progress=False)
    assert len(recs) == 12 and {r["mode"] for r in recs} == {"fixed"}
    rows = ev.summarise(recs, group=("B", "method"), classifiers=["O", "O2"], n_boot=50)
    assert [r["B"] for r in rows] == [0.5, 3.0]
    for row in rows:
        rs = [r for r in recs if r["B"] == row["B"]]
        assert row["n"] == 6 and row["reached"] == sum(r["reached"] for r in rs)
        assert row["p_G"] == pytest.approx(np.median([r["p_G"] for r in rs]))
        assert row["O"] == sum(r["pred_O"] == r["target"] for r in rs)
        assert row["all"] == sum(r["pred_O"] == r["target"] and r["pred_O2"] == r["target"]
                                 for r in rs)
        assert row["flip_G"] == sum(r["pred_G"] == r["target"] for r in rs)
        assert np.isnan(row["E_warp"])
    assert rows[1]["p_G"] > rows[0]["p_G"]       # a bigger budget buys more confidence
    shown = ev.display_rows(rows, ["O", "O2"])
    assert shown[0]["method"] == "Pixel" and shown[0]["reached"].endswith("/6")
    with pytest.raises(ValueError, match="group key"):
        ev.summarise(recs, group=("nope",), classifiers=[])


def test_warp_energy_translation_vs_noise():
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    blob = lambda cx: np.exp(-((yy - 8) ** 2 + (xx - cx) ** 2) / 8.0)[..., None]
    src = np.stack([blob(7.0), blob(7.0)])
    noise = np.random.default_rng(0).normal(0, 0.1, (S, S, 1)).astype(np.float32)
    frames = np.stack([blob(8.0), blob(7.0) + noise])
    e = ev.warp_energy(src, frames, gain=False, steps=100)
    assert e[0] > 0.9 and e[1] < 0.2
    assert np.isnan(ev.warp_energy(src[:1], src[:1], gain=True, steps=20)[0])


def test_tables_round_trip(tmp_path):
    rows = [{"a": 1, "b": np.float32(0.5), "c": float("nan")}, {"a": 2, "d": "x|y"}]
    p = tables.write_tables(rows, tmp_path / "t", columns=["a", "b", "c"])
    md = p["md"].read_text().splitlines()
    assert md[0] == "| a | b | c |" and md[2] == "| 1 | 0.5 |  |"
    with open(p["csv"]) as f:
        got = list(csv.DictReader(f))
    assert got == [{"a": "1", "b": "0.5", "c": ""}, {"a": "2", "b": "", "c": ""}]
    assert json.loads(p["json"].read_text()) == [{"a": 1, "b": 0.5, "c": None},
                                                 {"a": 2, "d": "x|y"}]
    assert tables.markdown_table([{"d": "x|y"}]).splitlines()[2] == "| x\\|y |"
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError, match="bad.json"):
        tables.read_json(tmp_path / "bad.json")
    c = tables.record_command(tmp_path, 1.25, argv=["experiments/x.py", "--quick"])
    assert "python experiments/x.py --quick" in c.read_text() and "wall_s: 1.2" in c.read_text()
    # a second and third run into the folder keep the history, newest first
    tables.record_command(tmp_path, 2.5, argv=["experiments/x.py", "--n", "2"])
    tables.record_command(tmp_path, 3.5, argv=["experiments/x.py", "--n", "3"])
    text = c.read_text()
    assert text.startswith("command: python experiments/x.py --n 3\n")
    order = [text.index(f"wall_s: {w}") for w in ("3.5", "2.5", "1.2")]
    assert order == sorted(order) and text.count("Earlier runs into this folder") == 1


def test_endpoints_is_one_morph_batch_call(problem, monkeypatch):
    # one batching layer: endpoints hands its chunk size to morph_batch instead of
    # wrapping morph_batch's own loop in a second one
    images, labels, fn = problem
    src = ev.select_sources(images, labels, [(0, 3), (1, 2)], n_per_pair=3, driver=fn)
    calls = []
    real = ev.morph_batch

    def spy(driver, imgs, **kw):
        calls.append((len(imgs), kw.get("images_per_call")))
        return real(driver, imgs, **kw)
    monkeypatch.setattr(ev, "morph_batch", spy)
    ep = ev.endpoints(fn, src, domain="pixel", budgets=(0.5,), chunk=4)
    assert calls == [(6, 4)] and ep.l2.shape == (6, 1)


def test_default_chunk_scales_with_pixels_and_changes_no_value(problem, monkeypatch):
    # the default keeps a call's pixels those of 64 images of 28x28 (a 112-px live study
    # with 64 per call was killed for memory at 17 GB); the chunk never changes a value
    assert [ev.default_chunk(np.zeros((2, s, s, 1))) for s in (28, 56, 112, 224, 16)] == \
        [64, 16, 4, 1, 196]
    images, labels, fn = problem
    src = ev.select_sources(images, labels, [(0, 3), (1, 2)], n_per_pair=3, driver=fn)
    calls = []
    real = ev.morph_batch

    def spy(driver, imgs, **kw):
        calls.append(kw.get("images_per_call"))
        return real(driver, imgs, **kw)
    monkeypatch.setattr(ev, "morph_batch", spy)
    ep = ev.endpoints(fn, src, domain="pixel", budgets=(0.5,))
    ep4 = ev.endpoints(fn, src, domain="pixel", budgets=(0.5,), chunk=4)
    assert calls == [ev.default_chunk(src.images), 4]
    np.testing.assert_allclose(ep.frames, ep4.frames, atol=1e-6)
    np.testing.assert_allclose(ep.l2, ep4.l2, rtol=1e-5)
