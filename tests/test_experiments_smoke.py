"""Smoke tests: each experiment script runs end to end at tiny sizes (``--quick``).

Experiments live outside the package (``experiments/``); they are loaded from their files
and their ``main(argv)`` is called in-process with the run's temporary ``LENS_JAX_CACHE``
(``shared_cache`` in conftest.py: tiny models are trained there once; nothing is
downloaded).  protocol.py, fashion.py and
ablations.py are smoke-tested offline in ``test_protocol_smoke.py``.
"""
import ast
import json
import importlib.util
from pathlib import Path

import pytest

from lens_jax.studies import protocol

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
SCRIPTS = sorted(p for p in EXPERIMENTS.glob("*.py"))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_smoke_{name}", EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def cache(shared_cache, monkeypatch):
    """The run's shared cache (per test, so this module's tests spread over the workers)."""
    monkeypatch.setenv("LENS_JAX_CACHE", str(shared_cache))
    return shared_cache


def _check_common(out: Path):
    text = (out / "command.txt").read_text()
    assert "command: python experiments/" in text and "wall_s:" in text


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_scripts_are_thin_and_import_only_the_library(path):
    tree = ast.parse(path.read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mods.add("." * node.level + (node.module or ""))
    bad = {m for m in mods if m.startswith((".", "experiments", "common", "lens_jax.cli"))
           or m in {s.stem for s in SCRIPTS}}
    assert not bad, f"{path.name} imports {bad}"
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main"
                                         for n in tree.body), f"{path.name} has no main()"
    assert len(path.read_text().splitlines()) <= 150
    assert "§" not in path.read_text() and "method.md" not in path.read_text()


def test_study_args(tmp_path):
    p = protocol.study_parser("x", out="outputs/x", n=32, warp=True, lr=0.1, name="a",
                             coordinator=None)
    a = protocol.parse_study_args(p, argv=["--n", "3", "--no-warp", "--quick"])
    assert (a.n, a.warp, a.lr, a.name, a.quick, a.seed, a.coordinator) == \
        (3, False, 0.1, "a", True, 0, None)
    assert a.out == "outputs/x_quick" and a.argv == ["--n", "3", "--no-warp", "--quick"]
    assert protocol.parse_study_args(p, argv=["--out", "o"]).out == "o"
    with pytest.raises(SystemExit):
        protocol.parse_study_args(p, argv=["--n", "x"])


def test_run_all_rejects_unknown_studies(capsys):
    with pytest.raises(SystemExit) as e:
        _load("run_all").main(["--only", "protocl"])
    assert e.value.code == 2 and "protocl" in capsys.readouterr().err
    assert set(_load("run_all").STUDIES) == {p.stem for p in SCRIPTS} - {"run_all"}


@pytest.mark.slow
def test_mnist_pairs_quick(cache, tmp_path, capsys):
    out = tmp_path / "mnist_pairs"
    assert _load("mnist_pairs").main(["--quick", "--out", str(out)]) == 0
    _check_common(out)
    for f in ("gallery_B2.png", "results.md", "per_source.csv", "summary.md",
              "summary_raw.json", "pairs/pair_3to8_cnn_fixed_domains.png",
              "pairs/pair_3to8_cnn_fixed_csp_phase_strip.png", "pairs/endpoints_3to8.png"):
        assert (out / f).is_file(), f
    assert "median G p(target)" in capsys.readouterr().out


@pytest.mark.slow
def test_synthetic_quick(cache, tmp_path, capsys):
    out = tmp_path / "synthetic"
    assert _load("synthetic").main(["--quick", "--out", str(out)]) == 0
    _check_common(out)
    for f in ("summary.md", "summary.csv", "per_source.json"):
        assert (out / f).is_file(), f
    assert list(out.glob("blob_*_csp_phase_strip.png"))
    assert "median dx" in capsys.readouterr().out


