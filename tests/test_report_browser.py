"""The interactive report page (lens_jax.report): static checks and a real headless browser.

The static tests parse the written HTML with :mod:`html.parser` (self-contained, valid JSON,
escaping).  The browser tests drive Debian's Chromium through Debian's chromedriver with
selenium (no download: the driver path is given and ``SE_OFFLINE`` is set), open the page
from ``file://`` and check what a person would do: scrub with the slider, switch domain and
driver, step with the arrow keys.  Expected values come from the synthetic views in Python
(frames, alphas, L2, p), never from the page's own JavaScript.
"""
from __future__ import annotations

import base64
import html.parser
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from lens_jax import report as rp

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = ("apt-get install chromium chromium-driver (Debian) and pip install selenium "
           "(pip install -e '.[test]')")


# ----------------------------------------------------------------------------- helpers
class _Collect(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text of every <script> element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self.text: list[str] = []
        self._in_script: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "script":
            self._in_script = a
            self.scripts.append((a, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            a, t = self.scripts[-1]
            self.scripts[-1] = (a, t + data)
        else:
            self.text.append(data)


def _parse(path: Path) -> _Collect:
    p = _Collect()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


def _viewer_data(parsed: _Collect) -> dict[str, dict]:
    return {a["id"]: json.loads(t) for a, t in parsed.scripts
            if a.get("type") == "application/json"}


def _decode(uri: str) -> np.ndarray:
    """A ``data:image/png;base64`` URI as floats in [0, 1], ``(H, W, C)``."""
    from PIL import Image
    head, b64 = uri.split(",", 1)
    assert head == "data:image/png;base64", head[:40]
    a = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))), np.float64) / 255.0
    return a[..., None] if a.ndim == 2 else a


def _same_image(uri: str, img: np.ndarray) -> bool:
    a = _decode(uri)
    return a.shape == img.shape and float(np.abs(a - img).max()) <= 0.5 / 255 + 1e-9


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return rp.demo_page(tmp_path_factory.mktemp("report") / "demo.html")


EVIL = '</script><script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def _evil_page(path: Path) -> Path:
    views = rp.demo_views(n_frames=5, size=12)
    v = views[1]
    bad = rp.MorphView(pair=v.pair, domain=v.domain, driver=v.driver, frames=v.frames,
                       alphas=v.alphas, l2=v.l2, p_target=v.p_target,
                       source_image=v.source_image, caption="**bold** " + EVIL,
                       target_name='8"><b>', evaluators={EVIL: v.p_target * 0.5,
                                                         "ok": EVIL})
    return rp.render_page(
        path, title=EVIL, groups=[rp.MorphGroup([views[0], bad], title=EVIL, caption=EVIL)],
        intro=EVIL + " [x](javascript:alert(1))", tables=[(EVIL, [{EVIL: EVIL, "n": 1}])],
        details=EVIL, footer=EVIL)


# ----------------------------------------------------------------------------- static
def test_page_is_self_contained_and_data_is_valid_json(demo):
    parsed = _parse(demo)
    data = _viewer_data(parsed)
    viewers = [a for t, a in parsed.tags if "lj-viewer" in a.get("class", "").split()]
    assert len(viewers) == 2 and len(data) == 2
    for a in viewers:                        # every viewer points at a JSON block
        assert a["data-json"] in data
    # one executable script, inline; everything else is JSON data
    code = [(a, t) for a, t in parsed.scripts if a.get("type") != "application/json"]
    assert len(code) == 1 and "src" not in code[0][0]
    # no resource that could touch the network: images are data URIs, no link/iframe
    for tag, a in parsed.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base"), tag
        for k in ("src", "srcset", "poster", "data"):
            if k in a:
                assert a[k].startswith("data:image/"), (tag, k, a[k][:60])
    text = demo.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text)
    assert "@import" not in text
    csp = [a for t, a in parsed.tags if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]
    # the JSON holds the frames of every view, exactly (8-bit PNG)
    views = rp.demo_views()
    d = data["lj0-data"]
    assert [(v["domain"], v["driver"]) for v in d["views"]] == [
        (v.domain, v.driver) for v in views]
    for jv, v in zip(d["views"], views):
        assert jv["n"] == v.n_frames == 8
        np.testing.assert_allclose(jv["l2"], v.l2)
        np.testing.assert_allclose(jv["alpha"], v.alphas)
        np.testing.assert_allclose(jv["p"], v.p_target)
        for i in (0, 3, 7):
            assert _same_image(d["images"][jv["frames"][i]], v.frames[i])
        assert _same_image(d["images"][jv["source"]], v.source_image)
    # the first screen leads with the morph: the first viewer comes before any table
    assert text.index('class="lj-viewer"') < text.index("<table")
    # the initial frame (the last one) is already in the static HTML
    img = [a for t, a in parsed.tags if a.get("data-role") == "frame"][0]
    assert _same_image(img["src"], views[0].frames[-1])


