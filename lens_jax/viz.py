"""Figures, GIFs and a small report page for morphs (matplotlib Agg + Pillow, no binaries).

Conventions:

* frames are floats in [0, 1], ``(n, H, W, C)`` with C = 1 or 3 (``(n, H, W)`` is greyscale);
  JAX arrays are accepted and copied to the host;
* every image panel uses one **shared, unnormalised** colour scale: frames are shown on
  [0, 1] (no per-frame rescaling), change heatmaps ``frame - source`` on one symmetric scale
  ``[-v, v]`` shared by all frames of a figure (``v`` = largest |change|, or ``diff_vmax`` to
  share it across figures);
* ``probs`` are per-frame class probabilities ``(n, n_classes)``; where only the target
  probability is at hand, ``(n,)`` is accepted too;
* figures are :class:`matplotlib.figure.Figure` objects with an Agg canvas, created without
  ``pyplot`` (no display, no global figure registry, nothing to close); pass ``path`` to
  save, which is atomic (:mod:`lens_jax._io`), format from the suffix (PNG by default);
* GIFs are written with Pillow, upscaled with nearest-neighbour and annotated per frame.
"""
from __future__ import annotations

import contextlib
import html
import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from lens_jax._io import atomic_write_bytes, atomic_write_text
from lens_jax import tables as _tables

__all__ = ["strip", "gif", "mp4", "prob_curves", "image_grid", "pyramid_figure",
           "markdown_table", "html_table", "report", "save_figure"]

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------- helpers
def plain_text(s: Any) -> Any:
    """Text for matplotlib shown as written: ``$`` escaped, so a class name such as
    ``"$5 bill"`` or ``"a $b"`` is never parsed as mathtext (an odd ``$`` would raise).

    >>> plain_text("$5 bill")
    '\\\\$5 bill'
    """
    return None if s is None else str(s).replace("\\$", "$").replace("$", r"\$")


_text = plain_text


def _unpack(frames: Any, probs: Any, target: Any, source: Any, alphas: Any) -> tuple:
    """``frames`` may be a :class:`lens_jax.Morph` (one morph): its frames, and its
    probabilities, target, source and alphas where the caller gave none."""
    if not (hasattr(frames, "frames") and hasattr(frames, "probs")
            and hasattr(frames, "alphas")):
        return frames, probs, target, source, alphas
    m = frames
    if m.frames is None:
        raise ValueError("this Morph kept no frames (keep_frames=False); morph again with "
                         "keep_frames=True to draw it")
    f = np.asarray(m.frames)
    if f.ndim != 4:
        raise ValueError(f"a batched Morph (frames {f.shape}); draw one morph: "
                         "jax.tree.map(lambda a: a[i], m)")
    return (f, m.probs if probs is None else probs,
            int(np.asarray(m.target)) if target is None else target,
            int(np.asarray(m.source)) if source is None else source,
            m.alphas if alphas is None else alphas)


def _frames_np(frames: Any) -> np.ndarray:
    """Frames as float64 ``(n, H, W, C)``; ``(n, H, W)`` becomes ``(n, H, W, 1)``."""
    f = np.asarray(frames, dtype=np.float64)
    if f.ndim == 3:
        f = f[..., None]
    if f.ndim != 4 or f.shape[-1] not in (1, 3):
        raise ValueError(f"frames must be (n, H, W, C) with C in (1, 3) or (n, H, W), "
                         f"got shape {f.shape}")
    return f


def _class_name(c: int, class_names: Sequence[str] | Mapping[int, str] | None) -> str:
    if class_names is None:
        return str(c)
    try:
        return str(class_names[c])
    except (KeyError, IndexError):
        return str(c)


def _prob_of(probs: np.ndarray | None, cls: int | None) -> np.ndarray | None:
    """Per-frame probability of ``cls`` from ``(n, K)`` probs; ``(n,)`` probs are p(target)."""
    if probs is None or cls is None:
        return None
    return probs[:, int(cls)] if probs.ndim == 2 else None


