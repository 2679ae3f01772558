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

Host-side (NumPy) helpers: :func:`bootstrap_ci`.  The warp fits (:func:`warp_image`,
:func:`warp_explained_energy`, :func:`best_translation`) live in :mod:`lens_jax.warp` and
are re-exported here.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._image import as_images, filter_hw, float_dtype, gaussian_kernel, sum_hwc
from .classifier import guarded_softmax, predict
from .warp import Translation, WarpFit, best_translation, warp_explained_energy, warp_image

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


# ----------------------------------------------------------------------------- distances
def _pair(frames: ArrayLike, source: ArrayLike) -> tuple[Array, Array]:
    """``(frames, source)`` with the source given the frames' rank (leading ones), so
    arithmetic between them never relies on implicit rank promotion."""
    frames, source = as_images(frames, source)
    return frames, source.reshape((1,) * (frames.ndim - 3) + source.shape)


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
    frames, source = _pair(frames, source)
    return jnp.sqrt(sum_hwc(jnp.square(frames - source)))


def psnr(frames: ArrayLike, source: ArrayLike, *, max_val: float = 1.0) -> Array:
    """Peak signal-to-noise ratio in dB, ``10 log10(max_val^2 / MSE)``; ``+inf`` if equal."""
    frames, source = _pair(frames, source)
    mse = jnp.mean(jnp.square(frames - source), axis=(-3, -2, -1))
    return 10.0 * jnp.log10(jnp.asarray(max_val, frames.dtype) ** 2 / mse)


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

    Equal to ``dm_pix.ssim`` (tested to 1e-5 in float32, 1e-12 in float64); kept here
    because ``dm_pix.ssim`` fails under ``jax_numpy_dtype_promotion="strict"``, returns
    float64 for float32 input when x64 is on, and does not broadcast one source over
    the frames.
    """
    frames, source = as_images(frames, source)
    h, w = source.shape[:2]
    if h < filter_size or w < filter_size:
        raise ValueError(f"ssim needs H, W >= filter_size={filter_size}, got {(h, w)}")
    kernel = gaussian_kernel(filter_size, filter_sigma)
    x, y = jnp.broadcast_arrays(frames, source)

    def blur(z):
        return filter_hw(z, kernel, "valid")

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
        A target outside ``[0, n_classes)`` gives NaN (never another class's value).
    """
    probs = jnp.asarray(probs)
    idx = jnp.broadcast_to(jnp.asarray(target, jnp.int32)[..., None], probs.shape[:-1] + (1,))
    inside = (idx >= 0) & (idx < probs.shape[-1])
    p = jnp.take_along_axis(probs, jnp.clip(idx, 0, probs.shape[-1] - 1), axis=-1)
    return jnp.where(inside, p, jnp.nan)[..., 0]


