"""Smoke tests of the command line (lens_jax.cli): user errors, `morph`, `run --quick`.

Nothing here downloads: classifiers are the pretrained ccexam CNN (weights inside its
wheel) or tiny models trained into a temporary ``LENS_JAX_CACHE``.
"""
import importlib.util
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
def test_run_quick_end_to_end(tmp_path, shared_cache, monkeypatch, capsys):
    """`lens_jax run --quick` in the run's shared cache (conftest.py: the quick models are
    trained there once a run, by this test or another): writes a report.  In-process, so
    it shares this worker's compiled programs (``python -m lens_jax`` itself: the test
    below); the domain the user's file registers is removed afterwards."""
    from lens_jax import domains
    monkeypatch.setenv("LENS_JAX_CACHE", str(shared_cache))
    monkeypatch.chdir(tmp_path)              # (--domains-module restores sys.path itself)
    before = dict(domains.REGISTRY)
    out = tmp_path / "run"
    plug = tmp_path / "my_domains.py"       # a domain registered by the user (issue 17.4)
    plug.write_text("import lens_jax as lj\nlj.register(lj.REGISTRY['pixel']._replace("
                    "name='pixel_copy', label='Pixel (copy)'))\n")
    try:
        code = cli.main(["run", "--quick", "--out", str(out), "--domains-module", str(plug),
                         "--domains", "pixel_copy,csp_phase"])
    finally:
        domains.REGISTRY.clear()
        domains.REGISTRY.update(before)
    stdout = capsys.readouterr().out
    assert code == 0
    assert "done in" in stdout and "index.html" in stdout
    for f in ("index.md", "index.html", "metrics.md", "metrics.csv", "metrics.json",
              "summary.md", "summary_raw.json", "per_source.csv", "timing.json",
              "command.txt", "pairs/endpoints_3to8.png"):
        assert (out / f).is_file(), f
    import json
    summary = json.loads((out / "summary_raw.json").read_text())
    assert {r["method"] for r in summary} == {"pixel_copy", "csp_phase"}
    assert {r["driver"] for r in summary} == {"cnn", "cnn+robust"}
    assert all(r["n"] == 2 and 0 <= r["reached"] <= 2 for r in summary)
    assert all(-1 <= r["specificity"] <= 1 for r in summary)
    assert "python -m lens_jax run --quick" in (out / "command.txt").read_text()
    page = (out / "index.html").read_text()         # the interactive page leads
    assert "<!DOCTYPE html>" in page and "CSP phase" in page and "robust cnn" in page
    assert page.index('type="range"') < page.index("<table")
    md = (out / "index.md").read_text()
    assert "Caveat" in md and "pairs/endpoints_3to8.png" in md and "§" not in md
    # the resolution study's answer: why the panels stay at 28 pixels
    assert "Why 28-pixel panels" in md and "experiments/resolution.py" in md
    # the quick models live apart from the full ones
    quick = shared_cache / "quick" / "models"
    assert {"mnist5k_cnn_s0_e1", "mnist5k_mlp_s0_e1"} <= {p.name for p in quick.iterdir()}
    assert not list((shared_cache / "models").glob("mnist5k_*"))


