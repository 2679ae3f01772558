"""The static parts of a :mod:`lens_jax.report` page: HTML tables of result rows and the
inline SVG plot of p(target) against the L2 distance to the source (strings only; NumPy and
the standard library)."""
from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .tables import html_table

if TYPE_CHECKING:
    from lens_jax.report import MorphGroup


# ----------------------------------------------------------------------------- tables
def table_html(rows: Sequence[Mapping[str, Any]], floatfmt: str) -> str:
    """A result table for the page (:func:`lens_jax.tables.html_table`, numeric columns
    marked ``class=num``) in its scrolling wrapper."""
    return ('<div class="lj-table">' + html_table(rows, floatfmt=floatfmt, numeric_class="num")
            + "</div>")


# ----------------------------------------------------------------------------- plot
def nice_max(x: float) -> float:
    """Smallest of 1, 2, 2.5, 5 x 10^k at or above ``x`` (> 0)."""
    if x <= 0:
        return 1.0
    e = 10.0 ** math.floor(math.log10(x))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * e >= x * (1 - 1e-12):
            return m * e
    return 10.0 * e


def _ticks(vmax: float) -> list[float]:
    """Ticks 0, s, 2s, ... <= vmax with a 1/2/2.5/5 x 10^k step giving at most 6 intervals."""
    for k in range(-12, 12):
        for m in (1.0, 2.0, 2.5, 5.0):
            step = m * 10.0 ** k
            if vmax / step <= 6 + 1e-9:
                n = int(math.floor(vmax / step + 1e-9))
                return [round(i * step, 12) for i in range(n + 1)]
    return [0.0, vmax]


def _fmt_tick(v: float) -> str:
    return format(v, ".3g")


#: Plot geometry (SVG user units); also written into each viewer's JSON.
PLOT = {"width": 420, "height": 270, "left": 48, "right": 14, "top": 14, "bottom": 40}


def svg_plot(group: MorphGroup, xmax: float, colors: Mapping[str, str]) -> str:
    W, H = PLOT["width"], PLOT["height"]
    x0, x1 = PLOT["left"], W - PLOT["right"]
    y0, y1 = H - PLOT["bottom"], PLOT["top"]      # y0: p = 0 (bottom), y1: p = 1 (top)

    def sx(v: float) -> float:
        return x0 + (x1 - x0) * v / xmax

    def sy(p: float) -> float:
        return y0 + (y1 - y0) * p

    parts = [f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
             f'aria-label="p(target) against L2 distance to the source" '
             f'data-role="plot" xmlns="http://www.w3.org/2000/svg">']
    for t in _ticks(xmax):
        x = sx(t)
        parts.append(f'<line class="grid" x1="{x:.2f}" x2="{x:.2f}" y1="{y1}" y2="{y0}"/>'
                     f'<text class="tick" x="{x:.2f}" y="{y0 + 15}" text-anchor="middle">'
                     f"{_fmt_tick(t)}</text>")
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = sy(t)
        parts.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y:.2f}" y2="{y:.2f}"/>'
                     f'<text class="tick" x="{x0 - 6}" y="{y + 4:.2f}" text-anchor="end">'
                     f"{_fmt_tick(t)}</text>")
    parts.append(f'<rect class="frame" x="{x0}" y="{y1}" width="{x1 - x0}" '
                 f'height="{y0 - y1}"/>')
    parts.append(f'<text class="label" x="{(x0 + x1) / 2}" y="{H - 6}" text-anchor="middle">'
                 "L2 distance to the source</text>")
    parts.append(f'<text class="label" data-role="ylabel" transform="rotate(-90)" '
                 f'x="{-(y0 + y1) / 2}" y="13" text-anchor="middle">p(target)</text>')
    for k, v in enumerate(group.views):
        pts = " ".join(f"{sx(a):.2f},{sy(b):.2f}" for a, b in zip(v.l2, v.p_target))
        parts.append(f'<polyline class="curve" data-view="{k}" points="{pts}" '
                     f'style="--c:{colors[v.domain]}"><title>{html.escape(v.domain)} · '
                     f"{html.escape(v.driver)}</title></polyline>")
        for name, val in v.evaluators.items():
            if isinstance(val, np.ndarray):
                pts = " ".join(f"{sx(a):.2f},{sy(b):.2f}" for a, b in zip(v.l2, val))
                parts.append(f'<polyline class="ev" data-view="{k}" points="{pts}" '
                             f'style="--c:{colors[v.domain]}"><title>{html.escape(name)}'
                             "</title></polyline>")
    parts.append(f'<line class="cursor" data-role="cursor" x1="{x0}" x2="{x0}" y1="{y1}" '
                 f'y2="{y0}"/><circle class="dot" data-role="dot" cx="{x0}" cy="{y0}" r="5"/>')
    parts.append("</svg>")
    return "".join(parts)
