"""Compare edit domains on one image at a matched image-space L2 budget.

Equal amplification is not equal image change: a pixel step, a Fourier
phase step and a steerable-pyramid phase step of the same ``alpha`` move an image by very
different amounts. :func:`compare_domains` therefore morphs the image in every domain with
``l2_budget=B``: each domain's ``n_frames`` frames run from the source to the frame at
L2 distance ``B`` (``alpha_n = n * alpha* / (n_frames - 1)``), so the domains are compared
at the same image change, never at raw ``alpha``.

For every domain it reports, at the endpoint: whether the budget was reached, ``alpha*``,
the driver's p(target) and p(source) and prediction, L2 / PSNR / SSIM, the warp-explained
energy E (warp only and warp + gain, :func:`lens_jax.metrics.warp_explained_energy`), the
best-fit global translation of the source (:func:`lens_jax.metrics.best_translation`) and,
given independent ``evaluators``, whether they predict the target (transfer). With
``out_dir`` it also writes a strip and a GIF per domain, one combined figure (a row per
domain) and a probability-versus-L2 plot of all domains; change heatmaps share one
colour scale across all domains.

>>> import jax.numpy as jnp
>>> from lens_jax.compare import compare_domains
>>> f = lambda x: jnp.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], -1)
>>> rows = compare_domains(f, jnp.full((32, 32), 0.5), target=1, l2_budget=0.5,
...                           domains=("pixel",), n_frames=3, warp=False, verbose=False)
>>> rows[0]["domain"], round(rows[0]["l2"], 3)
('pixel', 0.5)
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Sequence

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import metrics as _metrics
from . import viz as _viz
from .checks import check_count
from .domains import (DOMAINS, PROTOCOL_DOMAINS, REGISTRY, Domain, RegistryView,
                      domain_names)
from .lens import Morph, morph

__all__ = ["compare_domains", "morph_figure", "COMPARE_DOMAINS", "DOMAIN_LABELS", "ROW_COLUMNS"]

#: The four comparators of the follow-up protocol (pixel, Fourier phase, CSP phase and
#: joint CSP phase + amplitude, at matched image-space L2 budgets).
COMPARE_DOMAINS = PROTOCOL_DOMAINS      # the protocol's four (one constant, in domains)


#: Human-readable names for figures and tables (each registry entry's ``label``).
DOMAIN_LABELS = RegistryView("label")

#: The numeric/text columns of a row (figure paths and evaluator columns come after).
ROW_COLUMNS = ("name", "domain", "mode", "budget", "reached", "alpha_star", "max_change",
               "wrapped",
               "p_target_0",
               "p_target", "p_source", "pred", "pred_name", "flip_frame", "l2", "psnr",
               "ssim", "E_warp", "E_warp_gain", "shift_dy", "shift_dx", "shift_explained",
               "time_s")


def _name(c: int, class_names) -> str:
    if class_names is None:
        return str(int(c))
    try:
        return str(class_names[int(c)])
    except (IndexError, KeyError, TypeError):
        return str(int(c))


def _short(c: int, class_names) -> str:
    """First synonym of an ImageNet-style name ("lynx, catamount" -> "lynx")."""
    return _name(c, class_names).split(",")[0]


def _as_image(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C); got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"image must be float in [0, 1]; got dtype {a.dtype}")
    return a


def _f(x) -> float:
    return float(np.asarray(x))


def compare_domains(logits_fn: Any, image, *, target: int, source: int | None = None,
                    domains: Sequence[str] = COMPARE_DOMAINS, l2_budget: float = 2.0,
                    n_frames: int = 12, mode: str = "fixed", color: str = "luminance",
                    loss: str = "nll", pyramid=None, chunk_size: int | None = None,
                    class_names: Sequence[str] | Mapping[int, str] | None = None,
                    evaluators: Mapping[str, Any] | None = None,
                    out_dir: str | Path | None = None, name: str = "morph",
                    title: str | None = None, warp: bool = True, warp_steps: int = 200,
                    max_shift: int = 4, gif: bool = True, show_frames: int = 8,
                    return_morphs: bool = False, verbose: bool = True):
    """Morph ``image`` toward ``target`` in several domains at one matched L2 budget.

    Args:
      logits_fn: the driver (differentiated), in any form :func:`lens_jax.morph` takes:
        ``logits_fn(images)`` ``(N, H, W, C)`` in [0, 1] -> ``(N, K)``, ``(apply_fn,
        params)``, a flax ``nnx.Module``, a linen ``(module.apply, variables)``.
      image: ``(H, W)`` or ``(H, W, C)`` float in [0, 1].
      target: target class; ``source``: source class (default: the driver's prediction).
      domains: edit domains to compare: registry names (:data:`lens_jax.DOMAINS`) or
        :class:`lens_jax.Domain` values (for options).
      l2_budget: the matched image-space budget ``B`` (L2 over all pixels and channels on
        the [0, 1] scale; budgets of 1 and 2 suit 28x28 MNIST digits).
      n_frames: frames per morph, from the source (frame 0) to the frame at distance ``B``.
      mode: ``"fixed"`` (one gradient, the method), ``"live"`` or ``"live_local"``.
      color, loss, pyramid, chunk_size: passed to :func:`lens_jax.morph`.
      class_names: names indexed by class, for labels.
      evaluators: independent classifiers (any form :func:`lens_jax.metrics.transfer`
        takes, batched; never differentiated); adds ``{name}_pred``, ``{name}_p_target`` and
        ``{name}_is_target`` of the endpoint to every row.
      out_dir: write figures there (created); None writes nothing.
      name: file-name prefix (``{name}_{domain}_strip.png``, ``{name}_{domain}.gif``,
        ``{name}_domains.png``, ``{name}_prob_vs_l2.png``).
      title: figure title prefix (default: "source -> target").
      warp: fit the warp-explained energy (two small optimisations per domain).
      warp_steps: Adam steps of each warp fit.
      max_shift: search radius (pixels) of the best-fit translation.
      gif: write one GIF per domain (with ``out_dir``).
      show_frames: frames per row in the combined figure (evenly spaced, ends kept).
      return_morphs: also return ``{domain: Morph}``.
      verbose: print one progress line per domain.

    Returns:
      A list of rows (dicts), one per domain, with the columns of :data:`ROW_COLUMNS`
      (``E_*`` are NaN with ``warp=False``; ``flip_frame`` is the first frame the driver
      classifies as the target, -1 if none; ``shift_*`` in pixels, content moves by
      ``+shift``; ``max_change`` is the final frame's largest |edit|; ``wrapped`` the
      fraction of its coefficients whose phase moved by more than pi, NaN for domains
      without a phase), the evaluator columns, and with ``out_dir`` the paths ``strip``,
      ``gif``, ``figure`` (combined) and ``curves`` (probability vs L2). With
      ``return_morphs``: ``(rows, morphs)``.

    Raises:
      ValueError: bad image, non-positive budget, unknown domain (and everything
        :func:`lens_jax.morph` rejects).
    """
    img = _as_image(image)
    B = float(l2_budget)
    if not (math.isfinite(B) and B > 0):
        raise ValueError(f"l2_budget must be a positive number; got {l2_budget!r}")
    domains = tuple(domains)
    if not domains:
        raise ValueError("domains is empty")
    bad = [d for d in domains if (d.name if isinstance(d, Domain) else d) not in DOMAINS]
    if bad:
        raise ValueError(f"unknown domain(s) {bad}; choose from {domain_names()}")
    names = [d.name if isinstance(d, Domain) else d for d in domains]
    if len(set(names)) != len(names):
        raise ValueError(f"domains has duplicates: {names}")
    n_frames = check_count("n_frames", n_frames, minimum=2)    # source and endpoint
    evaluators = dict(evaluators or {})
    src_img = img.astype(np.float32) if img.dtype != np.float64 else img

    morphs: dict[str, Morph] = {}
    rows: list[dict] = []
    for dom in domains:
        d = dom.name if isinstance(dom, Domain) else dom
        t0 = time.perf_counter()
        uses_pyr = not isinstance(dom, Domain) and REGISTRY[d].uses_pyramid
        m = morph(logits_fn, src_img, target=int(target), source=source, domain=dom,
                  mode=mode, color=color, loss=loss, pyramid=pyramid if uses_pyr else None,
                  l2_budget=B, n_frames=int(n_frames), chunk_size=chunk_size)
        m = jax.tree.map(np.asarray, jax.block_until_ready(m))
        morphs[d] = m
        frames, probs = m.frames, m.probs
        end = frames[-1]
        t, s = int(m.target), int(m.source)
        row: dict[str, Any] = {
            "name": name, "domain": d, "mode": mode, "budget": B,
            "reached": bool(np.all(m.reached)), "alpha_star": _f(m.alphas[-1]),
            "max_change": _f(m.max_change[-1]), "wrapped": _f(m.wrapped[-1]),
            "p_target_0": _f(probs[0, t]), "p_target": _f(probs[-1, t]),
            "p_source": _f(probs[-1, s]), "pred": int(np.argmax(probs[-1])),
            "pred_name": _short(int(np.argmax(probs[-1])), class_names),
            "flip_frame": int(_metrics.flip_index(probs, target=t)),
            "l2": _f(m.l2[-1]), "psnr": _f(_metrics.psnr(end, src_img)),
            "ssim": (_f(_metrics.ssim(end, src_img)) if min(img.shape[:2]) >= 11
                     else math.nan),
        }
        if warp:
            row["E_warp"] = _f(_metrics.warp_explained_energy(src_img, end, steps=warp_steps))
            row["E_warp_gain"] = _f(_metrics.warp_explained_energy(src_img, end, gain=True,
                                                                   steps=warp_steps))
        else:
            row["E_warp"] = row["E_warp_gain"] = math.nan
        tr = _metrics.best_translation(src_img, end, max_shift=int(max_shift))
        row["shift_dy"], row["shift_dx"] = (_f(v) for v in np.asarray(tr.shift))
        row["shift_explained"] = _f(tr.explained)
        if evaluators:
            res = _metrics.transfer(evaluators, frames[-1:], t, batched=True)
            for ename, r in res.items():
                pred = int(np.asarray(r.pred)[-1])
                row[f"{ename}_pred"] = pred
                row[f"{ename}_p_target"] = _f(np.asarray(r.p_target)[-1])
                row[f"{ename}_is_target"] = pred == t
        row["source"], row["target"] = s, t
        row["time_s"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        if verbose:
            tn = _short(t, class_names)
            print(f"[compare] {name}: {DOMAIN_LABELS.get(d, d):<13} "
                  f"L2={row['l2']:.3f}/{B:g}{'' if row['reached'] else ' (NOT reached)'} "
                  f"alpha*={row['alpha_star']:.3g} max|edit|={row['max_change']:.3g}"
                  f"{' (phase wraps)' if row['wrapped'] > 0 else ''} "
                  f"p({tn}) {row['p_target_0']:.3f} -> "
                  f"{row['p_target']:.3f} pred={row['pred_name']} "
                  f"E={row['E_warp']:.2f}/{row['E_warp_gain']:.2f} "
                  f"dx={row['shift_dx']:+.2f}px ({row['time_s']:.1f} s)", flush=True)

    if out_dir is not None:
        paths = _write_figures(Path(out_dir), name, morphs, src_img, rows, B=B,
                               class_names=class_names, title=title, gif=gif,
                               show_frames=show_frames)
        for row in rows:
            row.update(strip=str(paths["strip"][row["domain"]]),
                       gif=str(paths["gif"][row["domain"]]) if gif else None,
                       figure=str(paths["figure"]), curves=str(paths["curves"]))
    return (rows, morphs) if return_morphs else rows


def _pick(n: int, k: int) -> list[int]:
    if k >= n:
        return list(range(n))
    return sorted(set(int(round(v)) for v in np.linspace(0, n - 1, max(k, 2))))


def _write_figures(out: Path, name: str, morphs: Mapping[str, Morph], src_img: np.ndarray,
                   rows: Sequence[dict], *, B: float, class_names, title, gif: bool,
                   show_frames: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(morphs.values()))
    t, s = int(first.target), int(first.source)
    tn, sn = _short(t, class_names), _short(s, class_names)
    head = title or f"{sn} → {tn}"
    # one symmetric change scale shared by every domain's heatmaps
    v = max(float(np.max(np.abs((m.frames - src_img[None]).mean(-1)))) for m in morphs.values())
    v = v if v > 0 else 1.0
    names = {c: _short(c, class_names) for c in (t, s)}
    paths: dict[str, Any] = {"strip": {}, "gif": {}}
    for row in rows:
        d = row["domain"]
        m = morphs[d]
        label = DOMAIN_LABELS.get(d, d)
        ttl = (f"{head} · {label} · L2 budget {B:g}{'' if row['reached'] else ' (not reached)'}"
               f" · α*={row['alpha_star']:.3g} · p({tn}) {row['p_target_0']:.3f} → "
               f"{row['p_target']:.3f}")
        p = out / f"{name}_{d}_strip.png"
        _viz.strip(m.frames, probs=m.probs, target=t, source=s, alphas=m.alphas,
                   class_names=names, title=ttl, path=p, diff=True, source_image=src_img,
                   diff_vmax=v)
        paths["strip"][d] = p
        if gif:
            g = out / f"{name}_{d}.gif"
            _viz.gif(m.frames, g, probs=m.probs, target=t, source=s, alphas=m.alphas,
                     class_names=names, diff=True, source_image=src_img, diff_vmax=v)
            paths["gif"][d] = g
    labelled = {_lab(d): morphs[d] for d in morphs}
    notes = {_lab(r["domain"]): ("" if r["reached"] else "B not reached") for r in rows}
    paths["figure"] = morph_figure(labelled, src_img, out / f"{name}_domains.png", target=t,
                                   class_names=names, diff_vmax=v, show_frames=show_frames,
                                   notes=notes,
                                   title=f"{head}: every domain at the same image change "
                                         f"(L2 = {B:g})")
    # log scale when every p(target) stays small (a linear axis would show flat lines)
    logy = max(float(np.max(m.probs[:, t])) for m in morphs.values()) < 0.3
    fig = _viz.prob_curves({_lab(d): m.l2 for d, m in morphs.items()},
                           {_lab(d): m.probs for d, m in morphs.items()}, target=t, source=s,
                           xlabel="L2 distance to the source", class_names=names, logy=logy,
                           title=f"{head}: probability vs image change"
                                 + (" (log scale)" if logy else ""), budgets=[B])
    paths["curves"] = _viz.save_figure(fig, out / f"{name}_prob_vs_l2.png")
    return paths


def _lab(d: str) -> str:
    return DOMAIN_LABELS.get(d, d)


def morph_figure(morphs: Mapping[str, Morph], source_image, path: str | Path, *,
                 target: int, class_names=None, title: str | None = None,
                 show_frames: int = 8, diff_vmax: float | None = None,
                 notes: Mapping[str, str] | None = None) -> Path:
    """One row per morph: selected frames and the endpoint's change heatmap.

    Frames share the [0, 1] scale; heatmaps ``endpoint - source`` (channel mean) share one
    symmetric scale (``diff_vmax`` or the largest |change| of all rows). Each frame is
    labelled with its L2 distance to the source and p(target). ``morphs`` maps a row label
    (e.g. "CSP phase", "Pixel, live") to a :class:`lens_jax.Morph` of the same source;
    ``notes`` adds a line under a row label. Returns ``path``.
    """
    src = _as_image(source_image)
    labels = list(morphs)
    if not labels:
        raise ValueError("morph_figure needs at least one morph")
    t = int(target)
    tn = _short(t, class_names)
    if diff_vmax is None:
        v = max(float(np.max(np.abs((np.asarray(m.frames)[-1] - src).mean(-1))))
                for m in morphs.values())
    else:
        v = float(diff_vmax)
    v = v if v > 0 else 1.0
    n = max(np.asarray(m.frames).shape[0] for m in morphs.values())
    ncol = min(n, int(show_frames)) + 1
    ps = 1.35
    fig = Figure(figsize=(ps * ncol + 0.9, (ps + 0.42) * len(labels) + 0.5),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(len(labels), ncol, squeeze=False))
    im = None
    for r, lab in enumerate(labels):
        m = morphs[lab]
        frames, probs, l2 = (np.asarray(m.frames), np.asarray(m.probs), np.asarray(m.l2))
        idx = _pick(frames.shape[0], ncol - 1)
        for c in range(ncol - 1):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(idx):
                ax.set_axis_off()
                continue
            i = idx[c]
            f = np.clip(frames[i], 0, 1)
            ax.imshow(f[..., 0] if f.shape[-1] == 1 else f, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xlabel(_viz.plain_text(f"L2={float(l2[i]):.2f}\np({tn})="
                                          f"{float(probs[i, t]):.3f}"), fontsize=7)
            if c == 0:
                note = (notes or {}).get(lab)
                ax.set_ylabel(_viz.plain_text(lab + (f"\n({note})" if note else "")),
                              fontsize=9)
        ax = axes[r, -1]
        change = (frames[-1] - src).mean(-1)
        im = ax.imshow(change, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlabel("endpoint change", fontsize=7)
    if im is not None:
        cb = fig.colorbar(im, ax=axes[:, -1].tolist(), shrink=0.8, pad=0.02)
        cb.ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(_viz.plain_text(title), fontsize=10)
    return _viz.save_figure(fig, Path(path))
