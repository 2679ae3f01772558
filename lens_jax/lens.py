"""The lens: one class-conditional gradient in a transform domain, amplified and swept.

    image --analyse--> state --(params: phase / log-amplitude / pixel increments)-->
          render (synthesise, colour merge, clip) --> logits_fn --> loss
    g = jax.grad(loss)(0)      once, at the source (the paper's "fixed" gradient)
    frames = vmap over alpha of render(-alpha * g)

:func:`morph` is the one-call API; :func:`prepare_edit` exposes the pieces (render,
loss, zeros) for users composing their own loops.

Clipping: frames are clipped to [0, 1] (part of the operator, as in the follow-up
protocol).  At zero edit the synthesis equals the source only up to round-off, so
pixels at exactly 0 or 1 (most of an MNIST background) land a hair outside [0, 1];
a hard clip would zero their gradient.  The gradient therefore passes the clip
*straight through* (``x + stop_gradient(clip(x) - x)``: clipped values, identity
derivative); frames and distances use the ordinary clip.  ``straight_through=False``
restores the hard clip's zero derivative.
"""
from __future__ import annotations

import math
import weakref
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .domains import DOMAINS, COLORS, Domain, get_domain, merge_color, split_color
from .pyramid import SteerablePyramid

__all__ = ["Morph", "Edit", "morph", "morph_batch", "prepare_edit", "budget_alphas", "polar_grads",
           "LOSSES", "MODES", "DEFAULT_FINAL_CHANGE"]

LOSSES = ("nll", "margin")
MODES = ("fixed", "live", "live_local")

# automatic schedule (no alphas / step_cap / l2_budget): the last frame changes the
# edited parameter by at most this much (radians for phases, e-folds for amplitude,
# grey levels for pixels)
DEFAULT_FINAL_CHANGE = {"pixel": 1.0, "fourier_phase": math.pi, "csp_phase": math.pi,
                        "csp_amplitude": 1.0, "csp_joint": math.pi}

_GRID = 1e-4 * 2.0 ** np.arange(30)     # budget search: max parameter change per frame
_BISECT_ITERS = 24                       # bracket [a, 2a] -> relative width 6e-8


class Morph(NamedTuple):
    """Result of :func:`morph`; a pytree (works under ``jit``/``vmap``).

    Attributes:
      frames: ``(n, H, W, C)`` images in [0, 1]; ``frames[i]`` is the source where
        ``alphas[i] == 0``.
      alphas: ``(n,)`` amplification of each frame (cumulative step for live modes).
      logits: ``(n, K)`` ``logits_fn`` at every frame.
      probs: ``(n, K)`` softmax of ``logits``.
      l2: ``(n,)`` L2 distance of each frame to the source (all channels, [0, 1] scale).
      grad: the transform-domain gradient of the loss at the source: a dict
        ``{"phase"|"logamp"|"pixel": ...}`` shaped like the edit parameters.
      target, source: ``()`` int classes (source = argmax at the image if not given).
      reached: ``(n,)`` bool; False where an L2 budget was never reached (the frame is
        then the farthest one found).  All True for raw alphas.
      max_change: ``(n,)`` the largest |edit parameter| of each frame over all bands and
        positions: radians for the phase domains (``csp_joint``: its phase), log-amplitude
        for ``csp_amplitude``, grey levels for ``pixel``.  Above pi a phase edit wraps
        (the morph stops being a small displacement).  ``live_local`` re-analyses every
        frame, so there it is the sum of the per-step maxima (an upper bound).
    """
    frames: jax.Array
    alphas: jax.Array
    logits: jax.Array
    probs: jax.Array
    l2: jax.Array
    grad: Any
    target: jax.Array
    source: jax.Array
    reached: jax.Array
    max_change: jax.Array

    @property
    def target_prob(self) -> jax.Array:
        return jnp.take_along_axis(self.probs, self.target[..., None, None], axis=-1)[..., 0]

    @property
    def source_prob(self) -> jax.Array:
        return jnp.take_along_axis(self.probs, self.source[..., None, None], axis=-1)[..., 0]

    @property
    def margin(self) -> jax.Array:
        t = jnp.take_along_axis(self.logits, self.target[..., None, None], axis=-1)[..., 0]
        s = jnp.take_along_axis(self.logits, self.source[..., None, None], axis=-1)[..., 0]
        return t - s

    @property
    def pred(self) -> jax.Array:
        return jnp.argmax(self.logits, axis=-1)


