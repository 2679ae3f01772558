"""Command line: ``python -m lens_jax {run,train,morph,experiment} ...`` (or ``lens-jax``).

* ``run``: the main job (``make run``, :func:`lens_jax.studies.job.main_job`): train or reuse the
  MNIST classifiers, morph 3 -> 8, 1 -> 7 and 5 -> 6 in every domain at matched L2
  budgets, measure transfer to independent classifiers, add a natural-image panel, write
  a report. No network.
* ``train``: train (or reuse from the cache) a classifier on a local data set.
* ``morph``: morph one image (a PNG/JPG file, ``skimage:NAME`` or a data-set index)
  toward a target class given by index or name.
* ``experiment NAME ...``: run ``experiments/NAME.py``'s ``main`` with the remaining args.

This module parses arguments and calls the library.  User errors (bad arguments, unknown
class or data set, missing checkpoint, unreadable image, an output path that is a file)
end with ONE line ``lens_jax: error: ...`` on stderr and exit status 2, without a
traceback.
"""
from __future__ import annotations

import argparse
import difflib
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

__all__ = ["main", "build_parser", "CLIError", "LoadedClassifier", "load_classifier",
           "resolve_class", "load_image"]

PRETRAINED = ("efficientnet_lite0", "ccexam")


class CLIError(Exception):
    """A user error: reported as ``prog: error: message`` with exit status 2."""


def _say(*args: Any) -> None:
    print(*args, flush=True)


# ----------------------------------------------------------------------------------
# classifiers, classes, images
# ----------------------------------------------------------------------------------

class LoadedClassifier(NamedTuple):
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


