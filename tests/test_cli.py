"""Smoke tests of the command line (lens_jax.cli): user errors, `morph`, `run --quick`.

Nothing here downloads: classifiers are the pretrained ccexam CNN (weights inside its
wheel) or tiny models trained into a temporary ``LENS_JAX_CACHE``.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lens_jax import cli


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("LENS_JAX_CACHE", str(d))
    return d


def _err(capsys, argv):
    """Run the CLI in-process; expect an argparse-style error (exit 2, no traceback)."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lens_jax") and "error:" in err and "Traceback" not in err
    assert err.count("\n") == 1, err          # one line
    return err


def _digit_png(path, *, size=28):
    """A white '7'-like stroke on black, written as a PNG."""
    a = np.zeros((size, size), np.uint8)
    a[5:8, 6:22] = 255
    for r in range(8, 24):
        c = 21 - (r - 8) // 2
        a[r, c - 1:c + 2] = 255
    Image.fromarray(a).save(path)
    return path


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_missing_checkpoint(cache, capsys):
    err = _err(capsys, ["morph", "--classifier", "mnist5k:cnn", "--index", "0",
                        "--target", "8"])
    assert "no trained classifier" in err and "lens_jax train --dataset mnist5k" in err


def test_unknown_dataset_and_model(cache, capsys):
    err = _err(capsys, ["train", "--dataset", "mnsit5k"])
    assert "unknown data set 'mnsit5k'" in err and "mnist5k" in err
    err = _err(capsys, ["morph", "--classifier", "mnist5k:resnet", "--index", "0",
                        "--target", "8"])
    assert "unknown model" in err
    err = _err(capsys, ["morph", "--classifier", "resnet101", "--index", "0", "--target", "8"])
    assert "unknown classifier" in err


def test_class_names_resolve():
    from lens_jax.pretrained import imagenet_classes
    names = imagenet_classes()
    assert cli.resolve_class("lynx", names) == 287
    assert cli.resolve_class("Red Fox", names) == 277
    assert cli.resolve_class("vulpes macrotis", names) == 278
    assert cli.resolve_class("287", names) == 287
    with pytest.raises(cli.CLIError, match=r"close matches: lynx, catamount \(287\)"):
        cli.resolve_class("lynks", names)
    with pytest.raises(cli.CLIError, match=r"ambiguous \(134: crane \(bird\); 517"):
        cli.resolve_class("crane", names)
    with pytest.raises(cli.CLIError, match="ambiguous"):
        cli.resolve_class("panther", names)
    assert cli.resolve_class("crane (bird)", names) == 134
    with pytest.raises(cli.CLIError, match="out of range"):
        cli.resolve_class("1000", names)
    with pytest.raises(cli.CLIError, match="classes: 0=0"):
        cli.resolve_class("eight", [str(d) for d in range(10)])


def test_unknown_class_unreadable_image_unknown_domain(cache, capsys, tmp_path):
    png = _digit_png(tmp_path / "seven.png")
    err = _err(capsys, ["morph", "--classifier", "ccexam", "--image", str(png),
                        "--target", "eigth"])
    assert "unknown class name 'eigth'" in err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    err = _err(capsys, ["morph", "--classifier", "ccexam", "--image", str(bad),
                        "--target", "8"])
    assert "cannot read image file" in err
    err = _err(capsys, ["morph", "--classifier", "ccexam", "--image",
                        str(tmp_path / "missing.png"), "--target", "8"])
    assert "no such file" in err
    err = _err(capsys, ["morph", "--classifier", "ccexam", "--image", str(png),
                        "--target", "8", "--domain", "wavelet"])
    assert "unknown domain 'wavelet'" in err
    err = _err(capsys, ["morph", "--classifier", "ccexam", "--image", str(png),
                        "--target", "8", "--alphas", "1,x"])
    assert "--alphas" in err
    err = _err(capsys, ["experiment", "no_such_study"])
    assert "unknown experiment" in err