class Edit(NamedTuple):
    """The pieces of a lens edit for one image (see :func:`prepare_edit`).

    ``render(params, straight_through=True) -> (H, W, C)`` clipped image;
    ``loss(params) -> ()``; ``zeros``: the identity edit; ``domain``; ``source``.
    """
    render: Callable
    loss: Callable
    zeros: Any
    domain: Domain
    source: jax.Array
    num_classes: int


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_values(a: np.ndarray) -> None:
    """NaN/Inf and [0, 1] checks of concrete image values (host array)."""
    if not np.all(np.isfinite(a)):
        raise ValueError(f"image contains {int(np.sum(~np.isfinite(a)))} NaN/Inf values")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"image values must lie in [0, 1]; got range [{lo:.4g}, {hi:.4g}]")


def _check_image(image) -> jax.Array:
    if not hasattr(image, "dtype"):
        image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C); got shape {tuple(image.shape)} "
                         "(use jax.vmap for batches)")
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise ValueError(f"image must be float in [0, 1]; got dtype {image.dtype}")
    if _is_concrete(image):
        _check_values(np.asarray(image))
    image = jnp.asarray(image)
    if image.dtype in (jnp.bfloat16, jnp.float16):
        image = image.astype(jnp.float32)
    return image


def _clip(x, straight_through: bool):
    y = jnp.clip(x, 0.0, 1.0)
    return x + jax.lax.stop_gradient(y - x) if straight_through else y


def _check_class(name: str, value, K: int) -> jax.Array:
    """One integer class in 0..K-1 (range checked when concrete), as int32."""
    traced = isinstance(value, jax.core.Tracer)
    v = value if traced else np.asarray(value)
    if v.ndim != 0 or not jnp.issubdtype(v.dtype, jnp.integer):
        raise ValueError(f"{name} must be one integer class; got {value!r}")
    if traced:
        return v.astype(jnp.int32)
    if not 0 <= int(v) < K:
        raise ValueError(f"{name} class {int(v)} is outside the classifier's "
                         f"{K} classes (0..{K - 1})")
    return jnp.asarray(v, jnp.int32)


# logits_fn -> {(H, W, C, dtype): num_classes}; weak keys, so a cached check never keeps a
# model (and its parameters) alive.  Saves an eval_shape trace (~0.5 ms) per call.
_CLASS_COUNT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _num_classes(logits_fn, hwc: tuple, dtype) -> int:
    """The class count of ``logits_fn`` on ``(1, H, W, C)`` input; ValueError if its output
    is not ``(1, num_classes >= 2)``."""
    key = tuple(hwc) + (jnp.dtype(dtype).name,)
    try:
        cache = _CLASS_COUNT.setdefault(logits_fn, {})
    except TypeError:          # unhashable or not weak-referenceable: no cache
        cache = {}
    if key not in cache:
        out = jax.eval_shape(logits_fn, jax.ShapeDtypeStruct((1,) + tuple(hwc), dtype))
        if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != 1 \
                or out.shape[1] < 2:
            H, W, C = hwc
            raise ValueError("logits_fn must map a batch (N, H, W, C) to logits (N, "
                             f"num_classes) with num_classes >= 2; for input (1, {H}, {W}, "
                             f"{C}) it returned {getattr(out, 'shape', type(out).__name__)}")
        cache[key] = int(out.shape[1])
    return cache[key]


