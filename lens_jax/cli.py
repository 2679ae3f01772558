"""Command line: ``python -m lens_jax {run,train,morph,experiment} ...`` (or ``lens-jax``).

* ``run``: the main job (``make run``, :func:`lens_jax.studies.job.main_job`): train or
  reuse the MNIST classifiers, morph 3 -> 8, 1 -> 7 and 5 -> 6 in every domain at matched
  L2 budgets, measure transfer to independent classifiers, add a natural-image panel,
  write a report.  With ``--images FILE_OR_FOLDER --target CLASS`` (and ``--model`` or
  ``--classifier``): the same interactive page for one's own images and model
  (:func:`lens_jax.studies.job.images_job`).  No network.
* ``train``: train (or reuse from the cache) a classifier on a local data set.
* ``morph``: morph one image (an image file, ``skimage:NAME`` or a data-set index)
  toward a target class given by index or name.
* ``experiment NAME ...``: run the shipped study ``experiments/NAME.py`` with the
  remaining args (only the names of the shipped studies are taken).

One's own model: ``--model FILE.py:FUNCTION``.  The file is imported (so it may also
register domains with :func:`lens_jax.register`) and ``FUNCTION()`` is called with no
arguments.  It returns the classifier in any form :func:`lens_jax.as_classifier` accepts
(a batched ``logits_fn(images)``, ``(apply_fn, params)``, a flax ``nnx.Module``, a
:class:`lens_jax.Classifier`), optionally with its class names and input shape, as

* ``{"classifier": clf, "class_names": [...], "input_shape": (H, W, C)}`` (both keys
  optional), or
* ``(clf, class_names)`` where ``class_names`` is a list of strings, or
* ``clf`` carrying ``.class_names`` / ``.input_shape`` attributes (or the function
  carrying them).

Images are read by :func:`lens_jax.images.read_image` (alpha over ``--background``, 16-bit
and float files scaled by their own range, EXIF orientation applied, bombs refused) and
resized to ``input_shape`` (bilinear); without ``input_shape`` they keep their own size
and channels.  Class names default to the class indices.

This module parses arguments and calls the library.  User errors (bad arguments, unknown
class or data set, missing or damaged checkpoint, unreadable image, an output path that
is a file) end with ONE line ``lens_jax: error: ...`` on stderr and exit status 2,
without a traceback; any other failure (e.g. inside one's own model) ends with one line
and exit status 1 (``LENS_JAX_TRACEBACK=1`` shows the traceback).
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from . import domains as _domains
from . import lens as _lens

__all__ = ["main", "build_parser", "CLIError", "LoadedClassifier", "load_classifier",
           "load_model_file", "resolve_class", "load_image", "MAX_FRAMES"]

PRETRAINED = ("efficientnet_lite0", "ccexam", "resnet50", "resnet18")
#: Domain groups of ``--domain``/``--domains``: every registered domain, the paper's.
GROUPS = {"all": lambda: _domains.domain_names(), "paper": lambda: _domains.PAPER_DOMAINS}
#: The most frames one command makes (and at most :data:`MAX_FRAME_BYTES` of them).
MAX_FRAMES = 10_000
MAX_FRAME_BYTES = 1 << 30


class CLIError(Exception):
    """A user error: reported as ``prog: error: message`` with exit status 2."""


def _say(*args: Any) -> None:
    print(*args, flush=True)


# ----------------------------------------------------------------------------------
# classifiers, classes, images
# ----------------------------------------------------------------------------------

class LoadedClassifier(NamedTuple):
    """A loaded classifier (any form :func:`lens_jax.morph` takes) and what the CLI
    knows about it; ``class_names``/``input_shape`` are None where not stated."""
    logits_fn: Any
    class_names: list[str] | None
    input_shape: tuple[int, int, int] | None   # (H, W, C)
    dataset: str | None                        # where ``--index`` images come from
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


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load_classifier(spec: str, *, seed: int = 0, weights: str | None = None
                    ) -> LoadedClassifier:
    """``"DATASET:MODEL"`` (trained with ``train``), ``"efficientnet_lite0"``,
    ``"ccexam"``, ``"resnet50"`` or ``"resnet18"`` (``weights``: a torch checkpoint,
    :func:`lens_jax.pretrained.resnet50`; None: random weights).

    Raises :class:`CLIError` for unknown specs and missing or damaged checkpoints
    (never trains).
    """
    spec = spec.strip()
    if weights is not None and spec not in ("resnet50", "resnet18"):
        raise CLIError(f"--weights goes with --classifier resnet50 or resnet18, not {spec!r} "
                       "(one's own model: --model FILE.py:FUNCTION)")
    if spec in ("resnet50", "resnet18"):
        from . import pretrained
        if weights is not None and not Path(weights).is_file():
            raise CLIError(f"--weights {weights!r}: no such file")
        try:
            fn = getattr(pretrained, spec)(weights=weights)
        except (ValueError, OSError, KeyError, TypeError) as e:
            raise CLIError(f"--weights {weights!r}: {_one_line(e)}") from None
        names = getattr(fn, "class_names", None)
        label = getattr(fn, "label", None) or (f"{spec} ({weights})" if weights else
                                                f"{spec} (random weights)")
        return LoadedClassifier(fn, list(names) if names is not None else None,
                                (224, 224, 3), None, label)
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
                       f"digits:cnn, fashion_mnist:cnn), one of {', '.join(PRETRAINED)}, or "
                       "one's own: --model FILE.py:FUNCTION")
    dataset, model = spec.split(":", 1)
    from .models import MODELS
    if model not in MODELS:
        raise CLIError(f"unknown model {model!r} in {spec!r}; choose from {', '.join(MODELS)}")
    _check_dataset(dataset)
    wd = _workdir(dataset, model, seed)
    from . import train
    retrain = (f"python -m lens_jax train --dataset {dataset} --model {model}"
               + (f" --seed {seed}" if seed else ""))
    try:
        params, module, meta = train.restore_checkpoint(wd)
    except FileNotFoundError:
        raise CLIError(f"no trained classifier {spec!r} (seed {seed}) in {wd}; train it first: "
                       f"{retrain}") from None
    except Exception as e:  # noqa: BLE001 - any damage: one line naming the fix
        raise CLIError(f"the checkpoint of {spec!r} in {wd} cannot be read "
                       f"({type(e).__name__}: {_one_line(e, 160)}); delete that folder and "
                       f"train again: {retrain}") from None
    if not meta.get("finished"):
        raise CLIError(f"the checkpoint in {wd} is unfinished (epoch {meta.get('epoch')} of "
                       f"{meta['config'].get('epochs')}); resume it: python -m lens_jax train "
                       f"--dataset {dataset} --model {model} --epochs "
                       f"{meta['config'].get('epochs')}")
    from .models import make_logits_fn
    from . import data
    try:
        names = data.class_names(dataset)
    except Exception:  # noqa: BLE001 - names are optional
        names = [str(k) for k in range(int(meta["config"]["num_classes"]))]
    shape = tuple(int(v) for v in meta["config"]["input_shape"])
    acc = meta.get("test_accuracy")
    return LoadedClassifier(make_logits_fn(module, params), list(names), shape, dataset,
                            f"{model} on {dataset} (test acc {acc:.3f})" if acc is not None
                            else f"{model} on {dataset}")


def _import_file(path: str, option: str):
    """Import a Python file (its folder on ``sys.path`` while it loads); user errors as
    one line naming ``option``."""
    p = Path(path)
    if p.suffix != ".py" or not p.is_file():
        raise CLIError(f"{option} {path!r}: no such Python file (FILE.py)")
    name = "_lens_jax_user_" + re.sub(r"\W", "_", p.stem)
    spec = importlib.util.spec_from_file_location(name, p)
    mod = importlib.util.module_from_spec(spec)
    folder = str(p.resolve().parent)
    sys.path.insert(0, folder)
    try:
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    except SystemExit as e:
        sys.modules.pop(name, None)          # no half-imported module left behind
        raise CLIError(f"{option} {path!r} exited while being imported (status {e.code})"
                       ) from None
    except Exception as e:  # noqa: BLE001 - the user's code: one line, where it failed
        sys.modules.pop(name, None)
        import traceback
        tb = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(p)]
        where = f" (line {tb[-1].lineno})" if tb else (
            f" (line {e.lineno})" if isinstance(e, SyntaxError) else "")
        raise CLIError(f"{option} {path!r} failed to import{where}: {type(e).__name__}: "
                       f"{_one_line(e)}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return mod


def _is_names(x: Any) -> bool:
    return (isinstance(x, (list, tuple)) and len(x) > 0
            and all(isinstance(v, str) for v in x))


def load_model_file(spec: str) -> LoadedClassifier:
    """``"FILE.py:FUNCTION"`` -> :class:`LoadedClassifier` (see the module docstring for
    what ``FUNCTION()`` may return).  Raises :class:`CLIError` naming the problem."""
    path, sep, func = str(spec).rpartition(":")
    if not sep or not path or not func.isidentifier():
        raise CLIError(f"--model must be FILE.py:FUNCTION (e.g. my_model.py:make), got {spec!r}")
    mod = _import_file(path, "--model")
    fn = getattr(mod, func, None)
    if not callable(fn):
        have = sorted(k for k, v in vars(mod).items() if callable(v) and not k.startswith("_")
                      and getattr(v, "__module__", None) == mod.__name__)
        raise CLIError(f"--model {spec!r}: {path} has no function {func!r}"
                       + (f" (it defines: {', '.join(have)})" if have else ""))
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - the user's code
        raise CLIError(f"--model {spec!r}: {func}() raised {type(e).__name__}: "
                       f"{_one_line(e)}") from None
    names = shape = None
    if isinstance(out, dict):
        extra = set(out) - {"classifier", "class_names", "input_shape"}
        if "classifier" not in out or extra:
            raise CLIError(f"--model {spec!r}: {func}() returned a dict; it needs the key "
                           "'classifier' (and optionally 'class_names', 'input_shape')"
                           + (f", not {sorted(extra)}" if extra else ""))
        clf, names, shape = out["classifier"], out.get("class_names"), out.get("input_shape")
    elif isinstance(out, tuple) and len(out) == 2 and _is_names(out[1]):
        clf, names = out
    else:
        clf = out
    for holder in (clf, fn):
        names = names if names is not None else getattr(holder, "class_names", None)
        shape = shape if shape is not None else getattr(holder, "input_shape", None)
    from .classifier import as_classifier
    try:
        as_classifier(clf)
    except (TypeError, ValueError) as e:
        raise CLIError(f"--model {spec!r}: {func}() returned {type(clf).__name__}, which is "
                       f"not a classifier: {_one_line(e)}") from None
    if names is not None:
        if not _is_names(list(names)):
            raise CLIError(f"--model {spec!r}: class_names must be a list of strings")
        names = [str(v) for v in names]
    if shape is not None:
        try:
            shape = tuple(int(v) for v in shape)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 3 or shape[-1] not in (1, 3) or min(shape) < 1:
            raise CLIError(f"--model {spec!r}: input_shape must be (H, W, C) with C 1 or 3, "
                           f"got {shape!r}")
    return LoadedClassifier(clf, names, shape, None, f"{func} from {Path(path).name}")


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


def load_image(spec: str, shape: tuple[int, int, int] | None, *, invert: bool = False,
               background: str | None = None):
    """An image file or ``skimage:NAME`` as float32 ``(H, W, C)`` in [0, 1].

    Files are read by :func:`lens_jax.images.read_image` (``background`` behind
    transparent pixels) and resized to ``shape`` (bilinear, the whole image: the aspect
    ratio is not kept; luma for one-channel classifiers); ``shape=None`` keeps the file's
    size and channels.  ``invert`` flips a greyscale image (dark strokes on white paper
    -> MNIST style).
    """
    import numpy as np
    from . import images

    size, channels = (None, None) if shape is None else (tuple(shape[:2]), int(shape[2]))
    if spec.startswith("skimage:"):
        import skimage.data
        name = spec.split(":", 1)[1]
        fn = getattr(skimage.data, name, None)
        if fn is None or not callable(fn) or name.startswith("_"):
            raise CLIError(f"unknown scikit-image sample {name!r} (try chelsea, cat, coffee, "
                           "astronaut, camera)")
        try:
            arr = np.asarray(fn())
        except Exception as e:  # noqa: BLE001 - some samples need a download
            raise CLIError(f"cannot load scikit-image sample {name!r} offline: "
                           f"{_one_line(e)}") from None
        import tempfile
        from PIL import Image
        with tempfile.TemporaryDirectory() as d:     # one reader for every image
            f = Path(d) / f"{name}.png"
            Image.fromarray(arr if arr.dtype == np.uint8 else
                            (np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(f)
            return load_image(str(f), shape, invert=invert, background=background)
    try:
        x = images.read_image(spec, channels=channels, size=size, background=background)
    except ValueError as e:
        msg = str(e).replace("say what lies behind them with a background",
                             "say what lies behind them with --background")
        raise CLIError(msg) from None
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
    if not vals or not all(math.isfinite(v) and abs(v) <= 1e6 for v in vals):
        raise CLIError(f"--alphas must be finite numbers of size at most 1e6, got {text!r}")
    return vals


def _domain_names(text: str, option: str) -> tuple[str, ...]:
    """``--domain``/``--domains``: registered names (live registry) or a group
    (``all``: every registered domain; ``paper``: the paper's four)."""
    out: list[str] = []
    for name in (v.strip() for v in text.split(",") if v.strip()):
        if name in GROUPS:
            out += [d for d in GROUPS[name]() if d not in out]
        elif name in _domains.REGISTRY:
            out.append(name)
        else:
            close = difflib.get_close_matches(name, list(_domains.REGISTRY), n=3)
            raise CLIError(f"unknown domain {name!r} in {option}"
                           + (f"; did you mean {', '.join(close)}?" if close else "")
                           + f" (registered: {', '.join(_domains.domain_names())}; groups: "
                           f"{', '.join(GROUPS)})")
    if not out:
        raise CLIError(f"{option} names no domain")
    return tuple(out)


def _check_frames(n: int, shape: Sequence[int], option: str = "--frames") -> None:
    """A bounded request: at most :data:`MAX_FRAMES` frames and :data:`MAX_FRAME_BYTES`."""
    per = 4 * math.prod(int(v) for v in shape)
    most = max(1, min(MAX_FRAMES, MAX_FRAME_BYTES // per))
    if n > most:
        raise CLIError(f"{option} {n} asks for {n * per / 2**30:.3g} GiB of frames of "
                       f"{'x'.join(str(v) for v in shape)} images; lower {option} (at most "
                       f"{most} here)")


def _check_budget(b: float | None, shape: Sequence[int], option: str) -> None:
    """An L2 budget no [0, 1] image of ``shape`` can exceed is refused (not "inf")."""
    if b is None:
        return
    top = math.sqrt(math.prod(int(v) for v in shape))
    if b > top:
        raise CLIError(f"{option} {b:g} is more than any change of a "
                       f"{'x'.join(str(v) for v in shape)} image in [0, 1] can reach (L2 "
                       f"{top:.4g}, every pixel changed by 1); give at most {top:.4g}")


def _classifier(args) -> LoadedClassifier:
    if getattr(args, "model", None):
        if args.classifier is not None or getattr(args, "weights", None):
            raise CLIError("give either --model FILE.py:FUNCTION or --classifier (with "
                           "--weights), not both")
        return load_model_file(args.model)
    return load_classifier(args.classifier or "mnist5k:cnn", seed=getattr(args, "seed", 0),
                           weights=getattr(args, "weights", None))


def _with_names(clf: LoadedClassifier, image) -> LoadedClassifier:
    """Class names from the classifier's number of classes where none were given."""
    if clf.class_names is not None:
        return clf
    import numpy as np
    from .classifier import predict
    try:
        k = int(np.asarray(predict(clf.logits_fn, np.asarray(image, np.float32)[None])).shape[-1])
    except (TypeError, ValueError) as e:
        raise CLIError(f"classifier {clf.label} fails on the image of shape "
                       f"{tuple(image.shape)}: {_one_line(e)}"
                       + ("" if clf.input_shape else " (state its input_shape (H, W, C) so "
                          "images are resized to it)")) from None
    return clf._replace(class_names=[str(i) for i in range(k)])


def _import_domains(args) -> None:
    for f in getattr(args, "domains_module", None) or ():
        _import_file(f, "--domains-module")


def _cmd_morph(args) -> int:
    import numpy as np
    from . import viz
    _import_domains(args)
    if (args.image is None) == (args.index is None):
        raise CLIError("give exactly one of --image FILE (or skimage:NAME) and --index N")
    clf = _classifier(args)                  # a --model file may register domains
    doms = _domain_names(args.domain, "--domain")
    if args.index is not None:
        if clf.dataset is None:
            raise CLIError(f"--index needs a data-set classifier; {clf.label} has no "
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
        image = load_image(args.image, clf.input_shape, invert=args.invert,
                           background=args.background)
        stem = re.sub(r"[^\w.-]", "_", Path(args.image.split(":")[-1]).stem) or "image"
        if clf.input_shape is not None and image.shape != tuple(clf.input_shape):
            raise CLIError(f"image {args.image} became {image.shape}, the classifier wants "
                           f"{clf.input_shape}")
    _check_frames(args.frames * (len(doms) if len(doms) > 1 else 1), image.shape)
    _check_budget(args.l2_budget, image.shape, "--l2-budget")
    clf = _with_names(clf, image)
    target = resolve_class(args.target, clf.class_names)
    source = None if args.source is None else resolve_class(args.source, clf.class_names)
    out = _out_dir(args.out)
    from .classifier import predict_proba
    p0 = np.asarray(predict_proba(clf.logits_fn, np.asarray(image, np.float32)[None]))[0]
    if not np.all(np.isfinite(p0)):
        raise CLIError(f"classifier {clf.label} gives non-finite logits on "
                       f"{args.image or 'the image'}")
    pred = int(p0.argmax())
    tname = clf.class_names[target]
    _say(f"classifier: {clf.label}; prediction {clf.class_names[pred]} (p={p0[pred]:.3f}); "
         f"p({tname}) = {p0[target]:.4f}")
    t0 = time.perf_counter()
    if len(doms) > 1:
        if args.l2_budget is None:
            raise CLIError(f"--domain {args.domain} compares domains at a matched image "
                           "change: give --l2-budget B")
        from .compare import compare_domains
        try:
            rows = compare_domains(clf.logits_fn, image, target=target, source=source,
                                   domains=doms, l2_budget=args.l2_budget, n_frames=args.frames,
                                   mode=args.mode, color=args.color, loss=args.loss,
                                   class_names=clf.class_names, out_dir=out,
                                   name=f"{stem}_to{target}", warp=not args.no_warp)
        except (ValueError, TypeError) as e:
            raise CLIError(_one_line(e, 400)) from None
        from .tables import markdown_table, write_tables
        paths = write_tables(rows, out / f"{stem}_to{target}_metrics")
        _say(markdown_table(rows, columns=[
            "domain", "reached", "alpha_star", "p_target_0", "p_target", "p_source",
            "pred_name", "l2", "ssim", "E_warp", "E_warp_gain", "shift_dx", "shift_dy"]))
        _say(f"done in {time.perf_counter() - t0:.1f} s; results in {out}/ "
             f"({Path(rows[0]['figure']).name}, *_strip.png, *.gif, {paths['md'].name})")
        return 0
    domain = doms[0]
    sched = {}
    if args.alphas is not None:
        sched["alphas"] = _parse_alphas(args.alphas)
    elif args.step_cap is not None:
        sched["step_cap"] = args.step_cap
    elif args.l2_budget is not None:
        sched["l2_budget"] = args.l2_budget
    try:
        m = _lens.morph(clf.logits_fn, image, target=target, source=source, domain=domain,
                        mode=args.mode, color=args.color, loss=args.loss, n_frames=args.frames,
                        **sched)
    except (ValueError, TypeError) as e:
        raise CLIError(_one_line(e, 400)) from None
    import jax
    m = jax.tree.map(np.asarray, m)
    s = int(m.source)
    names = {target: tname.split(",")[0], s: clf.class_names[s].split(",")[0]}
    name = f"{stem}_to{target}_{domain}_{args.mode}"
    strip_p = out / f"{name}_strip.png"
    viz.strip(m, class_names=names, diff=True, path=strip_p,
              title=f"{names[s]} → {names[target]} · {domain} · {args.mode}")
    gif_p = viz.gif(m, out / f"{name}.gif", class_names=names, diff=True)
    if args.mp4:
        try:
            gif_p = f"{gif_p}, {viz.mp4(m, out / f'{name}.mp4', class_names=names, diff=True)}"
        except ImportError as e:
            raise CLIError(f"--mp4: {e}") from None
    curve_p = out / f"{name}_probs.png"
    viz.prob_curves(m.l2, {domain: m.probs}, target=target, source=s, path=curve_p,
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
    if _domains.REGISTRY[domain].has_phase and float(np.max(m.max_change)) > np.pi:
        _say(f"note: the largest phase edit is {float(np.max(m.max_change)):.3g} rad > pi: "
             "phases wrap, so late frames are no longer small displacements")
    _say(f"done in {time.perf_counter() - t0:.1f} s; wrote {strip_p}, {gif_p}, {curve_p}, "
         f"{paths['md']}")
    return 0


def _experiments_dir() -> Path | None:
    d = Path(__file__).resolve().parent.parent / "experiments"
    return d if d.is_dir() else None


def shipped_studies() -> list[str]:
    """The names ``experiment`` takes: the studies shipped in ``experiments/``."""
    d = _experiments_dir()
    return [] if d is None else sorted(p.stem for p in d.glob("*.py")
                                       if re.fullmatch(r"[a-z][a-z0-9_]*", p.stem))


def _cmd_experiment(args) -> int:
    avail = shipped_studies()
    if not avail:
        raise CLIError("no experiments/ folder beside the lens_jax package (the studies ship "
                       "with the source repository; run from a clone)")
    name = args.name[:-3] if args.name.endswith(".py") else args.name
    if name not in avail:
        close = difflib.get_close_matches(name, avail, n=3)
        raise CLIError(f"unknown experiment {args.name!r}: give the name of a shipped study"
                       + (f"; did you mean {', '.join(close)}?" if close else "")
                       + f" (available: {', '.join(avail)})")
    d = _experiments_dir()
    path = d / f"{name}.py"
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
    _import_domains(args)
    own = args.images is not None or args.model is not None or args.classifier is not None
    argv = ["python", "-m", "lens_jax"] + list(args.argv)
    if own:
        return _run_images(args, argv)
    if args.target is not None or args.background is not None or args.weights is not None:
        raise CLIError("--target, --background and --weights go with --images (one's own "
                       "images and classifier)")
    from .studies.job import main_job
    doms = None if args.domains is None else _domain_names(args.domains, "--domains")
    _check_frames(args.frames, (28, 28, 1))
    for opt, b in (("--budget", args.budget), *(("--budgets", v) for v in args.budgets or ())):
        _check_budget(b, (28, 28, 1), opt)
    out = _out_dir(args.out if args.out is not None else "outputs/run")
    try:
        opt = {k: v for k, v in (("modes", args.modes), ("drivers", args.drivers),
                                 ("gallery_modes", args.gallery_modes)) if v}
        main_job(out=out, quick=args.quick, natural=not args.no_natural,
                 budget=4.0 if args.budget is None else args.budget,
                 budgets=args.budgets, domains=doms, n_frames=args.frames, **opt,
                 n_sources=args.n_sources, n_specificity=args.n_specificity,
                 n_boot=args.n_boot, seed=args.seed, argv=argv)
    except ValueError as e:
        raise CLIError(_one_line(e, 400)) from None
    return 0


def _run_images(args, argv) -> int:
    import numpy as np
    from . import images as _images
    from .studies.job import images_job
    if args.images is None or args.target is None:
        raise CLIError("one's own images: give --images FILE_OR_FOLDER and --target CLASS "
                       "(with --model FILE.py:FUNCTION or --classifier)")
    bad = [o for o, v in (("--drivers", args.drivers), ("--modes", args.modes),
                          ("--budgets", args.budgets), ("--quick", args.quick or None))
           if v is not None]
    if bad:
        raise CLIError(f"{', '.join(bad)} belong to the main job, not to --images")
    clf = _classifier(args)
    try:
        files = _images.list_images(args.images)
    except ValueError as e:
        raise CLIError(f"--images: {e}") from None
    imgs = [load_image(str(f), clf.input_shape, invert=args.invert,
                       background=args.background) for f in files]
    shapes = {x.shape for x in imgs}
    if len(shapes) > 1:
        raise CLIError("the --images differ in size (" + ", ".join(
            f"{f.name}: {x.shape}" for f, x in list(zip(files, imgs))[:4]) + "); state the "
            "classifier's input_shape so they are resized to it")
    shape = imgs[0].shape
    doms = _domain_names(args.domains or "paper", "--domains")
    _check_frames(args.frames, shape)
    budget = args.budget if args.budget is not None else \
        4.0 * math.sqrt(math.prod(shape) / 784.0)
    _check_budget(budget, shape, "--budget")
    clf = _with_names(clf, imgs[0])
    target = resolve_class(args.target, clf.class_names)
    modes = tuple(args.gallery_modes or ("fixed",))
    bad_modes = [m for m in modes if m not in _lens.MODES]
    if bad_modes:
        raise CLIError(f"unknown mode(s) {', '.join(bad_modes)} in --gallery-modes; choose "
                       f"from {', '.join(_lens.MODES)}")
    out = _out_dir(args.out if args.out is not None else "outputs/images")
    try:
        images_job(out, clf.logits_fn, np.stack(imgs), target=target,
                   class_names=clf.class_names, names=[f.name for f in files],
                   classifier_label=clf.label, domains=doms, budget=budget,
                   n_frames=args.frames, modes=modes, color=args.color, argv=argv)
    except (ValueError, TypeError) as e:
        raise CLIError(_one_line(e, 400)) from None
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


def _domain_help() -> str:
    names = ", ".join(_domains.domain_names())
    return (f"registered domains: {names}; groups: all (every registered domain), paper "
            f"({', '.join(_domains.PAPER_DOMAINS)})")


def _add_classifier_options(p: argparse.ArgumentParser, *, default: str | None) -> None:
    p.add_argument("--classifier", default=None,
                   help="DATASET:MODEL (trained with `train`, e.g. mnist5k:cnn, digits:cnn, "
                        f"fashion_mnist:cnn) or one of {', '.join(PRETRAINED)}"
                        + (f" (default {default})" if default else ""))
    p.add_argument("--model", metavar="FILE.py:FUNCTION",
                   help="one's own classifier: FUNCTION() in FILE.py returns any form "
                        "lens_jax.as_classifier takes, optionally as {'classifier': ..., "
                        "'class_names': [...], 'input_shape': (H, W, C)} or (classifier, "
                        "class_names); the file may also register domains")
    p.add_argument("--weights", metavar="PATH",
                   help="torch checkpoint for --classifier resnet50/resnet18 (torchvision, "
                        "timm or robustness-library layout; read without torch)")
    p.add_argument("--background", metavar="COLOUR",
                   help="what lies behind transparent pixels of an image file: white, black, "
                        "a grey level in [0, 1] or #rrggbb (default: none; a file with "
                        "transparency is refused until you say)")
    p.add_argument("--invert", action="store_true",
                   help="invert the image (dark strokes on white paper -> MNIST style)")
    p.add_argument("--domains-module", action="append", metavar="FILE.py",
                   help="import FILE.py first (e.g. one that calls lens_jax.register to add "
                        "a domain); may be repeated")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The argument parser and its subcommand parsers (``{"run": ..., ...}``); choices and
    help come from the domain registry (live) and the library's constants."""
    p = _Parser(prog="lens_jax", description="Morph images toward a target class through a "
                "steerable lens (arXiv 2506.02300) and compare edit domains.")
    sub = p.add_subparsers(dest="command", metavar="{run,train,morph,experiment}",
                           parser_class=_Parser)
    subs = {}

    r = sub.add_parser("run", help="the main job (MNIST, every domain, transfer, report); "
                       "with --images: the same page for one's own images and model")
    r.add_argument("--out", default=None,
                   help="output folder (default outputs/run; with --images outputs/images)")
    r.add_argument("--quick", action="store_true", help="a tiny version (smoke tests)")
    r.add_argument("--no-natural", action="store_true",
                   help="skip the EfficientNet-Lite0 natural-image panel (slowest part on CPU)")
    r.add_argument("--images", metavar="FILE_OR_FOLDER",
                   help="one's own image file or folder of image files: morph each toward "
                        "--target with --model/--classifier and write the interactive page")
    r.add_argument("--target", help="with --images: target class, index or name")
    _add_classifier_options(r, default=None)
    r.add_argument("--budget", type=_positive(float), default=None,
                   help="L2 budget the page's morphs run to (default 4 for 28x28 MNIST; with "
                        "--images the same RMS change per pixel: 4*sqrt(H*W*C/784))")
    r.add_argument("--budgets", type=_numbers, default=None,
                   help="budgets of the summary, e.g. 1,2 (default: 1, 2 and --budget)")
    r.add_argument("--domains", default=None,
                   help="edit domains, comma-separated, e.g. pixel,csp_phase (default: every "
                        "comparator; with --images: paper). " + _domain_help())
    r.add_argument("--modes", type=_names, default=None,
                   help=f"modes of the summary: {', '.join(_lens.MODES)} (default fixed)")
    r.add_argument("--gallery-modes", type=_names, default=None,
                   help="modes of the page's morphs (default fixed,live; with --images fixed)")
    r.add_argument("--drivers", type=_names, default=None,
                   help="driver classifiers (default cnn,cnn+robust)")
    r.add_argument("--color", default="luminance", choices=_domains.COLORS,
                   help="with --images: colour handling of RGB images (default luminance)")
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
    _add_classifier_options(m, default="mnist5k:cnn")
    m.add_argument("--image", help="image file (PNG/JPG/TIFF/...) or skimage:NAME "
                                   "(e.g. skimage:chelsea)")
    m.add_argument("--index", type=_at_least(0), help="index into the classifier's data set")
    m.add_argument("--split", default="test", help="data-set split for --index (default test)")
    m.add_argument("--target", required=True, help="target class: index or name (e.g. 8, lynx)")
    m.add_argument("--source", help="source class (default: the classifier's prediction)")
    m.add_argument("--domain", default="csp_phase",
                   help="edit domain (default csp_phase), or a group/comma-separated list "
                        "compared at one --l2-budget. " + _domain_help())
    m.add_argument("--mode", default="fixed", choices=_lens.MODES)
    m.add_argument("--color", default="luminance", choices=_domains.COLORS)
    m.add_argument("--loss", default="nll", choices=_lens.LOSSES)
    g = m.add_mutually_exclusive_group()
    g.add_argument("--alphas", help="raw amplification factors a,b,c (not comparable across "
                                    "domains)")
    g.add_argument("--step-cap", type=_positive(float),
                   help="max parameter change per frame (radians for phase)")
    g.add_argument("--l2-budget", type=_positive(float),
                   help="frames from the source to L2 distance B")
    m.add_argument("--frames", type=_at_least(1), default=12,
                   help=f"frames (default 12; at most {MAX_FRAMES})")
    m.add_argument("--no-warp", action="store_true", help="with several domains: skip warp fits")
    m.add_argument("--mp4", action="store_true",
                   help="also write an MP4 beside the GIF (ffmpeg from the imageio-ffmpeg wheel)")
    m.add_argument("--seed", type=_at_least(0), default=0, help="seed of the trained classifier")
    m.add_argument("--out", default="outputs/morph", help="output folder (default outputs/morph)")
    m.set_defaults(func=_cmd_morph)
    subs["morph"] = m

    e = sub.add_parser("experiment", help="run a shipped study, experiments/NAME.py, with the "
                       "remaining args")
    e.add_argument("name", help="study name: " + (", ".join(shipped_studies()) or
                                                  "(none found)"))
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
    except Exception as e:  # noqa: BLE001 - anything else: one line, the way to see more
        import os
        if os.environ.get("LENS_JAX_TRACEBACK"):
            raise
        hint = ""
        if isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in str(e) \
                or "out of memory" in str(e).lower():
            hint = " (out of memory: lower --frames or use smaller images)"
        print(f"{subs[args.command].prog}: error: {type(e).__name__}: {_one_line(e, 300)}"
              f"{hint} (LENS_JAX_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
