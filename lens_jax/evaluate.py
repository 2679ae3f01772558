"""Evaluation of morphs over many sources: endpoints at matched budgets, transfer, E.

The pieces of the evaluation protocol of the follow-up manuscript to arXiv 2506.02300,
"Confidence Is Not Evidence: Probing Classifier Sensitivity with Steerable Lens"
(Mahdisoltani & Fleet, unpublished), as pure functions over arrays and records:

* :func:`select_sources` -- test images of each source class that the driver
  classifies correctly (a :class:`Sources` of arrays, one row per source).
* :func:`endpoints` -- the driver's morph of every source to one or more matched
  image-L2 budgets (``morph_batch(..., l2_budget=[...])``), fixed or live mode, in
  fixed-size chunks (``morph_batch``'s ``images_per_call``: the last one padded, so each
  setting compiles once).
* :func:`transfer_counts` -- what independent classifiers (never differentiated) call
  the endpoints (:func:`lens_jax.metrics.transfer`): per classifier and by all of them
  together.
* :func:`warp_energy` -- the warp-explained energy E (warp, warp + gain).
* :func:`evaluate_endpoints` -- one record (a flat dict) per source and endpoint.
* :func:`summarise` -- one row per group of records: reach, median driver p(target) with
  a 95% source-cluster bootstrap interval, transfer counts, E, largest change, L2.
* :func:`target_specificity` -- mean pairwise cosine between the edits one source
  receives toward different targets: near 1 means the edit mostly removes the source
  ("less source"), near 0 that each target gets its own edit ("more target").

A classifier may be given in any form :func:`lens_jax.classifier.as_classifier` accepts
(a batched callable, ``(apply_fn, params)``, a flax ``nnx.Module``); it is applied by
:func:`lens_jax.classifier.predict` (re-exported here as :func:`predict`), and the driver
is passed to :func:`lens_jax.morph_batch` as given.

The protocol's reference numbers, pairs and budgets (the follow-up's table) are study
material and live in :mod:`lens_jax.studies.reference`.

>>> import numpy as np
>>> target_specificity(np.array([[1.0, 0.0], [0.0, 1.0]]))   # orthogonal edits
0.0
"""
from __future__ import annotations

import math
import time
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import numpy as np

from ._batching import map_chunks
from .classifier import predict
from .domains import PROTOCOL_DOMAINS, REGISTRY
from .lens import morph_batch
from .metrics import bootstrap_ci, transfer, warp_explained_energy

__all__ = ["METHODS", "Sources", "Endpoints", "label", "predict", "select_sources",
           "default_chunk", "endpoints", "transfer_counts", "warp_energy", "evaluate_endpoints",
           "run_methods", "source_baseline", "bootstrap", "summarise", "display_rows",
           "target_specificity", "specificity", "fmt_prob", "fmt_pct"]

#: The protocol's edit domains ("methods"): :data:`lens_jax.domains.PROTOCOL_DOMAINS`.
METHODS: tuple[str, ...] = PROTOCOL_DOMAINS


def label(domain: str) -> str:
    """A domain's display label ("CSP phase"); the name itself when unknown."""
    spec = REGISTRY.get(domain)
    return spec.label if spec is not None else str(domain)


def _say(progress: bool, *args: Any) -> None:
    if progress:
        print(*args, flush=True)


# ----------------------------------------------------------------------------------
# classifiers and sources
# ----------------------------------------------------------------------------------

