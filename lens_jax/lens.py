"""The lens: one class-conditional gradient in a transform domain, amplified and swept.

    image --analyse--> state --(params: phase / log-amplitude / pixel increments)-->
          render (synthesise, colour merge, clip) --> classifier --> loss
    g = jax.grad(loss)(0)      once, at the source (the paper's "fixed" gradient)
    frames = vmap over alpha of render(-alpha * g)

:func:`morph` is the one-call API for one image, :func:`morph_batch` for a batch; both,
and the sweep, run the one single-image core :func:`morph_stream` (gradient, frames,
the classifier at every frame, and every guard below), which can also stream: render
and classify a few frames at a time without keeping them.  :func:`map_batched` splits
a batch into calls (:func:`lens_jax._batching.map_chunks`).
:func:`prepare_edit` exposes the pieces (render, loss, zeros) for custom loops.

Classifiers: any form :func:`lens_jax.classifier.as_classifier` accepts (a callable
``logits_fn(images)``, ``(apply_fn, params)``, a flax ``nnx.Module``, a linen
``(module.apply, variables)``).  Parameters are traced arguments of the compiled
programs: new weights of the same shapes reuse them, and a module updated in place is
seen.  Run eagerly, the frames and the classifier pass are two programs.

The edit's pieces live in :mod:`lens_jax._edit`, the live modes in
:mod:`lens_jax._live`.

Clipping: frames are clipped to [0, 1].  At zero edit the synthesis equals the source
only up to round-off, so pixels at exactly 0 or 1 land a hair outside [0, 1] and a hard
clip would zero their gradient.  The gradient therefore passes the clip *straight
through* (``x + stop_gradient(clip(x) - x)``); frames and distances use the ordinary
clip.  ``straight_through=False`` restores the hard clip's zero derivative.

Bad input raises ``ValueError``/``TypeError`` naming the argument.  Values that are
only known under a caller's ``jit`` (a traced target out of range, a classifier whose
logits or gradient are not finite, ``loss="margin"`` with source == target) cannot
raise: that image's frames, probabilities, distances and changes are NaN and its
``reached`` is False, never a valid-looking result.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .checks import (check_bool, check_classes, check_count, check_image, check_margin,
                     check_memory, concrete, num_classes)
from ._batching import map_chunks
from ._edit import (Edit, build, descend, in_groups, l2_distance, loss_value, max_abs,
                    nan_like, safe_inv)
from ._live import live_frames
from .classifier import Classifier, as_classifier, fold_params, guarded_softmax
from .domains import COLORS, Domain, get_domain
from .pyramid import SteerablePyramid
from .schedule import DEFAULT_FINAL_CHANGE, Schedule, budget_alphas, implicit_alphas

__all__ = ["Morph", "Edit", "morph", "morph_batch", "morph_stream", "morph_frames", "prepare_edit",
           "map_batched", "check_image", "budget_alphas", "polar_grads", "Schedule",
           "LOSSES", "MODES", "PROBLEMS", "DEFAULT_FINAL_CHANGE", "CPU_CALL_BYTES"]

LOSSES = ("nll", "margin")
MODES = ("fixed", "live", "live_local")

#: What a non-zero problem code of :func:`morph_frames` means (index = code).
PROBLEMS = ("", "target class outside the classifier's classes",
            "source class outside the classifier's classes",
            "the classifier returned non-finite logits (NaN or inf) at the source image",
            "the gradient at the source is not finite (the logits overflow or the "
            "classifier is not differentiable there)",
            "loss='margin' with source == target has a zero gradient (the morph would do "
            "nothing); choose another target or loss='nll'")

#: On CPU, :func:`morph_batch` renders about this many bytes of band images per call by
#: default: 64 images x 16 alphas of 64x64 ran about 1.3x faster in calls of 4 images
#: (cache-resident) than in one call (memory-bound); ``benchmarks/RESULTS.md``.
CPU_CALL_BYTES = 8 << 20


class Morph(NamedTuple):
    """Result of :func:`morph`; a pytree (works under ``jit``/``vmap``).

    Attributes:
      frames: ``(n, H, W, C)`` images in [0, 1]; ``frames[i]`` is the source where
        ``alphas[i] == 0``.
      alphas: ``(n,)`` amplification of each frame (cumulative step for live modes).
      logits: ``(n, K)`` the classifier at every frame.
      probs: ``(n, K)`` softmax of ``logits`` (NaN where the logits are not finite).
      l2: ``(n,)`` L2 distance of each frame to the source (all channels, [0, 1] scale).
      grad: the transform-domain gradient of the loss at the source: a dict
        ``{"phase"|"logamp"|"pixel": ...}`` shaped like the edit parameters.
      target, source: ``()`` int classes (source = argmax at the image if not given).
      reached: ``(n,)`` bool; False where an L2 budget was never reached (the frame is
        then the farthest one found), where ``stop_before_wrap`` held the frame back,
        and where the frame's probabilities are NaN.  Otherwise True.
      max_change: ``(n,)`` the size of each frame's edit (the domain's ``change``):
        the largest |edit| over all bands and positions, radians for the phase domains
        (``csp_joint``: its phase), log-amplitude for ``csp_amplitude``, grey levels
        for ``pixel``.  ``live_local`` re-analyses every frame, so there it is the sum
        of the per-step sizes (an upper bound).
      wrapped: ``(n,)`` fraction of coefficients whose phase the edit moved by more than
        pi (the morph then stops being a small displacement); NaN for domains without
        a phase and in ``live_local`` mode (no persistent coefficients).
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
    wrapped: jax.Array

    @property
    def target_prob(self) -> jax.Array:
        """``(n,)`` probability of the target class at every frame."""
        return jnp.take_along_axis(self.probs, self.target[..., None, None], axis=-1)[..., 0]

    @property
    def source_prob(self) -> jax.Array:
        """``(n,)`` probability of the source class at every frame."""
        return jnp.take_along_axis(self.probs, self.source[..., None, None], axis=-1)[..., 0]

    @property
    def margin(self) -> jax.Array:
        """``(n,)`` logit of the target minus logit of the source."""
        t = jnp.take_along_axis(self.logits, self.target[..., None, None], axis=-1)[..., 0]
        s = jnp.take_along_axis(self.logits, self.source[..., None, None], axis=-1)[..., 0]
        return t - s

    @property
    def pred(self) -> jax.Array:
        """``(n,)`` the classifier's prediction at every frame."""
        return jnp.argmax(self.logits, axis=-1)