def flip_index(probs: ArrayLike, *, source: ArrayLike | None = None,
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

    def per_frame(c):          # explicit broadcasting (no implicit rank promotion)
        return jnp.broadcast_to(jnp.asarray(c)[..., None], pred.shape).astype(pred.dtype)
    if target is not None:
        hit = pred == per_frame(target)
    elif source is not None:
        hit = pred != per_frame(source)
    else:
        raise ValueError("flip_index needs a target (targeted flip) or a source (untargeted)")
    first = jnp.argmax(hit, axis=-1).astype(jnp.int32)
    return jnp.where(jnp.any(hit, axis=-1), first, jnp.int32(-1))


def first_flip_alpha(alphas: ArrayLike, probs: ArrayLike, target: ArrayLike | None, *,
                     source: ArrayLike | None = None) -> Array:
    """``alphas[flip_index(probs, source=source, target=target)]``; ``NaN`` when the
    prediction never flips.

    Args:
      alphas: ``(n_alpha,)`` (or ``(..., n_alpha)`` matching ``probs``), increasing.
      probs: ``(..., n_alpha, n_classes)``.
      target: target class; None for an untargeted flip away from ``source``.
    """
    alphas = jnp.asarray(alphas)
    alphas = jnp.asarray(alphas, float_dtype(alphas))
    idx = flip_index(probs, source=source, target=target)
    alphas = jnp.broadcast_to(alphas, idx.shape + alphas.shape[-1:])
    val = jnp.take_along_axis(alphas, jnp.maximum(idx, 0)[..., None], axis=-1)[..., 0]
    return jnp.where(idx >= 0, val, jnp.asarray(jnp.nan, alphas.dtype))


class TransferResult(NamedTuple):
    """Outputs of one independent classifier on a morph (a tuple: ``p, pred = result``)."""
    p_target: Array  # (..., n_alpha) float: probability of the target class per frame
    pred: Array      # (..., n_alpha) int32: predicted class (argmax) per frame


def transfer(logits_fns: Mapping[str, Any], frames: ArrayLike, target: ArrayLike, *,
             batch_size: int | None = None, batched: bool = True
             ) -> dict[str, TransferResult]:
    """Evaluate independent classifiers (never differentiated through) on the frames.

    Both the frames going in and the logits coming out pass through
    ``jax.lax.stop_gradient``, so no gradient of any transfer classifier can leak into a
    morph even when this is called inside a differentiated function.

    Args:
      logits_fns: name -> classifier, in any form
        :func:`lens_jax.classifier.as_classifier` accepts; a plain callable is batched
        (``f(images (N, H, W, C)) -> (N, n_classes)``), as everywhere in lens_jax (wrap a
        one-image function in ``jax.vmap``).  Applied by
        :func:`lens_jax.classifier.predict`.
      frames: ``(..., H, W, C)``; leading dimensions are flattened for the call.
      target: target class (int or array broadcastable to ``frames.shape[:-3]``).
      batch_size: frames per classifier call (:func:`lens_jax.classifier.predict`);
        None: all at once.
      batched: kept for compatibility; only ``True`` (the one convention) is accepted.

    Returns:
      name -> ``TransferResult(p_target, pred)``, each ``frames.shape[:-3]``.
      Frames whose logits are not finite get ``p_target`` NaN and ``pred`` -1 (the
      probabilities come from :func:`lens_jax.classifier.guarded_softmax`); a target
      outside a classifier's classes gives ValueError eagerly and NaN under a trace.

    Raises:
      ValueError: frames of the wrong rank; a classifier returning logits of the wrong
        shape or an integer dtype; a (concrete) target outside a classifier's classes.
      TypeError: a classifier of none of the accepted forms, or not traceable by JAX.

    The protocol's "endpoint classified as the target by O and O2" count is then
    ``sum(r["O"].pred[..., -1] == t & r["O2"].pred[..., -1] == t)``.

    >>> import jax.numpy as jnp
    >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> r = transfer({"O": lambda x: x.reshape(len(x), -1) @ w},
    ...              jnp.array([[[[1.0], [0.0]]]]), 0)
    >>> r["O"].pred.tolist(), round(float(r["O"].p_target[0]), 4)
    ([0], 0.7311)
    """
    if batched is not True:
        raise ValueError("transfer: a plain callable is batched (f(images (N, H, W, C)) -> "
                         "(N, n_classes)); wrap a one-image function in jax.vmap instead of "
                         "passing batched=False")
    frames = jax.lax.stop_gradient(jnp.asarray(frames))
    if frames.ndim < 3:
        raise ValueError(f"frames must be (..., H, W, C), got shape {frames.shape}")
    lead = frames.shape[:-3]
    flat = frames.reshape((-1,) + frames.shape[-3:])
    out: dict[str, TransferResult] = {}
    for name, fn in logits_fns.items():
        try:
            logits = predict(fn, flat, batch_size=batch_size)
        except (TypeError, ValueError) as e:
            raise type(e)(f"classifier {name!r}: {e}") from e
        logits = jax.lax.stop_gradient(logits).reshape(lead + logits.shape[-1:])
        k = logits.shape[-1]
        if not isinstance(target, jax.core.Tracer):
            t = np.asarray(target)
            if t.size and (t.min() < 0 or t.max() >= k):
                raise ValueError(f"a target ({t.min()}..{t.max()}) is outside classifier "
                                 f"{name!r}'s {k} classes")
        probs, ok = guarded_softmax(logits)
        pred = jnp.where(ok, jnp.argmax(logits, axis=-1), -1).astype(jnp.int32)
        out[name] = TransferResult(target_prob(probs, target), pred)
    return out


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
    frames, source_img = as_images(frames, source)
    probs = jnp.asarray(probs)
    if probs.shape[:-1] != frames.shape[:-3]:
        raise ValueError(f"probs {probs.shape} do not match frames {frames.shape}: expected "
                         f"{frames.shape[:-3]} + (n_classes,)")
    h, w = source_img.shape[:2]
    if h >= 11 and w >= 11:
        s = ssim(frames, source_img)
    else:
        s = jnp.full(frames.shape[:-3], jnp.nan, frames.dtype)
    p_dtype = float_dtype(probs)
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
