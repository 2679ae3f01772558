"""Metrics over morph frames: distances, probabilities along α, transfer, warp energy.

Data convention (the whole module):

* images are floats in [0, 1]; one image is ``(H, W, C)``, a morph is ``(n_alpha, H, W, C)``;
  any extra leading dimensions broadcast (``frames`` may be ``(..., H, W, C)``);
* classifier outputs are probabilities ``(..., n_alpha, n_classes)`` (softmax already applied);
* displacements are in **pixels**, ``(dy, dx)`` ordered like the array axes (rows, columns),
  and describe where the *content* moves: a displacement ``d`` turns ``x0`` into
  ``x0(u - d)`` (a blob at row 10 moved by ``dy = +1.5`` sits at row 11.5);
* every JAX function is pure and ``jit``/``vmap``-able, works in the floating dtype of its
  inputs (float32 stays float32, float64 stays float64) and never prints or warns.

NaN and sentinel rules:

* ``psnr`` of identical images is ``+inf``;
* ``flip_index`` is ``-1`` when the prediction never reaches the target;
  ``first_flip_alpha`` is ``NaN`` then;
* ``warp_explained_energy`` and ``best_translation`` return ``NaN`` for the explained fraction
  when the frame equals the source (``||x - x0||^2 == 0``: no edit, nothing to explain);
* ``bootstrap_ci`` drops NaN values (``nan_policy="omit"``) and returns NaNs when nothing is left.

Host-side (NumPy) helpers: :func:`bootstrap_ci`.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "l2", "psnr", "ssim",
    "target_prob", "flip_index", "first_flip_alpha",
    "TransferResult", "transfer",
    "warp_image", "WarpFit", "warp_explained_energy",
    "Translation", "best_translation",
    "BootstrapCI", "bootstrap_ci",
    "frame_metrics",
]

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


# ----------------------------------------------------------------------------- helpers
def _float_dtype(*xs: ArrayLike) -> jnp.dtype:
    """Common floating dtype of ``xs`` (float32 for integer/bool inputs)."""
    dt = jnp.result_type(*xs)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.dtype(jnp.float32)
    return dt


def _as_images(frames: ArrayLike, source: ArrayLike) -> tuple[Array, Array]:
    dt = _float_dtype(frames, source)
    frames = jnp.asarray(frames, dt)
    source = jnp.asarray(source, dt)
    if source.ndim != 3:
        raise ValueError(f"source must be one image (H, W, C), got shape {source.shape}")
    if frames.ndim < 3 or frames.shape[-3:] != source.shape:
        raise ValueError(f"frames must be (..., H, W, C) = (..., {source.shape}), "
                         f"got shape {frames.shape}")
    return frames, source


def _check_pair(source: ArrayLike, frame: ArrayLike) -> tuple[Array, Array]:
    dt = _float_dtype(source, frame)
    source = jnp.asarray(source, dt)
    frame = jnp.asarray(frame, dt)
    if source.ndim != 3 or frame.shape != source.shape:
        raise ValueError("source and frame must both be one image (H, W, C) of the same "
                         f"shape, got {source.shape} and {frame.shape}")
    return source, frame


def _sum_hwc(x: Array) -> Array:
    return jnp.sum(x, axis=(-3, -2, -1))


# ----------------------------------------------------------------------------- distances
def l2(frames: ArrayLike, source: ArrayLike) -> Array:
    """Pixel-space L2 distance ``||x_n - x0||_2`` (sum over H, W, C) of each frame.

    Args:
      frames: ``(..., H, W, C)``.
      source: ``(H, W, C)``.

    Returns:
      ``frames.shape[:-3]``, in the floating dtype of the inputs.

    >>> float(l2(jnp.ones((2, 2, 1)), jnp.zeros((2, 2, 1))))
    2.0
    """
    frames, source = _as_images(frames, source)
    return jnp.sqrt(_sum_hwc(jnp.square(frames - source)))


def psnr(frames: ArrayLike, source: ArrayLike, max_val: float = 1.0) -> Array:
    """Peak signal-to-noise ratio in dB, ``10 log10(max_val^2 / MSE)``; ``+inf`` if equal."""
    frames, source = _as_images(frames, source)
    mse = jnp.mean(jnp.square(frames - source), axis=(-3, -2, -1))
    return 10.0 * jnp.log10(jnp.asarray(max_val, frames.dtype) ** 2 / mse)


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-0.5 * (r / sigma) ** 2)
    return k / k.sum()


def _filter_matrix(n: int, kernel: np.ndarray, mode: str) -> np.ndarray:
    """Correlation with ``kernel`` along an axis of length ``n`` as a matrix.

    ``mode="valid"``: ``(n - k + 1, n)``, no padding; ``mode="edge"``: ``(n, n)``, the signal
    extended by replicating its end samples.
    """
    k = len(kernel)
    if mode == "valid":
        m = np.zeros((n - k + 1, n))
        for i in range(n - k + 1):
            m[i, i:i + k] = kernel
        return m
    r = (k - 1) // 2
    m = np.zeros((n, n))
    for i in range(n):
        for j, w in enumerate(kernel):
            m[i, min(max(i + j - r, 0), n - 1)] += w
    return m


def _filter_hw(x: Array, kernel: np.ndarray, mode: str) -> Array:
    """Separable correlation of ``x`` (..., H, W, C) along H and W (two small matmuls)."""
    mh = jnp.asarray(_filter_matrix(x.shape[-3], kernel, mode), x.dtype)
    mw = jnp.asarray(_filter_matrix(x.shape[-2], kernel, mode), x.dtype)
    x = jnp.einsum("ih,...hwc->...iwc", mh, x)
    return jnp.einsum("jw,...iwc->...ijc", mw, x)


def ssim(frames: ArrayLike, source: ArrayLike, *, max_val: float = 1.0,
         filter_size: int = 11, filter_sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> Array:
    """Structural similarity (Wang et al. 2004) of each frame to the source.

    Gaussian window ``filter_size`` x ``filter_size`` with std ``filter_sigma`` (normalised),
    population (co)variances, constants ``(k1 max_val)^2`` and ``(k2 max_val)^2``; the SSIM map
    is computed on the 'valid' region (no padding) and averaged over it and over channels.
    This equals ``skimage.metrics.structural_similarity(x, x0, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=max_val, channel_axis=-1)``.

    Args:
      frames: ``(..., H, W, C)`` with ``H, W >= filter_size``.
      source: ``(H, W, C)``.

    Returns:
      ``frames.shape[:-3]``; 1 for identical images.
    """
    frames, source = _as_images(frames, source)
    h, w = source.shape[:2]
    if h < filter_size or w < filter_size:
        raise ValueError(f"ssim needs H, W >= filter_size={filter_size}, got {(h, w)}")
    kernel = _gaussian_kernel(filter_size, filter_sigma)
    x, y = jnp.broadcast_arrays(frames, source)

    def blur(z):
        return _filter_hw(z, kernel, "valid")

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
         / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)))
    return jnp.mean(s, axis=(-3, -2, -1))


# ----------------------------------------------------------------------------- probabilities
def target_prob(probs: ArrayLike, target: ArrayLike) -> Array:
    """``probs[..., target]``: probability of ``target`` in every frame.

    Args:
      probs: ``(..., n_classes)`` probabilities.
      target: int, or integer array broadcastable to ``probs.shape[:-1]`` (NumPy rules, so
        per-example targets for ``(B, n_alpha, K)`` are given as ``(B, 1)``; or ``vmap``).
    """
    probs = jnp.asarray(probs)
    idx = jnp.broadcast_to(jnp.asarray(target, jnp.int32)[..., None], probs.shape[:-1] + (1,))
    return jnp.take_along_axis(probs, idx, axis=-1)[..., 0]


def flip_index(probs: ArrayLike, source: ArrayLike | None = None,
               target: ArrayLike | None = None) -> Array:
    """Index of the first frame whose prediction (argmax) flips; ``-1`` if it never does.

    A frame has *flipped* when ``argmax(probs) == target``. When ``target`` is None the flip is
    untargeted: the first frame whose prediction differs from ``source``. ``source`` is only
    used when ``target`` is None (a prediction equal to ``target`` already differs from the
    source class). Frame 0 counts: a source already classified as the target gives 0.

    Args:
      probs: ``(..., n_alpha, n_classes)`` (logits work too: only the argmax is used).
      source: source class (int or array broadcastable to ``probs.shape[:-2]``).
      target: target class (int or array broadcastable to ``probs.shape[:-2]``).

    Returns:
      int32 ``probs.shape[:-2]``.
    """
    probs = jnp.asarray(probs)
    if probs.ndim < 2:
        raise ValueError(f"probs must be (..., n_alpha, n_classes), got shape {probs.shape}")
    pred = jnp.argmax(probs, axis=-1)
    if target is not None:
        hit = pred == jnp.asarray(target)[..., None]
    elif source is not None:
        hit = pred != jnp.asarray(source)[..., None]
    else:
        raise ValueError("flip_index needs a target (targeted flip) or a source (untargeted)")
    first = jnp.argmax(hit, axis=-1).astype(jnp.int32)
    return jnp.where(jnp.any(hit, axis=-1), first, jnp.int32(-1))


def first_flip_alpha(alphas: ArrayLike, probs: ArrayLike, target: ArrayLike | None, *,
                     source: ArrayLike | None = None) -> Array:
    """``alphas[flip_index(probs, source, target)]``, ``NaN`` when the prediction never flips.

    Args:
      alphas: ``(n_alpha,)`` (or ``(..., n_alpha)`` matching ``probs``), increasing.
      probs: ``(..., n_alpha, n_classes)``.
      target: target class; None for an untargeted flip away from ``source``.
    """
    alphas = jnp.asarray(alphas)
    alphas = jnp.asarray(alphas, _float_dtype(alphas))
    idx = flip_index(probs, source, target)
    alphas = jnp.broadcast_to(alphas, idx.shape + alphas.shape[-1:])
    val = jnp.take_along_axis(alphas, jnp.maximum(idx, 0)[..., None], axis=-1)[..., 0]
    return jnp.where(idx >= 0, val, jnp.asarray(jnp.nan, alphas.dtype))


class TransferResult(NamedTuple):
    """Outputs of one independent classifier on a morph (a tuple: ``p, pred = result``)."""
    p_target: Array  # (..., n_alpha) float: probability of the target class per frame
    pred: Array      # (..., n_alpha) int32: predicted class (argmax) per frame


def transfer(logits_fns: Mapping[str, Any], frames: ArrayLike,
             target: ArrayLike, *, batched: bool = False) -> dict[str, TransferResult]:
    """Evaluate independent classifiers (never differentiated through) on the frames.

    Both the frames going in and the logits coming out pass through
    ``jax.lax.stop_gradient``, so no gradient of any transfer classifier can leak into a
    morph even when this is called inside a differentiated function.

    Args:
      logits_fns: name -> classifier, in any form
        :func:`lens_jax.classifier.as_classifier` accepts.  A pair ``(apply_fn, params)``,
        a :class:`lens_jax.classifier.Classifier`, a flax ``nnx.Module`` or a
        :func:`lens_jax.models.make_logits_fn` function is batched (``(N, H, W, C)`` ->
        ``(N, n_classes)``, its parameters passed as arguments).  A plain callable maps
        one image ``(H, W, C)`` to logits ``(n_classes,)`` (the lens convention) and is
        ``vmap``-ed over frames, or with ``batched=True`` maps a batch.
      frames: ``(..., H, W, C)``; leading dimensions are flattened for the call.
      target: target class (int or array broadcastable to ``frames.shape[:-3]``).

    Returns:
      name -> ``TransferResult(p_target, pred)``, each ``frames.shape[:-3]``.
      Frames whose logits are not finite get ``p_target`` NaN and ``pred`` -1.

    Raises:
      ValueError: frames of the wrong rank; a classifier returning logits of the wrong
        shape or an integer dtype.
      TypeError: a classifier of none of the accepted forms.

    The protocol's "endpoint classified as the target by O and O2" count is then
    ``sum(r["O"].pred[..., -1] == t & r["O2"].pred[..., -1] == t)``.
    """
    from .classifier import as_classifier, carries_params
    frames = jax.lax.stop_gradient(jnp.asarray(frames))
    if frames.ndim < 3:
        raise ValueError(f"frames must be (..., H, W, C), got shape {frames.shape}")
    lead = frames.shape[:-3]
    flat = frames.reshape((-1,) + frames.shape[-3:])
    out: dict[str, TransferResult] = {}
    for name, fn in logits_fns.items():
        if carries_params(fn):
            logits = as_classifier(fn)(flat)
        elif not callable(fn):
            raise TypeError(f"classifier {name!r} must be a callable, a pair (apply_fn, "
                            f"params), a flax nnx.Module or a Classifier; got "
                            f"{type(fn).__name__}")
        else:
            logits = fn(flat) if batched else jax.vmap(fn)(flat)
        logits = jax.lax.stop_gradient(jnp.asarray(logits))
        if logits.ndim != 2 or logits.shape[0] != flat.shape[0]:
            raise ValueError(f"classifier {name!r} returned logits of shape {logits.shape}, "
                             f"expected ({flat.shape[0]}, n_classes)")
        if not jnp.issubdtype(logits.dtype, jnp.floating):
            raise ValueError(f"classifier {name!r} returned {logits.dtype} logits; "
                             "return float logits")
        logits = logits.reshape(lead + logits.shape[-1:])
        ok = jnp.all(jnp.isfinite(logits), axis=-1)
        probs = jax.nn.softmax(jnp.where(ok[..., None], logits, 0), axis=-1)
        probs = jnp.where(ok[..., None], probs, jnp.nan)
        pred = jnp.where(ok, jnp.argmax(logits, axis=-1), -1).astype(jnp.int32)
        out[name] = TransferResult(target_prob(probs, target), pred)
    return out


# ----------------------------------------------------------------------------- warps
def _upsample_matrix(n: int, grid: int) -> np.ndarray:
    """``(n, grid)`` bilinear interpolation weights, control points at linspace(0, n-1, grid).

    The control grid spans the image corner to corner ("align corners"); each row sums to 1.
    """
    m = np.zeros((n, grid), np.float64)
    if grid == 1:
        m[:, 0] = 1.0
        return m
    t = np.arange(n, dtype=np.float64) * (grid - 1) / max(n - 1, 1)
    i0 = np.clip(np.floor(t).astype(int), 0, grid - 2)
    w = t - i0
    m[np.arange(n), i0] = 1.0 - w
    m[np.arange(n), i0 + 1] += w
    return m


def _upsample(field: Array, h: int, w: int) -> Array:
    """Control values ``(g, g, ...)`` -> full resolution ``(h, w, ...)`` (bilinear)."""
    gy, gx = field.shape[:2]
    uy = jnp.asarray(_upsample_matrix(h, gy), field.dtype)
    ux = jnp.asarray(_upsample_matrix(w, gx), field.dtype)
    return jnp.einsum("hg,gk...,wk->hw...", uy, field, ux)


def _bilinear(img: Array, yy: Array, xx: Array) -> Array:
    """Sample ``img`` (H, W, C) at real coordinates (yy, xx), bilinear, edges 'nearest'.

    Same values as ``jax.scipy.ndimage.map_coordinates(order=1, mode='nearest')`` per channel;
    differentiable in the coordinates.
    """
    h, w = img.shape[:2]
    y0 = jnp.floor(yy)
    x0 = jnp.floor(xx)
    wy = (yy - y0)[..., None]
    wx = (xx - x0)[..., None]
    y0 = y0.astype(jnp.int32)
    x0 = x0.astype(jnp.int32)
    y0c, y1c = jnp.clip(y0, 0, h - 1), jnp.clip(y0 + 1, 0, h - 1)
    x0c, x1c = jnp.clip(x0, 0, w - 1), jnp.clip(x0 + 1, 0, w - 1)
    top = img[y0c, x0c] * (1 - wx) + img[y0c, x1c] * wx
    bot = img[y1c, x0c] * (1 - wx) + img[y1c, x1c] * wx
    return top * (1 - wy) + bot * wy


def warp_image(source: ArrayLike, displacement: ArrayLike,
               log_gain: ArrayLike | None = None) -> Array:
    """Apply a smooth warp (and optional smooth gain) to one image.

    ``x_hat(u) = exp(g(u)) * x0(u - d(u))`` with bilinear sampling and 'nearest' edges, where
    ``d`` and ``g`` are bilinear (corner-aligned) upsamplings of control grids.

    Args:
      source: ``(H, W, C)``.
      displacement: ``(gy, gx, 2)`` control-grid displacements ``(dy, dx)`` in pixels (content
        moves by ``+d``); a full-resolution ``(H, W, 2)`` field also works (gy = H).
      log_gain: optional ``(gy', gx')`` control-grid log-gain.

    Returns:
      ``(H, W, C)`` warped image (not clipped).
    """
    source = jnp.asarray(source, _float_dtype(source))
    if source.ndim != 3:
        raise ValueError(f"source must be (H, W, C), got shape {source.shape}")
    displacement = jnp.asarray(displacement, source.dtype)
    if displacement.ndim != 3 or displacement.shape[-1] != 2:
        raise ValueError(f"displacement must be (gy, gx, 2), got {displacement.shape}")
    h, w = source.shape[:2]
    d = _upsample(displacement, h, w)
    iy, ix = jnp.meshgrid(jnp.arange(h, dtype=source.dtype), jnp.arange(w, dtype=source.dtype),
                          indexing="ij")
    out = _bilinear(source, iy - d[..., 0], ix - d[..., 1])
    if log_gain is not None:
        g = _upsample(jnp.asarray(log_gain, source.dtype), h, w)
        out = jnp.exp(g)[..., None] * out
    return out


def _blur(img: Array, sigma: float) -> Array:
    """Separable Gaussian blur of (H, W, C) with edge replication; identity for sigma <= 0."""
    if sigma <= 0:
        return img
    r = max(1, int(math.ceil(3.0 * sigma)))
    return _filter_hw(img, _gaussian_kernel(2 * r + 1, sigma), "edge")


def _adam_minimise(loss_fn: Callable[[Any], Array], params: Any, steps: int, lr: Any,
                   track_best: bool) -> tuple[Any, Array]:
    """``steps`` Adam steps with a cosine-decayed learning rate, in one ``fori_loop``.

    Returns the best iterate seen (lowest loss, the initial point included) when
    ``track_best``, else the last one, together with its loss.
    """
    if steps <= 0:
        return params, loss_fn(params)
    sched = optax.cosine_decay_schedule(1.0, steps, alpha=0.02)
    opt = optax.chain(optax.scale_by_adam(), optax.scale_by_schedule(sched),
                      optax.scale(-1.0))
    vg = jax.value_and_grad(loss_fn)

    def body(_, carry):
        p, state, best_p, best_l = carry
        val, grad = vg(p)
        better = val < best_l
        best_p = jax.tree.map(lambda a, b: jnp.where(better, a, b), p, best_p)
        best_l = jnp.where(better, val, best_l)
        upd, state = opt.update(grad, state, p)
        upd = jax.tree.map(lambda u: (lr * u).astype(u.dtype), upd)
        return optax.apply_updates(p, upd), state, best_p, best_l

    inf = jnp.asarray(jnp.inf, jax.tree.leaves(params)[0].dtype)
    p, _, best_p, best_l = jax.lax.fori_loop(
        0, steps, body, (params, opt.init(params), params, inf))
    last_l = loss_fn(p)
    if not track_best:
        return p, last_l
    better = last_l < best_l
    best_p = jax.tree.map(lambda a, b: jnp.where(better, a, b), p, best_p)
    return best_p, jnp.minimum(last_l, best_l)


class WarpFit(NamedTuple):
    """Result of :func:`warp_explained_energy` with ``return_fields=True``."""
    energy: Array        # () explained fraction E (NaN when frame == source)
    displacement: Array  # (grid, grid, 2) control-grid (dy, dx) in pixels
    log_gain: Array      # (grid, grid) control-grid log-gain (zeros when gain=False)
    fitted: Array        # (H, W, C) the fitted warp of the source, x_hat


def _explained(frame: Array, source: Array, fitted: Array) -> Array:
    edit = jnp.sum(jnp.square(frame - source))
    resid = jnp.sum(jnp.square(frame - fitted))
    safe = jnp.where(edit > 0, edit, jnp.ones_like(edit))
    return jnp.where(edit > 0, 1.0 - resid / safe, jnp.asarray(jnp.nan, edit.dtype))


@functools.partial(jax.jit, static_argnames=("grid", "gain", "steps", "coarse_to_fine",
                                             "return_fields"))
def warp_explained_energy(source: ArrayLike, frame: ArrayLike, *, grid: int = 8,
                          gain: bool = False, steps: int = 200, lr: float = 0.1,
                          coarse_to_fine: tuple[float, ...] = (2.0, 1.0, 0.0),
                          return_fields: bool = False) -> Array | WarpFit:
    """Fraction of the edit energy explained by a smooth warp (and gain) of the source.

    The protocol's warp-explained energy E: fit ``x_hat = exp(g) * x0(u - d(u))`` to the frame ``x``
    and report ``E = 1 - ||x - x_hat||^2 / ||x - x0||^2``.

    Parameterisation: displacement control values ``(dy, dx)`` in **pixels** and (with
    ``gain=True``) a log-gain ``g`` on a ``grid`` x ``grid`` control grid spanning the image
    corner to corner, upsampled bilinearly to ``(H, W)``; the source is sampled bilinearly with
    'nearest' edges (:func:`warp_image`). All control values start at zero (identity warp)
    and are fitted by Adam on the normalised loss ``||x - x_hat||^2 / ||x - x0||^2`` with a
    cosine-decayed step size starting at ``lr`` (pixels per step for d, nats per step for g).
    The ``steps`` are split evenly over a coarse-to-fine schedule: at each stage both images
    are blurred with a Gaussian of the given std (pixels, 0 = no blur), which widens the
    basin of attraction for thin strokes moved by a few pixels; the last stage must be 0.
    The returned fit is the best full-resolution iterate of the last stage, the identity
    included, so ``0 <= E <= 1`` always. Defaults converge for 28x28 to 64x64 images with
    displacements up to about 3 pixels.

    ``E`` is ``NaN`` when ``||x - x0||^2 == 0``: the frame is the source, there is no edit to
    explain (drop it with ``nanmedian``/:func:`bootstrap_ci`). Jitted; ``vmap`` over frames::

        E = jax.vmap(lambda f: warp_explained_energy(x0, f, gain=True))(frames)

    Args:
      source: ``(H, W, C)`` source image x0.
      frame: ``(H, W, C)`` edited image x.
      grid: control-grid size per axis (8 in the protocol).
      gain: also fit the smooth multiplicative gain ``exp(g)``.
      steps: total Adam steps (fixed: ``fori_loop``).
      lr: initial Adam step size.
      coarse_to_fine: blur stds of the stages, ending in 0.
      return_fields: return a :class:`WarpFit` instead of E alone.

    Returns:
      E ``()`` in the inputs' floating dtype, or a :class:`WarpFit`.
    """
    source, frame = _check_pair(source, frame)
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    stages = tuple(float(s) for s in coarse_to_fine) or (0.0,)
    if stages[-1] != 0.0:
        raise ValueError(f"coarse_to_fine must end with 0.0, got {coarse_to_fine}")
    dt = source.dtype
    edit = jnp.sum(jnp.square(frame - source))
    norm = jnp.where(edit > 0, edit, jnp.ones_like(edit))

    def make_loss(x0, x):
        def loss(p):
            xh = warp_image(x0, p["d"], p["g"] if gain else None)
            return jnp.sum(jnp.square(x - xh)) / norm
        return loss

    params = {"d": jnp.zeros((grid, grid, 2), dt)}
    warp_only = None
    if gain:
        # the warp-only model is nested in warp + gain (g = 0): fit it first and keep it
        # as a candidate, so E(warp + gain) >= E(warp) always
        warp_only = warp_explained_energy(source, frame, grid=grid, gain=False, steps=steps,
                                          lr=lr, coarse_to_fine=coarse_to_fine,
                                          return_fields=True)
        params["g"] = jnp.zeros((grid, grid), dt)
    n_stage = len(stages)
    per = [steps // n_stage + (1 if i < steps % n_stage else 0) for i in range(n_stage)]
    for i, (sigma, n) in enumerate(zip(stages, per)):
        last = i == n_stage - 1
        if last:
            # The last stage tracks the best full-resolution iterate, identity included.
            loss = make_loss(source, frame)
            start = params
            params, _ = _adam_minimise(loss, start, n, lr, track_best=True)
            zero = jax.tree.map(jnp.zeros_like, start)
            use_zero = loss(zero) < loss(params)
            params = jax.tree.map(lambda z, p: jnp.where(use_zero, z, p), zero, params)
            if warp_only is not None:
                cand = {"d": warp_only.displacement, "g": jnp.zeros((grid, grid), dt)}
                use_w = loss(cand) < loss(params)
                params = jax.tree.map(lambda c, p: jnp.where(use_w, c, p), cand, params)
        else:
            params, _ = _adam_minimise(make_loss(_blur(source, sigma), _blur(frame, sigma)),
                                       params, n, lr, track_best=False)
    fitted = warp_image(source, params["d"], params["g"] if gain else None)
    energy = _explained(frame, source, fitted)
    if not return_fields:
        return energy
    log_gain = params["g"] if gain else jnp.zeros((grid, grid), dt)
    return WarpFit(energy, params["d"], log_gain, fitted)


class Translation(NamedTuple):
    """Result of :func:`best_translation`."""
    shift: Array      # (2,) (dy, dx) in pixels: the content of the source moved by +shift
    explained: Array  # () 1 - ||x - x_hat||^2 / ||x - x0||^2 (NaN when frame == source)
    fitted: Array     # (H, W, C) the translated source, x_hat


@functools.partial(jax.jit, static_argnames=("max_shift", "steps"))
def best_translation(source: ArrayLike, frame: ArrayLike, *, max_shift: int = 4,
                     steps: int = 100, lr: float = 0.05) -> Translation:
    """Best-fit global subpixel translation of the source to the frame.

    Finds the shift ``s = (dy, dx)`` (pixels; the source's content moves by ``+s``) that
    minimises ``||x - x0(u - s)||^2`` with bilinear sampling and 'nearest' edges: an exhaustive
    search over integer shifts in ``[-max_shift, max_shift]^2``, then ``steps`` Adam steps of
    size ``lr`` (cosine-decayed) from the best integer shift. Also reports the fraction of the
    edit energy the translated copy explains, ``1 - ||x - x_hat||^2 / ||x - x0||^2`` (NaN when
    the frame equals the source; never negative, since shift 0 is among the candidates).
    Used to check that a morph moves a blob. Jitted and ``vmap``-able.

    Args:
      source: ``(H, W, C)``.
      frame: ``(H, W, C)``.
      max_shift: integer search radius in pixels (the refinement may leave it by < 1 px).
      steps: subpixel refinement steps.
      lr: initial refinement step size in pixels.
    """
    source, frame = _check_pair(source, frame)
    dt = source.dtype
    h, w = source.shape[:2]
    iy, ix = jnp.meshgrid(jnp.arange(h, dtype=dt), jnp.arange(w, dtype=dt), indexing="ij")

    def shifted(s):
        return _bilinear(source, iy - s[0], ix - s[1])

    def sse(s):
        return jnp.sum(jnp.square(frame - shifted(s)))

    r = np.arange(-max_shift, max_shift + 1, dtype=np.float64)
    cand = jnp.asarray(np.stack(np.meshgrid(r, r, indexing="ij"), -1).reshape(-1, 2), dt)
    errs = jax.vmap(sse)(cand)
    s0 = cand[jnp.argmin(errs)]
    edit = jnp.sum(jnp.square(frame - source))
    norm = jnp.where(edit > 0, edit, jnp.ones_like(edit))
    s, _ = _adam_minimise(lambda s: sse(s) / norm, s0, steps, lr, track_best=True)
    fitted = shifted(s)
    return Translation(s, _explained(frame, source, fitted), fitted)


# ----------------------------------------------------------------------------- bootstrap
class BootstrapCI(NamedTuple):
    """Point estimate and percentile bootstrap interval."""
    estimate: float
    low: float
    high: float
    n: int  # number of finite values used (after dropping NaNs)


def _rng(key: Any) -> np.random.Generator:
    if isinstance(key, np.random.Generator):
        return key
    if key is None:
        return np.random.default_rng(0)
    if isinstance(key, (int, np.integer)):
        return np.random.default_rng(int(key))
    arr = jnp.asarray(key)  # a JAX PRNG key (typed or raw uint32)
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        arr = jax.random.key_data(arr)
    return np.random.default_rng(np.asarray(arr, np.uint32).ravel().tolist())


def _apply_stat(stat: Callable, samples: np.ndarray) -> np.ndarray:
    """``stat`` along the last axis of ``samples`` (n_boot, n); loop when it has no ``axis``."""
    try:
        out = np.asarray(stat(samples, axis=-1), np.float64)
        if out.shape == samples.shape[:-1]:
            return out
    except TypeError:
        pass
    return np.array([stat(s) for s in samples], np.float64)


def bootstrap_ci(values: ArrayLike, *, stat: Callable = np.median, n_boot: int = 2000,
                 level: float = 0.95, key: Any = 0, clusters: ArrayLike | None = None,
                 nan_policy: str = "omit") -> BootstrapCI:
    """Percentile bootstrap confidence interval of ``stat(values)`` (host-side, NumPy).

    Plain bootstrap: resample the values with replacement ``n_boot`` times. Cluster
    bootstrap (the protocol's 95% *source-cluster* bootstrap, 2,000 draws): given
    ``clusters`` (a label per value, e.g. the source-image index of every method/target
    value), resample the clusters with replacement and pool all values of the drawn clusters.

    Args:
      values: any shape; flattened.
      stat: statistic of a 1-D array (``np.median``, ``np.mean``, ...); called with
        ``axis=-1`` on a ``(n_boot, n)`` array when it accepts it.
      n_boot: number of bootstrap draws.
      level: interval coverage; the interval is the ``(1-level)/2`` and ``(1+level)/2``
        percentiles of the bootstrap distribution.
      key: int seed, ``np.random.Generator`` or JAX PRNG key.
      clusters: labels broadcastable to ``values``' shape, or None.
      nan_policy: "omit" drops NaN values (undefined metrics, e.g. E with no edit) before
        anything else; "propagate" keeps them (the statistic decides).

    Returns:
      :class:`BootstrapCI` ``(estimate, low, high, n)``; all NaN when no value is left.
    """
    if nan_policy not in ("omit", "propagate"):
        raise ValueError(f"nan_policy must be 'omit' or 'propagate', got {nan_policy!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    vals = np.asarray(values, np.float64)
    labels = None if clusters is None else np.broadcast_to(np.asarray(clusters), vals.shape)
    vals = vals.ravel()
    if labels is not None:
        labels = labels.ravel()
    if nan_policy == "omit":
        keep = ~np.isnan(vals)
        vals = vals[keep]
        labels = None if labels is None else labels[keep]
    n = int(vals.size)
    if n == 0:
        return BootstrapCI(math.nan, math.nan, math.nan, 0)
    rng = _rng(key)
    estimate = float(stat(vals))
    if labels is None:
        idx = rng.integers(0, n, size=(n_boot, n))
        boots = _apply_stat(stat, vals[idx])
    else:
        uniq, inv = np.unique(labels, return_inverse=True)
        groups = [vals[inv == i] for i in range(len(uniq))]
        draws = rng.integers(0, len(groups), size=(n_boot, len(groups)))
        boots = np.array([stat(np.concatenate([groups[j] for j in d])) for d in draws],
                         np.float64)
    lo, hi = np.nanpercentile(boots, [50 * (1 - level), 50 * (1 + level)]) \
        if np.any(~np.isnan(boots)) else (math.nan, math.nan)
    return BootstrapCI(estimate, float(lo), float(hi), n)


# ----------------------------------------------------------------------------- bundle
def frame_metrics(frames: ArrayLike, source: ArrayLike, probs: ArrayLike, *,
                  target: ArrayLike, source_class: ArrayLike | None = None) -> dict[str, Array]:
    """Per-frame metrics of one morph in a dict (all arrays of shape ``(n_alpha,)``).

    Keys: ``l2``, ``psnr`` (dB, inf for the unedited frame), ``ssim`` (NaN when the image is
    smaller than the 11x11 window), ``p_target``, ``p_source`` (NaN when ``source_class`` is
    None), ``pred`` (int32 argmax). Works for any leading dims ``(..., n_alpha)``.

    Args:
      frames: ``(..., n_alpha, H, W, C)``.
      source: ``(H, W, C)``.
      probs: ``(..., n_alpha, n_classes)`` probabilities of the frames.
      target: target class.
      source_class: source class, or None.
    """
    frames, source_img = _as_images(frames, source)
    probs = jnp.asarray(probs)
    if probs.shape[:-1] != frames.shape[:-3]:
        raise ValueError(f"probs {probs.shape} do not match frames {frames.shape}: expected "
                         f"{frames.shape[:-3]} + (n_classes,)")
    h, w = source_img.shape[:2]
    if h >= 11 and w >= 11:
        s = ssim(frames, source_img)
    else:
        s = jnp.full(frames.shape[:-3], jnp.nan, frames.dtype)
    p_dtype = _float_dtype(probs)
    if source_class is None:
        p_src = jnp.full(probs.shape[:-1], jnp.nan, p_dtype)
    else:
        p_src = target_prob(probs, source_class)
    return {
        "l2": l2(frames, source_img),
        "psnr": psnr(frames, source_img),
        "ssim": s,
        "p_target": target_prob(probs, target),
        "p_source": p_src,
        "pred": jnp.argmax(probs, axis=-1).astype(jnp.int32),
    }