def test_malicious_text_is_escaped(tmp_path):
    page = _evil_page(tmp_path / "evil.html")
    parsed = _parse(page)
    code = [a for a, t in parsed.scripts if a.get("type") != "application/json"]
    assert len(code) == 1                               # no injected <script>
    for tag, a in parsed.tags:
        assert not any(k.startswith("on") for k in a), (tag, a)   # no handlers at all
        if tag == "img":
            assert a["src"].startswith("data:image/")
        if tag == "a":
            assert not a["href"].lower().startswith("javascript")
    text = "".join(parsed.text)
    assert "<script>window.__pwned=1</script>" in text   # shown as text
    # JSON blocks cannot be closed from inside; the escaped caption HTML is inside
    data = _viewer_data(parsed)["lj0-data"]
    cap = data["views"][1]["caption_html"]
    assert "<strong>bold</strong>" in cap and "<script" not in cap and "<img" not in cap
    assert "&lt;script&gt;" in cap


def test_jpeg_frames_and_figure_files(tmp_path):
    from PIL import Image
    v = rp.demo_views(n_frames=3, size=16)[0]
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "fig.gif")
    page = rp.render_page(tmp_path / "j.html", title="t", groups=[[v]], image_format="jpeg",
                          figures=[("gif", "fig.gif"), ("png bytes", rp.png_bytes(v.frames[0]))])
    parsed = _parse(page)
    d = _viewer_data(parsed)["lj0-data"]
    assert all(u.startswith("data:image/jpeg;base64,") for u in d["images"])
    srcs = [a["src"] for t, a in parsed.tags if t == "img"]
    assert any(s.startswith("data:image/gif;base64,") for s in srcs)
    assert any(_same_image(s, v.frames[0]) for s in srcs if s.startswith("data:image/png"))
    # the JPEG frames are close to the frames (lossy)
    from PIL import Image as I
    a = np.asarray(I.open(io.BytesIO(base64.b64decode(d["images"][d["views"][0]["frames"][2]]
                                                      .split(",", 1)[1]))), np.float64) / 255
    assert np.abs(a - v.frames[2][..., 0]).mean() < 0.02


def test_markdown_is_commonmark_without_raw_html():
    """markdown-it-py (CommonMark) with raw HTML off and safe link schemes only."""
    md = rp.markdown_to_html
    assert md("a **b** `c<d>` *e*") == ("<p>a <strong>b</strong> <code>c&lt;d&gt;</code> "
                                        "<em>e</em></p>")
    assert md("[w](https://x.org/?a=1&b=2)") == '<p><a href="https://x.org/?a=1&amp;b=2">w</a></p>'
    assert md("[p](pairs/a.png)") == '<p><a href="pairs/a.png">p</a></p>'
    for bad in ("[bad](javascript:alert(1))", "[bad](JAVASCRIPT:x)", "[d](data:text/html,x)",
                "[v](vbscript:x)"):
        out = md(bad)
        assert "<a" not in out and "href" not in out, out
    assert md("<script>alert(1)</script>") == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert "<img" not in md("![x](https://evil.org/x.png)")
    assert md("one\ntwo\n\nthree") == "<p>one\ntwo</p>\n<p>three</p>"
    assert md("- a\n- **b**\n  c") == ("<ul>\n<li>a</li>\n<li><strong>b</strong>\nc</li>\n"
                                       "</ul>")
    assert md("## Head") == "<h3>Head</h3>"
    assert md("2 * 3 * 4") == "<p>2 * 3 * 4</p>"
    assert "<table>" in md("| a | b |\n|---|---|\n| 1 | 2 |")
    with pytest.raises(TypeError, match="str"):
        md(3)