class _Setup(NamedTuple):
    clf: Classifier
    images: jax.Array
    domain: Domain
    K: int
    schedule: Schedule | None


def _setup(model, image, *, batch, domain, domain_options, loss, color, pyramid,
           mode="fixed", schedule_args=None, constant_params=False) -> _Setup:
    """Every check shared by :func:`morph`, :func:`morph_batch` and
    :func:`prepare_edit`: image(s), options, domain, classifier, schedule."""
    images = check_image(image, batch=batch, name="images" if batch else "image")
    H, W, C = images.shape[-3:]
    if color not in COLORS:
        raise ValueError(f"unknown color mode {color!r}; choose one of {COLORS}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    if color == "gray" and C != 1:
        raise ValueError(f"color='gray' needs a one-channel image; got {C} channels "
                         "(use color='luminance' or 'rgb')")
    if color == "luminance" and C not in (1, 3):
        raise ValueError(f"color='luminance' needs 1 or 3 channels; got {C}")
    if isinstance(domain, Domain) and (domain_options or pyramid is not None):
        raise ValueError("domain is a Domain: give its pyramid and options inside it "
                         "(lens_jax.get_domain), not as pyramid= / domain_options=")
    if not isinstance(domain, (str, Domain)):
        raise ValueError(f"domain must be a registry name or a Domain; got {domain!r}")
    if domain_options is not None and not isinstance(domain_options, Mapping):
        raise ValueError(f"domain_options must be a dict; got {type(domain_options).__name__}")
    dom = get_domain(domain, (H, W), pyramid=pyramid, **dict(domain_options or {}))
    # a real (possibly traced) input: the trace keeps its sharding / varying-axes type
    example = images[:1] if batch else images[None]
    clf = as_classifier(model, example=example)
    if constant_params:
        clf = fold_params(clf)
    K = num_classes(clf, example)
    sched = None
    if schedule_args is not None:
        sched = Schedule.parse(**schedule_args, domain=dom, mode=mode, dtype=images.dtype)
    return _Setup(clf, images, dom, K, sched)


def prepare_edit(logits_fn: Any, image, *, target, source=None,
                 domain: "str | Domain" = "csp_phase", loss: str = "nll",
                 color: str = "luminance", pyramid: SteerablePyramid | None = None,
                 domain_options: dict | None = None) -> Edit:
    """Analyse ``image`` once and return pure ``render``/``loss`` functions of the
    edit parameters.  Validates shapes and (when concrete) values; see :func:`morph`.

    >>> import jax, jax.numpy as jnp, lens_jax as lj
    >>> f = lambda x: jnp.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], -1)
    >>> ed = lj.prepare_edit(f, jnp.full((16, 16), 0.5), target=1)
    >>> g = jax.grad(ed.loss)(ed.zeros)            # one gradient in the phase domain
    >>> ed.render(jax.tree.map(lambda a: -2.0 * a, g)).shape
    (16, 16, 1)
    """
    st = _setup(logits_fn, image, batch=False, domain=domain, domain_options=domain_options,
                loss=loss, color=color, pyramid=pyramid)
    t = check_classes("target", target, st.K)
    s = check_classes("source", source, st.K)
    return build(st.clf, st.images, t, s, st.domain, loss, color, st.K)


def polar_grads(c: jax.Array, gj: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Phase and log-amplitude gradients from ``gj = jax.grad(L)(c)`` w.r.t. complex ``c``.

    JAX returns the *conjugate* of ``dL/dRe + i dL/dIm`` for a real function of a complex
    argument, so ``dL/dphi = -Im(c * gj)`` and ``dL/dln|c| = Re(c * gj)``.  The lens
    never needs this (it differentiates w.r.t. real ``delta``, ``eta``); it is here for
    users holding complex gradients.

    >>> [float(v) for v in polar_grads(jnp.asarray(1j), jnp.asarray(2.0 + 0j))]
    [-2.0, 0.0]
    """
    cg = c * gj
    return -jnp.imag(cg), jnp.real(cg)


def morph_stream(clf: Classifier, image, target, source, schedule: Schedule, *,
                 domain: Domain, num_classes: int, loss: str = "nll", mode: str = "fixed",
                 color: str = "luminance", chunk_size: int | None = None,
                 stop_before_wrap: bool = False, keep_frames: bool = True,
                 classify: bool = True) -> tuple[Morph, jax.Array]:
    """The single-image core: the gradient at the source, every frame, and the
    classifier at every frame.  Pure (works under ``jit``, ``vmap`` and ``shard_map``);
    :func:`morph`, :func:`morph_batch` and :mod:`lens_jax.sweep` all run it, so the
    guards below hold in one place.

    Arguments are already validated (:func:`check_image`, :meth:`Schedule.parse`,
    :func:`lens_jax.get_domain`); ``clf`` is a :class:`Classifier`, ``source`` None
    (the prediction at ``image``) or a class.

    Frames are rendered, measured and classified in groups of ``chunk_size`` frames
    (all at once when None).  ``keep_frames=False`` returns ``frames=None``; in fixed
    mode a group's frames are then dropped once classified, so a morph's frames are
    never all in memory (live modes hold them during their scan).  ``keep_frames``
    changes only what is returned, never a value: the same groups are classified
    either way.

    ``classify=False`` skips the classifier pass (``logits``/``probs`` None, ``reached``
    not yet guarded): the caller classifies the frames itself and applies
    :func:`finish` (the eager :func:`morph` path, which classifies every image's frames
    as one flat batch in a second program).

    Returns ``(morph, problem)``: ``problem`` is an int32 code (0: fine; else the index
    into :data:`PROBLEMS`).  A problem makes every float field NaN and ``reached``
    False; a frame whose logits are not finite has NaN ``probs`` and ``reached`` False.
    """
    K = int(num_classes)
    dtype = image.dtype
    chunk = None if chunk_size is None else int(chunk_size)
    ed = build(clf, image, target, source, domain, loss, color, K)
    t = jnp.clip(target, 0, K - 1)

    def loss_aux(p):
        z = clf(ed.render(p, True)[None])[0]
        return loss_value(z, t, ed.source, loss), z

    (_, z0), g0 = jax.value_and_grad(loss_aux, has_aux=True)(ed.zeros)
    unit0 = safe_inv(max_abs(g0))
    n = schedule.n_frames
    alphas, budgets, step_cap = schedule.arrays()
    reached = None
    if stop_before_wrap and (mode != "fixed" or not domain.spec.has_phase):
        raise ValueError("stop_before_wrap needs mode='fixed' and a domain with a phase "
                         f"(got mode={mode!r}, domain {domain.name!r})")

    def classify_group(frames):
        return {"logits": clf(frames)} if classify else {}

    if mode == "fixed":
        # a phase domain's change is its largest phase change, linear in alpha; a few
        # ulps below pi, so round-off in alpha * g never lands a phase past pi
        shrink = 1.0 - 8.0 * float(jnp.finfo(dtype).eps)
        a_wrap = (math.pi * shrink * safe_inv(ed.change(g0))).astype(dtype) \
            if stop_before_wrap else None

        def cap(a):
            return a if a_wrap is None else jnp.clip(a, -a_wrap, a_wrap)

        def render_a(a):
            return ed.render(descend(g0, cap(a)), straight_through=False)

        if schedule.kind in ("budget", "budgets"):
            def dist(a):
                return l2_distance(render_a(a), image)
            found, ok = budget_alphas(dist, budgets, unit0, chunk=chunk)
            found = cap(implicit_alphas(dist, found, budgets, ok))
            if schedule.kind == "budget":
                alphas = jnp.linspace(0.0, 1.0, n, dtype=dtype) * found[0]
                reached = jnp.broadcast_to(ok[0], alphas.shape)
            else:
                alphas, reached = found, ok
        elif schedule.kind == "step_cap":
            alphas = jnp.arange(n, dtype=dtype) * (step_cap * unit0)
        if a_wrap is not None:
            held = jnp.abs(alphas) > a_wrap
            alphas = cap(alphas)
            reached = ~held if reached is None else reached & ~held

        def group(a):               # render, measure and classify a group of frames
            fr = jax.vmap(render_a)(a)
            fr = jnp.where((a == 0)[:, None, None, None], image[None], fr)
            p = jax.vmap(lambda s: descend(g0, s))(a)
            out = dict(classify_group(fr), l2=jax.vmap(l2_distance, in_axes=(0, None))(fr, image),
                       change=jax.vmap(ed.change)(p), wrapped=jax.vmap(ed.wrapped)(p))
            if keep_frames:
                out["frames"] = fr
            return out

        res = in_groups(group, alphas, chunk)
        frames = res.get("frames")
    else:
        def run(steps, cap=None):
            return live_frames(ed, image, steps, mode, step_cap=cap, clf=clf, target=t,
                         loss=loss, color=color)

        def steps_of(step):
            return jnp.concatenate([jnp.zeros((1,), dtype), jnp.full((n - 1,), step, dtype)])

        if schedule.kind in ("budget", "budgets"):
            found, ok = budget_alphas(lambda s: l2_distance(run(steps_of(s))[0][-1], image),
                                      _refuse_grad(budgets), unit0 / max(n - 1, 1),
                                      chunk=chunk)
            if schedule.kind == "budget":
                frames, alphas, change, wrapped = run(steps_of(found[0]))
                reached = jnp.broadcast_to(ok[0], alphas.shape)
            else:
                frames, alphas, change, wrapped = jax.vmap(
                    lambda s: jax.tree.map(lambda v: v[-1], run(steps_of(s))))(found)
                reached = ok
        elif schedule.kind == "step_cap":
            frames, alphas, change, wrapped = run(jnp.zeros((n,), dtype), step_cap)
        else:
            frames, alphas, change, wrapped = run(
                jnp.diff(alphas, prepend=jnp.zeros((1,), dtype)))
        frames = jnp.where((alphas == 0)[:, None, None, None], image[None], frames)
        res = dict(in_groups(classify_group, frames, chunk), change=change, wrapped=wrapped,
                   l2=jax.vmap(l2_distance, in_axes=(0, None))(frames, image))
        if not keep_frames:
            frames = None

    if reached is None:
        reached = jnp.ones(alphas.shape, bool)
    problem = jnp.int32(0)
    for code, bad in ((5, (loss == "margin") & (t == ed.source)),
                      (4, ~jnp.all(jnp.stack([jnp.all(jnp.isfinite(l))
                                              for l in jax.tree.leaves(g0)]))),
                      (3, ~jnp.all(jnp.isfinite(z0))),
                      (2, False if source is None else (source < 0) | (source >= K)),
                      (1, (target < 0) | (target >= K))):
        problem = jnp.where(bad, jnp.int32(code), problem)
    out = Morph(frames, alphas, None, None, res["l2"], g0,
                jnp.asarray(target, jnp.int32), ed.source, reached,
                res["change"].astype(dtype),
                jnp.broadcast_to(res["wrapped"], alphas.shape).astype(dtype))
    if not classify:
        return out, problem
    return finish(out, res["logits"], problem), problem


def finish(m: Morph, logits: jax.Array, problem: jax.Array) -> Morph:
    """The guard every morph passes, in one place: ``m`` (a morph, or a batch of them
    with ``problem`` of shape ``(N,)``) with its ``logits`` and ``probs``
    (:func:`lens_jax.classifier.guarded_softmax`: NaN where the logits are not finite);
    where ``problem != 0`` every float field is NaN; ``reached`` is False wherever the
    probabilities are NaN."""
    fail = problem != 0

    def lift(v, ndim):                  # (N,) flags against (N, ...) values
        return v.reshape(v.shape + (1,) * (ndim - v.ndim))

    probs, ok = guarded_softmax(
        logits, where=jnp.broadcast_to(lift(~fail, logits.ndim - 1), logits.shape[:-1]))
    m = m._replace(logits=logits, probs=probs)
    m = jax.tree.map(lambda bad_v, v: jnp.where(lift(fail, v.ndim), bad_v, v), nan_like(m), m)
    return m._replace(reached=m.reached & ok & lift(~fail, ok.ndim))


@jax.custom_jvp
def _refuse_grad(budgets):
    """Identity on the L2 budgets of a live-mode search, refusing differentiation with
    respect to them (no silent zero gradient)."""
    return budgets


@functools.partial(_refuse_grad.defjvp, symbolic_zeros=True)
def _refuse_grad_jvp(primals, tangents):
    (b,), (tb,) = primals, tangents
    if not isinstance(tb, jax.custom_derivatives.SymbolicZero):
        raise ValueError("differentiating with respect to l2_budget is supported in "
                         "mode='fixed' only (the live modes' budget search has no "
                         "implicit derivative); use mode='fixed' or differentiate "
                         "through alphas=")
    return b, jnp.zeros_like(b)


def morph_frames(clf: Classifier, image, target, source, schedule: Schedule, **kwargs
                 ) -> tuple[Morph, jax.Array]:
    """Kept for compatibility: :func:`morph_stream` (which now also classifies the
    frames: ``logits`` and ``probs`` are filled in)."""
    return morph_stream(clf, image, target, source, schedule, **kwargs)


_STATIC = ("apply", "domain", "loss", "mode", "color", "kind", "n_frames", "chunk_size",
           "stop_before_wrap", "num_classes", "keep_frames")


def _core(apply, params, images, targets, sources, arrays, *, kind, n_frames, batched,
          **static):
    """:func:`morph_stream` of one image, or ``vmap``-ed over a batch."""
    alphas, budgets, step_cap = arrays
    sched = Schedule(kind, alphas, step_cap, budgets, n_frames)

    def one(image, target, source):
        return morph_stream(Classifier(apply, params), image, target, source, sched, **static)
    if not batched:
        return one(images, targets, sources)
    if sources is None:
        return jax.vmap(lambda i, t: one(i, t, None))(images, targets)
    return jax.vmap(one)(images, targets, sources)


def _classify(apply, params, m: Morph, problem, *, chunk_size):
    """The classifier over every frame of a call as one flat batch (in groups of
    ``chunk_size``), then :func:`finish`.  A flat batch: a CNN under ``vmap`` over
    (images x frames) ran 2.3x slower on CPU (``benchmarks/RESULTS.md``)."""
    frames = m.frames
    flat = frames.reshape((-1,) + frames.shape[-3:])
    logits = in_groups(lambda x: apply(params, x), flat, chunk_size)
    return finish(m, logits.reshape(frames.shape[:-3] + logits.shape[1:]), problem)


_core_jit = jax.jit(_core, static_argnames=_STATIC + ("batched", "classify"))
_classify_jit = jax.jit(_classify, static_argnames=("apply", "chunk_size"))


#: Bytes of working memory per rendered frame and edited channel pixel (complex band
#: images of a 4-orientation pyramid, their FFTs and the gradient's residuals; a
#: generous estimate used only to refuse hopeless requests before allocating).
_WORK_BYTES_PER_PIXEL = 64


def _check_size(st: _Setup, chunk: int | None, images_at_once: int, *, mode: str,
                color: str) -> None:
    """Refuse a morph whose frames cannot fit in memory, naming what to lower."""
    H, W, C = st.images.shape[-3:]
    N = st.images.shape[0] if st.images.ndim == 4 else 1
    item = st.images.dtype.itemsize
    n = st.schedule.length
    search = st.schedule.kind in ("budget", "budgets")
    if mode == "fixed":
        at_once = min(chunk or n, n)
        if search:
            at_once = max(at_once, min(chunk or 30, 30))    # the budget search's grid
    else:                   # a live scan holds its frames; a search runs 30 scans at once
        at_once = n * (30 if search else 1)
    edited = C if color == "rgb" else 1
    work = images_at_once * at_once * _WORK_BYTES_PER_PIXEL * H * W * edited * item
    kept = N * n * H * W * C * item
    if kept + work > 0:
        check_memory(kept + work, what=f"a morph of {N} image(s) of {H}x{W}x{C} with {n} "
                     f"frames ({n * N} kept, {images_at_once * at_once} rendered at once)",
                     fix="lower n_frames (or the number of alphas / budgets), set "
                     "chunk_size= to render fewer frames at once, or morph a smaller image")


def _hashable(x) -> bool:
    try:
        hash(x)
        return True
    except TypeError:
        return False


def _raise_problems(problem, batched: bool) -> None:
    p = np.atleast_1d(np.asarray(problem))
    bad = np.flatnonzero(p)
    if bad.size:
        at = f"image {int(bad[0])}: " if batched else ""
        raise ValueError(at + PROBLEMS[int(p[bad[0]])])


def _raise_nonfinite(logits, batched: bool) -> None:
    ok = np.all(np.isfinite(np.asarray(logits)), axis=-1)
    if not ok.all():
        idx = tuple(int(i) for i in np.argwhere(~ok)[0])
        at = f"image {idx[0]}, frame {idx[1]}" if batched else f"frame {idx[0]}"
        raise ValueError(f"the classifier returned non-finite logits (NaN or inf) at {at} "
                         f"of the morph ({int((~ok).sum())} frame(s) in all); check its "
                         "weights and the scale of its logits")


def _run(st: _Setup, targets, sources, *, batched, loss, mode, color, chunk_size,
         stop_before_wrap, per_call=None) -> Morph:
    """:func:`morph_stream` over (chunks of) the validated inputs, as two programs per
    call: the frames (``classify=False``), then every image's frames classified as one
    flat batch and guarded by :func:`finish` (faster on CPU than one program)."""
    sched = st.schedule
    if chunk_size is not None:
        chunk_size = check_count("chunk_size", chunk_size)
    stop_before_wrap = check_bool("stop_before_wrap", stop_before_wrap)
    _check_size(st, chunk_size, per_call or 1, mode=mode, color=color)
    static = dict(domain=st.domain, loss=loss, mode=mode, color=color, kind=sched.kind,
                  n_frames=sched.n_frames, chunk_size=chunk_size,
                  stop_before_wrap=stop_before_wrap, num_classes=st.K, batched=batched,
                  keep_frames=True)
    apply, params = st.clf
    arrays = sched.arrays()
    eager = concrete(st.images, targets, sources, arrays, params)
    jit_ok = _hashable(apply) and _hashable(st.domain)
    core = _core_jit if jit_ok else _core
    classify = _classify_jit if jit_ok else _classify

    def call(images, ts, ss):
        m, problem = core(apply, params, images, ts, ss, arrays, classify=False, **static)
        return classify(apply, params, m, problem, chunk_size=chunk_size), problem

    # every call is dispatched before any value is read back (no sync between programs)
    if batched:
        m, problem = map_batched(call, (st.images, targets, sources), chunk=per_call)
    else:
        m, problem = call(st.images, targets, sources)
    if eager:
        _raise_problems(problem, batched)
        _raise_nonfinite(m.logits, batched)
    return m


def morph(logits_fn: Any, image, *, target, source=None, domain: "str | Domain" = "csp_phase",
          alphas=None, loss: str = "nll", mode: str = "fixed",
          pyramid: SteerablePyramid | None = None, color: str = "luminance",
          step_cap: float | None = None, l2_budget=None, n_frames: int = 12,
          chunk_size: int | None = None, stop_before_wrap: bool = False,
          domain_options: dict | None = None, constant_params: bool = False) -> Morph:
    """Morph ``image`` toward class ``target`` by extrapolating one class gradient.

    Args:
      logits_fn: the classifier, in any form :func:`lens_jax.classifier.as_classifier`
        accepts: ``logits_fn(images)`` mapping ``(N, H, W, C)`` in [0, 1] to ``(N, K)``
        float logits, ``(apply_fn, params)``, a flax ``nnx.Module``, a linen
        ``(module.apply, variables)``.  Per-example: no batch statistics.
      image: ``(H, W, C)`` or ``(H, W)`` float in [0, 1].
      target: target class; ``source``: source class for the margin loss and
        reporting (default: the classifier's prediction at ``image``).
      domain: a registry name (``lens_jax.DOMAINS``, a live view of the registry:
        ``"pixel"``, ``"fourier_phase"``, ``"csp_phase"`` (the paper's),
        ``"csp_amplitude"``, ``"csp_joint"``, ``"csp_flow"``, ``"csp_flow_joint"``,
        ``"warp"`` and any registered with :func:`lens_jax.register`) or a
        :class:`lens_jax.Domain` from :func:`lens_jax.get_domain` (pyramid, options).
      alphas: raw amplification factors ``(n,)``; frame ``i`` is
        ``render(-alphas[i] * g)``.
      loss: ``"nll"`` (``-log p(target)``) or ``"margin"`` (``-(z_target - z_source)``;
        needs source != target).
      mode: ``"fixed"`` (one gradient at the source: the method), ``"live"`` (gradient
        recomputed after each step, persistent coordinates of the source
        decomposition) or ``"live_local"`` (re-analyse each frame, step from its
        gradient).  In live modes ``alphas`` are cumulative step sizes, so
        ``alphas=[0, a]`` gives the same frames in every mode.
      pyramid: a complex :class:`SteerablePyramid` plan for the image size (default:
        :func:`lens_jax.default_pyramid`: order 3, all scales, tight frame, adjoint
        synthesis).  Build your own as ``lj.default_pyramid(shape).replace(height=...)``;
        one without the tight frame and adjoint synthesis warns (other frames).
      color: ``"luminance"`` (edit Y of YIQ), ``"rgb"`` (every channel) or ``"gray"``.
      step_cap: instead of ``alphas``: ``n_frames`` frames whose edit parameters change
        by at most ``step_cap`` per frame (radians for phase; per step in live modes).
      l2_budget: instead of ``alphas``: a scalar ``B`` gives ``n_frames`` frames from the
        source to the frame at L2 distance ``B``; a 1-D array gives one frame per budget
        (the endpoints, for comparisons at equal image change across domains).  In
        fixed mode ``jax.grad`` flows through the budget search implicitly
        (``d alpha / d B = 1 / (d L2 / d alpha)`` at the found alpha); the live modes
        refuse differentiation with respect to it (ValueError, never a silent zero).
      n_frames: an integer >= 2: frames for ``step_cap``, a scalar ``l2_budget`` and
        the automatic schedule (steps of live-mode budget searches).
      chunk_size: render/classify at most this many frames at once (also the budget
        search's grid; bounds memory, same values).  A request whose frames cannot fit
        in the device's memory is refused before anything is allocated, naming
        ``n_frames`` and ``chunk_size``.
      stop_before_wrap: a bool.  Fixed mode, domains with a phase
        (``DomainSpec.has_phase``): cap the extrapolation at the largest
        alpha whose largest phase change stays <= pi.  Frames beyond hold the cap (their
        ``alphas`` report the capped value) and have ``reached`` False; an L2 budget
        not reachable below the cap is not reached.
      domain_options: the domain's own options (see its registry entry's ``defaults``),
        e.g. ``{"scales": [1, 2]}`` for the CSP domains: edit only those scales (0 =
        finest).
      constant_params: opt-in: compile the classifier's parameters in as constants
        (:func:`lens_jax.classifier.fold_params`; a changed parameter is noticed by
        its fingerprint and compiles a new program).  Default: traced parameters.

    With none of ``alphas``, ``step_cap``, ``l2_budget``, the schedule is automatic:
    ``n_frames`` frames up to the domain's ``final_change`` (pi for phase domains).

    Returns:
      A :class:`Morph`.  Under a caller's ``jit``/``vmap`` a traced target outside the
      classes, non-finite logits or gradient, or ``loss="margin"`` with source ==
      target give NaN frames, probabilities, distances and changes (``reached`` False)
      for exactly that image; eagerly they raise.

    Raises:
      ValueError: bad image (rank, channels-first, dtype, NaN/Inf, outside [0, 1]),
        counts that are not integers (``chunk_size=2.7``, ``"3"``), a non-bool
        ``stop_before_wrap``, a request too large for memory, target/source
        outside the classes, classifier output of the wrong shape or integer dtype,
        non-finite logits or gradient, margin loss with source == target, a bad
        schedule (see :meth:`Schedule.parse`), an image size the pyramid cannot take,
        unknown domain, loss, mode or colour.
      TypeError: a classifier of none of the accepted forms.

    >>> import jax.numpy as jnp, lens_jax as lj
    >>> f = lambda x: jnp.stack([x[:, :, :16].mean((1, 2, 3)), x[:, :, 16:].mean((1, 2, 3))], -1)
    >>> ramp = jnp.broadcast_to(jnp.linspace(0.2, 0.8, 32), (32, 32))
    >>> m = lj.morph(f, ramp, target=0, n_frames=4)      # automatic: phases up to pi
    >>> m.frames.shape, round(float(m.max_change[-1]), 4)
    ((4, 32, 32, 1), 3.1416)
    >>> bool(m.target_prob[-1] > m.target_prob[0])
    True
    """
    st = _setup(logits_fn, image, batch=False, domain=domain, domain_options=domain_options,
                loss=loss, color=color, pyramid=pyramid, mode=mode,
                schedule_args=dict(alphas=alphas, step_cap=step_cap, l2_budget=l2_budget,
                                   n_frames=n_frames), constant_params=constant_params)
    t = check_classes("target", target, st.K)
    s = check_classes("source", source, st.K)
    check_margin(loss, t, s)
    return _run(st, t, s, batched=False, loss=loss, mode=mode, color=color,
                chunk_size=chunk_size, stop_before_wrap=stop_before_wrap)


def map_batched(fn: Callable, arrays: tuple, *, chunk: int | None = None) -> Any:
    """``fn(*arrays)`` over the leading axis in chunks of ``chunk`` rows, concatenated
    (:func:`lens_jax._batching.map_chunks`: the last chunk padded so nothing
    recompiles, every chunk dispatched before any is read back).  ``None`` entries pass
    through; ``chunk`` None or >= n: one call.

    >>> out = map_batched(lambda x: x * 2, (jnp.arange(5),), chunk=2)
    >>> out.tolist()
    [0, 2, 4, 6, 8]
    """
    if chunk is not None:
        chunk = check_count("chunk", chunk)
    return map_chunks(fn, arrays, chunk=chunk)


def _default_per_call(images, color, frames_per_image) -> int:
    n, H, W, C = images.shape
    if jax.default_backend() != "cpu" or not concrete(images):
        return n
    frame_bytes = 32 * H * W * (C if color == "rgb" else 1)
    return int(min(n, max(1, CPU_CALL_BYTES // (frame_bytes * frames_per_image))))


def morph_batch(logits_fn: Any, images, *, target, source=None,
                images_per_call: int | None = None, **kwargs) -> Morph:
    """:func:`morph` for a batch ``(N, H, W, C)`` (or ``(N, H, W)``) of images.

    Same keywords as :func:`morph`; ``target`` / ``source`` are scalars or ``(N,)``,
    or ``(N, T)`` targets (as :func:`lens_jax.sweep.run` takes): ``T`` morphs of every
    image, and every field of the result gets leading ``(N, T)`` axes (``source`` a
    scalar, ``(N,)`` or ``(N, T)``).
    Returns a :class:`Morph` whose fields have a leading ``N`` axis, equal to
    ``jax.vmap`` of :func:`morph`, but the classifier sees each call's frames as ONE
    flat batch (convolutions under a double ``vmap`` ran 2.3x slower on CPU).

    ``images_per_call``: images per compiled call (:func:`map_batched`; the last call
    padded).  Default: all at once, except eagerly on CPU, where calls hold about
    :data:`CPU_CALL_BYTES` of band images (measured fastest there).
    """
    unknown = sorted(set(kwargs) - set(_MORPH_KW))
    if unknown:
        raise TypeError(f"morph_batch got unexpected keyword(s) {unknown}")
    kw = dict(_MORPH_KW, **kwargs)
    st = _setup(logits_fn, images, batch=True, domain=kw["domain"],
                domain_options=kw["domain_options"], loss=kw["loss"], color=kw["color"],
                pyramid=kw["pyramid"], mode=kw["mode"],
                schedule_args={k: kw[k] for k in ("alphas", "step_cap", "l2_budget",
                                                  "n_frames")},
                constant_params=kw["constant_params"])
    n = st.images.shape[0]
    n_targets = None                  # (N, T) targets: T morphs of every image
    if np.ndim(target) == 2:
        N, n_targets = np.shape(target)
        if N != n:
            raise ValueError(f"target of shape {np.shape(target)} needs one row per image; "
                             f"got {n} images")
        rep = lambda v: jnp.repeat(jnp.asarray(v), n_targets, axis=0)   # noqa: E731
        st = st._replace(images=rep(st.images))
        target = jnp.reshape(jnp.asarray(target), (-1,))
        if source is not None and np.ndim(source) == 1:
            source = rep(source)
        elif source is not None and np.ndim(source) == 2:
            source = jnp.reshape(jnp.asarray(source), (-1,))
        n = n * n_targets
    t = check_classes("target", target, st.K, n=n)
    s = check_classes("source", source, st.K, n=n)
    check_margin(kw["loss"], t, s)
    if images_per_call is None:
        per_image = st.schedule.length
        if st.schedule.kind in ("budget", "budgets"):
            per_image = max(per_image, 30)           # the budget search's grid
        images_per_call = _default_per_call(st.images, kw["color"], per_image)
    else:
        images_per_call = check_count("images_per_call", images_per_call)
    m = _run(st, t, s, batched=True, loss=kw["loss"], mode=kw["mode"], color=kw["color"],
             chunk_size=kw["chunk_size"], stop_before_wrap=kw["stop_before_wrap"],
             per_call=images_per_call)
    if n_targets is None:
        return m
    return jax.tree.map(lambda v: v.reshape((n // n_targets, n_targets) + v.shape[1:]), m)


_MORPH_KW = dict(domain="csp_phase", alphas=None, loss="nll", mode="fixed", pyramid=None,
                 color="luminance", step_cap=None, l2_budget=None, n_frames=12,
                 chunk_size=None, stop_before_wrap=False, domain_options=None,
                 constant_params=False)