def load_classifier(spec: str, *, seed: int = 0) -> LoadedClassifier:
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
        return LoadedClassifier(fn, pretrained.imagenet_classes(), (224, 224, 3), None,
                          "EfficientNet-Lite0 (ImageNet)")
    if spec in ("ccexam", "ccexam_mnist"):
        from . import pretrained
        try:
            fn, _ = pretrained.ccexam_mnist()
        except FileNotFoundError as e:
            raise CLIError(str(e)) from None
        return LoadedClassifier(fn, [str(d) for d in range(10)], (28, 28, 1), "mnist5k",
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
    return LoadedClassifier(make_logits_fn(module, params), list(names), shape, dataset,
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
# subcommands
# ----------------------------------------------------------------------------------

def _out_dir(path: str) -> Path:
    """``--out``: a folder (created); a path naming an existing file is a user error."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CLIError(f"--out {path!r} is an existing file; give a folder")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise CLIError(f"--out {path!r}: {str(parent)!r} is a file, not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"--out {path!r} cannot be created: {e.strerror or e}") from None
    return p


def _load_split(dataset: str, split: str):
    from . import data
    try:
        return data.load(dataset, split)
    except data.DataUnavailableError as e:
        raise CLIError(str(e)) from None
    except ValueError as e:
        raise CLIError(f"--split {split!r}: {e}") from None


def _cmd_train(args) -> int:
    from . import train
    from .models import MODELS
    if args.model not in MODELS:
        raise CLIError(f"unknown model {args.model!r}; choose from {', '.join(MODELS)}")
    _check_dataset(args.dataset)   # everything checked before a model folder is made
    from .data import DataUnavailableError
    t0 = time.perf_counter()
    _say(f"training/reusing {args.model} on {args.dataset} (seed {args.seed}, epochs "
         f"{args.epochs or train.default_epochs(args.dataset, args.model)})")
    try:
        _, _, info = train.load_or_train(args.model, args.dataset, epochs=args.epochs,
                                         seed=args.seed, progress=not args.no_progress)
    except (DataUnavailableError, ValueError) as e:
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
        x, y = _load_split(clf.dataset, args.split)
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
    out = _out_dir(args.out)
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
        from .tables import markdown_table, write_tables
        paths = write_tables(rows, out / f"{stem}_to{target}_metrics")
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
    from .tables import write_tables
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
    avail = sorted(p.stem for p in d.glob("*.py") if not p.stem.startswith("_"))
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
    try:
        spec = importlib.util.spec_from_file_location(f"_lens_experiment_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if not hasattr(mod, "main"):
            raise CLIError(f"{path} has no main()")
        rc = mod.main(rest)
    finally:
        sys.argv = old_argv
        if str(d) in sys.path:
            sys.path.remove(str(d))
    return int(rc or 0)


def _cmd_run(args) -> int:
    from .studies.job import main_job
    out = _out_dir(args.out)
    try:
        opt = {k: v for k, v in (("modes", args.modes), ("drivers", args.drivers),
                                 ("gallery_modes", args.gallery_modes)) if v}
        main_job(out, quick=args.quick, natural=not args.no_natural, budget=args.budget,
                 budgets=args.budgets, domains=args.domains, n_frames=args.frames, **opt,
                 n_sources=args.n_sources, n_specificity=args.n_specificity,
                 n_boot=args.n_boot, seed=args.seed, argv=["python", "-m", "lens_jax"]
                 + list(args.argv))
    except ValueError as e:
        raise CLIError(str(e)) from None
    return 0


# ----------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with ONE-line errors: ``lens_jax: error: ...`` and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        one = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {one} (see {self.prog} --help)\n")


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {kind.__name__}, got {text!r}")
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return v
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _at_least(n: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}")
        if v < n:
            raise argparse.ArgumentTypeError(f"must be >= {n}, got {v}")
        return v
    return parse


def _names(text: str) -> tuple[str, ...]:
    vals = tuple(v.strip() for v in text.split(",") if v.strip())
    if not vals:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list, got {text!r}")
    return vals


def _numbers(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}")
    if not all(math.isfinite(v) and v > 0 for v in vals):
        raise argparse.ArgumentTypeError(f"must be positive numbers, got {text!r}")
    return vals


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The argument parser and its subcommand parsers (``{"run": ..., ...}``)."""
    p = _Parser(prog="lens_jax", description="Morph images toward a target class through a "
                "steerable lens (arXiv 2506.02300) and compare edit domains.")
    sub = p.add_subparsers(dest="command", metavar="{run,train,morph,experiment}",
                           parser_class=_Parser)
    subs = {}

    r = sub.add_parser("run", help="the main job: train/reuse classifiers, MNIST morphs in "
                       "every domain, transfer, natural-image panel, report")
    r.add_argument("--out", default="outputs/run", help="output folder (default outputs/run)")
    r.add_argument("--quick", action="store_true", help="a tiny version (smoke tests)")
    r.add_argument("--no-natural", action="store_true",
                   help="skip the EfficientNet-Lite0 natural-image panel (slowest part on CPU)")
    r.add_argument("--budget", type=_positive(float), default=4.0,
                   help="L2 budget the page's morphs run to (default 4)")
    r.add_argument("--budgets", type=_numbers, default=None,
                   help="budgets of the summary, e.g. 1,2 (default: 1, 2 and --budget)")
    r.add_argument("--domains", type=_names, default=None,
                   help="edit domains, e.g. pixel,csp_phase (default: every comparator)")
    r.add_argument("--modes", type=_names, default=None,
                   help="modes of the summary: fixed, live, live_local (default fixed)")
    r.add_argument("--gallery-modes", type=_names, default=None,
                   help="modes of the page's morphs (default fixed,live)")
    r.add_argument("--drivers", type=_names, default=None,
                   help="driver classifiers (default cnn,cnn+robust)")
    r.add_argument("--frames", type=_at_least(2), default=12, help="frames per morph (default 12)")
    r.add_argument("--n-sources", type=_at_least(1), default=10,
                   help="sources per pair in the summary table (default 10)")
    r.add_argument("--n-specificity", type=_at_least(0), default=3,
                   help="sources per pair for target specificity (default 3; 0: skip)")
    r.add_argument("--n-boot", type=_at_least(1), default=2000, help="bootstrap draws")
    r.add_argument("--seed", type=_at_least(0), default=0)
    r.set_defaults(func=_cmd_run)
    subs["run"] = r

    t = sub.add_parser("train", help="train (or reuse from the cache) a classifier")
    t.add_argument("--dataset", default="mnist5k",
                   help="mnist5k, digits, synthetic, fashion_mnist (default mnist5k)")
    t.add_argument("--model", default="cnn", help="cnn, resnet_mini or mlp (default cnn)")
    t.add_argument("--epochs", type=_at_least(1), default=None,
                   help="default: per data set and model")
    t.add_argument("--seed", type=_at_least(0), default=0)
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)
    subs["train"] = t

    m = sub.add_parser("morph", help="morph one image toward a target class")
    m.add_argument("--classifier", default="mnist5k:cnn",
                   help="DATASET:MODEL (trained with `train`, e.g. mnist5k:cnn, digits:cnn, "
                        "fashion_mnist:cnn), efficientnet_lite0 or ccexam (default mnist5k:cnn)")
    m.add_argument("--image", help="image file (PNG/JPG) or skimage:NAME (e.g. skimage:chelsea)")
    m.add_argument("--index", type=_at_least(0), help="index into the classifier's data set")
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
    g.add_argument("--step-cap", type=_positive(float),
                   help="max parameter change per frame (radians for phase)")
    g.add_argument("--l2-budget", type=_positive(float),
                   help="frames from the source to L2 distance B")
    m.add_argument("--frames", type=_at_least(1), default=12, help="frames (default 12)")
    m.add_argument("--no-warp", action="store_true", help="with --domain all: skip warp fits")
    m.add_argument("--seed", type=_at_least(0), default=0, help="seed of the trained classifier")
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
    """Run the command line; returns the exit status (user errors: one line, exit 2)."""
    parser, subs = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        subs[args.command].error(str(e))          # one line on stderr, exit status 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
