"""Tests of experiments/resolution.py (the image-size x robustness study).

The end-to-end ``--quick`` run is a SMOKE TEST marked ``slow`` (it trains 1-epoch models in
a temporary cache and morphs 3 sources at 28 and 42 px); the other tests are cheap.
"""
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lens_jax import data, reader, viz

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "resolution.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("_resolution", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_SCRIPT = _load_script()


@pytest.fixture
def res():
    """The study script as a module (loaded once; not a module-scoped fixture, so this
    file's tests spread over the workers)."""
    return _SCRIPT


def test_judges_see_a_larger_image_downsampled_to_28(res):
    """An independent classifier trained at 28 px judges a 112-px endpoint through
    ``data.resize(x, 28)`` (antialiased); at 28 px it sees the image as is."""
    from lens_jax.classifier import as_classifier
    w = np.random.default_rng(0).normal(size=(28 * 28, 3)).astype(np.float32)
    apply = lambda p, x: x.reshape(len(x), -1) @ p
    big = np.random.default_rng(1).random((2, 112, 112, 1)).astype(np.float32)
    judge = as_classifier(res.at_base((apply, w), 112))
    want = np.asarray(data.resize(big, 28)).reshape(2, -1) @ w
    np.testing.assert_allclose(np.asarray(judge(big)), want, rtol=1e-4, atol=1e-4)
    small = big[:, ::4, ::4]
    same = as_classifier(res.at_base((apply, w), 28))
    np.testing.assert_allclose(np.asarray(same(small)), small.reshape(2, -1) @ w,
                               rtol=1e-5, atol=1e-5)


def test_driver_recipe_flags_reach_training(res, monkeypatch):
    """``--epochs-large``/``--n-train-large`` train the drivers above 28 px (at their size);
    ``--same-recipe`` gives the 28-px drivers the same recipe (a control of size against
    data and epochs), but never the driver that picks the sources (the same sources as the
    study's own 28-px run); robust drivers get PGD eps scaled by S / 28."""
    import types
    seen = []
    monkeypatch.setattr(res.job, "load_model", lambda model, ds, **kw: seen.append(kw) or (
        None, None, {"test_accuracy": 1.0}))
    args = types.SimpleNamespace(epochs_large=4, n_train_large=4000, quick=False)
    res.load_driver("cnn", "fashion_mnist", 28, args)
    res.load_driver("cnn+robust", "fashion_mnist", 112, args)
    res.load_driver("cnn", "fashion_mnist", 28, args, True)
    strip = [{k: v for k, v in kw.items() if k in ("size", "epochs", "n_train")} for kw in seen]
    assert strip == [{}, {"size": 112, "epochs": 4, "n_train": 4000},
                     {"epochs": 4, "n_train": 4000}]
    base = res.default_attack("fashion_mnist").eps
    assert "adversary" not in seen[0] and seen[1]["adversary"].eps == pytest.approx(base * 4)
    # a --same-recipe run: the sources are picked by the study's own 28-px driver
    def select_sources(*a, **kw):      # stop the run once the sources are picked
        raise StopIteration

    monkeypatch.setattr(res.ev, "select_sources", select_sources)
    monkeypatch.setattr(res.job, "load_evaluators", lambda *a, **kw: ({}, []))
    monkeypatch.setattr(res.data, "load", lambda *a, **kw: (None, None))
    seen.clear()
    with pytest.raises(StopIteration):
        res.run_dataset("fashion_mnist", types.SimpleNamespace(
            **vars(args), same_recipe=True, n=1, sizes="28", drivers="cnn"), None)
    assert seen == [{"quick": False, "progress": True}]


def _fake_cell(folder: Path, stem: str, *, n: int, budgets, value: float):
    # the judges: the MLP calls even sources the target, the ccexam CNN all of them; the
    # driver (pred_G) and the other driver never do, and are not independent judges
    recs = [{"id": i, "pair": i % 3, "index": 10 + i, "source": 3, "target": 8,
             "reached": True, "B": b, "pred_mlp": 8 if i % 2 == 0 else 3, "pred_ccexam": 8,
             "pred_G": 3, "pred_other driver": 3} for i in range(n) for b in budgets]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps({"seconds": 0, "records": recs}))
    frames = np.full((n, len(budgets), 28, 28, 1), int(value * 255), np.uint8)
    np.savez(folder / f"{stem}.npz", frames28=frames, gallery=frames[:1])


