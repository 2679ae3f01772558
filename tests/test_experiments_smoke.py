"""Smoke tests: each experiment script runs end to end at tiny sizes (``--quick``).

Experiments live outside the package (``experiments/``); they are loaded from their files
and their ``main(argv)`` is called in-process with a temporary ``LENS_JAX_CACHE`` (tiny
models are trained there; nothing is downloaded).
"""
import importlib.util
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def _load(name):
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(f"_smoke_{name}", EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    d = tmp_path_factory.mktemp("cache")
    mp.setenv("LENS_JAX_CACHE", str(d))
    yield d
    mp.undo()


def _check_common(out: Path):
    text = (out / "command.txt").read_text()
    assert "command:" in text and "wall_s:" in text


def test_common_args_and_timer(tmp_path):
    common = _load("common")
    a = common.experiment_args("x", ["--n", "3", "--no-warp", "--quick"], n=32, warp=True,
                               lr=0.1, name="a")
    assert (a.n, a.warp, a.lr, a.name, a.quick, a.seed) == (3, False, 0.1, "a", True, 0)
    with common.Timer() as t:
        pass
    assert t.wall_s >= 0
    p = common.record_command(tmp_path, 1.25, argv=["experiments/x.py", "--quick"])
    assert "experiments/x.py --quick" in p.read_text() and "wall_s: 1.2" in p.read_text()


@pytest.mark.slow
def test_mnist_pairs_quick(cache, tmp_path, capsys):
    out = tmp_path / "mnist_pairs"
    assert _load("mnist_pairs").main(["--quick", "--out", str(out)]) == 0
    _check_common(out)
    for f in ("gallery_B2.png", "results.md", "results.csv", "summary.md"):
        assert (out / f).is_file(), f
    assert list(out.glob("mnist_3to8_*_B2_domains.png"))
    assert list(out.glob("mnist_3to8_*_csp_phase_strip.png"))
    assert list(out.glob("mnist_3to8_*.gif"))
    assert "median p(target)" in capsys.readouterr().out


@pytest.mark.slow
def test_synthetic_quick(cache, tmp_path, capsys):
    out = tmp_path / "synthetic"
    assert _load("synthetic").main(["--quick", "--out", str(out)]) == 0
    _check_common(out)
    for f in ("summary.md", "summary.csv", "per_source.json", "synthetic_summary.png"):
        assert (out / f).is_file(), f
    assert list(out.glob("blob_*_csp_phase_strip.png"))
    assert "median dx" in capsys.readouterr().out


@pytest.mark.slow
def test_natural_quick(cache, tmp_path, capsys):
    out = tmp_path / "natural"
    assert _load("natural").main(["--quick", "--out", str(out)]) == 0
    _check_common(out)
    for f in ("results.md", "results.csv", "chelsea_overview.png",
              "chelsea_to287_rows.png", "chelsea_to287_csp_phase_fixed_strip.png"):
        assert (out / f).is_file(), f
    assert "lynx" in capsys.readouterr().out
