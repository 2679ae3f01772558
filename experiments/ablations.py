"""Study 6: ablations of the lens on mnist5k, at image-L2 budget B = 2.

On a smaller set of sources (default 60: 20 per pair 3->8, 1->7, 5->6, test images the
driver classifies correctly) and with the classifiers of study 3 (driver G = CNN;
O = ResNet-mini, O2 = MLP, ccexam), every setting below is one batched (vmap + jit)
run; each row reports budget reach, the endpoints' L2 (median [IQR]; only the
unmatched schedules vary), the driver's median p(target) with a 95% source-cluster
bootstrap interval, G flips, transfer counts and warp-explained energy E.

Groups:

* **domain**: pixel, Fourier phase, CSP phase, CSP amplitude (log-amplitude only),
  joint CSP (phase + log-amplitude); fixed gradient, B = 2.
* **pyramid** (CSP phase, B = 2): height 1 and 2 (2 is the maximum at 28x28) with
  order 3 / 4 orientations, and order 1 / 3 with 2, 4, 6, 8 orientations
  (``SteerablePyramid((28, 28), height, order, num_orientations, tight_frame=True,
  synthesis="adjoint")``).
* **mode** (B = 2): fixed (one gradient at the source), live (gradient recomputed at
  every one of 12 steps, persistent coordinates), live_local (re-analysed every step);
  CSP phase and pixel.
* **schedule** (CSP phase): matched L2 budget; one raw alpha shared by all sources
  (the median of the per-source matched alpha*: equal alpha is not equal image change);
  per-frame phase cap 0.25 / 0.5 / 1.0 rad with 12 frames (fixed), and the follow-up's
  reference schedule (step-local, cap 0.25 / 1.0 rad per step, 12 frames); and, since
  the last one travels much farther than B = 2, fixed CSP phase and pixel at a matched
  budget equal to its median endpoint L2.
* **loss** (CSP phase, B = 2): target NLL vs logit margin.

    python experiments/ablations.py            # 60 sources
    python experiments/ablations.py --quick    # 6 sources, fewer settings, 1-epoch models
    python experiments/ablations.py --groups mode,schedule   # some groups only
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments import common  # noqa: E402
from experiments import protocol as P  # noqa: E402
from lens_jax import SteerablePyramid, data, viz  # noqa: E402

BUDGET = 2.0


def pyramid(h: int, order: int, k: int, shape=(28, 28)) -> SteerablePyramid:
    return SteerablePyramid(shape, height=h, order=order, num_orientations=k,
                            tight_frame=True, synthesis="adjoint")


GROUPS = ("domain", "pyramid", "mode", "schedule", "loss")


def settings(quick: bool, shape=(28, 28), groups: Sequence[str] = GROUPS) -> list[dict]:
    """The ablation grid: dicts with group, setting and the morph options.

    ``reuse``: the setting is identical to an earlier one (its endpoints are reused when
    that one ran); ``raw_from``: raw alpha = median matched alpha* of that setting.
    Pyramid heights run over 1..max height for ``shape`` (2 at 28x28).
    """
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown ablation groups {sorted(unknown)}; choose from {GROUPS}")
    b = {"budgets": (BUDGET,)}
    hmax = SteerablePyramid.max_height(shape)
    s = [dict(group="domain", setting=P.METHOD_LABELS[d], domain=d, **b)
         for d in ("pixel", "fourier_phase", "csp_phase", "csp_amplitude", "csp_joint")]
    pyr = [(h, 3, 4) for h in range(1, hmax + 1)]
    pyr += [(hmax, 1, k) for k in (2, 4, 6, 8)] + [(hmax, 3, k) for k in (6, 8)]
    if quick:
        pyr = [(1, 3, 4), (hmax, 1, 2)]
    s += [dict(group="pyramid", setting=f"height {h}, order {o}, K={k}"
               + (" (default)" if (h, o, k) == (hmax, 3, 4) else ""),
               domain="csp_phase", pyramid=pyramid(h, o, k, shape), **b) for h, o, k in pyr]
    modes = [("csp_phase", "live"), ("csp_phase", "live_local"), ("pixel", "live")]
    if quick:
        modes = [("csp_phase", "live")]
    s += [dict(group="mode", setting=f"{P.METHOD_LABELS[d]}, fixed", domain=d,
               reuse=("domain", P.METHOD_LABELS[d]), **b) for d in ("csp_phase", "pixel")]
    s += [dict(group="mode", setting=f"{P.METHOD_LABELS[d]}, {m} (12 steps)", domain=d,
               mode=m, **b) for d, m in modes]
    s.append(dict(group="schedule", setting="matched L2 budget B = 2", domain="csp_phase",
                  reuse=("domain", "CSP phase"), **b))
    s.append(dict(group="schedule", setting="raw alpha = median alpha*(B=2), all sources",
                  domain="csp_phase", raw_from=("domain", "CSP phase")))
    if not quick:
        s.append(dict(group="schedule", setting="Pixel: raw alpha = median alpha*(B=2)",
                      domain="pixel", raw_from=("domain", "Pixel")))
    caps = (0.25, 0.5, 1.0) if not quick else (0.5,)
    s += [dict(group="schedule", setting=f"step cap {c:g} rad/frame, 12 frames (fixed)",
               domain="csp_phase", step_cap=c, budgets=None) for c in caps]
    lcaps = (0.25, 1.0) if not quick else ()
    s += [dict(group="schedule", setting=f"step-local cap {c:g} rad/step, 12 frames",
               domain="csp_phase", mode="live_local", step_cap=c, budgets=None)
          for c in lcaps]
    if 1.0 in lcaps:   # is it the schedule or the larger distance? fixed at the same L2
        ref = ("schedule", "step-local cap 1 rad/step, 12 frames")
        s += [dict(group="schedule", domain=d, budget_from=ref,
                   setting=f"{P.METHOD_LABELS[d]}, fixed, B = median L2 of step-local cap 1")
              for d in ("csp_phase", "pixel")]
    s.append(dict(group="loss", setting="NLL (default)", domain="csp_phase",
                  reuse=("domain", "CSP phase"), **b))
    s.append(dict(group="loss", setting="logit margin", domain="csp_phase", loss="margin",
                  **b))
    return [c for c in s if c["group"] in groups]


def run_ablations(src: Mapping[str, np.ndarray], driver, independent, *, quick: bool,
                  groups: Sequence[str] = GROUPS, chunk: int = 64, progress: bool = True
                  ) -> tuple[list[dict], dict]:
    """Run every setting; return (records, {(group, setting): endpoint results})."""
    H, W = src["images"].shape[1:3]
    records: list[dict] = []
    results: dict[tuple, dict] = {}
    by_key: dict[tuple, list[dict]] = {}
    for cfg in settings(quick, (H, W), groups):
        key = (cfg["group"], cfg["setting"])
        timer = common.Timer()
        with timer:
            if cfg.get("reuse") in results:
                res = results[cfg["reuse"]]
                recs = [dict(r, group=cfg["group"], setting=cfg["setting"])
                        for r in by_key[cfg["reuse"]]]
            else:
                kw = dict(domain=cfg["domain"], mode=cfg.get("mode", "fixed"),
                          pyramid=cfg.get("pyramid"), loss=cfg.get("loss", "nll"),
                          budgets=cfg.get("budgets"), chunk=chunk, progress=False)
                if "raw_from" in cfg:
                    ref = results.get(cfg["raw_from"])
                    if ref is None:   # the matched run of that domain was not in the groups
                        ref = P.run_endpoints(driver, src, domain=cfg["domain"],
                                              budgets=(BUDGET,), chunk=chunk, progress=False)
                    alpha = float(np.median(ref["alphas"][:, 0]))
                    kw.update(budgets=None, alphas=[alpha])
                    extra_note = f"alpha = {alpha:.4g}"
                elif "budget_from" in cfg:
                    budget = float(np.median(results[cfg["budget_from"]]["l2"][:, -1]))
                    kw.update(budgets=(budget,))
                    extra_note = f"B = {budget:.3g}"
                elif cfg.get("step_cap") is not None:
                    kw.update(step_cap=cfg["step_cap"], n_frames=12)
                    extra_note = ""
                else:
                    extra_note = ""
                res = P.run_endpoints(driver, src, **kw)
                recs = P.evaluate_endpoints(
                    res, src, independent, method=cfg["domain"],
                    endpoint_keys=[kw["budgets"][0] if kw.get("budgets") else float("nan")],
                    extra={"group": cfg["group"], "setting": cfg["setting"],
                           "note": extra_note})
                if kw.get("budgets") is None:
                    for r in recs:   # unmatched schedules: every endpoint counts
                        r["reached"] = True
        results[key] = res
        by_key[key] = recs
        records += recs
        if progress:
            print(f"  [{cfg['group']}] {cfg['setting']}: {timer.wall_s:.1f} s", flush=True)
    return records, results


def ablation_rows(records: Sequence[Mapping], classifiers: Sequence[str], *, n_boot: int,
                  seed: int) -> tuple[list[dict], list[dict]]:
    rows = P.summarise(records, group=("group", "setting"), classifiers=classifiers,
                       n_boot=n_boot, seed=seed)
    notes = {}
    for r in records:
        if r.get("note"):
            notes[(r["group"], r["setting"])] = r["note"]
    for r in rows:
        r["note"] = notes.get((r["group"], r["setting"]), "")
    shown = P.display_rows(rows, classifiers, lead=("group", "setting"), show_l2=True)
    for d, r in zip(shown, rows):
        if r["note"]:
            d["setting"] = f"{d['setting']} ({r['note']})"
    return rows, shown


def ablation_figure(path: Path, src, results: Mapping[tuple, Mapping], rows, *,
                    per_pair: int = 1) -> Path:
    """Rows: settings; columns: one example source per pair (driver p(target) above)."""
    cols = []
    for k in np.unique(src["pair"]):
        cols += list(np.flatnonzero(src["pair"] == k)[:per_pair])
    keys = [(r["group"], r["setting"]) for r in rows]
    fig = P._figure(1.2 * (len(cols) + 1) + 2.6, 1.05 * len(keys) + 0.6)
    axes = fig.subplots(len(keys), len(cols) + 1, squeeze=False,
                        gridspec_kw={"width_ratios": [2.6] + [1] * len(cols)})
    for i, key in enumerate(keys):
        res = results[key]
        ax = axes[i, 0]
        ax.axis("off")
        ax.text(1.0, 0.5, f"[{key[0]}] {key[1]}", ha="right", va="center", fontsize=6,
                transform=ax.transAxes)
        for j, s in enumerate(cols):
            ax = axes[i, j + 1]
            ax.imshow(res["frames"][s, -1, ..., 0], cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            p = res["probs"][s, -1, src["target"][s]]
            ax.set_title(f"{P.fmt_prob(p)}, L2 {res['l2'][s, -1]:.2g}", fontsize=5)
            ax.set_xticks([])
            ax.set_yticks([])
    return viz.save_figure(fig, path, dpi=130)


def summary_figure(path: Path, rows: Sequence[Mapping]) -> Path:
    """Median driver p(target) (log) and E warp / warp+gain per setting, with CIs."""
    labels = [f"[{r['group']}] {r['setting']}" for r in rows]
    y = np.arange(len(rows))[::-1]
    fig = P._figure(11, 0.28 * len(rows) + 1.2)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    p = np.array([r["p_G"] for r in rows])
    lo = np.array([r["p_G_lo"] for r in rows])
    hi = np.array([r["p_G_hi"] for r in rows])
    ax1.errorbar(np.maximum(p, 1e-9), y, xerr=[np.maximum(p - lo, 0), np.maximum(hi - p, 0)],
                 fmt="o", ms=3)
    ax1.set_xscale("log")
    ax1.set_xlabel("median driver p(target)")
    ax1.set_yticks(y)
    ax1.set_yticklabels(labels, fontsize=6)
    for key, name, off in (("E_warp", "E warp", -0.15), ("E_gain", "E warp+gain", 0.15)):
        e = np.array([r[key] for r in rows])
        elo = np.array([r[f"{key}_lo"] for r in rows])
        ehi = np.array([r[f"{key}_hi"] for r in rows])
        ax2.errorbar(e, y + off, xerr=[np.maximum(e - elo, 0), np.maximum(ehi - e, 0)],
                     fmt="o", ms=3, label=name)
    ax2.set_xlim(0, 1)
    ax2.legend(fontsize=7)
    ax2.set_xlabel("median E")
    return viz.save_figure(fig, path, dpi=130)


def interpretation(rows: Sequence[Mapping]) -> str:
    get = {(r["group"], r["setting"]): r for r in rows}

    def line(keys, what="") -> str:
        parts = []
        for g, s in keys:
            r = get.get((g, s))
            if r is None:
                continue
            parts.append(f"{s}: p {P.fmt_prob(r['p_G'])}, flips {r['flip_G']}/{r['n']}, "
                         f"O/O2 {r.get('O', 0)}/{r.get('O2', 0)}, E {P.fmt_pct(r['E_warp'])}/"
                         f"{P.fmt_pct(r['E_gain'])}, L2 {r['l2_med']:.3g}")
        return (what + "; ".join(parts)) if parts else ""

    out = []
    doms = [("domain", P.METHOD_LABELS[d]) for d in
            ("pixel", "fourier_phase", "csp_phase", "csp_amplitude", "csp_joint")]
    out.append(line(doms, "* Domain (B = 2): "))
    out.append(line([k for k in get if k[0] == "pyramid"], "* Pyramid (CSP phase, B = 2): "))
    out.append(line([k for k in get if k[0] == "mode"], "* Mode (B = 2): "))
    out.append(line([k for k in get if k[0] == "schedule"], "* Schedule (CSP phase): "))
    out.append(line([k for k in get if k[0] == "loss"], "* Loss (CSP phase, B = 2): "))
    return "\n".join(o for o in out if o) + (
        "\n\n(p: median driver target probability; O/O2: endpoints called the target; "
        "E: median warp-explained energy, warp only / warp + gain; L2: median endpoint "
        "distance, fixed at 2 for matched budgets.)")


def reading(rows: Sequence[Mapping]) -> str:
    """A short interpretation whose comparisons are computed from the rows."""
    get = {(r["group"], r["setting"]): r for r in rows}
    L = P.METHOD_LABELS
    fp, fe = P.fmt_prob, P.fmt_pct
    out = []

    def cmp(a, b, key):
        return "above" if a[key] > b[key] else "below"

    ph, am, jo = (get.get(("domain", L[d])) for d in ("csp_phase", "csp_amplitude", "csp_joint"))
    if ph and am and jo:
        out.append(
            f"* **Phase vs amplitude vs joint.** At B = 2 amplitude-only edits buy a median "
            f"p(target) of {fp(am['p_G'])} ({cmp(am, ph, 'p_G')} phase, {fp(ph['p_G'])}; "
            f"joint {fp(jo['p_G'])}), but only {fe(am['E_warp'])} of an amplitude edit is a "
            f"warp against {fe(ph['E_warp'])} for phase (joint {fe(jo['E_warp'])}): the "
            "warp-like character of the lens comes from the phase; amplitude adds intensity "
            "change (partly absorbed by the smooth gain).")
    pyr = [r for r in rows if r["group"] == "pyramid"]
    if pyr:
        h1 = [r for r in pyr if r["setting"].startswith("height 1,")]
        rest = [r for r in pyr if not r["setting"].startswith("height 1,")]
        txt = "* **Pyramid.** "
        if h1:
            r = h1[0]
            txt += (f"With one scale (height 1) only {r['reached']}/{r['n']} sources reach "
                    f"B = 2, p(target) drops to {fp(r['p_G'])} and E rises to "
                    f"{fe(r['E_warp'])}/{fe(r['E_gain'])} (only the finest band is edited; "
                    "the coarser content sits in the fixed low-pass residual). ")
        if len(rest) > 1:
            ps = [r["p_G"] for r in rest]
            es = [r["E_warp"] for r in rest]
            overlap = all(max(r[f"{k}_lo"] for r in rest) <= min(r[f"{k}_hi"] for r in rest)
                          for k in ("p_G", "E_warp"))
            txt += (f"At full height, over {len(rest)} order / orientation settings (order "
                    f"1/3, K = 2..8) p(target) spans {fp(min(ps))}..{fp(max(ps))} and E warp "
                    f"{fe(min(es))}..{fe(max(es))}; the 95% intervals "
                    + ("all overlap (order and orientation count matter little)."
                       if overlap else "do not all overlap."))
        out.append(txt)
    fx = get.get(("mode", "CSP phase, fixed"))
    lv = get.get(("mode", "CSP phase, live (12 steps)"))
    ll = get.get(("mode", "CSP phase, live_local (12 steps)"))
    if fx and (lv or ll):
        txt = f"* **Fixed vs live (B = 2).** Fixed: p {fp(fx['p_G'])}, E {fe(fx['E_warp'])}"
        if lv:
            txt += f"; live (persistent): p {fp(lv['p_G'])}, E {fe(lv['E_warp'])}"
        if ll:
            txt += f"; step-local: p {fp(ll['p_G'])}, E {fe(ll['E_warp'])}"
        if lv:
            txt += (f". Recomputing the gradient (live) changes the median p(target) by a "
                    f"factor {lv['p_G'] / max(fx['p_G'], 1e-300):.2g} at equal image change")
        if ll:
            txt += (f"; re-analysing every step (step-local) changes E warp by "
                    f"{100 * (ll['E_warp'] - fx['E_warp']):+.1f} points")
        txt += "."
        out.append(txt)
    raw = [r for r in rows if r["group"] == "schedule" and r["setting"].startswith("raw")]
    if raw:
        r = raw[0]
        out.append(f"* **Raw alpha.** One alpha for all sources gives endpoint L2 from "
                   f"{r['l2_q25']:.3g} to {r['l2_q75']:.3g} (IQR): equal alpha is not equal "
                   "image change, so methods and sources are compared at matched L2.")
    sl = get.get(("schedule", "step-local cap 1 rad/step, 12 frames"))
    fb = [r for r in rows if r["group"] == "schedule"
          and r["setting"].startswith("CSP phase, fixed, B = median")]
    pb = [r for r in rows if r["group"] == "schedule"
          and r["setting"].startswith("Pixel, fixed, B = median")]
    if sl and fb and pb:
        f, q = fb[0], pb[0]
        out.append(
            f"* **The follow-up's reference schedule** (step-local, 1 rad per step, 12 "
            f"frames) travels to L2 {sl['l2_med']:.3g} and reaches p {fp(sl['p_G'])} with "
            f"transfer O {sl.get('O', 0)}, O2 {sl.get('O2', 0)}, ccexam "
            f"{sl.get('ccexam', 0)} of {sl['n']}. At that distance the fixed CSP-phase "
            f"extrapolation reaches the budget for only {f['reached']}/{f['n']} sources "
            f"(its distance saturates as phases wrap) with p {fp(f['p_G'])}, while a fixed "
            f"pixel edit gets p "
            f"{fp(q['p_G'])}, transfer O {q.get('O', 0)}, O2 {q.get('O2', 0)}, ccexam "
            f"{q.get('ccexam', 0)}, E {fe(q['E_warp'])} (step-local CSP: "
            f"{fe(sl['E_warp'])}). In the CSP-phase domain, large confident morphs need "
            "the step-local schedule; one fixed phase gradient does not get there.")
    nl, mg = get.get(("loss", "NLL (default)")), get.get(("loss", "logit margin"))
    if nl and mg:
        out.append(f"* **Loss.** Margin and NLL give the same endpoints (p {fp(mg['p_G'])} vs "
                   f"{fp(nl['p_G'])}): while p(source) is near 1 the NLL gradient is the "
                   "margin gradient.")
    return "\n".join(out)


def main(argv=None, *, load=None) -> dict:
    args = common.experiment_args(
        "Study 6: ablations (domain, pyramid, fixed vs live, schedule, loss) on mnist5k at "
        "B = 2.", argv=argv, out="outputs/ablations", n=60, n_boot=2000, chunk=64,
        groups=",".join(GROUPS))
    if args.quick and not any(a == "--out" or a.startswith("--out=") for a in args.argv):
        args.out = args.out.rstrip("/") + "_quick"   # never overwrite a full run
    title = "Study 6: ablations on mnist5k (B = 2)"
    with common.Timer() as t:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        n = args.n if not args.quick else min(args.n, 6)
        n_boot = args.n_boot if not args.quick else min(args.n_boot, 200)
        if load is None:
            images, labels = data.load("mnist5k", "test")
            names = data.class_names("mnist5k")
            driver, independent, cinfo = P.load_classifiers("mnist5k", ccexam=True,
                                                            quick=args.quick)
        else:
            images, labels, names, driver, independent, cinfo = load("mnist5k")
        src = P.select_sources(images, labels, P.MNIST_PAIRS, n, driver, seed=args.seed)
        print(f"mnist5k: {len(src['id'])} sources", flush=True)
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        records, results = run_ablations(src, driver, independent, quick=args.quick,
                                         groups=groups, chunk=args.chunk)
        classifiers = list(independent)
        rows, shown = ablation_rows(records, classifiers, n_boot=n_boot, seed=args.seed)
        print("\n" + viz.markdown_table(shown), flush=True)
        figs = [(ablation_figure(out / "endpoints.png", src, results, rows),
                 "Endpoint of every setting for one source per pair (driver p(target), L2)"),
                (summary_figure(out / "summary.png", rows),
                 "Median driver p(target) and E per setting (95% source-cluster bootstrap)")]
        P.write_csv(out / "table.csv", rows)
        P.write_csv(out / "endpoints.csv", records)
        text = interpretation(rows)
        sections = [
            {"title": "Setup", "text":
                f"mnist5k test split, pairs 3->8, 1->7, 5->6, {len(src['id'])} sources the "
                "driver classifies correctly (seeded subset, equal share per pair). Driver G = "
                "CNN; O = ResNet-mini, O2 = MLP, ccexam = pretrained CNN (never "
                "differentiated). Matched budget B = 2 unless the setting says otherwise; "
                "for unmatched schedules (raw alpha, step caps) every endpoint counts and its "
                "L2 is reported. Medians and counts use the endpoints that reached their "
                "budget; counts are shown out of the requested number. "
                f"Bootstrap: {n_boot} draws, clusters = sources."},
            {"title": "Ablation table", "table": shown},
            {"title": "Interpretation (comparisons computed from the table)",
             "text": reading(rows)},
            {"title": "Measured (generated)", "text": text},
            {"title": "Figures", "figures": [(Path(f).resolve(), c) for f, c in figs]}]
    study = {"out": out, "sections": sections, "rows": rows, "records": records,
             "payload": {"dataset": "mnist5k", "n_sources": len(src["id"]), "budget": BUDGET,
                         "n_boot": n_boot, "classifiers": cinfo, "rows": rows,
                         "interpretation": reading(rows), "measured": text}}
    P.finish(args, study, t.wall_s, title, "experiments/ablations.py")
    return study


if __name__ == "__main__":
    main()
