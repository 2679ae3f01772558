"""An interactive, self-contained HTML page for morphs: scrub, compare domains and drivers.

:func:`render_page` writes ONE HTML file with inline CSS and JavaScript and every image
embedded as a ``data:`` URI: it opens from ``file://`` with no server, no network, no
external script or font (a Content-Security-Policy in the page forbids any fetch).

For each morph group (one source image and target, several domains and drivers) the page
shows a viewer:

* the source and the current frame, upscaled with ``image-rendering: pixelated`` when small;
* a slider over the frames (labelled; arrow keys step frames when the viewer has focus, or
  anywhere on the page for the viewer last used, the first one by default) and a play button;
* the frame index, amplification alpha, L2 distance to the source and the driver's
  p(target) of the frame, plus per-frame p(target) of independent evaluators when given;
* the p(target)-vs-L2 curves of the group as inline SVG, the shown view's curve
  highlighted, with a cursor that follows the slider;
* buttons to switch domain and driver that keep the frame index;
* the view's caption (a small, safe Markdown subset, see :func:`markdown_to_html`).

The data of each viewer is embedded as JSON in a ``<script type="application/json">``
block.  The page leads with the morphs, then the tables, then figures and details.

Only NumPy and the standard library are imported at module level; Pillow is imported when
images are encoded.

>>> import numpy as np
>>> from lens_jax.report import MorphView, render_page
>>> f = np.linspace(0, 1, 4)[:, None, None, None] * np.ones((4, 8, 8, 1))
>>> v = MorphView(pair="0 -> 1", domain="pixel", driver="cnn", frames=f,
...               alphas=np.arange(4.0), l2=np.arange(4.0), p_target=np.linspace(.1, .9, 4))
>>> v.n_frames
4
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from lens_jax._io import atomic_write_text
from lens_jax._markdown import markdown_to_html
from lens_jax._report_html import PLOT, nice_max, svg_plot, table_html

__all__ = ["MorphView", "MorphGroup", "group_views", "render_page", "markdown_to_html",
           "png_data_uri", "png_bytes", "demo_views", "demo_page"]

PathLike = str | os.PathLike

#: Curve colours per domain (by position in the order of first appearance).
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf")


# ----------------------------------------------------------------------------- data
def _vec(name: str, v: Any, n: int, *, lo: float | None = None,
         hi: float | None = None) -> np.ndarray:
    """``v`` as a finite float64 ``(n,)`` vector, checked (ValueError naming ``name``)."""
    try:
        a = np.asarray(v, dtype=np.float64).reshape(-1) if np.ndim(v) else None
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a numeric array, got {type(v).__name__}") from e
    if a is None or a.shape[0] != n:
        raise ValueError(f"{name} must have {n} entries (one per frame), got shape "
                         f"{np.shape(v)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite values at frames "
                         f"{np.flatnonzero(~np.isfinite(a)).tolist()}")
    if lo is not None and np.any(a < lo - 1e-9) or hi is not None and np.any(a > hi + 1e-9):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got range "
                         f"[{a.min():.4g}, {a.max():.4g}]")
    return a


def _images(name: str, x: Any, *, single: bool) -> np.ndarray:
    """Images as float64 ``(n, H, W, C)`` (or ``(H, W, C)`` when ``single``) in [0, 1]."""
    a = np.asarray(x, dtype=np.float64)
    want = 3 if single else 4
    if a.ndim == want - 1:
        a = a[..., None]
    if a.ndim != want or a.shape[-1] not in (1, 3) or 0 in a.shape:
        shape = "(H, W, C)" if single else "(n, H, W, C)"
        raise ValueError(f"{name} must be {shape} with C in (1, 3) (or without the channel "
                         f"axis for grey), got shape {np.shape(x)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite values")
    if a.min() < -1e-6 or a.max() > 1 + 1e-6:
        raise ValueError(f"{name} must lie in [0, 1], got range [{a.min():.4g}, "
                         f"{a.max():.4g}]")
    return np.clip(a, 0.0, 1.0)


@dataclasses.dataclass(frozen=True, eq=False)
class MorphView:
    """One morph to show: the frames of one (pair, domain, driver).

    Attributes:
      pair: what the morph is of, e.g. ``"3 -> 8 (test #18)"``; views with the same pair
        form a group (one viewer), see :func:`group_views`.
      domain: the edit domain (``"csp_phase"``, ...); a switch button per domain.
      driver: the classifier whose gradient made the morph (``"cnn"``, ``"robust"``, ...);
        a switch button per driver.
      frames: ``(n, H, W, C)`` (or ``(n, H, W)``) floats in [0, 1].
      alphas: ``(n,)`` amplification of each frame.
      l2: ``(n,)`` L2 distance of each frame to the source ([0, 1] scale).
      p_target: ``(n,)`` driver probability of the target class at each frame.
      source_image: ``(H, W, C)`` source shown beside the frame (None: not shown).
      caption: Markdown caption shown under the viewer while this view is selected; say
        plainly when the morph does not read as the target.
      evaluators: ``name -> (n,)`` p(target) of an independent classifier per frame
        (shown per frame and drawn dashed), or ``name -> str | float``: its verdict on the
        last frame (shown as text).
      target_name: the target class as shown in "p(<target_name>)".
      source_name: the source class (shown in the title line of the viewer).
      reached: ``(n,)`` bool; False marks frames whose L2 budget was not reached.
      max_change: ``(n,)`` largest |edit parameter| of each frame (shown when given).
    """
    pair: str
    domain: str
    driver: str
    frames: Any
    alphas: Any
    l2: Any
    p_target: Any
    source_image: Any = None
    caption: str = ""
    evaluators: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    target_name: str = "target"
    source_name: str | None = None
    reached: Any = None
    max_change: Any = None

    def __post_init__(self) -> None:
        for k in ("pair", "domain", "driver", "caption", "target_name"):
            if not isinstance(getattr(self, k), str):
                raise TypeError(f"{k} must be a str, got {type(getattr(self, k)).__name__}")
        if self.source_name is not None and not isinstance(self.source_name, str):
            raise TypeError(f"source_name must be a str or None, got "
                            f"{type(self.source_name).__name__}")
        f = _images("frames", self.frames, single=False)
        n = f.shape[0]
        set_ = object.__setattr__
        set_(self, "frames", f)
        set_(self, "alphas", _vec("alphas", self.alphas, n))
        set_(self, "l2", _vec("l2", self.l2, n, lo=0.0))
        set_(self, "p_target", _vec("p_target", self.p_target, n, lo=0.0, hi=1.0))
        if self.source_image is not None:
            s = _images("source_image", self.source_image, single=True)
            if s.shape != f.shape[1:]:
                raise ValueError(f"source_image shape {s.shape} does not match the frames "
                                 f"{f.shape[1:]}")
            set_(self, "source_image", s)
        if self.reached is not None:
            r = np.asarray(self.reached).reshape(-1)
            if r.shape[0] != n or r.dtype != np.bool_:
                raise ValueError(f"reached must be ({n},) bool, got {r.dtype} {r.shape}")
            set_(self, "reached", r)
        if self.max_change is not None:
            set_(self, "max_change", _vec("max_change", self.max_change, n, lo=0.0))
        if not isinstance(self.evaluators, Mapping):
            raise TypeError(f"evaluators must be a mapping name -> values, got "
                            f"{type(self.evaluators).__name__}")
        ev: dict[str, Any] = {}
        for name, val in self.evaluators.items():
            if isinstance(val, str):
                ev[str(name)] = val
            elif np.ndim(val) == 0:
                x = float(val)
                if not math.isfinite(x):
                    raise ValueError(f"evaluators[{name!r}] is not finite")
                ev[str(name)] = x
            else:
                ev[str(name)] = _vec(f"evaluators[{name!r}]", val, n, lo=0.0, hi=1.0)
        set_(self, "evaluators", ev)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @classmethod
    def from_morph(cls, m: Any, *, pair: str, domain: str, driver: str, index: int | None = None,
                   caption: str = "", evaluators: Mapping[str, Any] | None = None,
                   source_image: Any = None, target_name: str | None = None,
                   source_name: str | None = None) -> "MorphView":
        """A view of a :class:`lens_jax.lens.Morph` (JAX or NumPy arrays).

        ``index`` picks one morph of a batched result (``morph_batch``).  The source image
        defaults to the frame at L2 = 0 when there is one.  ``target_name`` and
        ``source_name`` default to the class indices.
        """
        def take(x: Any) -> np.ndarray:
            a = np.asarray(x)
            return a if index is None else a[index]

        frames = take(m.frames)
        if frames.ndim != 4:
            raise ValueError(f"from_morph: frames must be (n, H, W, C); got {frames.shape} "
                             f"(pass index= for a batched Morph)")
        l2 = take(m.l2).astype(np.float64)
        target = int(take(m.target))
        source = int(take(m.source))
        p = take(m.probs)[:, target]
        if source_image is None:
            zero = np.flatnonzero(l2 == 0.0)
            source_image = frames[zero[0]] if zero.size else None
        return cls(pair=pair, domain=domain, driver=driver, frames=frames,
                   alphas=take(m.alphas), l2=l2, p_target=p, source_image=source_image,
                   caption=caption, evaluators=dict(evaluators or {}),
                   target_name=str(target) if target_name is None else target_name,
                   source_name=str(source) if source_name is None else source_name,
                   reached=take(m.reached).astype(bool), max_change=take(m.max_change))


@dataclasses.dataclass(frozen=True)
class MorphGroup:
    """One viewer: views of one pair (several domains and drivers).

    ``title`` defaults to the views' ``pair``; ``caption`` (Markdown) is shown under the
    viewer whatever view is selected; ``start`` picks the view shown first (index).
    """
    views: Sequence[MorphView]
    title: str | None = None
    caption: str = ""
    start: int = 0

    def __post_init__(self) -> None:
        views = tuple(self.views)
        if not views:
            raise ValueError("a MorphGroup needs at least one view")
        for v in views:
            if not isinstance(v, MorphView):
                raise TypeError(f"views must be MorphView, got {type(v).__name__}")
        keys = [(v.domain, v.driver) for v in views]
        if len(set(keys)) != len(keys):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"duplicate (domain, driver) views in one group: {dup}")
        shapes = {v.frames.shape[1:] for v in views}
        if len(shapes) > 1:
            raise ValueError(f"all views of a group must have frames of one (H, W, C) shape, "
                             f"got {sorted(shapes)}")
        if not 0 <= self.start < len(views):
            raise ValueError(f"start must index the views (0..{len(views) - 1}), got "
                             f"{self.start}")
        object.__setattr__(self, "views", views)
        if self.title is None:
            object.__setattr__(self, "title", views[0].pair)


def group_views(views: Sequence[MorphView]) -> list[MorphGroup]:
    """Group views by ``pair`` (in order of first appearance), one :class:`MorphGroup` each."""
    out: dict[str, list[MorphView]] = {}
    for v in views:
        if not isinstance(v, MorphView):
            raise TypeError(f"views must be MorphView, got {type(v).__name__}")
        out.setdefault(v.pair, []).append(v)
    return [MorphGroup(vs) for vs in out.values()]


# ----------------------------------------------------------------------------- images
def png_bytes(img: Any, *, fmt: str = "png", quality: int = 90) -> bytes:
    """``(H, W, C)`` / ``(H, W)`` floats in [0, 1] as PNG (or JPEG) bytes; grey when C = 1."""
    from PIL import Image  # lazily: the module imports without Pillow

    if fmt not in ("png", "jpeg"):
        raise ValueError(f"fmt must be 'png' or 'jpeg', got {fmt!r}")
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(f"img must be (H, W), (H, W, 1) or (H, W, 3), got {np.shape(img)}")
    u8 = np.ascontiguousarray(np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8))
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(u8).save(buf, format="PNG", compress_level=6)
    else:
        Image.fromarray(u8).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"),
          (b"GIF89a", "image/gif"), (b"\xff\xd8\xff", "image/jpeg"))


def _data_uri(data: bytes) -> str:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    raise ValueError("figure bytes are not PNG, GIF or JPEG")


def png_data_uri(img: Any) -> str:
    """``data:image/png;base64,...`` of an image in [0, 1] (see :func:`png_bytes`)."""
    return _data_uri(png_bytes(img))


# ----------------------------------------------------------------------------- viewer
def _json_script(obj: Any, id_: str) -> str:
    """``<script type="application/json">`` whose text can never close the element."""
    s = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{id_}">{s}</script>'


def _display_size(h: int, w: int, target: int) -> tuple[int, int, bool]:
    """Displayed (height, width) and whether to render pixelated (integer upscaling)."""
    side = max(h, w)
    if side * 2 <= target:
        s = target // side
        return h * s, w * s, True
    s = target / side
    return round(h * s), round(w * s), False


def _viewer(gi: int, group: MorphGroup, *, start: str, image_size: int, image_format: str,
            domain_labels: Mapping[str, str], colors: Mapping[str, str]) -> str:
    images: list[str] = []
    index: dict[bytes, int] = {}

    def img_id(a: np.ndarray) -> int:
        b = png_bytes(a, fmt=image_format)
        if b not in index:
            index[b] = len(images)
            images.append(_data_uri(b))
        return index[b]

    xmax = nice_max(max(float(v.l2.max()) for v in group.views) * 1.02)
    domains = list(dict.fromkeys(v.domain for v in group.views))
    drivers = list(dict.fromkeys(v.driver for v in group.views))
    views = []
    for v in group.views:
        ev_frames, verdicts = [], []
        for name, val in v.evaluators.items():
            if isinstance(val, np.ndarray):
                ev_frames.append({"name": name, "p": [round(float(x), 6) for x in val],
                                  "txt": [format(float(x), ".3f") for x in val]})
            else:
                verdicts.append([name, val if isinstance(val, str) else format(val, ".3g")])
        views.append({
            "domain": v.domain, "driver": v.driver, "n": v.n_frames,
            "target": v.target_name, "source_name": v.source_name,
            "frames": [img_id(f) for f in v.frames],
            "source": -1 if v.source_image is None else img_id(v.source_image),
            "alpha": [float(x) for x in v.alphas],
            "alpha_txt": [format(float(x), ".3g") for x in v.alphas],
            "l2": [float(x) for x in v.l2],
            "l2_txt": [format(float(x), ".3f") for x in v.l2],
            "p": [float(x) for x in v.p_target],
            "p_txt": [format(float(x), ".3f") for x in v.p_target],
            "reached": None if v.reached is None else [bool(x) for x in v.reached],
            "max_change": None if v.max_change is None else
            [format(float(x), ".3g") for x in v.max_change],
            "evaluators": ev_frames, "verdicts": verdicts,
            "caption_html": markdown_to_html(v.caption) if v.caption else "",
        })
    sv = group.views[group.start]
    first = sv.n_frames - 1 if start == "last" else 0
    data = {"views": views, "images": images, "start_view": group.start,
            "start_frame": first, "domains": domains, "drivers": drivers,
            "domain_labels": {d: domain_labels.get(d, d) for d in domains},
            "plot": {**PLOT, "xmax": xmax}}
    h, w = sv.frames.shape[1:3]
    dh, dw, pixelated = _display_size(h, w, image_size)
    pix = " pixelated" if pixelated else ""
    vid = f"lj{gi}"
    src0 = images[views[group.start]["source"]] if views[group.start]["source"] >= 0 else ""

    def buttons(kind: str, names: list[str], cur: str, labels: Mapping[str, str]) -> str:
        if len(names) < 2:
            return (f'<span class="lj-switch" data-kind="{kind}"><span class="lj-k">{kind}'
                    f'</span> <span class="lj-only">{html.escape(labels.get(cur, cur))}'
                    "</span></span>")
        b = "".join(
            f'<button type="button" data-{kind}="{html.escape(n, quote=True)}" '
            f'aria-pressed="{"true" if n == cur else "false"}"'
            + (f' style="--c:{colors[n]}"' if kind == "domain" else "")
            + f">{html.escape(labels.get(n, n))}</button>" for n in names)
        return (f'<span class="lj-switch" role="group" aria-label="{kind}" '
                f'data-kind="{kind}"><span class="lj-k">{kind}</span> {b}</span>')

    v0 = views[group.start]
    title = html.escape(group.title or "")
    legend_ev = "; dashed: independent evaluators" if any(
        v["evaluators"] for v in views) else ""
    parts = [
        f'<section class="lj-group" id="{vid}-section">',
        f"<h2>{title}</h2>",
        f'<div class="lj-viewer" tabindex="0" data-json="{vid}-data" id="{vid}" '
        f'aria-label="Morph viewer {title}: arrow keys step frames">',
        '<div class="lj-switches">',
        buttons("domain", domains, sv.domain, data["domain_labels"]),
        buttons("driver", drivers, sv.driver, {}),
        "</div>",
        '<div class="lj-main">',
        '<div class="lj-images">',
        f'<figure class="lj-fig"{"" if src0 else " hidden"}><img data-role="source" '
        f'class="lj-img{pix}" width="{dw}" height="{dh}" alt="source image"'
        + (f' src="{src0}">' if src0 else ">"),
        '<figcaption data-role="source-caption">source'
        f'{"" if sv.source_name is None else " · " + html.escape(sv.source_name)}'
        "</figcaption></figure>",
        f'<figure class="lj-fig"><img data-role="frame" class="lj-img{pix}" width="{dw}" '
        f'height="{dh}" alt="morph frame" src="{images[v0["frames"][first]]}">'
        f'<figcaption data-role="frame-caption">frame {first}</figcaption></figure>',
        "</div>",
        f'<div class="lj-plot">{svg_plot(group, xmax, colors)}'
        f'<div class="lj-legend">bold: driver p(target) of the shown view; faint: the '
        f'other views of this pair{legend_ev}</div></div>',
        "</div>",
        '<div class="lj-controls">',
        '<button type="button" data-role="play" aria-label="play">&#9654; play</button>',
        f'<label for="{vid}-slider">Frame</label>',
        f'<input type="range" id="{vid}-slider" data-role="slider" min="0" '
        f'max="{v0["n"] - 1}" step="1" value="{first}">',
        '<small class="lj-hint">&larr; &rarr; keys step frames</small>',
        "</div>",
        '<div class="lj-readout" data-role="readout" aria-live="polite">',
        f'<span>frame <b data-role="idx">{first}</b> / <span data-role="nmax">'
        f'{v0["n"] - 1}</span></span>',
        f'<span>&alpha; = <b data-role="alpha">{v0["alpha_txt"][first]}</b></span>',
        f'<span>L2 = <b data-role="l2">{v0["l2_txt"][first]}</b></span>',
        f'<span><span data-role="plabel">p({html.escape(sv.target_name)})</span> = '
        f'<b data-role="p">{v0["p_txt"][first]}</b> <small>(driver)</small></span>',
        '<span data-role="mc"></span><span data-role="evs"></span>'
        '<span data-role="unreached" class="lj-warn"></span>',
        "</div>",
        '<div class="lj-verdicts" data-role="verdicts"></div>',
        f'<div class="lj-caption" data-role="caption">{v0["caption_html"]}</div>',
        "</div>",
    ]
    if group.caption:
        parts.append(f'<div class="lj-group-caption">{markdown_to_html(group.caption)}</div>')
    parts.append(_json_script(data, f"{vid}-data"))
    parts.append("</section>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- page
def _asset(name: str) -> str:
    """Text of a file shipped in ``lens_jax/assets`` (the page's CSS and JavaScript)."""
    return (Path(__file__).parent / "assets" / name).read_text(encoding="utf-8")



_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")


def _figure_src(src: Any, base: Path) -> str:
    if isinstance(src, (bytes, bytearray)):
        return _data_uri(bytes(src))
    if isinstance(src, np.ndarray):
        return png_data_uri(src)
    if isinstance(src, (str, os.PathLike)):
        p = Path(src)
        if not p.is_absolute():
            p = base / p
        try:
            data = p.read_bytes()
        except OSError as e:
            raise ValueError(f"figure {str(src)!r}: cannot read {p}: {e}") from e
        return _data_uri(data)
    raise TypeError(f"a figure source must be a path, PNG/GIF/JPEG bytes or an image array, "
                    f"got {type(src).__name__}")


def _unpack(item: Any, what: str) -> tuple[str, Any, str]:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise TypeError(f"each of {what} must be (title, content) or (title, content, "
                        f"caption), got {type(item).__name__}")
    title, content = item[0], item[1]
    cap = item[2] if len(item) == 3 else ""
    if not isinstance(title, str) or not isinstance(cap, str):
        raise TypeError(f"{what}: title and caption must be str")
    return title, content, cap


def render_page(path: PathLike, *, title: str,
                groups: Sequence[MorphGroup | Sequence[MorphView]], intro: str = "",
                tables: Sequence[tuple] = (), figures: Sequence[tuple] = (),
                details: str = "", footer: str = "", start: str = "last",
                image_size: int = 256, image_format: str = "png",
                domain_labels: Mapping[str, str] | None = None,
                floatfmt: str = ".4g") -> Path:
    """Write the interactive page to ``path`` (atomically) and return it.

    Args:
      path: the ``.html`` file to write.
      title: page title (text).
      groups: one viewer each, in order: :class:`MorphGroup`, or a sequence of
        :class:`MorphView` (titled by its first view's ``pair``).  The first one is the
        first thing on the page after the title and ``intro``.
      intro: Markdown shown between the title and the first viewer (keep it short).
      tables: ``(title, rows)`` or ``(title, rows, caption)``; ``rows`` a list of dicts
        (columns: keys in order of first appearance; floats with ``floatfmt``).  Shown
        after the viewers.
      figures: ``(title, src)`` or ``(title, src, caption)``: ``src`` a file path (read and
        embedded; relative paths are relative to the page's folder), PNG/GIF/JPEG bytes, or
        an ``(H, W[, C])`` image array in [0, 1].  Shown after the tables.
      details: Markdown shown after the figures (method, caveats, commands).
      footer: Markdown in small print at the end.
      start: ``"last"`` (each viewer opens on its last frame: the result) or ``"first"``.
      image_size: displayed size in CSS pixels of the longer image side (small images are
        upscaled by an integer factor and rendered pixelated).
      image_format: ``"png"`` (lossless, default) or ``"jpeg"`` (quality 90) for the frames
        of the viewers.  JPEG makes pages with large natural images about 5x smaller (a
        224 x 224 RGB frame: ~99 kB PNG, ~18 kB JPEG) but its error of a grey level or
        two can hide the small per-pixel changes of a low-L2 morph.
      domain_labels: display names of domains (e.g. ``lens_jax.compare.DOMAIN_LABELS``).
      floatfmt: format of floats in tables.

    Returns:
      the written path.
    """
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    if start not in ("last", "first"):
        raise ValueError(f"start must be 'last' or 'first', got {start!r}")
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    if not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size must be an int >= 16, got {image_size!r}")
    path = Path(path)
    gs: list[MorphGroup] = []
    for g in groups:
        if isinstance(g, MorphView):
            raise TypeError("groups must hold MorphGroup or sequences of MorphView; use "
                            "group_views(views) for a flat list of views")
        gs.append(g if isinstance(g, MorphGroup) else MorphGroup(tuple(g)))
    labels = dict(domain_labels or {})
    colors: dict[str, str] = {}
    for g in gs:
        for v in g.views:
            if v.domain not in colors:
                colors[v.domain] = PALETTE[len(colors) % len(PALETTE)]
    body = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        body.append(f'<div class="lj-intro">{markdown_to_html(intro)}</div>')
    for gi, g in enumerate(gs):
        body.append(_viewer(gi, g, start=start, image_size=image_size,
                            image_format=image_format, domain_labels=labels,
                            colors=colors))
    if tables:
        body.append('<section class="lj-tables">')
        for item in tables:
            t, rows, cap = _unpack(item, "tables")
            body.append(f"<h2>{html.escape(t)}</h2>")
            if cap:
                body.append(markdown_to_html(cap))
            body.append(table_html(rows, floatfmt))
        body.append("</section>")
    if figures:
        body.append('<section class="lj-figures">')
        for item in figures:
            t, src, cap = _unpack(item, "figures")
            uri = _figure_src(src, path.parent)
            size = ""
            if isinstance(src, np.ndarray) and src.ndim in (2, 3):
                fh, fw, pixelated = _display_size(src.shape[0], src.shape[1], 2 * image_size)
                size = (f' width="{fw}" height="{fh}"'
                        + (' class="pixelated"' if pixelated else ""))
            body.append(f'<figure class="lj-figure"><h2>{html.escape(t)}</h2>'
                        f'<img src="{uri}"{size} alt="{html.escape(t, quote=True)}">'
                        + (f"<figcaption>{markdown_to_html(cap)}</figcaption>" if cap else "")
                        + "</figure>")
        body.append("</section>")
    if details:
        body.append(f'<section class="lj-details">{markdown_to_html(details)}</section>')
    if footer:
        body.append(f'<footer class="lj-foot">{markdown_to_html(footer)}</footer>')
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_asset('report.css')}</style>\n</head><body>\n"
            + "\n".join(body) + f"\n<script>{_asset('report.js')}</script>\n</body></html>\n")
    atomic_write_text(path, page)
    return path