@pytest.mark.slow
def test_natural_quick(cache, tmp_path, capsys):
    out = tmp_path / "natural"
    assert _load("natural").main(["--quick", "--out", str(out)]) == 0
    _check_common(out)
    spec = json.loads((out / "specificity.json").read_text())
    assert {r["domain"] for r in spec} == {"pixel", "csp_phase", "csp_flow", "csp_flow_joint"}
    assert all(r["targets"] == 2 and -1 <= r["specificity"] <= 1 for r in spec)
    for f in ("results.md", "results.csv", "chelsea_overview.png",
              "chelsea_to287_rows.png", "chelsea_to287_csp_phase_fixed_strip.png"):
        assert (out / f).is_file(), f
    assert "lynx" in capsys.readouterr().out


@pytest.mark.slow
def test_multihost_sweep_quick_single_host(cache, tmp_path):
    import json
    out = tmp_path / "mh"
    assert _load("multihost_sweep").main(["--quick", "--check", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_images"] == 24 and max(s["check_max_abs_diff"].values()) < 1e-4
    _check_common(out)


@pytest.mark.slow
def test_wrapping_quick(cache, tmp_path, capsys):
    out = tmp_path / "wrapping"
    assert _load("wrapping").main(["--quick", "--out", str(out)]) == 0
    _check_common(out)
    rows = json.loads((out / "wrapping.json").read_text())
    assert [(r["driver"], r["stop_before_wrap"]) for r in rows] == [
        ("cnn", False), ("cnn", True), ("cnn+robust", False), ("cnn+robust", True)]
    for plain, stopped in (rows[0:2], rows[2:4]):
        assert stopped["wrapped (median)"] == 0.0          # stopped before any phase wraps
        assert stopped["L2 reached (median)"] <= plain["L2 reached (median)"] + 1e-6


@pytest.mark.slow
def test_protocol_extended_quick(cache, tmp_path, capsys):
    out = tmp_path / "pext"
    assert _load("protocol_extended").main(
        ["--quick", "--datasets", "mnist5k", "--modes", "fixed", "--out", str(out)]) == 0
    _check_common(out)
    rows = json.loads((out / "mnist5k" / "summary_raw.json").read_text())
    assert {r["driver"] for r in rows} == {"cnn", "cnn+robust"}
    assert {r["method"] for r in rows} == {"pixel", "csp_phase"}
    assert "other driver" in (out / "mnist5k" / "summary.md").read_text()


@pytest.mark.slow
def test_reader_study_quick(cache, tmp_path, capsys):
    out = tmp_path / "reader"
    mod = _load("reader_study")
    assert mod.main(["--quick", "--modes", "fixed", "--domains", "pixel", "--budget", "2,4",
                     "--out", str(out)]) == 0
    _check_common(out / "mnist5k")
    key = json.loads((out / "mnist5k" / "key.json").read_text())
    # 3 pairs x 1 source: 3 controls + 2 drivers x 1 domain x 2 budgets x 3 = 15 tiles
    assert len(key["tiles"]) == 15
    assert {(t["driver"], t["B"]) for t in key["tiles"]} == {
        ("-", 0.0), ("cnn", 2.0), ("cnn", 4.0), ("cnn+robust", 2.0), ("cnn+robust", 4.0)}
    labels = out / "mnist5k" / "labels.csv"
    lines = labels.read_text().splitlines()
    # a reader who sees the target in every edited tile and the source in every control
    want = {t["tile"]: t["source"] if t["driver"] == "-" else t["target"]
            for t in key["tiles"]}
    labels.write_text("\n".join(lines[:2] + [f"{k},{v}" for k, v in want.items()]) + "\n")
    capsys.readouterr()
    assert mod.main(["--score", str(labels)]) == 0
    rows = json.loads((out / "mnist5k" / "scores.json").read_text())
    assert [(r["driver"], r["as_target"], r["as_source"]) for r in rows] == [
        ("-", 0, 3), ("cnn", 3, 0), ("cnn", 3, 0), ("cnn+robust", 3, 0), ("cnn+robust", 3, 0)]
    assert "15/15 tiles labelled" in capsys.readouterr().out
    assert (out / "mnist5k" / "unblinded.png").is_file()