def test_python_dash_m_runs_the_command_line(tmp_path):
    """``python -m lens_jax`` is the command line: its help lists the commands, and a user
    error is one line with exit status 2 (the end-to-end run above is in-process)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", LENS_JAX_CACHE=str(tmp_path / "cache"))
    p = subprocess.run([sys.executable, "-m", "lens_jax", "--help"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and all(c in p.stdout for c in ("morph", "run", "train"))
    taken = tmp_path / "a_file.txt"
    taken.write_text("x")
    p = subprocess.run([sys.executable, "-m", "lens_jax", "run", "--quick", "--out", str(taken)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "error:" in p.stderr and "is an existing file" in p.stderr


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


# ----------------------------------------------------------------------------------
# one's own model (--model FILE.py:FUNCTION), own images (run --images), image files
# ----------------------------------------------------------------------------------

MODEL_FILE = '''
import jax.numpy as jnp
import numpy as np
import lens_jax as lj

# a user domain, registered when the file is imported: the pixel domain under a new name
lj.register(lj.REGISTRY["pixel"]._replace(name="pixel_copy", label="Pixel (copy)"))


def make():
    w = jnp.asarray(np.random.default_rng(0).normal(size=(16 * 16, 3)), jnp.float32)
    return {"classifier": (lambda p, x: x.reshape(x.shape[0], -1) @ p, w),
            "class_names": ["cat", "dog", "$5 bill"], "input_shape": (16, 16, 1)}


def bare():
    w = jnp.ones((16 * 16, 2), jnp.float32)
    return (lambda p, x: x.reshape(x.shape[0], -1) @ p, w)


def broken():
    raise RuntimeError("weights missing")


def explodes():
    def f(x):
        raise RuntimeError("boom inside the model")
    return {"classifier": f, "class_names": ["a", "b"], "input_shape": (16, 16, 1)}
'''


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A model file (plain JAX, 16x16 grey, 3 classes, one class name with '$') and the
    same picture as 8-bit, 16-bit, float TIFF and RGBA (white strokes, transparent)."""
    d = tmp_path_factory.mktemp("own")
    (d / "my_model.py").write_text(MODEL_FILE)
    a = np.zeros((16, 16), np.uint8)
    a[3:5, 3:13] = 255
    a[5:13, 10:12] = 200
    imgs = d / "imgs"
    imgs.mkdir()
    Image.fromarray(a).save(imgs / "a8.png")
    Image.fromarray(a.astype(np.uint16) * 257).save(imgs / "b16.png")
    Image.fromarray(a.astype(np.float32) / 255).save(imgs / "c_float.tiff")
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = a
    Image.fromarray(rgba).save(d / "clear.png")
    return d


def _p_line(text):
    return [ln for ln in text.splitlines() if ln.startswith("classifier:")][0]


def test_model_file_morph_user_domain_and_image_formats(own, capsys, tmp_path):
    """--model for morph; the file's registered domain works in the CLI; 8-bit, 16-bit,
    float TIFF and RGBA-over-black files of one picture give the same input (issue 18.3,
    18.4; issue 19 cases 9-11: RGBA blank, 16-bit clipped, float TIFF darkened)."""
    model = f"{own / 'my_model.py'}:make"
    base = ["morph", "--model", model, "--target", "$5 bill", "--frames", "3",
            "--l2-budget", "1", "--out", str(tmp_path / "o")]
    lines = {}
    for name in ("a8.png", "b16.png", "c_float.tiff"):
        assert cli.main(base + ["--image", str(own / "imgs" / name), "--domain", "pixel"]) == 0
        lines[name] = _p_line(capsys.readouterr().out)
    assert cli.main(base + ["--image", str(own / "clear.png"), "--background", "black",
                            "--domain", "pixel_copy", "--mp4"]) == 0
    text = capsys.readouterr().out
    lines["clear.png"] = _p_line(text)
    assert len(set(lines.values())) == 1, lines
    assert "p($5 bill)" in lines["a8.png"] and "make from my_model.py" in lines["a8.png"]
    # the user domain gives what the domain it copies gives
    import json
    f8 = json.loads((tmp_path / "o" / "a8_to2_pixel_fixed_frames.json").read_text())
    fc = json.loads((tmp_path / "o" / "clear_to2_pixel_copy_fixed_frames.json").read_text())
    assert [r["p_target"] for r in f8] == pytest.approx([r["p_target"] for r in fc], rel=1e-6)
    if importlib.util.find_spec("imageio_ffmpeg"):
        assert (tmp_path / "o" / "clear_to2_pixel_copy_fixed.mp4").stat().st_size > 0
    assert abs(f8[-1]["l2"] - 1.0) < 1e-2
    for suffix in ("_strip.png", ".gif", "_probs.png"):          # plots with '$' in names
        assert (tmp_path / "o" / f"a8_to2_pixel_fixed{suffix}").is_file()
    # RGBA without --background: refused, naming the option
    err = _err(capsys, base + ["--image", str(own / "clear.png")])
    assert "transparent" in err and "--background" in err


