"""lens_jax: see how a classifier would morph an image toward a target class.

A JAX implementation of arXiv 2506.02300, "Through a Steerable Lens: Magnifying Neural
Network Interpretability via Phase-Based Extrapolation": analyse an image with the
complex steerable pyramid, take ONE class-conditional gradient w.r.t. the pyramid's
phases (``jax.grad``), amplify it and extrapolate linearly (``vmap`` over the
amplification factor), and synthesise the frames of a morph.

>>> import jax.numpy as jnp, lens_jax as lj
>>> logits_fn = lambda x: jnp.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], -1)
>>> m = lj.morph(logits_fn, jnp.full((32, 32), 0.5), target=1, n_frames=4)
>>> m.frames.shape, m.probs.shape
((4, 32, 32, 1), (4, 2))

The data path reads as one line: ``pyramid`` (the transform) -> ``domains`` (edit
parameterisations, a live registry) -> ``lens`` (``morph_stream``, the one single-image core,
under ``morph``, ``morph_batch`` and ``sweep.run``; ``classifier`` normalises models and owns
``predict`` and the one guarded softmax; ``schedule`` the amplifications; ``checks`` the
argument checks) -> ``sweep`` / ``compare`` / ``evaluate`` / ``metrics`` -> ``viz``,
``report`` and the CLI.  Study orchestration lives in ``lens_jax.studies``, which the core
never imports.  ``import lens_jax`` loads jax, numpy and the core modules only; ``data``,
``viz``, ``metrics``, ``compare``, ``models``, ``train``, ``pretrained``, ``images`` (and
their plotting, imaging, training and data stacks) load on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from . import classifier, domains, lens, pyramid, schedule
from .classifier import (Classifier, ClassifierError, Preprocess, as_classifier, fold_params,
                         guarded_softmax, predict, predict_proba, with_preprocess)
from .domains import (COLORS, DOMAINS, PAPER_DOMAINS, PROTOCOL_DOMAINS, REGISTRY, Domain,
                      DomainSpec, default_pyramid, domain_names, get_domain, register)
from .lens import (LOSSES, MODES, Edit, Morph, budget_alphas, check_image, map_batched, morph,
                   morph_batch, morph_frames, morph_stream, polar_grads, prepare_edit)
from .pyramid import (PyramidCoeffs, PyrTensorInfo, SteerablePyramid, amplitude,
                      convert_pyr_to_tensor, convert_tensor_to_pyr, expand, from_plenoptic,
                      from_pyrtools, modulate_phase, phase, polar, scale_phase,
                      steering_weights, to_plenoptic, to_pyrtools, wrap_phase)
from .schedule import Schedule
from . import sweep                      # the module: lj.sweep.run, lj.sweep.load
from .sweep import SweepResult, sweep_mesh

__version__ = "0.1.0"

# name -> (submodule, attribute or None for the module itself), loaded on first use
_LAZY = {
    "compare_domains": ("compare", "compare_domains"),
    "morph_figure": ("compare", "morph_figure"),
    "COMPARE_DOMAINS": ("compare", "COMPARE_DOMAINS"),
    "DOMAIN_LABELS": ("compare", "DOMAIN_LABELS"),
    "read_image": ("images", "read_image"),
}
_LAZY_MODULES = ("data", "viz", "metrics", "compare", "models", "train", "pretrained",
                 "cli", "evaluate", "report", "flow", "warp", "multihost", "reader",
                 "images")

__all__ = [
    # pyramid
    "SteerablePyramid", "PyramidCoeffs", "amplitude", "phase", "polar", "wrap_phase",
    "modulate_phase", "to_pyrtools", "from_pyrtools", "to_plenoptic", "from_plenoptic",
    "scale_phase", "expand", "steering_weights", "convert_pyr_to_tensor",
    "convert_tensor_to_pyr", "PyrTensorInfo",
    # domains
    "DOMAINS", "COLORS", "REGISTRY", "Domain", "DomainSpec", "register", "get_domain",
    "default_pyramid", "domain_names", "PAPER_DOMAINS", "PROTOCOL_DOMAINS",
    # classifiers and schedules
    "Classifier", "as_classifier", "fold_params", "Schedule", "predict", "predict_proba",
    "guarded_softmax", "with_preprocess", "Preprocess", "ClassifierError",
    # lens
    "morph", "morph_batch", "morph_stream", "morph_frames", "MODES", "LOSSES", "map_batched",
    "check_image", "Morph", "prepare_edit", "Edit", "budget_alphas", "polar_grads",
    # scale-out
    "sweep", "sweep_mesh", "SweepResult",
    # comparisons at matched image change (lazy: plotting stack)
    "compare_domains", "morph_figure", "COMPARE_DOMAINS", "DOMAIN_LABELS",
    # image files (lazy: Pillow)
    "read_image",
    # submodules (the light ones are loaded; the rest on first use)
    "pyramid", "domains", "lens", "classifier", "schedule", "data", "metrics", "viz",
    "models",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_LAZY_MODULES))
