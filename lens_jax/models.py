"""Small image classifiers used by the evaluation protocol (driver CNN and two
independent evaluators, as in the follow-up protocol of arXiv 2506.02300).

All models are :mod:`flax.linen` modules with a pure ``apply``: no batch statistics,
no dropout, so ``module.apply({"params": p}, x)`` is a deterministic function of the
input that :func:`jax.grad` can differentiate. Inputs are NHWC float images in
``[0, 1]`` of any size and channel count; each model casts them to float32 and
centres them with ``2 x - 1`` itself, so callers never normalise.

* :class:`CNN` — the driver G ("CNN_MNIST_GRAY"): Conv 32 3x3 + ReLU, 2x2 average
  pool, Conv 64 3x3 + ReLU, 2x2 average pool, Dense 128 + ReLU, Dense ``num_classes``.
  ReLU (piecewise linear), as in the protocol; the lens differentiates it as is.
* :class:`ResNetMini` — independent evaluator O: a 3x3 stem with a 2x2 average pool,
  three stages of pre-activation basic residual blocks (width, 2 width, 4 width;
  stride 2 between stages) with GroupNorm, global average pooling, linear head.
* :class:`TinyMLP` — independent evaluator O2: flatten, two hidden Dense layers of
  ``width`` with ReLU, linear head.

:func:`get_model` builds one by name ("cnn", "resnet_mini", "mlp");
:func:`make_logits_fn` turns a module and its params into ``logits_fn(x)``.
:class:`Classifier` / :func:`as_classifier` (defined in :mod:`lens_jax.classifier`,
re-exported here) normalise any classifier form to ``(apply, params)``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from .classifier import Classifier, as_classifier, fold_params, predict

__all__ = ["CNN", "ResNetMini", "TinyMLP", "MODELS", "get_model", "init_params",
           "make_logits_fn", "count_params",
           "Classifier", "as_classifier", "fold_params"]


def _prep(x: jax.Array) -> jax.Array:
    if x.ndim != 4:
        raise ValueError(f"expected NHWC images (N, H, W, C), got shape {x.shape}")
    return 2.0 * jnp.asarray(x, jnp.float32) - 1.0


class CNN(nn.Module):
    """Driver classifier: two conv/avg-pool stages and a 128-unit hidden layer."""

    num_classes: int = 10
    features: Sequence[int] = (32, 64)
    hidden: int = 128

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _prep(x)
        for i, f in enumerate(self.features):
            x = nn.relu(nn.Conv(f, (3, 3), padding="SAME", name=f"conv{i}")(x))
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden, name="fc")(x))
        return nn.Dense(self.num_classes, name="head")(x)


class _ResBlock(nn.Module):
    """Pre-activation basic block: GN-ReLU-Conv-GN-ReLU-Conv + (projected) shortcut."""

    features: int
    stride: int = 1
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        g = min(self.groups, x.shape[-1])
        h = nn.relu(nn.GroupNorm(num_groups=g, name="norm1")(x))
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = nn.Conv(self.features, (1, 1), strides=self.stride, name="proj")(h)
        h = nn.Conv(self.features, (3, 3), strides=self.stride, padding="SAME",
                    name="conv1")(h)
        h = nn.relu(nn.GroupNorm(num_groups=min(self.groups, self.features), name="norm2")(h))
        h = nn.Conv(self.features, (3, 3), padding="SAME", name="conv2",
                    kernel_init=nn.initializers.zeros)(h)
        return shortcut + h


class ResNetMini(nn.Module):
    """Small pre-activation ResNet: 3x3 stem + 2x2 average pool, ``len(blocks)``
    stages of basic blocks (width ``width * 2**s``, stride 2 from the second stage),
    GroupNorm, global average pooling, linear head."""

    num_classes: int = 10
    width: int = 32
    blocks: Sequence[int] = (1, 1, 1)
    stem_pool: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _prep(x)
        x = nn.Conv(self.width, (3, 3), padding="SAME", name="stem")(x)
        if self.stem_pool:
            x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        for s, n in enumerate(self.blocks):
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                x = _ResBlock(self.width * 2 ** s, stride=stride, name=f"stage{s}_block{b}")(x)
        x = nn.relu(nn.GroupNorm(num_groups=min(8, x.shape[-1]), name="norm_out")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


class TinyMLP(nn.Module):
    """Flatten, ``depth`` hidden ReLU layers of ``width`` units, linear head."""

    num_classes: int = 10
    width: int = 512
    depth: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _prep(x)
        x = x.reshape(x.shape[0], -1)
        for i in range(self.depth):
            x = nn.relu(nn.Dense(self.width, name=f"fc{i}")(x))
        return nn.Dense(self.num_classes, name="head")(x)


MODELS: dict[str, type[nn.Module]] = {"cnn": CNN, "resnet_mini": ResNetMini, "mlp": TinyMLP}


def get_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a classifier by name: ``"cnn"``, ``"resnet_mini"`` or ``"mlp"``.

    Extra keyword arguments go to the module (e.g. ``width=16`` for ResNetMini).

    >>> get_model("cnn", 10)
    CNN(
        # attributes
        num_classes = 10
        features = (32, 64)
        hidden = 128
    )
    """
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}") from None
    return cls(num_classes=num_classes, **kwargs)


def init_params(model: nn.Module, key: jax.Array, input_shape: Sequence[int]) -> Any:
    """float32 params for images of ``input_shape`` = (H, W, C)."""
    x = jnp.zeros((1, *input_shape), jnp.float32)
    return model.init(key, x)["params"]


def make_logits_fn(model: nn.Module, params: Any) -> Callable[[jax.Array], jax.Array]:
    """``logits_fn(x: (N, H, W, C) in [0, 1]) -> (N, num_classes)``, pure.

    ``logits_fn(x)`` is :func:`lens_jax.classifier.predict` of the classifier
    ``(model.apply, {"params": params})``: one jitted program per module, the params
    passed to it as arguments (never baked in as constants), so the function is cheap to
    build and differentiable in ``x``.  Every lens_jax entry point reads the classifier
    itself (``logits_fn.__lens_classifier__``), so the params stay traced there too.
    """
    clf = as_classifier((model.apply, {"params": params}))

    def logits_fn(x: jax.Array) -> jax.Array:
        return predict(clf, x)

    logits_fn.model = model  # type: ignore[attr-defined]
    logits_fn.params = params  # type: ignore[attr-defined]
    logits_fn.__lens_classifier__ = clf  # type: ignore[attr-defined]
    return logits_fn


def count_params(params: Any) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(p.size for p in jax.tree_util.tree_leaves(params)))