def test_morph_tiny(cache, capsys, tmp_path):
    png = _digit_png(tmp_path / "seven.png")
    out = tmp_path / "out"
    rc = cli.main(["morph", "--classifier", "ccexam", "--image", str(png), "--target", "1",
                   "--domain", "csp_phase", "--l2-budget", "1.0", "--frames", "3",
                   "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "p_target" in text and "done in" in text
    stem = "seven_to1_csp_phase_fixed"
    for suffix in ("_strip.png", ".gif", "_probs.png", "_frames.md", "_frames.csv",
                   "_frames.json"):
        assert (out / (stem + suffix)).is_file(), suffix
    import json
    frames = json.loads((out / f"{stem}_frames.json").read_text())
    assert len(frames) == 3 and frames[0]["l2"] == 0.0
    assert abs(frames[-1]["l2"] - 1.0) < 1e-2


@pytest.mark.slow
def test_run_quick_end_to_end(tmp_path):
    """`python -m lens_jax run --quick` in a fresh cache: trains tiny models, writes a report."""
    env = dict(os.environ, LENS_JAX_CACHE=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "lens_jax", "run", "--quick", "--out", str(out)],
                       env=env, capture_output=True, text=True, timeout=600,
                       cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "done in" in p.stdout and "index.html" in p.stdout
    for f in ("index.md", "index.html", "metrics.md", "metrics.csv", "metrics.json",
              "summary.md", "summary_raw.json", "per_source.csv", "timing.json",
              "command.txt", "pairs/endpoints_3to8.png"):
        assert (out / f).is_file(), f
    import json
    summary = json.loads((out / "summary_raw.json").read_text())
    assert {r["method"] for r in summary} == {"pixel", "csp_phase"}
    assert {r["driver"] for r in summary} == {"cnn", "cnn+robust"}
    assert all(r["n"] == 2 and 0 <= r["reached"] <= 2 for r in summary)
    assert all(-1 <= r["specificity"] <= 1 for r in summary)
    assert "command: python -m lens_jax run --quick" in (out / "command.txt").read_text()
    page = (out / "index.html").read_text()         # the interactive page leads
    assert "<!DOCTYPE html>" in page and "CSP phase" in page and "robust cnn" in page
    assert page.index('type="range"') < page.index("<table")
    md = (out / "index.md").read_text()
    assert "Caveat" in md and "pairs/endpoints_3to8.png" in md and "§" not in md
    # the quick models live apart from the full ones
    assert (tmp_path / "cache" / "quick" / "models").is_dir()
    assert not (tmp_path / "cache" / "models").exists()


def test_weak_answers_are_one_line_errors(cache, capsys, tmp_path):
    """Bad arguments end with one `error:` line and exit status 2, never a traceback."""
    png = _digit_png(tmp_path / "seven.png")
    afile = tmp_path / "a_file.txt"
    afile.write_text("x")
    err = _err(capsys, ["morph", "--classifier", "ccexam", "--image", str(png),
                        "--target", "8", "--out", str(afile)])
    assert "is an existing file" in err
    err = _err(capsys, ["morph", "--classifier", "ccexam", "--image", str(png),
                        "--target", "8", "--out", str(afile / "sub")])
    assert "is a file, not a folder" in err
    err = _err(capsys, ["run", "--quick", "--out", str(afile)])
    assert "is an existing file" in err
    # train --epochs 0: refused before anything is written
    err = _err(capsys, ["train", "--dataset", "digits", "--epochs", "0"])
    assert "--epochs" in err and ">= 1" in err
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())
    err = _err(capsys, ["run", "--budget", "-1"])
    assert "--budget" in err and "positive" in err
    err = _err(capsys, ["run", "--frames", "x"])
    assert "--frames" in err
    err = _err(capsys, ["run", "--out", str(tmp_path / "r"), "--domains", "pixel,wavelet"])
    assert "wavelet" in err
    err = _err(capsys, ["run", "--out", str(tmp_path / "r"), "--modes", "sideways"])
    assert "sideways" in err
    err = _err(capsys, ["morph", "--classifier", "ccexam", "--image", str(png),
                        "--target", "8", "--l2-budget", "0"])
    assert "--l2-budget" in err
    err = _err(capsys, ["morph", "--target", "8", "--mode", "bogus"])
    assert "--mode" in err and "invalid choice" in err
    err = _err(capsys, ["train", "--model", "transformer"])
    assert "unknown model 'transformer'" in err
    err = _err(capsys, ["frobnicate"])
    assert "invalid choice" in err


def test_bad_split_is_one_line_error(capsys, tmp_path):
    # uses the real data cache: mnist5k is prepared offline once (a fresh cache says so on
    # stderr first; that line is not the error's)
    from lens_jax import data
    data.load("mnist5k", "test")
    capsys.readouterr()
    err = _err(capsys, ["morph", "--classifier", "ccexam", "--index", "0", "--target", "8",
                        "--split", "bogus", "--out", str(tmp_path / "o")])
    assert "--split 'bogus'" in err and "test" in err


def test_robust_driver_is_feature_detected():
    from lens_jax.studies import job
    with pytest.raises(ValueError, match="unknown driver model"):
        job.load_driver("vit+robust", "mnist5k")
    with pytest.raises(ValueError, match="variant"):
        job.load_driver("cnn+fast", "mnist5k")
