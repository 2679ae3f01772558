"""Tests for lens_jax.viz: files are valid images, written atomically, scales are shared."""
import warnings

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from lens_jax import viz as V

N_FR = 5


def _frames(n=N_FR, size=12, c=1):
    y, x = np.mgrid[:size, :size]
    f = np.stack([np.exp(-((y - size / 2) ** 2 + (x - 3 - k) ** 2) / 8.0) for k in range(n)])
    return np.repeat(f[..., None], c, axis=-1)


def _probs(n=N_FR):
    pt = np.linspace(0.1, 0.9, n)
    return np.stack([1 - pt - 0.05, pt, np.full(n, 0.05)], axis=1)


def _format(path):
    with Image.open(path) as im:
        return im.format


def _no_tmp(d):
    return [p.name for p in d.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_strip_shared_scale_labels_and_file(tmp_path):
    frames = _frames()
    path = tmp_path / "strip.png"
    fig = V.strip(frames, probs=_probs(), target=1, source=0, alphas=np.linspace(0, 2, N_FR),
                  class_names=["three", "eight", "x"], title="3 -> 8", path=path)
    assert isinstance(fig, Figure) and isinstance(fig.canvas, FigureCanvasAgg)
    ims = [im for ax in fig.axes for im in ax.get_images()]
    assert len(ims) == N_FR
    assert all(im.get_clim() == (0.0, 1.0) for im in ims)          # no per-frame scaling
    labels = [ax.get_xlabel() for ax in fig.axes if ax.get_images()]
    assert labels[1].splitlines() == ["α=0.5", "p(eight)=0.300", "p(three)=0.650"]
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 0
    assert _no_tmp(tmp_path)


def test_strip_diff_rows_share_a_symmetric_scale(tmp_path):
    frames = _frames()
    fig = V.strip(frames, probs=_probs()[:, 1], target=1, diff=True, ncols=3,
                  path=tmp_path / "d.png")
    img_axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(img_axes) == 2 * N_FR
    clims = {ax.get_images()[0].get_clim() for ax in img_axes}
    v = np.abs(frames - frames[0]).max()
    assert clims == {(0.0, 1.0), (-v, v)}
    # fixed half-range to compare several figures; RGB frames; reference image
    fig = V.strip(_frames(c=3), diff=True, diff_vmax=0.5, source_image=_frames(c=3)[2])
    assert {im.get_clim() for ax in fig.axes for im in ax.get_images()} == {
        (0.0, 1.0), (-0.5, 0.5)}
    assert _format(tmp_path / "d.png") == "PNG"
    with pytest.raises(ValueError, match="probs"):
        V.strip(frames, probs=_probs(3), target=1)


@pytest.mark.parametrize("boomerang,expected", [(True, 2 * N_FR - 2), (False, N_FR)])
def test_gif_frames_size_and_atomicity(tmp_path, boomerang, expected):
    path = tmp_path / "m.gif"
    out = V.gif(_frames(size=28), path, probs=_probs(), target=1, source=0,
                alphas=np.linspace(0, 1, N_FR), duration_ms=120, boomerang=boomerang)
    assert out == path and _no_tmp(tmp_path)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == expected
        assert im.size[0] == 28 * 8 and im.size[1] > 28 * 8          # x8 plus a text band
        assert im.info["duration"] == 120 and im.info["loop"] == 0
        im.seek(0)
        top = np.asarray(im.convert("L"))[: 28 * 8]
        im.seek(N_FR - 1)
        top_last = np.asarray(im.convert("L"))[: 28 * 8]
    # nearest upscaling of the first frame: 8x8 blocks of one value
    np.testing.assert_array_equal(top[::8, ::8].repeat(8, 0).repeat(8, 1), top)
    assert not np.array_equal(top, top_last)


def test_gif_with_change_heatmap(tmp_path):
    frames = _frames(size=16)
    path = V.gif(frames, tmp_path / "d.gif", probs=_probs()[:, 1], target=1, diff=True,
                 scale=4, boomerang=False)
    with Image.open(path) as im:
        assert im.size[0] == 2 * 64 + 4 and im.n_frames == N_FR
        im.seek(0)
        first = np.asarray(im.convert("RGB"))[:64, 68:]
    # frame 0 is the reference: its change panel is the colour map's midpoint everywhere
    assert np.ptp(first.reshape(-1, 3), axis=0).max() <= 2


def test_gif_rgb_and_scale(tmp_path):
    path = V.gif(_frames(size=10, c=3), tmp_path / "c.gif", scale=3, annotate=False,
                 boomerang=False)
    with Image.open(path) as im:
        assert im.size == (30, 30) and im.n_frames == N_FR


def test_prob_curves(tmp_path):
    p = _probs()
    fig = V.prob_curves({"pixel": np.linspace(0, 2, N_FR), "csp": np.linspace(0, 3, N_FR)},
                        {"pixel": p, "csp": p[::-1]}, target=1, source=0,
                        xlabel="L2 distance", budgets=[1, 2], path=tmp_path / "c.png")
    ax = fig.axes[0]
    assert len([ln for ln in ax.get_lines() if ln.get_label().startswith(("pixel", "csp"))]) == 4
    assert ax.get_xlabel() == "L2 distance"
    fig = V.prob_curves(np.arange(N_FR), {"pixel": p[:, 1]}, target=1, logy=True)
    assert len(fig.axes[0].get_lines()) == 1
    assert _format(tmp_path / "c.png") == "PNG"


def test_image_grid_and_pyramid_figure(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.uniform(size=(8, 8)) * (k + 1) for k in range(5)]
    fig = V.image_grid(imgs, titles=[f"b{k}" for k in range(5)], path=tmp_path / "g.png", ncols=3,
                       share_scale=True)
    clims = {im.get_clim() for ax in fig.axes for im in ax.get_images()}
    assert len(clims) == 1
    fig = V.image_grid(imgs, path=None, vmin=0, vmax=1)
    assert {im.get_clim() for ax in fig.axes for im in ax.get_images()} == {(0.0, 1.0)}
    bands = [rng.normal(size=(8, 8)) + 1j * rng.normal(size=(8, 8)),
             rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)), rng.uniform(size=(4, 4))]
    fig = V.pyramid_figure(bands, titles=["s0", "s1", "low"], path=tmp_path / "p.png")
    clims = [im.get_clim() for ax in fig.axes for im in ax.get_images()]
    assert len(clims) == 5 and clims.count((-np.pi, np.pi)) == 2
    for name in ("g.png", "p.png"):
        assert _format(tmp_path / name) == "PNG"
    assert _no_tmp(tmp_path)


