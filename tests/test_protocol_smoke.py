"""Smoke tests of experiments/protocol.py, fashion.py and ablations.py (quick paths).

Tiny and offline: 16x16 synthetic images and linear template classifiers are injected
through the ``load`` hook of each ``main`` (no data set, no training, no download).
"""
import csv
import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments import ablations, fashion, protocol  # noqa: E402
from lens_jax import evaluate as ev  # noqa: E402
from lens_jax.studies import reference  # noqa: E402
from lens_jax.studies import protocol as study_lib  # noqa: E402

S = 16          # image size
K = 10          # classes


def _templates(shift: float = 0.0, sigma: float = 1.6) -> np.ndarray:
    """One Gaussian blob per class at its own position (a 4 x 3 layout), (K, S, S)."""
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
    out = []
    for k in range(K):
        cy, cx = 3.0 + 3.2 * (k // 3) + shift, 3.5 + 4.5 * (k % 3) + shift
        out.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2)))
    return np.stack(out)


def _linear(templates: np.ndarray, scale: float):
    w = jnp.asarray((templates - templates.mean(0)).reshape(K, -1).T, jnp.float32)

    def logits_fn(x):
        return scale * x.reshape(x.shape[0], -1).astype(jnp.float32) @ w
    return logits_fn


def fake_load(dataset):
    rng = np.random.default_rng(1)
    t = _templates()
    labels = np.repeat(np.arange(K), 6).astype(np.int32)
    images = 0.8 * t[labels] + 0.05 * rng.random((labels.size, S, S))
    images = np.clip(images, 0, 1).astype(np.float32)[..., None]
    driver = _linear(t, 2.0)
    independent = {"O": _linear(_templates(0.3, 2.0), 1.5), "O2": _linear(_templates(-0.3), 1.0)}
    info = {k: {"model": "linear template", "test_accuracy": 1.0} for k in ("G", "O", "O2")}
    return images, labels, [str(k) for k in range(K)], driver, independent, info


def test_formatting():
    assert ev.fmt_prob(0.002226) == "0.2226%"
    assert ev.fmt_prob(9.08e-7) == "9.08e-05%"
    assert ev.fmt_pct(0.382) == "38.2%"


def test_reading_is_computed_from_rows():
    def row(b, m, p, e, n_all):
        return {"B": b, "method": m, "p_G": p, "E_warp": e, "all": n_all, "n": 10}
    rows = [row(1.0, "pixel", 0.3, 0.2, 1), row(1.0, "csp_phase", 0.1, 0.6, 0),
            row(2.0, "pixel", 0.9, 0.3, 4), row(2.0, "csp_phase", 0.2, 0.5, 2)]
    text = study_lib.reading(rows)
    assert "B = 1: highest median driver p(target): Pixel (30%)" in text
    assert "highest warp-explained energy: CSP phase (60.0%)" in text
    assert "Pixel 4/10, CSP phase 2/10" in text
    assert "buy more" in text and "explains more" in text
    rows[3]["p_G"] = 0.95                         # CSP phase wins at B = 2 now
    assert "do not always buy more" in study_lib.reading(rows)


@pytest.mark.slow
def test_protocol_quick(tmp_path):
    out = tmp_path / "protocol"
    study = protocol.main(["--quick", "--out", str(out), "--n-boot", "50", "--n", "6"],
                          load=fake_load)
    rows = study["rows"]
    assert [(r["B"], r["method"]) for r in rows] == [
        (b, m) for b in (1.0, 2.0) for m in ev.METHODS]
    for r in rows:
        assert r["n"] == 6 and r["reached"] <= 6
        if r["reached"]:        # (a phase edit of a small blob may not reach B = 2)
            assert 0 <= r["p_G"] <= 1 and 0 <= r["E_warp"] <= 1 and 0 <= r["E_gain"] <= 1
        else:
            assert np.isnan(r["p_G"])
    assert all(r["reached"] == 6 for r in rows if r["method"] == "pixel")
    # reached endpoints sit at the requested budgets
    assert all(abs(r["l2"] - r["B"]) < 1e-2 * r["B"] for r in study["records"] if r["reached"])
    for f in ("index.md", "index.html", "table.csv", "endpoints.csv", "pairs.csv",
              "results.json", "command.txt", "endpoints.png", "summary.png"):
        assert (out / f).is_file(), f
    md = (out / "index.md").read_text()
    assert "follow-up" in md and "96.2%" in md and "§" not in md
    res = json.loads((out / "results.json").read_text())
    assert res["n_sources"] == 6 and len(res["rows"]) == 8 and res["wall_s"] > 0
    assert "protocol.py" in (out / "command.txt").read_text()
    with open(out / "endpoints.csv") as f:
        assert len(list(csv.DictReader(f))) == 6 * 8


def test_fashion_quick(tmp_path):
    out = tmp_path / "fashion"
    study = fashion.main(["--quick", "--out", str(out), "--n-boot", "20", "--n", "6",
                          "--methods", "pixel,csp_phase"], load=fake_load)
    assert [(r["B"], r["method"]) for r in study["rows"]] == [
        (1.0, "pixel"), (1.0, "csp_phase"), (2.0, "pixel"), (2.0, "csp_phase")]
    assert {r["source"] for r in study["records"]} == {s for s, _ in reference.FASHION_PAIRS}
    md = (out / "index.md").read_text()
    assert "beside the follow-up" not in md          # no follow-up numbers here
    assert (out / "command.txt").is_file() and (out / "endpoints.png").is_file()


@pytest.mark.slow
def test_ablations_quick(tmp_path):
    out = tmp_path / "abl"
    study = ablations.main(["--quick", "--out", str(out), "--n-boot", "20",
                            "--groups", "schedule"], load=fake_load)
    rows = {r["setting"]: r for r in study["rows"]}
    assert all(r["group"] == "schedule" for r in study["rows"])
    matched = rows["matched L2 budget B = 2"]
    assert matched["n"] == 6
    raw = [r for s, r in rows.items() if "raw alpha" in s][0]
    assert raw["note"].startswith("alpha = ") and raw["reached"] == raw["n"]
    caps = [r for s, r in rows.items() if s.startswith("step cap")]
    assert caps and all(r["l2_med"] > 0 for r in caps)
    for f in ("index.md", "table.csv", "endpoints.png", "summary.png", "command.txt"):
        assert (out / f).is_file(), f
    with pytest.raises(ValueError):
        study_lib.ablation_settings(quick=True, shape=(S, S), groups=("nope",))
    # the pyramid grid adapts to the image size (max height 2 at 16x16 and 28x28)
    heights = {c["pyramid"].height for c in study_lib.ablation_settings(
        quick=False, shape=(S, S), groups=("pyramid",))}
    assert heights == {1, 2}
