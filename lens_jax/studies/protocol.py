"""Studies built on :mod:`lens_jax.evaluate`: the protocol table, ablations, figures.

* :func:`protocol_study` -- the follow-up's protocol on a data set: for every source and
  method, ONE class gradient of the driver extrapolated to matched image-L2 budgets;
  reach, driver p(target) with source-cluster bootstrap intervals, transfer to
  independent classifiers, warp-explained energy; tables, figures and a report.
* :func:`ablation_settings` / :func:`run_ablations` -- one batched run per setting of
  domain, pyramid, mode, schedule and loss.
* :func:`grid_figure`, :func:`summary_figure`, :func:`size_figure` -- the studies' figures.
* :func:`fit_linear` -- a softmax-regression driver (a template-like classifier).

The scripts in ``experiments/`` parse a few flags and call these.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import evaluate as ev
from ..tables import markdown_table, record_command, save_json, write_csv, write_tables
from . import reference

__all__ = ["grid_figure", "summary_figure", "size_figure", "protocol_study", "write_study",
           "study_parser", "parse_study_args", "endpoint_rows",
           "reading", "ABLATION_GROUPS", "ablation_settings", "run_ablations", "fit_linear"]


# ----------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------

def grid_figure(path: Path, rows: Sequence[Sequence[tuple[np.ndarray, str]]], *,
                suptitle: str = "", panel_size: float = 1.5) -> Path:
    """Rows of ``(image (H, W[, C]) in [0, 1], title)`` panels on one [0, 1] scale."""
    from .. import viz
    ncols = max(len(r) for r in rows)
    imgs, titles = [], []
    for r in rows:
        for j in range(ncols):
            img, t = r[j] if j < len(r) else (np.ones_like(r[0][0]), "")
            img = np.asarray(img, np.float64)
            imgs.append(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img)
            titles.append(t)
    viz.image_grid(imgs, titles=titles, path=path, ncols=ncols, vmin=0.0, vmax=1.0, colorbar=False,
                   suptitle=suptitle or None, panel_size=panel_size, dpi=120)
    return Path(path)


def summary_figure(path: Path, rows: Sequence[Mapping], labels: Sequence[str], *,
                   followup: Sequence[Mapping] = ()) -> Path:
    """Median driver p(target) (log) and E warp / warp+gain per row, 95% intervals; the
    follow-up's medians as red crosses where ``followup`` has the row's ``(B, method)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from .. import viz
    fig = Figure(figsize=(11, 0.3 * len(rows) + 1.3), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))[::-1]
    fu = {(f["B"], f["method"]): f for f in followup}

    def bars(ax, key, off=0.0, name=None):
        v = np.array([r[key] for r in rows], float)
        lo = np.array([r[f"{key}_lo"] for r in rows], float)
        hi = np.array([r[f"{key}_hi"] for r in rows], float)
        if key == "p_G":
            v, lo, hi = (np.maximum(a, 1e-12) for a in (v, lo, hi))
        ax.errorbar(v, y + off, xerr=[np.maximum(v - lo, 0), np.maximum(hi - v, 0)],
                    fmt="o", ms=3, label=name)
    bars(ax1, "p_G")
    ax1.set_xscale("log")
    ax1.set_xlabel("median driver p(target)")
    ax1.set_yticks(y)
    ax1.set_yticklabels(labels, fontsize=6)
    bars(ax2, "E_warp", -0.15, "E warp")
    bars(ax2, "E_gain", 0.15, "E warp+gain")
    marks = [(fu.get((r.get("B"), r.get("method"))), yy) for r, yy in zip(rows, y)]
    for f, yy in marks:
        if f is not None:
            ax1.plot(max(f["p"], 1e-12), yy, "rx")
            ax2.plot([f["E_warp"], f["E_gain"]], [yy - 0.15, yy + 0.15], "rx")
    ax2.set_xlim(0, 1)
    ax2.legend(fontsize=7)
    ax2.set_xlabel("median E" + (" (red x: follow-up)" if any(f for f, _ in marks) else ""))
    return viz.save_figure(fig, path, dpi=130)


#: line colours of :func:`size_figure` (pixel black; the phase domains red and blue; flow green)
DOMAIN_COLORS = {"pixel": "#222222", "csp_phase": "#d62728", "csp_joint": "#1f77b4",
                 "csp_flow_joint": "#2ca02c", "csp_flow": "#98df8a", "fourier_phase": "#ff9896",
                 "warp": "#9467bd", "csp_amplitude": "#8c564b"}