def _logits(model: Any, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """float64 NumPy logits of :func:`predict`."""
    return np.asarray(predict(model, images, batch_size=batch_size), np.float64)


class Sources(NamedTuple):
    """Sources of a study, one row per source (all NumPy arrays of length N).

    ``images`` (N, H, W, C) float32; ``source`` / ``target`` classes; ``pair`` (index into
    the study's pairs); ``index`` (position in the data split); ``id`` (0..N-1, the
    bootstrap cluster label).
    """
    images: np.ndarray
    source: np.ndarray
    target: np.ndarray
    pair: np.ndarray
    index: np.ndarray
    id: np.ndarray

    def subset(self, keep) -> "Sources":
        """The rows ``keep`` (indices or a mask), renumbered ``id = 0..``."""
        parts = [np.asarray(a)[keep] for a in self[:-1]]
        return Sources(*parts, np.arange(len(parts[0])))


def select_sources(images: np.ndarray, labels: np.ndarray,
                   pairs: Sequence[tuple[int, int]], *, n_per_pair: int, driver: Any,
                   seed: int | None = 0) -> Sources:
    """Up to ``n_per_pair`` sources per (source, target) pair.

    A source is an image of the source class that the driver classifies correctly.
    With ``seed`` an integer, a seeded random subset is taken when there are more (kept
    in data-set order); with ``seed=None``, the first ones in data-set order.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"images must be (N, H, W, C) with one label each; got "
                         f"{images.shape} and {labels.shape}")
    if int(n_per_pair) < 1:
        raise ValueError(f"n_per_pair must be >= 1; got {n_per_pair}")
    if not pairs:
        raise ValueError("pairs must name at least one (source, target) pair")
    rng = None if seed is None else np.random.default_rng(seed)
    keep, src, tgt, pair = [], [], [], []
    for k, (s, t) in enumerate(pairs):
        cand = np.flatnonzero(labels == s)
        if cand.size:
            cand = cand[_logits(driver, images[cand]).argmax(1) == s]
        if cand.size > n_per_pair:
            cand = (np.sort(rng.choice(cand, n_per_pair, replace=False)) if rng is not None
                    else cand[:n_per_pair])
        keep.append(cand)
        src += [s] * cand.size
        tgt += [t] * cand.size
        pair += [k] * cand.size
    idx = np.concatenate(keep).astype(np.int64)
    if idx.size == 0:
        raise ValueError(f"no source found for the pairs {list(pairs)}: no image of a "
                         "source class is classified correctly by the driver")
    return Sources(np.asarray(images[idx], np.float32), np.asarray(src, np.int32),
                   np.asarray(tgt, np.int32), np.asarray(pair, np.int32), idx,
                   np.arange(idx.size))


def source_baseline(src: Sources, independent: Mapping[str, Any]) -> dict[str, dict]:
    """How the independent classifiers see the unedited sources (a sanity check)."""
    out = {}
    for name, fn in independent.items():
        pred = _logits(fn, src.images).argmax(1)
        out[name] = {"source_correct": int(np.sum(pred == src.source)),
                     "already_target": int(np.sum(pred == src.target)), "n": int(len(pred))}
    return out


# ----------------------------------------------------------------------------------
# endpoints
# ----------------------------------------------------------------------------------

class Endpoints(NamedTuple):
    """Endpoints of every source, NumPy arrays with a leading ``(N, E)``.

    ``frames`` (N, E, H, W, C), ``probs`` (N, E, K) of the driver, ``l2``, ``reached``,
    ``alphas``, ``max_change`` (the largest |edit parameter|: radians for the phase
    domains) and ``wrapped`` (fraction of coefficients whose phase moved by more than pi;
    NaN without a phase) of each endpoint.
    """
    frames: np.ndarray
    probs: np.ndarray
    l2: np.ndarray
    reached: np.ndarray
    alphas: np.ndarray
    max_change: np.ndarray
    wrapped: np.ndarray | None = None


def default_chunk(images) -> int:
    """Sources per compiled call of :func:`endpoints` by default: 64 at 28x28 and fewer in
    proportion to the pixels (16 at 56x56, 4 at 112x112, 1 from 224x224), so a call's working
    memory stays that of 64 small images.  (A live-mode budget search at 112x112 with 64 sources
    per call, 30 candidate step sizes each scanning the classifier's gradient, took 17 GB.)"""
    h, w = np.shape(images)[-3:-1]
    return max(1, (64 * 28 * 28) // (int(h) * int(w)))


def endpoints(driver: Any, src: Sources, *, domain: str,
              budgets: Sequence[float] | None = None, mode: str = "fixed",
              alphas: Sequence[float] | None = None, step_cap: float | None = None,
              n_frames: int = 12, pyramid=None, loss: str = "nll", color: str = "luminance",
              chunk: int | None = None, progress: bool = False) -> Endpoints:
    """The driver's morph of every source with :func:`lens_jax.morph_batch`.

    Give exactly one schedule.  With ``budgets`` each source gets one endpoint per
    matched image-L2 budget (fixed or live ``mode``: for live modes ``n_frames`` equal
    steps whose size is searched).  Otherwise the schedule is ``alphas`` (one raw
    amplification shared by all sources) or ``step_cap`` with ``n_frames`` frames, and
    the endpoint is the last frame.  Sources run ``chunk`` per compiled call
    (``morph_batch``'s ``images_per_call``; the last call padded); the default,
    :func:`default_chunk`, keeps a call's pixels those of 64 images of 28x28.
    """
    chosen = [k for k, v in (("budgets", budgets), ("alphas", alphas),
                             ("step_cap", step_cap)) if v is not None]
    if len(chosen) != 1:
        raise ValueError(f"give exactly one of budgets, alphas, step_cap; got {chosen or 'none'}")
    if chunk is None:
        chunk = default_chunk(src.images)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer; got {chunk!r}")
    if budgets is not None:
        sched = {"l2_budget": np.asarray(budgets, np.float32).reshape(-1)}
        if mode != "fixed":
            sched["n_frames"] = int(n_frames)
        last = slice(None)
    elif alphas is not None:
        sched, last = {"alphas": np.asarray(alphas, np.float32).reshape(-1)}, slice(-1, None)
    else:
        sched, last = {"step_cap": float(step_cap), "n_frames": int(n_frames)}, slice(-1, None)
    t0 = time.perf_counter()
    m = morph_batch(driver, src.images, target=src.target, source=src.source, domain=domain,
                    mode=mode, pyramid=pyramid, loss=loss, color=color,
                    images_per_call=int(chunk), **sched)
    out = Endpoints(*[np.asarray(getattr(m, f))[:, last] for f in Endpoints._fields])
    _say(progress, f"    {domain} {mode}: {len(src.id)} sources "
                   f"({time.perf_counter() - t0:.1f} s)")
    return out


# ----------------------------------------------------------------------------------
# transfer and warp-explained energy
# ----------------------------------------------------------------------------------

def transfer_counts(records: Sequence[Mapping], classifiers: Sequence[str], *,
                    together: Sequence[str] | None = None) -> dict[str, int]:
    """Records whose endpoint each classifier calls the target, and ``"all"``: the
    records every classifier of ``together`` (default: all of ``classifiers``) calls it."""
    together = list(classifiers if together is None else together)
    out = {c: int(sum(r[f"pred_{c}"] == r["target"] for r in records)) for c in classifiers}
    out["all"] = int(sum(all(r[f"pred_{c}"] == r["target"] for c in together)
                         for r in records)) if together else 0
    return out


_E_FNS: dict[tuple, Any] = {}


def warp_energy(sources: np.ndarray, frames: np.ndarray, *, gain: bool, steps: int = 200,
                chunk: int = 256) -> np.ndarray:
    """E (8x8 control grid; smooth warp, with ``gain`` also a smooth gain) of each frame
    w.r.t. its source, :func:`lens_jax.metrics.warp_explained_energy` batched in chunks of
    ``chunk`` frames; NaN where the frame is the source (there is no edit to explain)."""
    sources, frames = np.asarray(sources, np.float32), np.asarray(frames, np.float32)
    if sources.shape != frames.shape:
        raise ValueError(f"sources {sources.shape} and frames {frames.shape} must match")
    key = (bool(gain), int(steps))
    if key not in _E_FNS:
        _E_FNS[key] = jax.jit(jax.vmap(lambda a, b: warp_explained_energy(
            a, b, gain=key[0], steps=key[1])))
    if len(frames) == 0:
        return np.zeros((0,))
    return np.asarray(map_chunks(_E_FNS[key], (sources, frames), chunk=chunk), np.float64)


def evaluate_endpoints(ep: Endpoints, src: Sources, independent: Mapping[str, Any], *,
                       method: str, endpoint_keys: Sequence[Any], warp: bool = True,
                       warp_steps: int = 200, extra: Mapping[str, Any] | None = None
                       ) -> list[dict]:
    """One record per (source, endpoint): driver and transfer outcomes, L2, E, change.

    Keys: ``method``, ``B`` (from ``endpoint_keys``), ``id``, ``pair``, ``index``,
    ``source``, ``target``, ``reached``, ``l2``, ``alpha``, ``max_change``, ``p_G``,
    ``pred_G``, ``E_warp``, ``E_gain`` (NaN without ``warp``), ``p_{name}`` and
    ``pred_{name}`` per independent classifier, and ``extra``.
    """
    N, nb = ep.l2.shape
    if len(endpoint_keys) != nb or len(src.id) != N:
        raise ValueError(f"{N} sources x {nb} endpoints do not match {len(src.id)} sources "
                         f"and {len(endpoint_keys)} endpoint keys")
    frames = ep.frames.reshape((N * nb,) + ep.frames.shape[2:])
    x0 = np.repeat(src.images, nb, axis=0)
    tgt = np.repeat(src.target, nb)
    other = {name: (np.asarray(r.p_target, np.float64), np.asarray(r.pred))
             for name, r in transfer(independent, frames, tgt, batch_size=500).items()}
    if warp:
        e_w = warp_energy(x0, frames, gain=False, steps=warp_steps)
        e_g = warp_energy(x0, frames, gain=True, steps=warp_steps)
    else:
        e_w = e_g = np.full(N * nb, np.nan)
    probs = ep.probs.reshape(N * nb, -1)
    recs = []
    for i in range(N * nb):
        s, b = divmod(i, nb)
        r = {"method": method, "B": endpoint_keys[b], "id": int(src.id[s]),
             "pair": int(src.pair[s]), "index": int(src.index[s]),
             "source": int(src.source[s]), "target": int(tgt[i]),
             "reached": bool(ep.reached[s, b]), "l2": float(ep.l2[s, b]),
             "alpha": float(ep.alphas[s, b]), "max_change": float(ep.max_change[s, b]),
             "p_G": float(probs[i, tgt[i]]), "pred_G": int(probs[i].argmax()),
             "E_warp": float(e_w[i]), "E_gain": float(e_g[i])}
        for name, (p_t, pred) in other.items():
            r[f"p_{name}"] = float(p_t[i])
            r[f"pred_{name}"] = int(pred[i])
        if extra:
            r.update(extra)
        recs.append(r)
    return recs


def run_methods(driver: Any, src: Sources, independent: Mapping[str, Any], *,
                budgets: Sequence[float], methods: Sequence[str] = METHODS,
                modes: Sequence[str] = ("fixed",), warp: bool = True, warp_steps: int = 200,
                chunk: int | None = None, extra: Mapping[str, Any] | None = None,
                progress: bool = True) -> tuple[dict, list[dict]]:
    """Endpoints of every (mode, method) at every budget, and their records.

    Returns ``({(mode, method): Endpoints}, records)``; each record also has ``mode``.
    """
    results, records = {}, []
    for mode in modes:
        for m in methods:
            t0 = time.perf_counter()
            ep = endpoints(driver, src, domain=m, budgets=budgets, mode=mode, chunk=chunk,
                           progress=progress)
            results[(mode, m)] = ep
            records += evaluate_endpoints(ep, src, independent, method=m,
                                          endpoint_keys=[float(b) for b in budgets],
                                          warp=warp, warp_steps=warp_steps,
                                          extra={"mode": mode, **(extra or {})})
            _say(progress, f"  {label(m)} ({mode}): {len(src.id)} sources x {len(budgets)} "
                           f"budgets in {time.perf_counter() - t0:.1f} s")
    return results, records


# ----------------------------------------------------------------------------------
# summaries
# ----------------------------------------------------------------------------------

def bootstrap(values: Sequence[float], ids: Sequence[int], *, n_boot: int = 2000,
              seed: int = 0):
    """Median and 95% source-cluster bootstrap interval (:func:`metrics.bootstrap_ci`)."""
    return bootstrap_ci(np.asarray(values, float), clusters=np.asarray(ids), n_boot=n_boot,
                        key=seed)


def summarise(records: Sequence[Mapping], *, group: Sequence[str], classifiers: Sequence[str],
              together: Sequence[str] | None = None, n_boot: int = 2000, seed: int = 0,
              reached_only: bool = True) -> list[dict]:
    """One row per group of records (e.g. ``group=("B", "method")``), first-seen order.

    Statistics use the endpoints that reached their budget (``reached_only``); counts are
    out of the requested number ``n``.  Fields: the group keys, ``n``, ``reached``,
    ``p_G`` / ``p_G_lo`` / ``p_G_hi`` (median driver p(target), 95% source-cluster
    bootstrap), ``flip_G`` (the driver's argmax is the target), one transfer count per
    classifier and ``all`` (every classifier of ``together`` at once), ``E_warp`` and
    ``E_gain`` with intervals, ``max_change`` (median largest |edit|), ``l2_med``,
    ``l2_q25``, ``l2_q75``; ``specificity`` when the records carry it.
    """
    if not group:
        raise ValueError("group must name at least one record key")
    buckets: dict[tuple, list] = {}
    for r in records:
        missing = [g for g in group if g not in r]
        if missing:
            raise ValueError(f"record lacks the group key(s) {missing}")
        buckets.setdefault(tuple(r[g] for g in group), []).append(r)
    rows = []
    for k, rs in buckets.items():
        use = [r for r in rs if r["reached"]] if reached_only else list(rs)
        ids = [r["id"] for r in use]
        row = dict(zip(group, k), n=len(rs), reached=sum(bool(r["reached"]) for r in rs))
        for key, name in (("p_G", "p_G"), ("E_warp", "E_warp"), ("E_gain", "E_gain")):
            ci = bootstrap([r[key] for r in use], ids, n_boot=n_boot, seed=seed)
            row.update({name: ci.estimate, f"{name}_lo": ci.low, f"{name}_hi": ci.high})
        row["flip_G"] = sum(r["pred_G"] == r["target"] for r in use)
        row.update(transfer_counts(use, classifiers, together=together))
        mc = [r.get("max_change", math.nan) for r in use]
        row["max_change"] = float(np.nanmedian(mc)) if np.any(np.isfinite(mc)) else math.nan
        l2s = np.asarray([r["l2"] for r in rs], float)
        q = np.percentile(l2s, [50, 25, 75]) if l2s.size else [math.nan] * 3
        row.update(l2_med=float(q[0]), l2_q25=float(q[1]), l2_q75=float(q[2]))
        if any("specificity" in r for r in rs):
            sp = [r["specificity"] for r in rs if np.isfinite(r.get("specificity", np.nan))]
            row["specificity"] = float(np.median(sp)) if sp else math.nan
        rows.append(row)
    return rows


def fmt_prob(p: float | None) -> str:
    """A probability as a percentage, 4 significant digits (0.2226%, 9.08e-05%)."""
    if p is None or not np.isfinite(p):
        return "nan"
    pct = 100.0 * p
    return f"{pct:.3g}%" if pct != 0 and abs(pct) < 1e-3 else f"{pct:.4g}%"


def fmt_pct(p: float | None) -> str:
    """A fraction as a percentage with one decimal (0.382 -> 38.2%)."""
    return "nan" if p is None or not np.isfinite(p) else f"{100 * p:.1f}%"


def display_rows(rows: Sequence[Mapping], classifiers: Sequence[str], *,
                 lead: Sequence[str] = ("B", "method"), show_l2: bool = False,
                 together_label: str = "all") -> list[dict]:
    """Summary rows formatted for a table (strings with intervals)."""
    out = []
    for r in rows:
        d = {k: (label(r[k]) if k == "method" else r[k]) for k in lead}
        d["reached"] = f"{r['reached']}/{r['n']}"
        if show_l2:
            d["L2 median [IQR]"] = f"{r['l2_med']:.3g} [{r['l2_q25']:.3g}, {r['l2_q75']:.3g}]"
        d["median G p(target) [95% CI]"] = (f"{fmt_prob(r['p_G'])} [{fmt_prob(r['p_G_lo'])}, "
                                            f"{fmt_prob(r['p_G_hi'])}]")
        d["G flips"] = f"{r['flip_G']}/{r['n']}"
        for c in classifiers:
            d[c] = f"{r[c]}/{r['n']}"
        if len(classifiers) > 1:
            d[together_label] = f"{r['all']}/{r['n']}"
        d["E warp [95% CI]"] = (f"{fmt_pct(r['E_warp'])} [{fmt_pct(r['E_warp_lo'])}, "
                                f"{fmt_pct(r['E_warp_hi'])}]")
        d["E warp+gain [95% CI]"] = (f"{fmt_pct(r['E_gain'])} [{fmt_pct(r['E_gain_lo'])}, "
                                     f"{fmt_pct(r['E_gain_hi'])}]")
        d["max change"] = f"{r['max_change']:.3g}"
        if "specificity" in r:
            d["specificity"] = f"{r['specificity']:.3f}"
        out.append(d)
    return out


# ----------------------------------------------------------------------------------
# target specificity
# ----------------------------------------------------------------------------------

def target_specificity(edits: np.ndarray) -> float:
    """Mean pairwise cosine between the edits one source receives toward different targets.

    ``edits``: ``(T, ...)`` with ``T >= 2`` edits (frame - source), one per target.
    Near 1: the edits share one direction -- the morph mostly removes the source ("less
    source"); near 0: each target gets its own edit ("more target").  Negative values
    mean edits that oppose each other.

    Raises:
      ValueError: fewer than two edits, or an edit of zero norm (no direction).
    """
    e = np.asarray(edits, np.float64)
    if e.ndim < 2 or e.shape[0] < 2:
        raise ValueError(f"edits must be (T, ...) with T >= 2 targets; got shape {e.shape}")
    e = e.reshape(e.shape[0], -1)
    if not np.all(np.isfinite(e)):
        raise ValueError("edits contain NaN/Inf")
    norms = np.linalg.norm(e, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"edit(s) {np.flatnonzero(norms == 0).tolist()} are zero: a zero "
                         "edit has no direction")
    u = e / norms[:, None]
    c = u @ u.T
    iu = np.triu_indices(len(u), 1)
    return float(np.mean(c[iu]))


def specificity(driver: Any, src: Sources, *, num_classes: int, domain: str,
                budget: float, mode: str = "fixed", targets: Sequence[int] | None = None,
                chunk: int | None = None, progress: bool = False) -> np.ndarray:
    """:func:`target_specificity` of every source: its edits at the matched L2 ``budget``
    toward every class of ``targets`` (default: all ``num_classes``) except its own.

    Returns ``(N,)``; NaN for a source where an edit is zero (the budget was not found).
    """
    classes = list(range(int(num_classes)) if targets is None else targets)
    rows, tg = [], []
    for s in range(len(src.id)):
        ts = [t for t in classes if t != src.source[s]]
        if len(ts) < 2:
            raise ValueError(f"specificity needs two targets besides source class "
                             f"{int(src.source[s])}; got {classes}")
        rows += [s] * len(ts)
        tg += ts
    rows = np.asarray(rows)
    rep = src.subset(rows)._replace(target=np.asarray(tg, np.int32))
    ep = endpoints(driver, rep, domain=domain, budgets=(float(budget),), mode=mode,
                   chunk=chunk, progress=progress)
    edits = ep.frames[:, 0] - rep.images
    out = np.full(len(src.id), np.nan)
    for s in range(len(src.id)):
        try:
            out[s] = target_specificity(edits[rows == s])
        except ValueError:
            pass
    return out
