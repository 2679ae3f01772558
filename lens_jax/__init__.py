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

Modules: ``pyramid`` (the transform), ``domains`` (edit parameterisations), ``lens``
(``morph``), ``metrics``, ``viz``, ``data``, ``models``, ``train``, ``pretrained``,
``sweep``.
"""
from . import data, metrics, viz
from .compare import COMPARE_DOMAINS, DOMAIN_LABELS, compare_domains, morph_figure
from .domains import DOMAINS, COLORS, Domain, get_domain, default_pyramid
from .lens import Edit, Morph, budget_alphas, morph, morph_batch, polar_grads, prepare_edit
from .sweep import SweepResult, load_sweep, sweep, sweep_mesh
from .pyramid import (PyramidCoeffs, SteerablePyramid, amplitude, from_plenoptic,
                      from_pyrtools, modulate_phase, phase, polar, to_plenoptic,
                      to_pyrtools, wrap_phase)

__version__ = "0.1.0"

__all__ = [
    # pyramid
    "SteerablePyramid", "PyramidCoeffs", "amplitude", "phase", "polar", "wrap_phase",
    "modulate_phase", "to_pyrtools", "from_pyrtools", "to_plenoptic", "from_plenoptic",
    # lens
    "morph", "morph_batch", "Morph", "prepare_edit", "Edit", "budget_alphas", "polar_grads",
    "DOMAINS", "COLORS", "Domain", "get_domain", "default_pyramid",
    # scale-out (note: ``lens_jax.sweep`` is the function; the module is
    # ``lens_jax.sweep`` only through ``from lens_jax.sweep import ...``)
    "sweep", "load_sweep", "sweep_mesh", "SweepResult",
    # comparisons at matched image change
    "compare_domains", "morph_figure", "COMPARE_DOMAINS", "DOMAIN_LABELS",
    # submodules
    "data", "metrics", "viz",
]