def _validate(logits_fn, image, target, source, domain, loss, color, pyramid):
    """Shape/config checks (always) and value checks (when concrete).

    Returns ``(image, domain, num_classes, target, source)``; ``source`` may be None."""
    image = _check_image(image)
    H, W, C = image.shape
    if color not in COLORS:
        raise ValueError(f"unknown color mode {color!r}; choose one of {COLORS}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    dom = get_domain(domain, (H, W), pyramid)
    if color == "gray" and C != 1:
        raise ValueError(f"color='gray' needs a one-channel image; got {C} channels "
                         "(use color='luminance' or 'rgb')")
    if color == "luminance" and C not in (1, 3):
        raise ValueError(f"color='luminance' needs 1 or 3 channels; got {C}")
    K = _num_classes(logits_fn, (H, W, C), image.dtype)
    target = _check_class("target", target, K)
    if source is not None:
        source = _check_class("source", source, K)
    return image, dom, K, target, source


def prepare_edit(logits_fn: Callable, image, *, target, source=None,
                 domain: str = "csp_phase", loss: str = "nll", color: str = "luminance",
                 pyramid: SteerablePyramid | None = None) -> Edit:
    """Analyse ``image`` once and return pure ``render``/``loss`` functions of the
    edit parameters.  Validates shapes and (when concrete) values; see :func:`morph`.

    >>> import jax, jax.numpy as jnp, lens_jax as lj
    >>> f = lambda x: jnp.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], -1)
    >>> ed = lj.prepare_edit(f, jnp.full((16, 16), 0.5), target=1)
    >>> g = jax.grad(ed.loss)(ed.zeros)            # one gradient in the phase domain
    >>> ed.render(jax.tree.map(lambda a: -2.0 * a, g)).shape
    (16, 16, 1)
    """
    image, dom, K, target, source = _validate(logits_fn, image, target, source, domain,
                                              loss, color, pyramid)
    H, W, C = image.shape
    if source is None:
        source = jnp.argmax(logits_fn(image[None])[0]).astype(jnp.int32)

    x, rest = split_color(image, color)
    state = dom.analyse(x)
    zeros = dom.zeros(state)

    def render(params, straight_through: bool = True):
        y = merge_color(dom.render(state, params, (H, W)), rest, color)
        return _clip(y.astype(image.dtype), straight_through)

    def loss_fn(params, straight_through: bool = True):
        z = logits_fn(render(params, straight_through)[None])[0]
        if loss == "nll":
            return -jax.nn.log_softmax(z)[target]
        return -(z[target] - z[source])

    return Edit(render, loss_fn, zeros, dom, source, K)


def _max_abs(tree) -> jax.Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(l)) for l in jax.tree.leaves(tree)]))


def _scale(tree, a):
    return jax.tree.map(lambda g: -a * g, tree)