def test_markdown_table_formatting():
    rows = [{"method": "pixel", "E": 0.38217, "n": 300},
            {"method": "a|b", "E": float("nan"), "note": "x\ny"},
            {"method": "csp", "E": np.float32(0.5), "n": np.int64(12), "note": None}]
    assert V.markdown_table(rows) == (
        "| method | E | n | note |\n"
        "|---|---:|---:|---|\n"
        "| pixel | 0.3822 | 300 |  |\n"
        "| a\\|b | nan |  | x y |\n"
        "| csp | 0.5 | 12 |  |\n")
    assert V.markdown_table(rows, columns=["n", "method"], floatfmt=".2f").splitlines()[2] == \
        "| 300 | pixel |"
    assert V.markdown_table([]) == ""
    h = V.html_table(rows[:1])
    assert "<th>method</th>" in h and '<td style="text-align:right">0.3822</td>' in h


def test_report_writes_md_and_html(tmp_path):
    V.strip(_frames(), path=tmp_path / "figs" / "s.png")
    V.gif(_frames(), tmp_path / "m.gif")
    sections = [{"title": "Morph", "text": "3 -> 8 <b>\n\nsecond",
                 "figures": [tmp_path / "figs" / "s.png", ("m.gif", "the GIF")]},
                {"title": "Table", "table": [{"B": 1, "E": 0.5}], "columns": ["E", "B"]}]
    md_path, html_path = V.report(tmp_path, sections, title="demo")
    md, page = md_path.read_text(), html_path.read_text()
    assert md.startswith("# demo\n") and "![s.png](figs/s.png)" in md
    assert "![the GIF](m.gif)" in md and "| E | B |\n|---:|---:|\n| 0.5 | 1 |" in md
    assert '<img src="figs/s.png"' in page and "<figcaption>the GIF</figcaption>" in page
    assert "3 -&gt; 8 &lt;b&gt;" in page and "<p>second</p>" in page and "<table>" in page
    assert _no_tmp(tmp_path) and _no_tmp(tmp_path / "figs")
    with pytest.raises(ValueError, match="unknown section keys"):
        V.report(tmp_path, [{"titel": "typo"}])