def test_reader_sheets_from_cells_with_unedited_controls(res, tmp_path, monkeypatch):
    """``--reader K`` takes the first K sources per pair of each named cell at the reader
    budget, adds each source once unedited, and writes a blind key."""
    x = np.zeros((20, 28, 28, 1), np.float32)
    x[10:16] = 0.5
    monkeypatch.setattr(data, "load", lambda name, split="train", **kw: (x, np.zeros(20, int)))
    cells = tmp_path / "mnist5k" / "cells"
    _fake_cell(cells, "112px_cnn+robust_fixed_csp_joint", n=6, budgets=[2.0, 4.0], value=1.0)
    _fake_cell(cells, "28px_cnn_fixed_pixel", n=6, budgets=[2.0, 4.0], value=0.25)
    assert res.main(["--reader", "1", "--out", str(tmp_path), "--datasets", "mnist5k",
                     "--budgets", "2,4", "--reader-budget", "4", "--cells",
                     "112,cnn+robust,fixed,csp_joint;28,cnn,fixed,pixel"]) == 0
    key = reader.load_key(tmp_path / "reader" / "key.json")
    tiles = key["tiles"]
    assert len(tiles) == 2 * 3 + 3                        # 1 per pair per cell + controls
    by = {}
    for t in tiles:
        by.setdefault(t["domain"], []).append(t)
    assert sorted(t["index"] for t in by["csp_joint"]) == [10, 11, 12]     # first per pair
    assert {t["size"] for t in by["csp_joint"]} == {"112"} and by["csp_joint"][0]["B"] == 4.0
    assert sorted(t["index"] for t in by["unedited source"]) == [10, 11, 12]
    assert (tmp_path / "reader" / "labels.csv").is_file()
    # scored with the cells beside it: every independent judge on the same tiles
    spec = importlib.util.spec_from_file_location("_reader_study", SCRIPT.with_name(
        "reader_study.py"))
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    labels = tmp_path / "reader" / "labels.csv"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join([*lines[:2], *(f"{t['tile']},8" for t in tiles)]) + "\n")
    with pytest.raises(SystemExit, match=r"no \d+px_cnn\S* .give the "
                       "cells/ folder"):       # the data set's folder, not its cells/
        study.main(["--score", str(labels), "--by", "size,domain", "--cells", str(cells.parent)])
    assert study.main(["--score", str(labels), "--by", "size,domain", "--cells", str(cells)]) == 0
    rows = json.loads((tmp_path / "reader" / "scores_by_size_domain.json").read_text())
    got = {(r["size"], r["domain"]): (r["as_target"], r["judged_target"]) for r in rows}
    # sources 10, 11, 12 (ids 0, 1, 2): the MLP says 8 for ids 0 and 2
    assert got == {("-", "unedited source"): (3, None), ("112", "csp_joint"): (3, 2),
                   ("28", "pixel"): (3, 2)}
    # two rounds pooled (here the same one twice, and a second reader who saw the source in
    # every tile): counts summed per group, and the figure of the share read as the target
    second = tmp_path / "second"
    shutil.copytree(tmp_path / "reader", second)
    (second / "labels.csv").write_text("\n".join([*lines[:2], *(
        f"{t['tile']},3" for t in tiles)]) + "\n")
    drawn = {}
    monkeypatch.setattr(study.protocol, "size_figure", lambda path, rows, **kw: drawn.update(
        {(r["size"], r["method"]): r["as_target"] / r["n"] for r in rows}))
    by = "size,driver,mode,domain,B"            # the figure needs every one of these
    assert study.main(["--pool", str(labels), str(labels), str(second / "labels.csv"), "--by",
                       "size,mode,domain", "--out", str(tmp_path / "pooled")]) == 0
    assert drawn == {}                          # no driver or budget in --by: no figure
    pooled = json.loads((tmp_path / "pooled" / "pooled_by_size_mode_domain.json").read_text())
    assert [(r["size"], r["domain"], r["rounds"], r["n"], r["as_target"], r["as_source"])
            for r in pooled] == [("-", "unedited source", 3, 9, 6, 3),
                                 ("112", "csp_joint", 3, 9, 6, 3), ("28", "pixel", 3, 9, 6, 3)]
    assert study.main(["--pool", str(labels), str(labels), str(second / "labels.csv"), "--by",
                       by, "--out", str(tmp_path / "pooled")]) == 0
    assert drawn == {(112, "csp_joint"): 6 / 9, (28, "pixel"): 6 / 9}    # edited tiles only