def size_figure(path: Path, rows: Sequence[Mapping], *, title: str = "",
                count: str = "all", ylabel: str = "share every judge calls the target",
                unit: str = "sources") -> Path:
    """Transfer against image size: per mode (figure rows) and budget ``B`` (columns), the
    share ``row[count] / row["n"]`` of each cell's ``unit`` (by default: the sources every
    independent judge calls the target) at each ``size``; one colour per ``method``, solid
    for a robust driver (``"+robust"`` in ``driver``), dashed for a standard one.  Each line's
    points sit a little to the side of its size (the same offset in every panel) so lines of
    equal values stay visible; the legend lists the lines of every panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from .. import viz
    modes = [m for m in ("fixed", "live") if any(r["mode"] == m for r in rows)]
    budgets, sizes = sorted({r["B"] for r in rows}), sorted({r["size"] for r in rows})
    methods = list(dict.fromkeys([*DOMAIN_COLORS, *(r["method"] for r in rows)]))
    drivers = sorted({r["driver"] for r in rows}, key=lambda d: ("+robust" not in d, d))
    lines = [(m, d) for m in methods for d in drivers
             if any((r["method"], r["driver"]) == (m, d) for r in rows)]
    dodge = dict(zip(lines, np.linspace(-0.08, 0.08, len(lines)) if len(lines) > 1 else [0.0]))

    def label(m, drv):
        return f"{m} ({'robust' if '+robust' in drv else 'standard'} {drv.split('+')[0]})"

    fig = Figure(figsize=(4.2 * len(budgets) + 2.2, 3.3 * len(modes)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(modes), len(budgets), squeeze=False, sharex=True, sharey=True)
    for (i, mode), (j, b) in ((a, c) for a in enumerate(modes) for c in enumerate(budgets)):
        ax = axes[i][j]
        for m in methods:
            for drv in drivers:
                pts = sorted((r["size"] * 2.0 ** dodge[m, drv], r[count] / r["n"]) for r in rows
                             if (r["mode"], r["B"], r["method"], r["driver"]) == (mode, b, m, drv))
                if pts:
                    ax.plot(*zip(*pts), "-" if "+robust" in drv else "--", marker="o", ms=4,
                            color=DOMAIN_COLORS.get(m, "#7f7f7f"), label=label(m, drv))
        ax.set_title(f"{mode} gradient, L2 = {b:g} (28-px scale)", fontsize=10)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(v) for v in sizes])
        ax.minorticks_off()
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.set_xlabel("image size (px)" if i == len(modes) - 1 else "")
        ax.set_ylabel(ylabel if j == 0 else "")
    ns = "/".join(str(v) for v in sorted({r["n"] for r in rows}))
    legend = {}                               # every panel's lines, each label once
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
    labels = [label(m, d) for m, d in lines]
    fig.legend([legend[lab] for lab in labels], labels, loc="outside right center", fontsize=8,
               title=f"{ns} {unit} per cell")
    fig.suptitle(title or "transfer against image size")
    return viz.save_figure(fig, path, dpi=130)


def endpoint_rows(src: ev.Sources, results: Mapping, keys: Sequence[tuple],
                  class_names: Sequence[str], *, per_pair: int = 2) -> list[list[tuple]]:
    """Grid rows: example sources (``per_pair`` per pair), then every endpoint
    ``(result key, endpoint index, label)`` with the driver's p(target)."""
    out = []
    for k in np.unique(src.pair):
        for s in np.flatnonzero(src.pair == k)[:per_pair]:
            row = [(src.images[s], f"{class_names[src.source[s]]}->"
                                   f"{class_names[src.target[s]]}")]
            for key, e, lab in keys:
                res = results[key]
                p = res.probs[s, e, src.target[s]]
                row.append((res.frames[s, e], f"{lab}\n{ev.fmt_prob(p)}"))
            out.append(row)
    return out


# ----------------------------------------------------------------------------------
# the protocol study
# ----------------------------------------------------------------------------------