def _frame_labels(n: int, *, probs: Any, target: int | None, source: int | None,
                  alphas: Any, class_names: Any, greek: bool = True) -> list[list[str]]:
    """Lines of text per frame: "α=...", "p(target)=...", "p(source)=..."."""
    p = None if probs is None else np.asarray(probs, np.float64)
    if p is not None and (p.shape[0] != n or p.ndim not in (1, 2)):
        raise ValueError(f"probs must be (n={n}, n_classes) or (n,), got shape {p.shape}")
    a = None if alphas is None else np.asarray(alphas, np.float64).reshape(-1)
    if a is not None and a.shape[0] != n:
        raise ValueError(f"alphas must have {n} entries, got {a.shape[0]}")
    if p is not None and p.ndim == 1:
        pt = p
    else:
        pt = _prob_of(p, target)
    ps = _prob_of(p, source)
    sym = "α" if greek else "alpha"
    lines = []
    for i in range(n):
        li = [f"{sym}={a[i]:.3g}" if a is not None else f"#{i}"]
        if pt is not None:
            name = _class_name(target, class_names) if target is not None else "target"
            li.append(f"p({name})={pt[i]:.3f}")
        if ps is not None:
            li.append(f"p({_class_name(source, class_names)})={ps[i]:.3f}")
        lines.append(li)
    return lines