@pytest.mark.slow
def test_resolution_quick_smoke_and_resume(res, tmp_path, monkeypatch, shared_cache):
    """SMOKE TEST: ``--quick`` end to end (1-epoch models, 3 sources, 28 and 42 px: a
    ratio of 1.5, so resizing, budgets and radii are not special to doubling; the 42-px
    driver trained on the first 1,000 images), then a rerun that finds every cell finished
    and recomputes none."""
    monkeypatch.setenv("LENS_JAX_CACHE", str(shared_cache))    # quick models made once a run
    out = tmp_path / "out"
    argv = ["--quick", "--datasets", "mnist5k", "--drivers", "cnn", "--sizes", "28,42",
            "--n-train-large", "1000", "--out", str(out)]
    assert res.main(argv) == 0
    models = {p.name for p in (shared_cache / "quick" / "models").iterdir()}
    assert "mnist5k_cnn_s0_e1_px42_n1000" in models        # the 42-px driver: 1,000 images
    cells = sorted((out / "mnist5k" / "cells").glob("*.json"))
    assert [c.stem for c in cells] == ["28px_cnn_fixed_csp_phase", "28px_cnn_fixed_pixel",
                                       "42px_cnn_fixed_csp_phase", "42px_cnn_fixed_pixel"]
    rows = json.loads((out / "mnist5k" / "summary_raw.json").read_text())
    assert {(r["size"], r["method"]) for r in rows} == {
        (s, m) for s in (28, 42) for m in ("pixel", "csp_phase")}
    for r in rows:
        assert r["n"] == 3 and r["B"] == 4.0
        if r["reached"] == r["n"]:       # the budget is RMS-matched: L2 = 4 x S / 28
            assert r["l2_med"] == pytest.approx(4.0 * r["size"] / 28, rel=0.02)
        assert (r["wrapped"] is None) == (r["method"] == "pixel")
        assert r["method"] == "pixel" or 0.0 <= r["wrapped"] <= 1.0
    z = np.load(out / "mnist5k" / "cells" / "42px_cnn_fixed_csp_phase.npz")
    assert z["frames28"].shape == (3, 1, 28, 28, 1) and z["frames28"].dtype == np.uint8
    assert z["gallery"].shape == (3, 1, 42, 42, 1)
    assert (out / "mnist5k" / "gallery_42px_cnn_fixed.png").is_file()
    assert "command: python experiments/resolution.py" in (out / "command.txt").read_text()
    stamps = [c.stat().st_mtime_ns for c in cells]
    assert res.main(argv) == 0                              # resume: nothing recomputed
    assert [c.stat().st_mtime_ns for c in cells] == stamps
    # the gallery shows every finished cell of its (size, driver, mode) at the run's budgets
    # (a rerun with fewer --domains used to redraw it with those alone), never a cell made
    # at other budgets: add a finished csp_joint cell and a csp_flow_joint one at L2 = 6
    folder = out / "mnist5k" / "cells"
    for domain, b in (("csp_joint", 4.0), ("csp_flow_joint", 6.0)):
        cell = json.loads((folder / "42px_cnn_fixed_pixel.json").read_text())
        for r in cell["records"]:
            r.update(method=domain, B=b)
        (folder / f"42px_cnn_fixed_{domain}.json").write_text(json.dumps(cell))
        shutil.copy(folder / "42px_cnn_fixed_pixel.npz", folder / f"42px_cnn_fixed_{domain}.npz")
    drawn = {}
    monkeypatch.setattr(res.protocol, "grid_figure", lambda path, rows, **kw: drawn.setdefault(
        Path(path).name, [title for _, title in rows[0]]))
    assert res.main(argv) == 0
    assert drawn["gallery_42px_cnn_fixed.png"] == [
        "source (42 px)", "pixel L2=4", "csp_phase L2=4", "csp_joint L2=4"]
    assert drawn["gallery_28px_cnn_fixed.png"] == ["source (28 px)", "pixel L2=4", "csp_phase L2=4"]