def test_bad_input_is_refused(tmp_path):
    v = rp.demo_views(n_frames=4, size=8)[0]
    kw = dict(pair="p", domain="d", driver="r", frames=v.frames, alphas=v.alphas, l2=v.l2,
              p_target=v.p_target)
    rp.MorphView(**kw)
    for k, bad, msg in [("alphas", np.arange(3.0), "alphas must have 4"),
                        ("l2", np.array([0, 1, np.nan, 2]), "l2 has non-finite"),
                        ("p_target", np.array([0, .5, 1.2, 1]), r"p_target must lie in"),
                        ("frames", v.frames * 2, r"frames must lie in \[0, 1\]"),
                        ("frames", v.frames[..., 0:1, :, :, None], "frames must be"),
                        ("source_image", np.zeros((3, 3, 1)), "does not match"),
                        ("reached", np.ones(4), "reached must be"),
                        ("evaluators", {"e": np.ones(3)}, r"evaluators\['e'\]")]:
        with pytest.raises(ValueError, match=msg):
            rp.MorphView(**{**kw, k: bad})
    with pytest.raises(TypeError, match="pair"):
        rp.MorphView(**{**kw, "pair": 3})
    a = rp.MorphView(**kw)
    with pytest.raises(ValueError, match="duplicate"):
        rp.MorphGroup([a, a])
    small = rp.demo_views(n_frames=4, size=6)[0]
    with pytest.raises(ValueError, match="one \\(H, W, C\\) shape"):
        rp.MorphGroup([a, small])
    with pytest.raises(TypeError, match="group_views"):
        rp.render_page(tmp_path / "x.html", title="t", groups=[a])
    with pytest.raises(ValueError, match="start"):
        rp.render_page(tmp_path / "x.html", title="t", groups=[[a]], start="middle")
    with pytest.raises(ValueError, match="cannot read"):
        rp.render_page(tmp_path / "x.html", title="t", groups=[[a]],
                       figures=[("f", "missing.png")])
    with pytest.raises(ValueError, match="image_format"):
        rp.render_page(tmp_path / "x.html", title="t", groups=[[a]], image_format="gif")
    assert not (tmp_path / "x.html").exists()
    # no source image: the source panel is hidden and has no src at all
    parsed = _parse(rp.render_page(tmp_path / "y.html", title="t", groups=[[a]]))
    src_img = [t for t in parsed.tags if t[1].get("data-role") == "source"][0][1]
    assert "src" not in src_img
    assert [g.title for g in rp.group_views([a, rp.MorphView(**{**kw, "domain": "e"}),
                                             rp.MorphView(**{**kw, "pair": "q"})])] == [
        "p", "q"]


def test_from_morph_takes_the_target_probability_and_source_frame():
    from lens_jax.lens import Morph
    rng = np.random.default_rng(0)
    B, n, K = 2, 5, 4
    frames = rng.uniform(size=(B, n, 6, 6, 1))
    l2 = np.stack([np.linspace(0.0, 2.0, n), np.linspace(0.5, 2.0, n)])
    probs = rng.dirichlet(np.ones(K), size=(B, n))
    m = Morph(frames=frames, alphas=np.tile(np.arange(n, dtype=float), (B, 1)),
              logits=np.log(probs), probs=probs, l2=l2, grad=None,
              target=np.array([2, 3]), source=np.array([0, 1]),
              reached=np.ones((B, n), bool), max_change=np.abs(l2),
              wrapped=np.zeros((B, n)))
    v = rp.MorphView.from_morph(m, pair="0 -> 2", domain="pixel", driver="cnn", index=0,
                                evaluators={"ev": probs[0, :, 2]})
    np.testing.assert_allclose(v.p_target, probs[0, :, 2])
    np.testing.assert_allclose(v.source_image, frames[0, 0])
    assert (v.target_name, v.source_name) == ("2", "0")
    w = rp.MorphView.from_morph(m, pair="1 -> 3", domain="pixel", driver="cnn", index=1,
                                target_name="three")
    np.testing.assert_allclose(w.p_target, probs[1, :, 3])
    assert w.source_image is None and w.target_name == "three"   # no frame at L2 = 0
    with pytest.raises(ValueError, match="index="):
        rp.MorphView.from_morph(m, pair="x", domain="pixel", driver="cnn")