def protocol_study(out: str | Path, *, dataset: str, pairs: Sequence[tuple[int, int]],
                   n_per_pair: int, load: Callable | None = None, ccexam: bool = False,
                   quick: bool = False, methods: Sequence[str] = ev.METHODS,
                   budgets: Sequence[float] = reference.BUDGETS, n_boot: int = 2000,
                   chunk: int | None = None,
                   seed: int = 0, followup: Sequence[Mapping] = (), title: str = "",
                   notes: str = "", progress: bool = True) -> dict:
    """The protocol table on ``dataset``; everything written under ``out``.

    ``load`` (a hook for tests): ``dataset -> (images, labels, class_names, driver,
    independent, info)``; default: the test split and
    :func:`lens_jax.studies.job.load_classifiers`.  Returns ``{"out", "rows", "records",
    "shown", "sections", "payload"}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if load is None:
        from .. import data
        from .job import load_classifiers
        images, labels = data.load(dataset, "test")
        names = data.class_names(dataset)
        driver, independent, cinfo = load_classifiers(dataset, ccexam=ccexam, quick=quick,
                                                      seed=seed)
    else:
        images, labels, names, driver, independent, cinfo = load(dataset)
    classifiers = list(independent)
    src = ev.select_sources(images, labels, pairs, n_per_pair=n_per_pair, driver=driver,
                            seed=seed)
    counts = {f"{names[s]}->{names[t]}": int(np.sum(src.pair == k))
              for k, (s, t) in enumerate(pairs)}
    if progress:
        print(f"{dataset}: {len(src.id)} sources {counts}", flush=True)
    base = ev.source_baseline(src, independent)
    results, records = ev.run_methods(driver, src, independent, methods=methods,
                                      budgets=budgets, chunk=chunk, progress=progress,
                                      warp_steps=200 if not quick else 50)
    together = [c for c in ("O", "O2") if c in classifiers] or None
    together_label = " and ".join(together) + " both" if together else "all classifiers"
    rows = ev.summarise(records, group=("B", "method"), classifiers=classifiers,
                        together=together, n_boot=n_boot, seed=seed)
    rows.sort(key=lambda r: (r["B"], list(methods).index(r["method"])))
    shown = ev.display_rows(rows, classifiers,
                            together_label=" & ".join(together) if together else "all")
    if progress:
        print("\n" + markdown_table(shown), flush=True)
    prow = ev.summarise(records, group=("pair", "B", "method"), classifiers=classifiers,
                        together=together, n_boot=min(n_boot, 500), seed=seed)
    for r in prow:
        s, t = pairs[r["pair"]]
        r["pair"] = f"{names[s]} -> {names[t]}"
    keys = [(("fixed", m), e, f"{ev.label(m)} B={b:g}") for e, b in enumerate(budgets)
            for m in methods]
    figs = [(grid_figure(out / "endpoints.png", endpoint_rows(src, results, keys,
                                                              names), suptitle=title),
             "Example endpoints (driver p(target) under each)"),
            (summary_figure(out / "summary.png", rows, [f"{ev.label(r['method'])}, "
                                                        f"B={r['B']:g}" for r in rows],
                            followup=followup),
             "Median driver p(target) and E with 95% source-cluster bootstrap intervals")]
    write_tables(rows, out / "table", floatfmt=".4g")
    write_csv(out / "endpoints.csv", records)
    write_csv(out / "pairs.csv", prow)
    sections = [{"title": "Setup", "text": _setup_text(dataset, pairs, names, src, counts,
                                                        cinfo, base, n_boot, budgets)},
                {"title": "Protocol table", "table": shown, "text": (
                    "Statistics over the endpoints that reached their budget; counts are "
                    "reached endpoints the classifier assigns to the target, out of the "
                    "requested number (G flips: the driver's own argmax). Intervals: 95% "
                    "source-cluster bootstrap.")}]
    if followup:
        sections.append({"title": "Ours beside the follow-up manuscript",
                         "text": "Each cell: ours | follow-up. " + notes,
                         "table": reference.side_by_side(rows, followup)})
    sections.append({"title": "Reading (comparisons computed from the table)",
                     "text": reading(rows, together_label=together_label)})
    sections += [{"title": "Per pair", "table": ev.display_rows(
                      prow, classifiers, lead=("pair", "B", "method"))},
                 {"title": "Figures", "figures": figs}]
    payload = {"dataset": dataset, "pairs": [list(p) for p in pairs],
               "n_sources": int(len(src.id)), "per_pair": counts, "budgets": list(budgets),
               "n_boot": n_boot, "classifiers": cinfo, "source_baseline": base,
               "rows": rows, "followup": list(followup) or None,
               "interpretation": reading(rows, together_label=together_label)}
    return {"out": out, "rows": rows, "records": records, "shown": shown,
            "sections": sections, "payload": payload, "sources": src, "results": results}


def write_study(study: dict, *, title: str, wall_s: float, argv: Sequence[str]) -> Path:
    """``results.json``, ``command.txt`` and the report (``index.md`` / ``index.html``)."""
    from .. import viz
    out = study["out"]
    cmd = record_command(out, wall_s, argv=argv)
    payload = dict(study["payload"], wall_s=wall_s,
                   command=cmd.read_text().splitlines()[0])
    save_json(out / "results.json", payload)
    secs = [dict(s) for s in study["sections"]]
    for s in secs:
        if s.get("figures"):
            s["figures"] = [(Path(f).resolve(), c) for f, c in s["figures"]]
    viz.report(out, secs + [{"title": "Command", "text": "```\n" + cmd.read_text() + "```"}],
               title=title)
    print(f"wrote {out}/index.md, index.html, table.*, endpoints.csv, results.json; "
          f"wall {wall_s:.1f} s", flush=True)
    return out


def reading(rows: Sequence[Mapping], *, together_label: str = "all classifiers") -> str:
    """A short interpretation of ``(B, method)`` summary rows, every comparison computed
    from them: per budget the method with the highest driver p(target) and E, transfer,
    and whether pixel edits buy more driver confidence but less warp than CSP phase."""
    get = {(r["B"], r["method"]): r for r in rows}
    lines = []
    for b in sorted({r["B"] for r in rows}):
        ms = [m for (bb, m) in get if bb == b]
        best_p = max(ms, key=lambda m: get[(b, m)]["p_G"])
        best_e = max(ms, key=lambda m: np.nan_to_num(get[(b, m)]["E_warp"], nan=-1))
        lines.append(
            f"* B = {b:g}: highest median driver p(target): {ev.label(best_p)} "
            f"({ev.fmt_prob(get[(b, best_p)]['p_G'])}); highest warp-explained energy: "
            f"{ev.label(best_e)} ({ev.fmt_pct(get[(b, best_e)]['E_warp'])}). Endpoints "
            f"{together_label} call the target: "
            + ", ".join(f"{ev.label(m)} {get[(b, m)]['all']}/{get[(b, m)]['n']}" for m in ms)
            + ".")
    pairs = [(get.get((b, "pixel")), get.get((b, "csp_phase"))) for b in
             sorted({r["B"] for r in rows})]
    pairs = [(p, c) for p, c in pairs if p and c]
    if pairs:
        cheaper = all(p["p_G"] > c["p_G"] for p, c in pairs)
        warpier = all(c["E_warp"] > p["E_warp"] for p, c in pairs)
        lines.append(
            "\nPixel edits " + ("buy more" if cheaper else "do not always buy more")
            + " driver confidence per unit image change than CSP-phase edits, and CSP phase "
            + ("explains more" if warpier else "does not always explain more")
            + " of its change by a smooth warp. High driver confidence is not evidence of a "
            "recognisable change: compare it with the transfer counts.")
    return "\n".join(lines)


def _setup_text(dataset, pairs, names, src, counts, cinfo, base, n_boot, budgets) -> str:
    accs = "; ".join(f"{k} = {v['model']}" + (f" (test accuracy {100 * v['test_accuracy']:.1f}%)"
                                              if v.get("test_accuracy") is not None else "")
                     for k, v in cinfo.items())
    bl = "; ".join(f"{k}: {v['source_correct']}/{v['n']} sources correct, "
                   f"{v['already_target']} already called the target" for k, v in base.items())
    return (f"Data: `{dataset}` test split. Pairs: "
            + ", ".join(f"{names[s]} -> {names[t]}" for s, t in pairs)
            + f". Sources: test images of the source class that the driver classifies "
              f"correctly (seeded random subset when there are more): {counts}, "
              f"{len(src.id)} in all.\n\nClassifiers: {accs}. Only G is differentiated; "
              f"the others see the endpoints only.\n\nOn the unedited sources: {bl}.\n\n"
            "Methods: one NLL gradient of G at the source (fixed mode), extrapolated in the "
            "pixel, Fourier-phase, CSP-phase or joint CSP (phase + log-amplitude) domain to "
            f"the matched image-L2 budgets B = {', '.join(f'{b:g}' for b in budgets)} "
            "(doubling grid + bisection); frames clipped to [0, 1]. E: 8x8 control grid, "
            f"coarse-to-fine Adam fit; medians over endpoints that reached B. Bootstrap: "
            f"{n_boot} draws, clusters = sources.")


# ----------------------------------------------------------------------------------
# ablations
# ----------------------------------------------------------------------------------

ABLATION_GROUPS = ("domain", "pyramid", "mode", "schedule", "loss")


def ablation_settings(*, quick: bool, shape: tuple[int, int] = (28, 28), budget: float = 2.0,
                      groups: Sequence[str] = ABLATION_GROUPS) -> list[dict]:
    """The ablation grid: dicts with ``group``, ``setting`` and morph options.

    ``reuse``: identical to an earlier setting; ``raw_from``: one raw alpha for all
    sources = the median matched alpha* of that setting; ``budget_from``: a matched
    budget equal to that setting's median endpoint L2.
    """
    from ..pyramid import SteerablePyramid
    unknown = sorted(set(groups) - set(ABLATION_GROUPS))
    if unknown:
        raise ValueError(f"unknown ablation groups {unknown}; choose from {ABLATION_GROUPS}")
    b, L = {"budgets": (budget,)}, ev.label
    hmax = SteerablePyramid.max_height(shape)
    s = [dict(group="domain", setting=L(d), domain=d, **b)
         for d in ("pixel", "fourier_phase", "csp_phase", "csp_amplitude", "csp_joint")]
    pyr = [(h, 3, 4) for h in range(1, hmax + 1)] + [(hmax, 1, k) for k in (2, 4, 6, 8)] \
        + [(hmax, 3, k) for k in (6, 8)]
    for h, o, k in ([(1, 3, 4), (hmax, 1, 2)] if quick else pyr):
        s.append(dict(group="pyramid", setting=f"height {h}, order {o}, K={k}",
                      domain="csp_phase", **b, pyramid=SteerablePyramid(
                          shape, height=h, order=o, num_orientations=k, tight_frame=True,
                          synthesis="adjoint")))
    s += [dict(group="mode", setting=f"{L(d)}, fixed", domain=d, reuse=("domain", L(d)), **b)
          for d in ("csp_phase", "pixel")]
    modes = [("csp_phase", "live")] if quick else [("csp_phase", "live"),
                                                   ("csp_phase", "live_local"), ("pixel", "live")]
    s += [dict(group="mode", setting=f"{L(d)}, {m} (12 steps)", domain=d, mode=m, **b)
          for d, m in modes]
    s.append(dict(group="schedule", setting=f"matched L2 budget B = {budget:g}",
                  domain="csp_phase", reuse=("domain", L("csp_phase")), **b))
    s += [dict(group="schedule", setting=f"{L(d)}: raw alpha = median alpha*, all sources",
               domain=d, raw_from=("domain", L(d)), budgets=None)
          for d in (("csp_phase",) if quick else ("csp_phase", "pixel"))]
    s += [dict(group="schedule", setting=f"step cap {c:g} rad/frame, 12 frames (fixed)",
               domain="csp_phase", step_cap=c, budgets=None)
          for c in ((0.5,) if quick else (0.25, 0.5, 1.0))]
    if not quick:
        s += [dict(group="schedule", setting=f"step-local cap {c:g} rad/step, 12 frames",
                   domain="csp_phase", mode="live_local", step_cap=c, budgets=None)
              for c in (0.25, 1.0)]
        ref = ("schedule", "step-local cap 1 rad/step, 12 frames")
        s += [dict(group="schedule", domain=d, budget_from=ref,
                   setting=f"{L(d)}, fixed, B = median L2 of step-local cap 1")
              for d in ("csp_phase", "pixel")]
    s.append(dict(group="loss", setting="NLL (default)", domain="csp_phase",
                  reuse=("domain", L("csp_phase")), **b))
    s.append(dict(group="loss", setting="logit margin", domain="csp_phase", loss="margin", **b))
    return [c for c in s if c["group"] in groups]


def run_ablations(driver: Any, src: ev.Sources, independent: Mapping[str, Any], *,
                  settings: Sequence[Mapping], chunk: int | None = None, warp_steps: int = 200,
                  progress: bool = True) -> tuple[list[dict], dict]:
    """Every setting, batched; ``(records, {(group, setting): Endpoints})``.  Unmatched
    schedules (raw alpha, step caps) count every endpoint as reached."""
    records, results, by_key = [], {}, {}
    for cfg in settings:
        key, t0, note = (cfg["group"], cfg["setting"]), time.perf_counter(), ""
        if cfg.get("reuse") in results:
            res = results[cfg["reuse"]]
            recs = [dict(r, group=key[0], setting=key[1]) for r in by_key[cfg["reuse"]]]
        else:
            kw = dict(domain=cfg["domain"], mode=cfg.get("mode", "fixed"),
                      pyramid=cfg.get("pyramid"), loss=cfg.get("loss", "nll"),
                      budgets=cfg.get("budgets"), chunk=chunk)
            if "raw_from" in cfg:
                ref = results.get(cfg["raw_from"])
                if ref is None:
                    ref = ev.endpoints(driver, src, domain=cfg["domain"], chunk=chunk,
                                       budgets=(2.0,))
                alpha = float(np.median(ref.alphas[:, 0]))
                kw.update(alphas=[alpha])
                note = f"alpha = {alpha:.4g}"
            elif "budget_from" in cfg:
                b = float(np.median(results[cfg["budget_from"]].l2[:, -1]))
                kw.update(budgets=(b,))
                note = f"B = {b:.3g}"
            elif cfg.get("step_cap") is not None:
                kw.update(step_cap=cfg["step_cap"], n_frames=12)
            res = ev.endpoints(driver, src, **kw)
            recs = ev.evaluate_endpoints(
                res, src, independent, method=cfg["domain"], warp_steps=warp_steps,
                endpoint_keys=[kw["budgets"][0] if kw.get("budgets") else float("nan")],
                extra={"group": key[0], "setting": key[1], "note": note})
            if kw.get("budgets") is None:
                for r in recs:
                    r["reached"] = True
        results[key], by_key[key] = res, recs
        records += recs
        if progress:
            print(f"  [{key[0]}] {key[1]}: {time.perf_counter() - t0:.1f} s", flush=True)
    return records, results


# ----------------------------------------------------------------------------------
# a linear driver
# ----------------------------------------------------------------------------------

def fit_linear(x: np.ndarray, y: np.ndarray, num_classes: int, *, steps: int = 300,
               lr: float = 0.05, weight_decay: float = 1e-3) -> Callable:
    """Softmax regression on flattened pixels (full batch, Adam), as a
    ``logits_fn(images)``: its pixel gradient is the same image for every source."""
    import jax
    import jax.numpy as jnp
    import optax
    n, d = len(x), int(np.prod(x.shape[1:]))
    X, Y = jnp.asarray(x.reshape(n, d), jnp.float32), jnp.asarray(y, jnp.int32)
    params = {"w": jnp.zeros((d, num_classes)), "b": jnp.zeros((num_classes,))}
    opt = optax.adam(lr)

    def loss(p):
        z = X @ p["w"] + p["b"]
        return (optax.softmax_cross_entropy_with_integer_labels(z, Y).mean()
                + weight_decay * jnp.sum(p["w"] ** 2))

    @jax.jit
    def step(p, st):
        u, st = opt.update(jax.grad(loss)(p), st, p)
        return optax.apply_updates(p, u), st

    st = opt.init(params)
    for _ in range(int(steps)):
        params, st = step(params, st)
    w, b = params["w"], params["b"]
    return lambda images: images.reshape(images.shape[0], -1).astype(jnp.float32) @ w + b


# ----------------------------------------------------------------------------------
# study scripts
# ----------------------------------------------------------------------------------

def study_parser(description: str, *, out: str, **flags: Any):
    """An ``argparse`` parser with ``--out`` (default ``out``; ``--quick`` runs default to
    ``out + "_quick"`` so they never overwrite a full run), ``--quick``, ``--seed`` and one
    ``--name`` flag per keyword (its type follows the default; booleans get ``--no-name``).
    Parse with :func:`parse_study_args`."""
    import argparse
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=None, help=f"output folder (default {out})")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke tests)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    for name, v in flags.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(v, bool):
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=v)
        elif v is None:
            p.add_argument(flag, dest=name, default=None, help="(default: none)")
        else:
            p.add_argument(flag, dest=name, type=type(v), default=v, help=f"(default {v})")
    p.set_defaults(_out_default=out)
    return p


def parse_study_args(parser, *, argv: Sequence[str] | None = None):
    """Parse ``argv`` (default ``sys.argv[1:]``); ``args.argv`` keeps the command line."""
    import sys
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = args._out_default + ("_quick" if args.quick else "")
    args.argv = argv
    return args