def test_run_images_writes_the_page(own, capsys, tmp_path):
    """run --model FILE:FUNCTION --images FOLDER --target CLASS: the interactive page."""
    out = tmp_path / "page"
    rc = cli.main(["run", "--model", f"{own / 'my_model.py'}:make", "--images",
                   str(own / "imgs"), "--target", "dog", "--domains", "pixel,pixel_copy",
                   "--frames", "3", "--budget", "1.5", "--out", str(out)])
    assert rc == 0
    import json
    rows = json.loads((out / "metrics.json").read_text())
    assert {(r["image"], r["domain"]) for r in rows} == {
        (f, d) for f in ("a8.png", "b16.png", "c_float.tiff") for d in ("pixel", "pixel_copy")}
    assert all(abs(r["l2"] - 1.5) < 1e-2 for r in rows if r["reached"])
    page = (out / "index.html").read_text()
    assert "<!DOCTYPE html>" in page and 'type="range"' in page and "b16.png" in page
    for f in ("index.md", "metrics.csv", "command.txt", "endpoints_000_a8.png"):
        assert (out / f).is_file(), f
    assert "--images" in (out / "command.txt").read_text()


def test_model_file_errors_are_one_line(own, capsys, tmp_path):
    png = str(own / "imgs" / "a8.png")
    mf = own / "my_model.py"
    cases = [
        (["--model", f"{mf}:nope"], "has no function 'nope'"),
        (["--model", f"{mf}:broken"], "broken() raised RuntimeError: weights missing"),
        (["--model", str(mf)], "FILE.py:FUNCTION"),
        (["--model", f"{own / 'missing.py'}:make"], "no such Python file"),
        (["--model", f"{mf}:make", "--classifier", "ccexam"], "not both"),
        (["--model", f"{mf}:make", "--domain", "wavelet"], "unknown domain 'wavelet'"),
        (["--model", f"{mf}:make", "--target", "8"], "out of range"),
        # issue 19: --frames 1000000 asked XLA for 60 GB; --l2-budget 1e300 gave "inf"
        (["--model", f"{mf}:make", "--frames", "1000000"], "lower --frames (at most 10000"),
        (["--model", f"{mf}:make", "--l2-budget", "1e300"], "give at most 16"),
    ]
    for extra, msg in cases:
        argv = ["morph", "--image", png, "--target", "1", "--out", str(tmp_path / "e")]
        if "--target" in extra:
            argv = ["morph", "--image", png, "--out", str(tmp_path / "e")]
        err = _err(capsys, argv + extra)
        assert msg in err, (extra, err)
    # a failure inside one's own model: one line, exit status 1, how to see the traceback
    capsys.readouterr()
    rc = cli.main(["morph", "--model", f"{mf}:explodes", "--image", png, "--target", "1",
                   "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "RuntimeError: boom inside the model" in err and "LENS_JAX_TRACEBACK=1" in err
    bad = own / "syntax.py"
    bad.write_text("def make(:\n")
    err = _err(capsys, ["morph", "--model", f"{bad}:make", "--image", png, "--target", "1"])
    assert "failed to import (line 1): SyntaxError" in err
    assert "_lens_jax_user_syntax" not in sys.modules      # nothing half-imported is kept
    boom = own / "raises.py"
    boom.write_text("raise ValueError('no')\n")
    err = _err(capsys, ["morph", "--model", f"{boom}:make", "--image", png, "--target", "1"])
    assert "failed to import (line 1): ValueError: no" in err
    assert "_lens_jax_user_raises" not in sys.modules
    err = _err(capsys, ["run", "--model", f"{mf}:bare", "--images", str(tmp_path / "none"),
                        "--target", "1"])
    assert "no such image file or folder" in err
    # --weights: only with resnet50/resnet18, and the file must exist (checked before loading)
    err = _err(capsys, ["morph", "--classifier", "ccexam", "--weights", str(mf), "--image", png,
                        "--target", "1"])
    assert "--weights goes with --classifier resnet50 or resnet18" in err
    err = _err(capsys, ["morph", "--classifier", "resnet50", "--weights",
                        str(tmp_path / "missing.pt"), "--image", png, "--target", "1"])
    assert "missing.pt" in err and "no such file" in err


def test_decompression_bomb_and_experiment_paths_refused(capsys, tmp_path):
    """Issue 19: a bomb PNG gave a traceback; `experiment ../path` ran any Python file."""
    from tests.test_images import _png
    bomb = _png(tmp_path / "bomb.png", np.zeros((1, 1), np.uint8), color_type=0,
                bit_depth=8, size=(14000, 14000))
    err = _err(capsys, ["morph", "--classifier", "ccexam", "--image", str(bomb),
                        "--target", "8"])
    assert "decompression bomb" in err
    evil = tmp_path / "evil.py"
    evil.write_text("def main(argv):\n    open('ran', 'w').write('x')\n")
    for name in (str(evil), "../evil", str(tmp_path / "evil")):
        err = _err(capsys, ["experiment", name])
        assert "unknown experiment" in err and "synthetic" in err
    assert not (tmp_path / "ran").exists() and not os.path.exists("ran")


def test_damaged_checkpoint_is_one_line_naming_the_fix(cache, capsys):
    """Issue 19: a damaged cached checkpoint gave a traceback and no fix."""
    wd = cache / "models" / "digits_cnn_s0"
    (wd / "1").mkdir(parents=True)
    (wd / "1" / "_METADATA").write_text("junk")
    (wd / "meta.json").write_text('{"a":')
    with pytest.raises(SystemExit) as e:
        cli.main(["morph", "--classifier", "digits:cnn", "--index", "0", "--target", "3"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if not ln.startswith("WARNING:absl")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "cannot be read" in lines[0] and "delete that folder and train again" in lines[0]
    assert "python -m lens_jax train --dataset digits --model cnn" in lines[0]


def test_choices_and_help_come_from_the_registry(capsys):
    import lens_jax as lj
    from lens_jax import domains, lens
    parser, subs = cli.build_parser()
    acts = {a.dest: a for a in subs["morph"]._actions}
    assert tuple(acts["mode"].choices) == lens.MODES
    assert tuple(acts["loss"].choices) == lens.LOSSES
    assert tuple(acts["color"].choices) == domains.COLORS
    for name in domains.domain_names():
        assert name in acts["domain"].help
    assert cli._domain_names("all", "--domain") == domains.domain_names()
    assert cli._domain_names("paper", "--domain") == tuple(domains.PAPER_DOMAINS)
    spec = lj.register(lj.REGISTRY["pixel"]._replace(name="pixel_reg_test"))
    try:
        assert "pixel_reg_test" in cli._domain_names("all", "--domain")
        assert "pixel_reg_test" in cli.build_parser()[1]["morph"].format_help()
    finally:
        domains.REGISTRY.pop(spec.name)


def test_model_file_return_forms(tmp_path):
    """What FUNCTION() may return: a dict, (classifier, class_names), (apply_fn, params)
    (not mistaken for names), attributes on the classifier or the function."""
    (tmp_path / "forms.py").write_text('''
import jax.numpy as jnp
w = jnp.ones((4, 2))
def apply(p, x):
    return x.reshape(x.shape[0], -1) @ p
def as_dict():
    return {"classifier": (apply, w), "class_names": ["a", "b"], "input_shape": [2, 2, 1]}
def as_pair_with_names():
    return (lambda x: apply(w, x)), ["yes", "no"]
def as_apply_params():
    return (apply, w)
def with_attrs():
    f = lambda x: apply(w, x)
    f.class_names = ("u", "v")
    return f
with_attrs.input_shape = (2, 2, 1)
def bad_shape():
    return {"classifier": (apply, w), "input_shape": (2, 2, 5)}
def bad_key():
    return {"classifier": (apply, w), "names": ["a", "b"]}
def not_a_classifier():
    return 42
''')
    f = str(tmp_path / "forms.py")
    c = cli.load_model_file(f"{f}:as_dict")
    assert c.class_names == ["a", "b"] and c.input_shape == (2, 2, 1)
    c = cli.load_model_file(f"{f}:as_pair_with_names")
    assert c.class_names == ["yes", "no"] and c.input_shape is None and callable(c.logits_fn)
    c = cli.load_model_file(f"{f}:as_apply_params")
    assert c.class_names is None and isinstance(c.logits_fn, tuple)
    c = cli.load_model_file(f"{f}:with_attrs")
    assert c.class_names == ["u", "v"] and c.input_shape == (2, 2, 1)
    for name, msg in (("bad_shape", "input_shape must be"), ("bad_key", "not \\['names'\\]"),
                      ("not_a_classifier", "returned int, which is not a classifier")):
        with pytest.raises(cli.CLIError, match=msg):
            cli.load_model_file(f"{f}:{name}")