# ----------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(f"selenium is not installed; install: {INSTALL}")
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(exe) and os.access(exe, os.X_OK)):
            pytest.skip(f"{exe} is missing; install: {INSTALL}")
    old = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"       # selenium-manager must never download
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    except Exception as e:  # noqa: BLE001 - report why the browser could not start
        pytest.skip(f"Chromium did not start through chromedriver ({type(e).__name__}: "
                    f"{str(e).splitlines()[0][:200]}); install: {INSTALL}")
    try:
        yield drv
    finally:
        drv.quit()
        if old is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = old


def _open(drv, page: Path) -> None:
    """Load ``page``; the browser log then holds only this page's messages."""
    drv.get_log("browser")
    drv.get(page.resolve().as_uri())
    assert drv.execute_script("return !!(window.lensReport && "
                              "window.lensReport.viewers.length)")


def _severe(drv) -> list[dict]:
    return [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]


class _Viewer:
    """Reads what the first viewer shows (DOM only)."""

    def __init__(self, drv, vid: str = "lj0") -> None:
        from selenium.webdriver.common.by import By
        self.drv, self.el = drv, drv.find_element(By.ID, vid)
        self.by = By

    def role(self, r: str):
        return self.el.find_element(self.by.CSS_SELECTOR, f'[data-role="{r}"]')

    def slider_to(self, i: int) -> None:
        self.drv.execute_script(
            "var s=arguments[0]; s.value=arguments[1];"
            "s.dispatchEvent(new Event('input', {bubbles: true}));", self.role("slider"), i)

    @property
    def index(self) -> int:
        return int(self.role("slider").get_attribute("value"))

    def cursor_x(self) -> float:
        c = self.role("cursor")
        x1, x2 = float(c.get_attribute("x1")), float(c.get_attribute("x2"))
        assert x1 == x2
        return x1

    def button(self, kind: str, name: str):
        return self.el.find_element(self.by.CSS_SELECTOR, f'button[data-{kind}="{name}"]')


def _expect_frame(vw: _Viewer, view: rp.MorphView, plot: dict, i: int) -> None:
    """The viewer shows frame ``i`` of ``view``: image, numbers, cursor."""
    assert vw.index == i
    assert _same_image(vw.role("frame").get_attribute("src"), view.frames[i])
    assert vw.role("idx").text == str(i)
    assert vw.role("alpha").text == format(view.alphas[i], ".3g")
    assert vw.role("l2").text == format(view.l2[i], ".3f")
    assert vw.role("p").text == format(view.p_target[i], ".3f")
    x0, x1 = plot["left"], plot["width"] - plot["right"]
    assert plot["xmax"] >= view.l2.max()
    assert vw.cursor_x() == pytest.approx(x0 + (x1 - x0) * view.l2[i] / plot["xmax"],
                                          abs=0.006)
    y0, y1 = plot["height"] - plot["bottom"], plot["top"]
    assert float(vw.role("dot").get_attribute("cy")) == pytest.approx(
        y0 + (y1 - y0) * view.p_target[i], abs=0.006)


def test_browser_slider_moves_frame_cursor_and_numbers(browser, demo):
    _open(browser, demo)
    assert _severe(browser) == []
    views = rp.demo_views()
    plot = _viewer_data(_parse(demo))["lj0-data"]["plot"]
    vw = _Viewer(browser)
    _expect_frame(vw, views[0], plot, 7)           # opens on the last frame: the result
    srcs, xs = [], []
    for i in (0, 2, 5, 6, 1):
        vw.slider_to(i)
        _expect_frame(vw, views[0], plot, i)
        srcs.append(vw.role("frame").get_attribute("src"))
        xs.append(vw.cursor_x())
    assert len(set(srcs)) == 5 and len(set(xs)) == 5
    # the shown view's curve is highlighted, and only that one
    on = browser.execute_script(
        "return Array.from(document.querySelectorAll('#lj0 polyline.curve.on'))"
        ".map(function(e){return e.getAttribute('data-view')})")
    assert on == ["0"]
    assert _severe(browser) == []