# ----------------------------------------------------------------------------- demo
def _blob_frames(n: int, size: int, *, dx: float, dy: float, rgb: bool,
                 sharp: float) -> np.ndarray:
    """A Gaussian blob moving by (dy, dx) pixels over ``n`` frames (synthetic morph)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    t = np.linspace(0.0, 1.0, n)
    c0 = size / 3.0
    f = np.exp(-(((yy[None] - c0 - dy * t[:, None, None]) ** 2
                  + (xx[None] - c0 - dx * t[:, None, None]) ** 2) / (2 * sharp ** 2)))
    f = f[..., None]
    if rgb:
        f = np.concatenate([f, 0.6 * f, 1.0 - f], axis=-1)
    return np.clip(f, 0.0, 1.0)


def demo_views(*, n_frames: int = 8, size: int = 28) -> list[MorphView]:
    """Synthetic views for tests and demos: 2 domains x 2 drivers of a moving blob.

    Every view has distinct frames, alphas, L2 and p(target), so a page shows which view
    and frame it displays; the numbers are made up (no classifier involved).
    """
    views = []
    for di, domain in enumerate(("csp_phase", "pixel")):
        for ri, driver in enumerate(("standard", "robust")):
            f = _blob_frames(n_frames, size, dx=6.0 + 4 * di, dy=3.0 * ri, rgb=False,
                             sharp=2.5 + di)
            l2 = np.sqrt(((f - f[:1]) ** 2).sum(axis=(1, 2, 3)))
            alphas = np.linspace(0.0, 10.0 * (1 + di + 2 * ri), n_frames)
            p = 0.05 + 0.9 / (1 + np.exp(-(np.arange(n_frames) - 4.0 + di - ri)))
            ev = 0.02 + 0.6 * (p - p[0]) * (0.5 + 0.5 * ri)
            views.append(MorphView(
                pair="3 -> 8 (synthetic blob)", domain=domain, driver=driver, frames=f,
                alphas=alphas, l2=l2, p_target=p, source_image=f[0],
                caption=(f"**{domain} · {driver}**: a synthetic blob moving right; the "
                         "probabilities are made up for the demo."),
                evaluators={"ev_cnn": ev, "ccexam": f"{'8' if ri else '3'} (p=0.{7 + di})"},
                target_name="8", source_name="3",
                reached=np.arange(n_frames) < n_frames - (1 if di else 0),
                max_change=np.linspace(0, 1.5 + di, n_frames)))
    return views


def demo_page(path: PathLike, *, n_frames: int = 8, size: int = 28) -> Path:
    """Write a demo page built from :func:`demo_views` (2 domains x 2 drivers) plus a
    second RGB group, a table and a figure; return its path."""
    views = demo_views(n_frames=n_frames, size=size)
    rgb = _blob_frames(6, 64, dx=12.0, dy=8.0, rgb=True, sharp=7.0)
    l2 = np.sqrt(((rgb - rgb[:1]) ** 2).sum(axis=(1, 2, 3)))
    v2 = MorphView(pair="lynx <- cat (synthetic colour blob)", domain="csp_joint",
                   driver="standard", frames=rgb, alphas=np.arange(6.0), l2=l2,
                   p_target=np.linspace(0.01, 0.4, 6), source_image=rgb[0],
                   caption="Synthetic colour example; one domain and driver only.",
                   target_name="lynx", source_name="cat")
    rows = [{"domain": v.domain, "driver": v.driver, "L2 (last)": float(v.l2[-1]),
             "p(target) last": float(v.p_target[-1]), "frames": v.n_frames} for v in views]
    fig = np.concatenate([views[0].frames[0], views[0].frames[-1]], axis=1)
    return render_page(
        path, title="lens_jax report (synthetic demo)",
        groups=[MorphGroup(views, caption="Drag the slider or use the arrow keys; the "
                           "domain and driver buttons keep the frame."), [v2]],
        intro="A **synthetic** page: a blob moves right; nothing here comes from a "
              "classifier. See `lens_jax.report.render_page`.",
        tables=[("Last frame of each view", rows, "Numbers of the synthetic views.")],
        figures=[("First and last frame", fig, "Source (left) and last frame (right).")],
        details="## Details\n\nThe page is self-contained: images are `data:` URIs and a "
                "Content-Security-Policy forbids network access.",
        domain_labels={"csp_phase": "CSP phase", "pixel": "Pixel", "csp_joint": "Joint CSP"})