def test_summary_covers_every_cell_with_and_without_other_driver(res, tmp_path, monkeypatch):
    """The summary reads every finished cell on disk; in one (size, driver, mode) block,
    cells judged by another driver and cells computed before it existed are summarised
    apart (this mix once raised KeyError: 'pred_other driver')."""
    import types
    cells = tmp_path / "cells"
    cells.mkdir()

    def cell(stem, other):
        recs = [{"method": stem.split("_", 3)[3], "B": 4.0, "id": i, "pair": 0, "index": i,
                 "source": 3, "target": 8, "reached": True, "l2": 8.0, "alpha": 1.0,
                 "max_change": 0.5, "p_G": 0.9, "pred_G": 8, "E_warp": 0.5, "E_gain": 0.6,
                 "p_mlp": 0.9, "pred_mlp": 8 if i else 3, "size": int(stem.split("px")[0]),
                 "mode": "fixed",
                 "wrapped": None, **({"p_other driver": 0.5, "pred_other driver": 8}
                                     if other else {})} for i in range(4)]
        (cells / f"{stem}.json").write_text(json.dumps({"seconds": 0, "records": recs}))

    cell("56px_cnn_fixed_pixel", other=False)
    cell("56px_cnn_fixed_csp_flow_joint", other=True)
    cell("112px_cnn_fixed_pixel", other=False)
    res.summarise(["mlp"], tmp_path, types.SimpleNamespace(quick=True))
    rows = json.loads((tmp_path / "summary_raw.json").read_text())
    assert [(r["size"], r["method"]) for r in rows] == [
        (56, "csp_flow_joint"), (56, "pixel"), (112, "pixel")]
    assert [r.get("other driver") for r in rows] == [4, None, None]
    assert all(r["mlp"] == 3 and r["n"] == 4 and r["wrapped"] is None for r in rows)
    # the study's figure: one line per (domain, driver), each point the share of the
    # sources every independent judge calls the target, at its image size
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = {}
    monkeypatch.setattr(viz, "save_figure", lambda fig, path, **kw: drawn.setdefault("fig", fig))
    res.summarise(["mlp"], tmp_path, types.SimpleNamespace(quick=True))
    (ax,) = drawn["fig"].axes
    xy = {ln.get_label(): ln.get_xydata().tolist() for ln in ax.get_lines()}
    near = {k: [[min((56, 112), key=lambda s: abs(x / s - 1)), y] for x, y in v]   # sizes
            for k, v in xy.items()}            # (each line's points a little to the side)
    assert all(abs(x / s - 1) < 0.06 for k in xy for (x, _), (s, _) in zip(xy[k], near[k]))
    assert near == {"pixel (standard cnn)": [[56, 0.75], [112, 0.75]],
                    "csp_flow_joint (standard cnn)": [[56, 0.75]]}


def test_size_figure_keeps_equal_lines_apart_and_lists_every_panels_lines(tmp_path, monkeypatch):
    """Two lines of the same values are drawn side by side, not on top of each other, and a
    line drawn only in the live panel is in the legend too."""
    from lens_jax.studies import protocol
    rows = [dict(size=s, mode="fixed", B=6.0, method=m, driver="cnn+robust", n=9, all=0)
            for s in (28, 56) for m in ("warp", "csp_flow")]
    rows += [dict(size=s, mode="live", B=6.0, method="csp_joint", driver="cnn", n=9, all=2)
             for s in (28, 56)]
    saved = {}
    monkeypatch.setattr(viz, "save_figure", lambda fig, path, **kw: saved.update(fig=fig) or path)
    protocol.size_figure(tmp_path / "f.png", rows, count="all")
    fixed, live = saved["fig"].axes[:2]
    xs = {ln.get_label(): tuple(ln.get_xdata()) for ln in fixed.get_lines()}
    assert set(xs) == {"warp (robust cnn)", "csp_flow (robust cnn)"}
    a, b = xs.values()
    assert all(x != y for x, y in zip(a, b))                         # side by side
    assert all(abs(x / s - 1) < 0.06 for x, s in zip(a + b, (28, 56, 28, 56)))   # near the size
    legend = [t.get_text() for t in saved["fig"].legends[0].get_texts()]
    assert sorted(legend) == ["csp_flow (robust cnn)", "csp_joint (standard cnn)",
                              "warp (robust cnn)"]
    assert [ln.get_label() for ln in live.get_lines()] == ["csp_joint (standard cnn)"]