def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: PathLike, *, dpi: int = 150) -> Path:
    """Save ``fig`` atomically; the format comes from the suffix (no suffix: PNG)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _show(ax, img: np.ndarray, *, cmap: str | None, vmin: float, vmax: float):
    ax.set_xticks([])
    ax.set_yticks([])
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 3:  # RGB: matplotlib ignores the norm, so clip to the [0, 1] scale here
        img = np.clip((img - vmin) / (vmax - vmin), 0.0, 1.0)
        return ax.imshow(img, vmin=vmin, vmax=vmax, interpolation="nearest")
    return ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")


# ----------------------------------------------------------------------------- strip
def _change(f: np.ndarray, source_image, diff_vmax) -> tuple[np.ndarray, float]:
    """Per-frame change ``frame - source`` (channel mean) and its shared symmetric scale."""
    ref = f[0] if source_image is None else np.asarray(source_image, np.float64)
    ref = ref[..., None] if ref.ndim == 2 else ref
    if ref.shape != f.shape[1:]:
        raise ValueError(f"source_image {ref.shape} does not match frames {f.shape[1:]}")
    change = (f - ref).mean(axis=-1)
    v = float(diff_vmax) if diff_vmax is not None else float(np.max(np.abs(change)))
    return change, (v if v > 0 else 1.0)


def strip(frames: Any, *, probs: Any = None, target: int | None = None,
          source: int | None = None, alphas: Any = None,
          class_names: Sequence[str] | Mapping[int, str] | None = None,
          title: str | None = None, path: PathLike | None = None, ncols: int | None = None,
          diff: bool = False, source_image: Any = None, diff_vmax: float | None = None,
          cmap: str = "gray", diff_cmap: str = "RdBu_r", panel_size: float = 1.6,
          dpi: int = 150) -> Figure:
    """A row (or grid) of morph frames with α and p(target) under each.

    All frames share the colour scale [0, 1] (``vmin=0, vmax=1``; no per-frame
    normalisation). With ``diff=True`` each row of frames gets a row of change heatmaps
    ``frame - source_image`` beneath it (channel mean for RGB) on one symmetric scale
    ``[-v, v]`` shared by all frames, ``v = diff_vmax`` or the largest |change|, with one
    colour bar.

    Args:
      frames: ``(n, H, W, C)`` or ``(n, H, W)`` in [0, 1], or a :class:`lens_jax.Morph`
        (its probabilities, target, source and alphas are used where not given).
      probs: ``(n, n_classes)`` probabilities (or ``(n,)`` target probabilities).
      target: target class (label "p(<name>)=").
      source: source class; adds a "p(<source name>)=" line.
      alphas: ``(n,)`` amplification per frame (labels "α=..."; else "#i").
      class_names: names indexed by class.
      title: figure title.
      path: save there (atomic) when given.
      ncols: frames per row (default: all in one row).
      diff: add the change-heatmap rows.
      source_image: reference for the change (default: ``frames[0]``, the α = 0 frame).
      diff_vmax: fixed half-range of the change scale (to compare figures).

    Returns:
      The Figure.
    """
    frames, probs, target, source, alphas = _unpack(frames, probs, target, source, alphas)
    f = _frames_np(frames)
    n = f.shape[0]
    ncols = n if ncols is None else max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    labels = _frame_labels(n, probs=probs, target=target, source=source, alphas=alphas,
                           class_names=class_names)
    per = 2 if diff else 1
    n_lines = max(len(li) for li in labels)
    fig = _new_figure((panel_size * ncols + (0.8 if diff else 0.2),
                       per * nrows * panel_size + nrows * 0.17 * n_lines + (0.3 if title else 0)))
    axes = np.asarray(fig.subplots(per * nrows, ncols, squeeze=False))
    if diff:
        change, v = _change(f, source_image, diff_vmax)
    diff_ims = []
    for i in range(nrows * ncols):
        r, c = divmod(i, ncols)
        ax = axes[per * r, c]
        if i >= n:
            ax.set_axis_off()
            if diff:
                axes[per * r + 1, c].set_axis_off()
            continue
        _show(ax, f[i], cmap=cmap, vmin=0.0, vmax=1.0)
        ax.set_xlabel(_text("\n".join(labels[i])), fontsize=8)
        if diff:
            dax = axes[per * r + 1, c]
            diff_ims.append(_show(dax, change[i], cmap=diff_cmap, vmin=-v, vmax=v))
            if c == 0:
                dax.set_ylabel("change", fontsize=8)
    if diff_ims:
        cb = fig.colorbar(diff_ims[0], ax=axes[1::2, :].ravel().tolist(), shrink=0.9,
                          pad=0.01)
        cb.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(_text(title), fontsize=10)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


# ----------------------------------------------------------------------------- GIF
def _font(size: int) -> tuple[ImageFont.ImageFont | ImageFont.FreeTypeFont, bool]:
    """DejaVu Sans from matplotlib's data (has α); else Pillow's default font, no Greek."""
    try:
        ttf = Path(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
        return ImageFont.truetype(str(ttf), size), True
    except OSError:
        return ImageFont.load_default(), False


def _to_uint8(f: np.ndarray) -> np.ndarray:
    return (np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def gif(frames: Any, path: PathLike, *, probs: Any = None, target: int | None = None,
        source: int | None = None, alphas: Any = None,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        duration_ms: int | Sequence[int] = 250, scale: int | None = None,
        boomerang: bool = True, loop: int = 0, annotate: bool = True, diff: bool = False,
        source_image: Any = None, diff_vmax: float | None = None,
        diff_cmap: str = "RdBu_r") -> Path:
    """Animated GIF of a morph with α and p(target) written under every frame.

    Frames are shown on [0, 1] (clipped, no normalisation), upscaled by ``scale`` with
    nearest-neighbour (default ``max(1, 224 // max(H, W))``: 28x28 -> x8, 64x64 -> x3), and
    a black band with the text is added below each frame. With ``diff=True`` the change
    heatmap ``frame - source_image`` (channel mean; default reference ``frames[0]``) is shown
    to the right of each frame in ``diff_cmap`` on one symmetric scale ``[-v, v]`` for all
    frames (``v = diff_vmax`` or the largest |change|; white = no change). With
    ``boomerang`` the sequence plays forward then backward without repeating its ends:
    ``n`` frames become ``2n - 2`` (``n > 2``). (Pillow merges consecutive identical
    frames into one longer frame; annotated frames always differ by their α/index text.)

    Args:
      frames: ``(n, H, W, C)`` or ``(n, H, W)`` in [0, 1], or a :class:`lens_jax.Morph`.
      path: output file (written atomically).
      probs, target, source, alphas, class_names: as in :func:`strip`.
      duration_ms: display time per frame (or one per frame of the played sequence).
      scale: integer upscaling factor.
      boomerang: forward-backward loop.
      loop: GIF loop count (0 = forever).
      annotate: draw the text band.

    Returns:
      ``path`` as a Path.
    """
    ims = _annotated_frames(frames, probs=probs, target=target, source=source,
                            alphas=alphas, class_names=class_names, scale=scale,
                            annotate=annotate, diff=diff, source_image=source_image,
                            diff_vmax=diff_vmax, diff_cmap=diff_cmap)
    if boomerang and len(ims) > 2:
        ims = ims + ims[-2:0:-1]
    durations = duration_ms if isinstance(duration_ms, int) else list(duration_ms)
    if not isinstance(durations, int) and len(durations) != len(ims):
        raise ValueError(f"duration_ms needs {len(ims)} entries, got {len(durations)}")
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:],
                duration=durations, loop=loop, optimize=False, disposal=1)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _annotated_frames(frames: Any, *, probs: Any, target: Any, source: Any, alphas: Any,
                      class_names: Any, scale: int | None, annotate: bool, diff: bool,
                      source_image: Any, diff_vmax: float | None, diff_cmap: str,
                      even: bool = False) -> list:
    """The frames of :func:`gif`/:func:`mp4` as Pillow images (upscaled, text band,
    change heatmap); ``even`` pads to even sides (H.264 needs them)."""
    frames, probs, target, source, alphas = _unpack(frames, probs, target, source, alphas)
    f = _frames_np(frames)
    n, h, w, c = f.shape
    s = max(1, 224 // max(h, w)) if scale is None else int(scale)
    if s < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    W, H = w * s, h * s
    font_size = int(np.clip(W // 16, 10, 16))
    font, greek = _font(font_size)
    labels = _frame_labels(n, probs=probs, target=target, source=source, alphas=alphas,
                           class_names=class_names, greek=greek) if annotate else None
    mode = "L" if c == 1 and not diff else "RGB"
    line_h = font_size + 4
    band = (max(len(li) for li in labels) * line_h + 4) if annotate else 0
    if diff:
        change, v = _change(f, source_image, diff_vmax)
        cmap = matplotlib.colormaps[diff_cmap]
    ims = []
    for i in range(n):
        arr = _to_uint8(f[i])
        arr = arr[..., 0] if c == 1 else arr
        img = Image.fromarray(arr).convert(mode).resize((W, H), Image.Resampling.NEAREST)
        canvas = Image.new(mode, ((2 * W + s) if diff else W, H + band), 0)
        canvas.paste(img, (0, 0))
        if diff:
            rgb = cmap(np.clip(0.5 + 0.5 * change[i] / v, 0.0, 1.0))[..., :3]
            heat = Image.fromarray(_to_uint8(rgb)).resize((W, H), Image.Resampling.NEAREST)
            canvas.paste(heat, (W + s, 0))
        if annotate:
            draw = ImageDraw.Draw(canvas)
            fill = 255 if mode == "L" else (255, 255, 255)
            for j, text in enumerate(labels[i]):
                draw.text((3, H + 2 + j * line_h), text, fill=fill, font=font)
        if even and (canvas.width % 2 or canvas.height % 2):
            padded = Image.new(mode, (canvas.width + canvas.width % 2,
                                      canvas.height + canvas.height % 2), 0)
            padded.paste(canvas, (0, 0))
            canvas = padded
        ims.append(canvas)
    return ims


def mp4(frames: Any, path: PathLike, *, fps: float = 4.0, probs: Any = None,
        target: int | None = None, source: int | None = None, alphas: Any = None,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        scale: int | None = None, boomerang: bool = True, annotate: bool = True,
        diff: bool = False, source_image: Any = None, diff_vmax: float | None = None,
        diff_cmap: str = "RdBu_r", quality: float = 7.0) -> Path:
    """An MP4 (H.264) of a morph: the frames of :func:`gif` (same options) at ``fps``.

    Uses the ffmpeg binary shipped in the ``imageio-ffmpeg`` wheel (``pip install
    imageio-ffmpeg``; nothing else to install).  ``quality`` 0..10 maps to x264's CRF
    ``51 - 5.1 * quality`` (7: CRF 15).  Written to a temporary file beside ``path`` and
    renamed (atomic).

    Raises:
      ImportError: ``imageio-ffmpeg`` is not installed (the message says how).
    """
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ImportError("viz.mp4 needs the ffmpeg that ships in the imageio-ffmpeg wheel: "
                          "pip install imageio-ffmpeg (or write a GIF with viz.gif)") from None
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    ims = _annotated_frames(frames, probs=probs, target=target, source=source, alphas=alphas,
                            class_names=class_names, scale=scale, annotate=annotate,
                            diff=diff, source_image=source_image, diff_vmax=diff_vmax,
                            diff_cmap=diff_cmap, even=True)
    if boomerang and len(ims) > 2:
        ims = ims + ims[-2:0:-1]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import subprocess
    import tempfile
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".mp4", dir=path.parent)
    os.close(fd)
    w, h = ims[0].size
    raw = b"".join(np.ascontiguousarray(np.asarray(im.convert("RGB"), np.uint8)).tobytes()
                   for im in ims)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
           "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{float(fps):g}", "-i", "-",
           "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf",
           str(int(round(51 - 5.1 * float(quality)))), "-f", "mp4", tmp]
    try:
        done = subprocess.run(cmd, input=raw, capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ffmpeg could not write {path}: "
                               + done.stderr.decode(errors="replace").strip()[-300:])
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


# ----------------------------------------------------------------------------- curves
def prob_curves(x: Any, curves: Mapping[str, Any], *, target: int,
                source: int | None = None, path: PathLike | None = None,
                xlabel: str = "α", class_names: Sequence[str] | Mapping[int, str] | None = None,
                title: str | None = None, logy: bool = False,
                budgets: Sequence[float] = (), dpi: int = 150) -> Figure:
    """p(target) (solid) and p(source) (dashed) along the morph, several methods on one axes.

    Args:
      x: the abscissa, shared ``(n,)`` (α) or a mapping method -> ``(n_m,)`` (e.g. each
        method's L2 distances, which differ between domains).
      curves: method -> probabilities ``(n_m, n_classes)``; ``(n_m,)`` is taken as p(target)
        (no source curve then).
      target, source: classes to plot.
      xlabel: axis label ("α", "L2 distance", ...).
      logy: log-scale probabilities (else [0, 1]).
      budgets: x positions to mark with vertical dotted lines (e.g. L2 budgets).

    Returns:
      The Figure.
    """
    fig = _new_figure((5.2, 3.4))
    ax = fig.add_subplot()
    tname = _class_name(target, class_names)
    sname = None if source is None else _class_name(source, class_names)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, p) in enumerate(curves.items()):
        p = np.asarray(p, np.float64)
        xs = np.asarray(x[name] if isinstance(x, Mapping) else x, np.float64).reshape(-1)
        if p.shape[0] != xs.shape[0]:
            raise ValueError(f"{name!r}: {p.shape[0]} probabilities for {xs.shape[0]} x values")
        col = colours[k % len(colours)]
        pt = p if p.ndim == 1 else p[:, target]
        ax.plot(xs, pt, "-o", color=col, ms=3, label=_text(f"{name}: p({tname})"))
        if source is not None and p.ndim == 2:
            ax.plot(xs, p[:, source], "--", color=col, lw=1,
                    label=_text(f"{name}: p({sname})"))
    for b in budgets:
        ax.axvline(b, color="0.5", ls=":", lw=1)
    if logy:
        ax.set_yscale("log")
    else:
        ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(_text(xlabel))
    ax.set_ylabel("probability")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if title:
        ax.set_title(_text(title), fontsize=10)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


# ----------------------------------------------------------------------------- grids
def _panel_grid(panels: list[dict], *, ncols: int, suptitle: str | None,
                panel_size: float, colorbar: bool) -> Figure:
    n = len(panels)
    nrows = math.ceil(n / ncols)
    fig = _new_figure((panel_size * ncols + (0.6 * ncols if colorbar else 0),
                       panel_size * nrows + 0.3 * nrows + (0.3 if suptitle else 0)))
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.set_axis_off()
            continue
        p = panels[i]
        im = _show(ax, p["img"], cmap=p["cmap"], vmin=p["vmin"], vmax=p["vmax"])
        if p.get("title"):
            ax.set_title(_text(p["title"]), fontsize=8)
        if colorbar and p["img"].ndim == 2:
            cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
            cb.ax.tick_params(labelsize=6)
    if suptitle:
        fig.suptitle(_text(suptitle), fontsize=10)
    return fig


def _range(img: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    lo = float(np.nanmin(img)) if vmin is None else float(vmin)
    hi = float(np.nanmax(img)) if vmax is None else float(vmax)
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def image_grid(images: Sequence[Any], *, titles: Sequence[str] | None = None,
               path: PathLike | None = None, cmap: str = "gray", ncols: int | None = None,
               vmin: float | None = None, vmax: float | None = None, share_scale: bool = False,
               colorbar: bool = True, suptitle: str | None = None, panel_size: float = 2.0,
               dpi: int = 150) -> Figure:
    """Tile 2-D images (or ``(H, W, 3)`` RGB) with titles, e.g. pyramid amplitudes/phases.

    Colour scale: fixed ``vmin``/``vmax`` when given; else one common range over all images
    with ``share_scale=True``; else each image's own range (bands of a pyramid differ by
    orders of magnitude). Every 2-D panel gets its colour bar when ``colorbar``.
    """
    imgs = [np.asarray(im, np.float64) for im in images]
    if not imgs:
        raise ValueError("image_grid needs at least one image")
    if titles is not None and len(titles) != len(imgs):
        raise ValueError(f"{len(titles)} titles for {len(imgs)} images")
    if share_scale:
        lo, hi = _range(np.concatenate([im.ravel() for im in imgs]), vmin, vmax)
    panels = []
    for i, im in enumerate(imgs):
        a, b = (lo, hi) if share_scale else _range(im, vmin, vmax)
        panels.append({"img": im, "title": None if titles is None else titles[i],
                       "cmap": cmap, "vmin": a, "vmax": b})
    ncols = len(imgs) if ncols is None else max(1, int(ncols))
    fig = _panel_grid(panels, ncols=ncols, suptitle=suptitle, panel_size=panel_size,
                      colorbar=colorbar)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


def pyramid_figure(bands: Sequence[Any], *, titles: Sequence[str] | None = None,
                   path: PathLike | None = None, amplitude_cmap: str = "viridis",
                   phase_cmap: str = "twilight", share_amplitude_scale: bool = False,
                   suptitle: str | None = None, panel_size: float = 1.8,
                   dpi: int = 150) -> Figure:
    """Amplitude (top row) and phase (bottom row) of complex 2-D bands, one column each.

    Generic: takes any list of 2-D arrays (e.g. the bands of a complex steerable pyramid, in
    whatever order the caller lists them). Complex bands show ``|c|`` (own range, or one
    shared range with ``share_amplitude_scale``) and ``arg c`` on the fixed cyclic scale
    ``[-π, π]``; real arrays (residuals) show their values on the amplitude row and leave the
    phase panel empty.
    """
    arrs = [np.asarray(b) for b in bands]
    if not arrs or any(a.ndim != 2 for a in arrs):
        raise ValueError("pyramid_figure needs a non-empty list of 2-D arrays")
    n = len(arrs)
    titles = [f"band {i}" for i in range(n)] if titles is None else list(titles)
    if len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} bands")
    amps = [np.abs(a).astype(np.float64) if np.iscomplexobj(a) else a.astype(np.float64)
            for a in arrs]
    if share_amplitude_scale:
        lo, hi = _range(np.concatenate([a.ravel() for a in amps]), None, None)
    fig = _new_figure((panel_size * n + 0.6 * n, 2 * panel_size + 0.9 + (0.3 if suptitle else 0)))
    axes = np.asarray(fig.subplots(2, n, squeeze=False))
    for i, (a, amp) in enumerate(zip(arrs, amps)):
        cplx = np.iscomplexobj(a)
        vmin, vmax = (lo, hi) if share_amplitude_scale else _range(amp, None, None)
        im = _show(axes[0, i], amp, cmap=amplitude_cmap if cplx else "gray",
                   vmin=vmin, vmax=vmax)
        axes[0, i].set_title(_text(f"{titles[i]} |c|" if cplx else titles[i]), fontsize=8)
        fig.colorbar(im, ax=axes[0, i], shrink=0.8, pad=0.02).ax.tick_params(labelsize=6)
        if cplx:
            im = _show(axes[1, i], np.angle(a), cmap=phase_cmap, vmin=-np.pi, vmax=np.pi)
            axes[1, i].set_title(_text(f"{titles[i]} arg c"), fontsize=8)
            cb = fig.colorbar(im, ax=axes[1, i], shrink=0.8, pad=0.02, ticks=[-np.pi, 0, np.pi])
            cb.ax.set_yticklabels(["-π", "0", "π"], fontsize=6)
        else:
            axes[1, i].set_axis_off()
    if suptitle:
        fig.suptitle(_text(suptitle), fontsize=10)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


# ----------------------------------------------------------------------------- tables
def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    return cols


def markdown_table(rows: Sequence[Mapping[str, Any]], *,
                   columns: Sequence[str] | None = None, floatfmt: str = ".4g") -> str:
    """:func:`lens_jax.tables.markdown_table` ending with a newline.

    >>> print(markdown_table([{"method": "pixel", "E": 0.382}]), end="")
    | method | E |
    |---|---:|
    | pixel | 0.382 |
    """
    text = _tables.markdown_table(rows, columns=columns, floatfmt=floatfmt)
    return text + "\n" if text else ""


html_table = _tables.html_table


# ----------------------------------------------------------------------------- report
def _rel(p: PathLike, out_dir: Path) -> str:
    p = Path(p)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return os.path.relpath(p.resolve(), out_dir.resolve()).replace(os.sep, "/")


_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "img{max-width:100%;image-rendering:pixelated}figure{display:inline-block;margin:.5em}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:2px 8px}"
        "th{background:#eee}")


def report(out_dir: PathLike, sections: Sequence[Mapping[str, Any]], *,
           title: str = "lens_jax report", floatfmt: str = ".4g") -> tuple[Path, Path]:
    """Write ``index.md`` and ``index.html`` in ``out_dir`` (atomically).

    Each section is a mapping with optional keys:

    * ``"title"``: heading;
    * ``"text"``: paragraph text (markdown is kept as is in ``index.md``; escaped in HTML,
      blank lines separate paragraphs);
    * ``"figures"``: paths of images/GIFs (relative to ``out_dir``, or absolute: linked
      relative to ``out_dir``), or ``(path, caption)`` pairs; embedded in both files;
    * ``"table"``: list of dicts, with ``"columns"`` to choose and order columns.

    Returns:
      ``(index.md path, index.html path)``.
    """
    out = Path(out_dir)
    md = [f"# {title}", ""]
    ht = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">',
          f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style></head><body>",
          f"<h1>{html.escape(title)}</h1>"]
    for sec in sections:
        unknown = set(sec) - {"title", "text", "figures", "table", "columns"}
        if unknown:
            raise ValueError(f"unknown section keys {sorted(unknown)}")
        if sec.get("title"):
            md += [f"## {sec['title']}", ""]
            ht.append(f"<h2>{html.escape(str(sec['title']))}</h2>")
        if sec.get("text"):
            text = str(sec["text"]).strip()
            md += [text, ""]
            for para in text.split("\n\n"):
                ht.append(f"<p>{html.escape(para)}</p>")
        figs = sec.get("figures") or []
        for item in figs:
            fpath, cap = (item if isinstance(item, (tuple, list)) else (item, None))
            rel = _rel(fpath, out)
            alt = cap or Path(fpath).name
            md.append(f"![{alt}]({rel})" + (f"  \n*{cap}*" if cap else ""))
            ht.append(f'<figure><img src="{html.escape(rel, quote=True)}" '
                      f'alt="{html.escape(str(alt), quote=True)}">'
                      + (f"<figcaption>{html.escape(str(cap))}</figcaption>" if cap else "")
                      + "</figure>")
        if figs:
            md.append("")
        if sec.get("table") is not None:
            md += [markdown_table(sec["table"], columns=sec.get("columns"), floatfmt=floatfmt)]
            ht.append(html_table(sec["table"], columns=sec.get("columns"), floatfmt=floatfmt))
    ht.append("</body></html>")
    md_path, html_path = out / "index.md", out / "index.html"
    atomic_write_text(md_path, "\n".join(md).rstrip("\n") + "\n")
    atomic_write_text(html_path, "\n".join(ht) + "\n")
    return md_path, html_path


def endpoint_grid(rows: Sequence[tuple[str, Sequence[tuple[str, Any, str]]]], path: PathLike,
                  *, source: Any, source_title: str = "source", suptitle: str | None = None,
                  panel_size: float = 1.35, dpi: int = 150) -> Path:
    """Endpoints side by side: one row per ``(row_label, [(column_title, image, caption)])``,
    the source in the first column of every row; captions go under each panel.  Grey
    images share the [0, 1] scale (no per-panel stretch, so faint edits look faint)."""
    if not rows:
        raise ValueError("endpoint_grid needs at least one row")
    ncols = 1 + max(len(r[1]) for r in rows)
    fig = _new_figure((panel_size * ncols + 0.9, (panel_size + 0.55) * len(rows)
                       + (0.35 if suptitle else 0)))
    axes = np.asarray(fig.subplots(len(rows), ncols, squeeze=False))
    src = np.asarray(source, np.float64)
    for r, (label, cells) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                img, title, cap = src, source_title, ""
                ax.set_ylabel(_text(label), fontsize=7)
            elif c - 1 < len(cells):
                title, img, cap = cells[c - 1]
            else:
                ax.set_axis_off()
                continue
            img = np.asarray(img, np.float64)
            img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
            ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None,
                      vmin=0.0, vmax=1.0, interpolation="nearest")
            if r == 0 or c > 0:
                ax.set_title(_text(title) if r == 0 else "", fontsize=7)
            if cap:
                ax.set_xlabel(_text(cap), fontsize=6)
    if suptitle:
        fig.suptitle(_text(suptitle), fontsize=9)
    import warnings
    with warnings.catch_warnings():       # suptitle/labels: tight_layout warns, still fits
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)