def _morph_of(frames, probs):
    from lens_jax.lens import Morph
    n = len(frames)
    return Morph(frames=frames, alphas=np.linspace(0, 2, n), logits=np.log(probs),
                 probs=probs, l2=np.linspace(0, 1, n), grad={}, target=np.int32(1),
                 source=np.int32(0), reached=np.ones(n, bool), max_change=np.zeros(n),
                 wrapped=np.full(n, np.nan))


def test_gif_and_strip_accept_a_morph(tmp_path):
    """Issue 18: `lj.viz.gif(morph)` failed with a numpy shape error."""
    f, p = _frames(), _probs()
    m = _morph_of(f, p)
    a = V.gif(m, tmp_path / "m.gif", class_names=["cat", "$5 bill", "x"], diff=True)
    b = V.gif(f, tmp_path / "f.gif", probs=p, target=1, source=0, alphas=m.alphas,
              class_names=["cat", "$5 bill", "x"], diff=True)
    assert a.read_bytes() == b.read_bytes()
    V.strip(m, path=tmp_path / "m.png", class_names=["cat", "$5 bill", "x"],
            title="cat → $5 bill")
    assert _format(tmp_path / "m.png") == "PNG"
    with pytest.raises(ValueError, match="kept no frames"):
        V.gif(m._replace(frames=None), tmp_path / "x.gif")
    with pytest.raises(ValueError, match="batched Morph"):
        V.strip(m._replace(frames=f[None]))


def test_dollar_class_names_do_not_crash_mathtext(tmp_path):
    """Issue 19: class names with `$...$` crashed matplotlib's math parser."""
    names = ["a $b", "$5 bill", r"$\frac{1}{"]
    p = _probs()
    V.prob_curves(np.arange(N_FR), {"pixel $": p}, target=1, source=2, class_names=names,
                  title="odd $ title", path=tmp_path / "c.png")
    V.strip(_frames(), probs=p, target=2, source=0, class_names=names, path=tmp_path / "s.png")
    V.image_grid([_frames()[0, ..., 0]], titles=["$x"], path=tmp_path / "g.png", suptitle="$")
    for f in ("c.png", "s.png", "g.png"):
        assert _format(tmp_path / f) == "PNG"
    assert V.plain_text("$5") == r"\$5" and V.plain_text(r"\$5") == r"\$5"
    from lens_jax.compare import morph_figure            # the domains figure too
    m = _morph_of(_frames(), p)
    morph_figure({"pixel $": m}, _frames()[0], tmp_path / "d.png", target=1,
                 class_names=names, title="a $b → $5 bill")
    assert _format(tmp_path / "d.png") == "PNG"


def test_mp4_has_every_frame(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="pip install imageio-ffmpeg")
    f, p = _frames(size=11, c=3), _probs()                 # odd size: padded for H.264
    path = V.mp4(_morph_of(f, p), tmp_path / "m.mp4", fps=5, boomerang=False)
    n, secs = imageio_ffmpeg.count_frames_and_secs(str(path))   # ffmpeg decodes it
    assert n == N_FR and secs == pytest.approx(N_FR / 5, abs=0.05)
    assert not list(tmp_path.glob(".*.mp4"))             # no temporary file left


def test_progress_suits_logs():
    """Progress bars flooded non-TTY logs (issue 18): plain lines, one per 10 %."""
    import io

    from lens_jax._io import LogProgress, progress_bar
    log = io.StringIO()
    with progress_bar(500, desc="morphs", stream=log) as bar:
        for _ in range(500):
            bar.update(1)
        bar.set_postfix(loss=0.5)
    text = log.getvalue()
    assert "\r" not in text and len(text.splitlines()) == 10
    assert text.splitlines()[-1].startswith("morphs: 100% 500/500") and "loss=0.5" in text

    class Tty(io.StringIO):
        def isatty(self):
            return True
    bar = progress_bar(3, desc="x", stream=Tty())
    assert not isinstance(bar, LogProgress)
    bar.close()