def test_browser_switch_keeps_frame_index(browser, demo):
    _open(browser, demo)
    views = {(v.domain, v.driver): v for v in rp.demo_views()}
    plot = _viewer_data(_parse(demo))["lj0-data"]["plot"]
    vw = _Viewer(browser)
    vw.slider_to(3)
    _expect_frame(vw, views["csp_phase", "standard"], plot, 3)
    before = vw.role("frame").get_attribute("src")
    vw.button("domain", "pixel").click()
    _expect_frame(vw, views["pixel", "standard"], plot, 3)
    assert vw.role("frame").get_attribute("src") != before
    assert vw.button("domain", "pixel").get_attribute("aria-pressed") == "true"
    assert vw.button("domain", "csp_phase").get_attribute("aria-pressed") == "false"
    assert "pixel · standard" in vw.role("caption").text
    assert vw.role("source-caption").text == "source · 3"
    vw.button("driver", "robust").click()
    _expect_frame(vw, views["pixel", "robust"], plot, 3)
    ev = views["pixel", "robust"].evaluators["ev_cnn"][3]
    assert vw.role("evs").text == f"ev_cnn p(8) = {ev:.3f}"
    assert "ccexam: 8 (p=0.8)" in vw.role("verdicts").text
    assert vw.role("unreached").text == ""
    vw.slider_to(7)                                   # pixel views stop short of the budget
    assert vw.role("unreached").text == "L2 budget not reached"
    vw.button("domain", "csp_phase").click()
    _expect_frame(vw, views["csp_phase", "robust"], plot, 7)
    assert vw.role("unreached").text == ""
    assert _severe(browser) == []


def test_browser_arrow_keys_step_frames(browser, demo):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    _open(browser, demo)
    views = rp.demo_views()
    plot = _viewer_data(_parse(demo))["lj0-data"]["plot"]
    vw = _Viewer(browser)
    # focus on the viewer itself
    browser.execute_script("arguments[0].focus()", vw.el)
    vw.el.send_keys(Keys.ARROW_LEFT)
    vw.el.send_keys(Keys.ARROW_LEFT)
    _expect_frame(vw, views[0], plot, 5)
    vw.el.send_keys(Keys.ARROW_RIGHT)
    _expect_frame(vw, views[0], plot, 6)
    vw.el.send_keys(Keys.HOME)
    _expect_frame(vw, views[0], plot, 0)
    # focus on the slider: the range input steps itself
    vw.role("slider").send_keys(Keys.ARROW_RIGHT)
    _expect_frame(vw, views[0], plot, 1)
    # after a domain button click the arrows still step the viewer
    vw.button("domain", "pixel").click()
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
    _expect_frame(vw, views[2], plot, 2)
    # nothing focused: the page-wide keys go to the first viewer
    browser.execute_script("document.activeElement && document.activeElement.blur()")
    _open(browser, demo)
    vw = _Viewer(browser)
    ActionChains(browser).send_keys(Keys.ARROW_LEFT).perform()
    _expect_frame(vw, views[0], plot, 6)
    second = _Viewer(browser, "lj1")
    assert second.index == 5                        # the other viewer did not move
    assert _severe(browser) == []


def test_browser_does_not_run_injected_text(browser, tmp_path):
    page = _evil_page(tmp_path / "evil.html")
    _open(browser, page)
    vw = _Viewer(browser)
    vw.button("driver", "robust").click()         # both views are csp_phase
    assert "**" not in vw.role("caption").text and "bold" in vw.role("caption").text
    assert "<script>window.__pwned=1</script>" in vw.role("caption").text
    assert EVIL.split("<img")[0] in vw.role("evs").text
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.title == EVIL
    assert _severe(browser) == []
