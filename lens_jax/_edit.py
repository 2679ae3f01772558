"""The pieces of one lens edit (private): the :class:`Edit` of an image (its render and
loss as pure functions of the edit parameters) and the small tree helpers the morph
core shares with the live modes (:mod:`lens_jax._live`).

Clipping: the gradient passes the [0, 1] clip straight through (see
:mod:`lens_jax.lens`); frames and distances use the ordinary clip.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .classifier import Classifier
from .domains import Domain, merge_color, split_color

__all__ = ["Edit", "build", "clip", "loss_value", "max_abs", "descend", "safe_inv",
           "l2_distance", "nan_like", "in_groups"]


class Edit(NamedTuple):
    """The pieces of a lens edit for one image (see :func:`prepare_edit`).

    ``render(params, straight_through=True) -> (H, W, C)`` clipped image;
    ``loss(params) -> ()``; ``zeros``: the identity edit; ``domain``; ``source``;
    ``change(params)`` and ``wrapped(params)``: the domain's edit size and wrapped
    fraction (see :class:`Morph`).
    """
    render: Callable
    loss: Callable
    zeros: Any
    domain: Domain
    source: jax.Array
    num_classes: int
    change: Callable | None = None
    wrapped: Callable | None = None


def clip(x, straight_through: bool):
    y = jnp.clip(x, 0.0, 1.0)
    return x + jax.lax.stop_gradient(y - x) if straight_through else y


def loss_value(z, target, source, loss):
    if loss == "nll":
        return -jax.nn.log_softmax(z)[target]
    return -(z[target] - z[source])


def build(clf: Classifier, image, target, source, dom: Domain, loss: str, color: str,
           K: int) -> Edit:
    """The Edit of one (validated) image.  A traced target/source outside the classes
    makes ``loss`` NaN (never a clamped class); :func:`lens_jax.lens.morph_stream` flags it too."""
    H, W, _ = image.shape
    t = jnp.clip(target, 0, K - 1)
    valid = (target >= 0) & (target < K)
    if source is None:
        s = jnp.argmax(clf(image[None])[0]).astype(jnp.int32)
    else:
        s = jnp.clip(source, 0, K - 1)
        valid = valid & (source >= 0) & (source < K)
    x, rest = split_color(image, color=color)
    state = dom.analyse(x)
    zeros = dom.zeros(state)

    def render(params, straight_through: bool = True):
        y = merge_color(dom.render(state, params, (H, W)), rest, color=color)
        return clip(y.astype(image.dtype), straight_through)

    def loss_fn(params, straight_through: bool = True):
        val = loss_value(clf(render(params, straight_through)[None])[0], t, s, loss)
        return jnp.where(valid, val, jnp.nan)

    return Edit(render, loss_fn, zeros, dom, s, K,
                lambda p: dom.change(state, p), lambda p: dom.wrapped(state, p))


def max_abs(tree) -> jax.Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(l)) for l in jax.tree.leaves(tree)]))


def descend(tree, a):
    """The edit ``-a * g`` of a gradient tree ``g``."""
    return jax.tree.map(lambda g: -a * g, tree)


def safe_inv(m):
    return jnp.where(m > 0, 1.0 / jnp.where(m > 0, m, 1.0), 1.0)


def l2_distance(frame, image):
    """L2 distance over all pixels and channels."""
    return jnp.sqrt(jnp.sum((frame - image) ** 2))


def nan_like(tree):
    return jax.tree.map(lambda a: jnp.full_like(a, jnp.nan)
                        if jnp.issubdtype(a.dtype, jnp.inexact) else a, tree)


def in_groups(fn: Callable, xs, chunk: int | None):
    """``fn`` over the leading axis of the pytree ``xs`` in groups of ``chunk`` rows
    (``lax.map`` over the groups, so one group's intermediates are alive at a time; the
    last group padded with its last row, the padding dropped).  ``chunk`` None or >= n:
    one group.  Every group has one shape, so ``fn`` sees the same batch whatever is
    kept."""
    n = jax.tree.leaves(xs)[0].shape[0]
    if chunk is None or chunk >= n:
        return fn(xs)
    g = -(-n // chunk)
    idx = jnp.minimum(jnp.arange(g * chunk), n - 1).reshape(g, chunk)
    out = jax.lax.map(fn, jax.tree.map(lambda a: a[idx], xs))
    return jax.tree.map(lambda o: o.reshape((g * chunk,) + o.shape[2:])[:n], out)