def polar_grads(c: jax.Array, gj: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Phase and log-amplitude gradients from ``gj = jax.grad(L)(c)`` w.r.t. complex ``c``.

    JAX returns the *conjugate* of ``dL/dRe + i dL/dIm`` for a real function of a complex
    argument (method.md section 11), so ``dL/dphi = -Im(c * gj)`` and
    ``dL/dln|c| = Re(c * gj)``.  The lens never needs this (it differentiates w.r.t. real
    ``delta``, ``eta``); it is here for users holding complex gradients.
    """
    cg = c * gj
    return -jnp.imag(cg), jnp.real(cg)


def _l2(frame, image):
    return jnp.sqrt(jnp.sum((frame - image) ** 2))


def budget_alphas(dist_fn: Callable, budgets: jax.Array, unit: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
    """Vectorised search of ``alpha`` with ``dist_fn(alpha) == budget``.

    Scans a doubling grid ``unit * 1e-4 * 2**k`` (``k < 30``), takes the first bracket
    where the distance reaches each budget (distance need not be monotone: phases wrap,
    pixels clip), and bisects inside it.  Returns ``(alphas, reached)``; an unreached
    budget gets the grid alpha of largest distance.
    """
    grid = jnp.asarray(_GRID, unit.dtype) * unit
    d = jax.vmap(dist_fn)(grid)
    hit = d[None, :] >= budgets[:, None]
    reached = jnp.any(hit, axis=1)
    k = jnp.argmax(hit, axis=1)
    lo = jnp.where(k > 0, grid[jnp.maximum(k - 1, 0)], 0.0)
    hi = grid[k]

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        ok = jax.vmap(dist_fn)(mid) >= budgets
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    lo, hi = jax.lax.fori_loop(0, _BISECT_ITERS, body, (lo, hi))
    far = grid[jnp.argmax(d)]
    return jnp.where(reached, hi, far), reached


def morph(logits_fn: Callable, image, *, target, source=None, domain: str = "csp_phase",
          alphas=None, loss: str = "nll", mode: str = "fixed",
          pyramid: SteerablePyramid | None = None, color: str = "luminance",
          step_cap: float | None = None, l2_budget=None, n_frames: int = 12,
          chunk_size: int | None = None, _batch: Any = None) -> Morph:
    """Morph ``image`` toward class ``target`` by extrapolating one class gradient.

    Args:
      logits_fn: JAX function ``(N, H, W, C)`` images in [0, 1] -> ``(N, K)`` logits.
      image: ``(H, W, C)`` or ``(H, W)`` float in [0, 1].
      target: target class; ``source``: source class for the margin loss and
        reporting (default: the classifier's prediction at ``image``).
      domain: ``"pixel"``, ``"fourier_phase"``, ``"csp_phase"`` (the paper's),
        ``"csp_amplitude"`` or ``"csp_joint"``.
      alphas: raw amplification factors ``(n,)``; frame ``i`` is
        ``render(-alphas[i] * g)``.
      loss: ``"nll"`` (``-log p(target)``) or ``"margin"`` (``-(z_target - z_source)``).
      mode: ``"fixed"`` (one gradient at the source: the method), ``"live"`` (gradient
        recomputed after each step, persistent coordinates of the source
        decomposition) or ``"live_local"`` (re-analyse each frame, step from its
        gradient).  In live modes ``alphas`` are cumulative step sizes, so
        ``alphas=[0, a]`` gives the same frames in every mode.
      pyramid: a complex :class:`SteerablePyramid` plan for the image size (default:
        order 3, all scales, tight frame, adjoint synthesis).
      color: ``"luminance"`` (edit Y of YIQ), ``"rgb"`` (every channel) or ``"gray"``.
      step_cap: instead of ``alphas``: ``n_frames`` frames whose edit parameters change
        by at most ``step_cap`` per frame (radians for phase; per step in live modes).
      l2_budget: instead of ``alphas``: a scalar ``B`` gives ``n_frames`` frames from the
        source to the frame at L2 distance ``B``; a 1-D array gives one frame per budget
        (the endpoints, for comparisons at equal image change across domains).
      n_frames: frames for ``step_cap``, scalar ``l2_budget`` and the automatic schedule.
      chunk_size: render/classify at most this many frames at once (bounds memory).

    With none of ``alphas``, ``step_cap``, ``l2_budget``, the schedule is automatic:
    ``n_frames`` frames up to a final change of ``DEFAULT_FINAL_CHANGE[domain]``.

    Raises:
      ValueError: bad image (rank, dtype, NaN/Inf, outside [0, 1]), target/source
        outside the classes, ``logits_fn`` output of the wrong shape, empty or
        non-finite alphas, an image size the pyramid cannot take, unknown domain,
        loss, mode or colour, conflicting schedules.
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {DOMAINS}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    chosen = [n for n, v in (("alphas", alphas), ("step_cap", step_cap),
                             ("l2_budget", l2_budget)) if v is not None]
    if len(chosen) > 1:
        raise ValueError(f"give at most one schedule; got {', '.join(chosen)}")
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1; got {n_frames}")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    if step_cap is not None and _is_concrete(jnp.asarray(step_cap)) and \
            not (np.isfinite(float(step_cap)) and float(step_cap) > 0):
        raise ValueError(f"step_cap must be a positive finite number; got {step_cap}")
    if _batch is not None:   # morph_batch validated the batch and passes its first image
        batch_image, batch_target, batch_source = image, target, source
        image, dom, _, target, source = _validate(
            logits_fn, _batch, 0, None, domain, loss, color, pyramid)
    else:
        image, dom, _, target, source = _validate(logits_fn, image, target, source, domain,
                                                  loss, color, pyramid)
    dtype = image.dtype

    budgets, scalar_budget = None, False
    if alphas is not None:
        alphas = jnp.asarray(alphas, dtype)
        if alphas.ndim != 1 or alphas.shape[0] == 0:
            raise ValueError(f"alphas must be a non-empty 1-D array; got shape {alphas.shape}")
        if _is_concrete(alphas) and not np.all(np.isfinite(np.asarray(alphas))):
            raise ValueError("alphas contain NaN/Inf")
        if mode != "fixed" and _is_concrete(alphas) and np.any(np.diff(np.asarray(alphas)) < 0):
            raise ValueError("live modes need non-decreasing alphas (cumulative steps)")
    if l2_budget is not None:
        budgets = jnp.asarray(l2_budget, dtype)
        scalar_budget = budgets.ndim == 0
        budgets = jnp.atleast_1d(budgets)
        if budgets.ndim != 1 or budgets.shape[0] == 0:
            raise ValueError(f"l2_budget must be a number or a non-empty 1-D array; "
                             f"got shape {budgets.shape}")
        if _is_concrete(budgets) and not np.all(np.asarray(budgets) > 0):
            raise ValueError(f"l2_budget values must be positive; got {np.asarray(budgets)}")
    if alphas is None and budgets is None and step_cap is None:
        step_cap = DEFAULT_FINAL_CHANGE[domain] / max(int(n_frames) - 1, 1)
    if step_cap is not None:
        step_cap = jnp.asarray(step_cap, dtype)

    static = dict(logits_fn=logits_fn, domain=domain, loss=loss, mode=mode,
                  pyramid=dom.pyramid, color=color, n_frames=int(n_frames),
                  chunk_size=None if chunk_size is None else int(chunk_size),
                  scalar_budget=bool(scalar_budget))
    try:
        hash(logits_fn)
        hashable = True
    except TypeError:          # e.g. an equinox module holding arrays: run eagerly
        hashable = False
    # Two stages: (1) gradient + frames, (2) the classifier on every frame.  Run eagerly,
    # each stage is its own XLA program: a classifier compiled alone keeps its weights as
    # constants inside one fused kernel, which on CPU ran about 2x faster than the same
    # network sharing its weights with the gradient in one program (weights repacked on
    # every call; benchmarks/RESULTS.md).  Under a caller's jit both stages inline.
    classify = _classify_jit if hashable else _classify
    if _batch is None:
        core = _morph_core_jit if hashable else _morph_core
        m = core(image, target, source, alphas, budgets, step_cap, **static)
        logits, probs = classify(m.frames, logits_fn=logits_fn, chunk_size=static["chunk_size"])
        return m._replace(logits=logits, probs=probs)

    core = _morph_batch_jit if hashable else _morph_batch_core
    images = jnp.asarray(batch_image, dtype)
    targets = batch_target.astype(jnp.int32)
    sources = None if batch_source is None else batch_source.astype(jnp.int32)
    n = images.shape[0]
    per_call = n
    eager = all(_is_concrete(a) for a in (images, targets, sources) if a is not None)
    if hashable and eager and jax.default_backend() == "cpu":
        # CPU: the frames' intermediates (K complex band images per frame) exceed the
        # cache for big batches and the sweep turns memory-bound; a few images per call
        # keep them cache-resident (64 images x 16 alphas of 64x64: about 1.3x faster)
        n_per_image = alphas.shape[0] if alphas is not None else int(n_frames)
        if budgets is not None:
            n_per_image = max(n_per_image, budgets.shape[0], 30)
        H, W = images.shape[1:3]
        c_edit = images.shape[3] if color == "rgb" else 1
        frame_bytes = 32 * H * W * c_edit
        per_call = int(min(n, max(1, _CPU_CALL_BYTES // (frame_bytes * n_per_image))))
    parts = []
    for i in range(0, n, per_call):
        idx = np.minimum(np.arange(i, i + per_call), n - 1)   # pad the last call: no recompile
        sel = idx if per_call < n else slice(None)
        m = core(images[sel], targets[sel], None if sources is None else sources[sel],
                 alphas, budgets, step_cap, **static)
        logits, probs = classify(m.frames, logits_fn=logits_fn, chunk_size=static["chunk_size"])
        parts.append(m._replace(logits=logits, probs=probs))
    if len(parts) == 1:
        return parts[0]
    return jax.tree.map(lambda *a: jnp.concatenate(a)[:n], *parts)


_CPU_CALL_BYTES = 8 << 20     # see morph(): frames' working set per call on CPU


def _classify(frames, *, logits_fn, chunk_size):
    """Logits and softmax of ``logits_fn`` on frames ``(..., H, W, C)`` as one flat batch
    (``chunk_size`` frames at a time when given)."""
    lead = frames.shape[:-3]
    flat = frames.reshape((-1,) + frames.shape[-3:])
    if chunk_size is None:
        logits = logits_fn(flat)
    else:
        logits = jax.lax.map(lambda x: logits_fn(x[None])[0], flat, batch_size=int(chunk_size))
    logits = logits.reshape(lead + logits.shape[1:])
    return logits, jax.nn.softmax(logits, axis=-1)


_classify_jit = jax.jit(_classify, static_argnames=("logits_fn", "chunk_size"))


def _morph_core(image, target, source, alphas, budgets, step_cap, *, logits_fn, domain,
                loss, mode, pyramid, color, n_frames, chunk_size, scalar_budget):
    """Gradient and frames of one image; ``logits``/``probs`` are left None (morph adds
    them with :func:`_classify`, a separate program when run eagerly)."""
    dtype = image.dtype
    ed = prepare_edit(logits_fn, image, target=target, source=source, domain=domain,
                      loss=loss, color=color, pyramid=pyramid)
    grad_fn = jax.grad(ed.loss)
    g0 = grad_fn(ed.zeros)
    unit0 = _safe_inv(_max_abs(g0))

    reached = None
    if mode == "fixed":
        def render_a(a):
            return ed.render(_scale(g0, a), straight_through=False)

        if budgets is not None:
            found, ok = budget_alphas(lambda a: _l2(render_a(a), image), budgets, unit0)
            if scalar_budget:
                alphas = jnp.linspace(0.0, 1.0, int(n_frames), dtype=dtype) * found[0]
                reached = jnp.broadcast_to(ok[0], alphas.shape)
            else:
                alphas, reached = found, ok
        elif step_cap is not None:
            alphas = jnp.arange(int(n_frames), dtype=dtype) * (step_cap * unit0)
        if chunk_size is None:
            frames = jax.vmap(render_a)(alphas)
        else:
            frames = jax.lax.map(render_a, alphas, batch_size=int(chunk_size))
        change = jnp.abs(alphas) * _edit_size(g0)
    else:
        def run(steps):
            return _live(ed, image, steps, mode, step_cap=None, grad_fn=grad_fn,
                         color=color, logits_fn=logits_fn,
                         target=target, loss=loss)

        if budgets is not None:
            n = int(n_frames)

            def dist(step):
                steps = jnp.concatenate([jnp.zeros((1,), dtype),
                                         jnp.full((n - 1,), step, dtype)])
                fr, _, _ = run(steps)
                return _l2(fr[-1], image)

            found, ok = budget_alphas(dist, budgets, unit0 / max(n - 1, 1))
            if scalar_budget:
                steps = jnp.concatenate([jnp.zeros((1,), dtype),
                                         jnp.full((n - 1,), found[0], dtype)])
                frames, alphas, change = run(steps)
                reached = jnp.broadcast_to(ok[0], alphas.shape)
            else:
                def endpoint(step):
                    steps = jnp.concatenate([jnp.zeros((1,), dtype),
                                             jnp.full((n - 1,), step, dtype)])
                    fr, al, ch = run(steps)
                    return fr[-1], al[-1], ch[-1]
                frames, alphas, change = jax.vmap(endpoint)(found)
                reached = ok
        elif step_cap is not None:
            frames, alphas, change = _live(ed, image, jnp.zeros((int(n_frames),), dtype), mode,
                                   step_cap=step_cap, grad_fn=grad_fn, color=color,
                                   logits_fn=logits_fn, target=target,
                                   loss=loss)
        else:
            steps = jnp.diff(alphas, prepend=jnp.zeros((1,), dtype))
            frames, alphas, change = run(steps)

    frames = jnp.where((alphas == 0)[:, None, None, None], image[None], frames)
    if reached is None:
        reached = jnp.ones(alphas.shape, bool)
    l2 = jax.vmap(_l2, in_axes=(0, None))(frames, image)
    return Morph(frames, alphas, None, None, l2, g0, jnp.asarray(target, jnp.int32),
                 ed.source, reached, change)


_STATIC = ("logits_fn", "domain", "loss", "mode", "pyramid", "color", "n_frames",
           "chunk_size", "scalar_budget")
_morph_core_jit = jax.jit(_morph_core, static_argnames=_STATIC)


def _morph_batch_core(images, targets, sources, alphas, budgets, step_cap, **static):
    def one(img, t, s):
        return _morph_core(img, t, s, alphas, budgets, step_cap, **static)
    if sources is None:
        return jax.vmap(lambda i, t: one(i, t, None))(images, targets)
    return jax.vmap(one)(images, targets, sources)


_morph_batch_jit = jax.jit(_morph_batch_core, static_argnames=_STATIC)


def morph_batch(logits_fn: Callable, images, *, target, source=None, **kwargs) -> Morph:
    """:func:`morph` for a batch ``(N, H, W, C)`` (or ``(N, H, W)``) of images.

    Same keywords as :func:`morph`; ``target`` / ``source`` are scalars or ``(N,)``.
    Returns a :class:`Morph` whose fields have a leading ``N`` axis.  Equivalent to
    ``jax.vmap(lambda x, t: morph(...))`` but the classifier sees the ``N * n_alpha``
    frames as ONE flat batch: convolutions under a double ``vmap`` can be several times
    slower on CPU than on the flattened batch.
    """
    if not hasattr(images, "dtype"):
        images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be (N, H, W[, C]) with N >= 1; got {images.shape}")
    n = images.shape[0]
    concrete = _is_concrete(images)
    if concrete:                       # one host copy for every value check
        host = np.asarray(images)
        if not jnp.issubdtype(host.dtype, jnp.floating):
            raise ValueError(f"image must be float in [0, 1]; got dtype {host.dtype}")
        _check_values(host)
        first = host[0]
    else:
        first = images[0]
    # shapes, domain and the class count via the first image (eval_shape is cached)
    _, _, K, _, _ = _validate(logits_fn, first, 0, None, kwargs.get("domain", "csp_phase"),
                              kwargs.get("loss", "nll"), kwargs.get("color", "luminance"),
                              kwargs.get("pyramid"))
    classes = []
    for name, v in (("target", target), ("source", source)):
        if v is None:
            classes.append(None)
            continue
        if not isinstance(v, jax.core.Tracer):
            v = np.asarray(v)
            if not np.issubdtype(v.dtype, np.integer):
                raise ValueError(f"{name} must be integer classes; got dtype {v.dtype}")
            v = np.broadcast_to(v, (n,))
            bad = np.flatnonzero((v < 0) | (v >= K))
            if bad.size:
                raise ValueError(f"{name} class {int(v[bad[0]])} (image {int(bad[0])}) is "
                                 f"outside the classifier's {K} classes (0..{K - 1})")
        elif not jnp.issubdtype(v.dtype, jnp.integer):
            raise ValueError(f"{name} must be integer classes; got dtype {v.dtype}")
        classes.append(jnp.broadcast_to(jnp.asarray(v), (n,)))
    targets, sources = classes
    return morph(logits_fn, images, target=targets, source=sources, _batch=first, **kwargs)


def _edit_size(params: dict) -> jax.Array:
    """Largest |value| of an edit (its phase part when it has one), as a scalar."""
    return _max_abs(params["phase"] if "phase" in params else params)


def _safe_inv(m):
    return jnp.where(m > 0, 1.0 / jnp.where(m > 0, m, 1.0), 1.0)


def _live(ed: Edit, image, steps, mode, *, step_cap, grad_fn, color, logits_fn, target, loss):
    """Live extrapolation with ``lax.scan``: returns frames, cumulative alphas and each
    frame's ``max_change`` (see :class:`Morph`).

    ``steps[n]`` is the raw step before frame ``n`` (``steps[0] == 0`` keeps the source
    as the first frame); with ``step_cap`` each step is ``step_cap / max|g_n|`` instead
    (and frame 0 is the source).
    """
    dtype = image.dtype
    if mode == "live":
        def body(carry, step):
            params, acc, n = carry
            g = grad_fn(params)
            if step_cap is not None:
                step = jnp.where(n == 0, 0.0, step_cap * _safe_inv(_max_abs(g))).astype(dtype)
            params = jax.tree.map(lambda p, gg: p - step * gg, params, g)
            acc = acc + step
            return (params, acc, n + 1), (ed.render(params, straight_through=False), acc,
                                          _edit_size(params))

        _, out = jax.lax.scan(body, (ed.zeros, jnp.zeros((), dtype), 0), steps)
        return out

    # live_local: re-analyse every frame, step from the gradient at that frame
    def body(carry, step):
        x, acc, n, ch = carry
        e = prepare_edit(logits_fn, x, target=target, source=ed.source,
                         domain=ed.domain.name, loss=loss, color=color,
                         pyramid=ed.domain.pyramid)
        g = jax.grad(e.loss)(e.zeros)
        if step_cap is not None:
            step = jnp.where(n == 0, 0.0, step_cap * _safe_inv(_max_abs(g))).astype(dtype)
        x_new = e.render(_scale(g, step), straight_through=False)
        x_new = jnp.where(step == 0, x, x_new)
        ch = ch + jnp.abs(step) * _edit_size(g)
        return (x_new, acc + step, n + 1, ch), (x_new, acc + step, ch)

    zero = jnp.zeros((), dtype)
    _, out = jax.lax.scan(body, (image, zero, 0, zero), steps)
    return out
