"""ResNet-18/34/50/101/152 in flax (linen), inference mode, in torchvision's layout.

The graph is torchvision's ``ResNet`` (the layout of timm's ``resnet*`` and of the
robustness library's ImageNet models too): a 7x7 stride-2 stem, 3x3 stride-2 max
pooling, four stages of basic blocks (ResNet-18/34) or bottleneck blocks with the stride
on the 3x3 convolution (ResNet-50 and deeper, "v1.5"), a 1x1 convolution + batch norm
on the shortcut where the shape changes, global average pooling and a linear head.
Batch norm always uses the running statistics (eval mode; eps 1e-5), so the classifier
is a per-example function that :func:`jax.grad` differentiates.

Inputs are NHWC float images in ``[0, 1]`` of any size (the network is fully
convolutional; ImageNet models are trained at 224x224): the per-channel normalisation
``(x - mean) / std`` is part of the model and its ``mean``/``std`` live in the variables
(collection ``"normalize"``) beside ``"params"`` and ``"batch_stats"``, so they are
traced like the weights.

:func:`convert_torch_resnet` turns a torchvision-layout state dict (numpy arrays, e.g.
from :func:`lens_jax.pretrained.load_torch_checkpoint`) into ``(module, variables)``,
checking every tensor's presence and shape; :func:`init_resnet` gives random weights
(for tests and timing).  :func:`lens_jax.pretrained.resnet50` loads a file.
"""
from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

__all__ = ["ResNet", "ARCHS", "IMAGENET_MEAN", "IMAGENET_STD", "resnet_module",
           "convert_torch_resnet", "init_resnet", "random_state_dict", "torch_key", "infer_arch"]

#: torchvision's ImageNet normalisation (RGB, images in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: name -> (block kind, blocks per stage)
ARCHS: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)), "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
_BN_EPS = 1e-5


def _bn(name: str, calibrate: bool) -> nn.BatchNorm:
    # momentum 0: a calibration pass stores the batch statistics as the running ones
    return nn.BatchNorm(use_running_average=not calibrate, momentum=0.0, epsilon=_BN_EPS,
                        name=name)


def _conv(features: int, k: int, stride: int, name: str) -> nn.Conv:
    p = (k - 1) // 2
    return nn.Conv(features, (k, k), strides=stride, padding=((p, p), (p, p)),
                   use_bias=False, name=name)


def _shortcut(x, features: int, stride: int, downsample: bool, calibrate: bool):
    """The residual branch's identity, or its 1x1 strided projection (torchvision's
    ``downsample``); called inside a block's ``nn.compact`` so the names are the block's."""
    if not downsample:
        return x
    return _bn("downsample_bn", calibrate)(_conv(features, 1, stride, "downsample_conv")(x))


class _Basic(nn.Module):
    width: int
    stride: int
    downsample: bool
    calibrate: bool = False

    @nn.compact
    def __call__(self, x):
        h = nn.relu(_bn("bn1", self.calibrate)(_conv(self.width, 3, self.stride, "conv1")(x)))
        h = _bn("bn2", self.calibrate)(_conv(self.width, 3, 1, "conv2")(h))
        return nn.relu(h + _shortcut(x, self.width, self.stride, self.downsample,
                                     self.calibrate))


class _Bottleneck(nn.Module):
    width: int
    stride: int
    downsample: bool
    calibrate: bool = False

    @nn.compact
    def __call__(self, x):
        h = nn.relu(_bn("bn1", self.calibrate)(_conv(self.width, 1, 1, "conv1")(x)))
        h = nn.relu(_bn("bn2", self.calibrate)(_conv(self.width, 3, self.stride, "conv2")(h)))
        h = _bn("bn3", self.calibrate)(_conv(4 * self.width, 1, 1, "conv3")(h))
        return nn.relu(h + _shortcut(x, 4 * self.width, self.stride, self.downsample,
                                     self.calibrate))


class ResNet(nn.Module):
    """torchvision-layout ResNet, NHWC RGB in [0, 1] -> logits; eval-mode batch norm.

    ``block`` is ``"basic"`` or ``"bottleneck"``, ``layers`` the blocks per stage.
    ``calibrate=True`` normalises with the batch's statistics and stores them as the
    running ones (``apply(..., mutable=["batch_stats"])``); never used by the lens.
    """

    block: str = "bottleneck"
    layers: tuple[int, ...] = (3, 4, 6, 3)
    num_classes: int = 1000
    width: int = 64
    calibrate: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"ResNet expects (N, H, W, 3) RGB images in [0, 1]; got shape "
                             f"{x.shape}")
        x = jnp.asarray(x, jnp.float32)
        mean = self.variable("normalize", "mean",
                             lambda: jnp.asarray(IMAGENET_MEAN, jnp.float32)).value
        std = self.variable("normalize", "std",
                            lambda: jnp.asarray(IMAGENET_STD, jnp.float32)).value
        x = (x - mean.reshape(1, 1, 1, 3)) / std.reshape(1, 1, 1, 3)
        x = nn.relu(_bn("bn1", self.calibrate)(_conv(self.width, 7, 2, "conv1")(x)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        cls = _Basic if self.block == "basic" else _Bottleneck
        expansion = 1 if self.block == "basic" else 4
        cin = self.width
        for s, n in enumerate(self.layers):
            w = self.width * 2 ** s
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                down = b == 0 and (stride != 1 or cin != w * expansion)
                x = cls(w, stride, down, self.calibrate, name=f"layer{s + 1}_{b}")(x)
                cin = w * expansion
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x)


def resnet_module(arch: str, *, num_classes: int = 1000) -> ResNet:
    """The :class:`ResNet` of a torchvision name (``"resnet18"``, ``"resnet50"``, ...)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown ResNet {arch!r}; choose from {', '.join(ARCHS)}")
    block, layers = ARCHS[arch]
    return ResNet(block=block, layers=layers, num_classes=num_classes)


# ----------------------------------------------------------------------------------
# torch state dict <-> flax variables
# ----------------------------------------------------------------------------------

_LEAF = {("params", "kernel"): "weight", ("params", "scale"): "weight",
         ("params", "bias"): "bias", ("batch_stats", "mean"): "running_mean",
         ("batch_stats", "var"): "running_var"}


def torch_key(path: tuple[str, ...]) -> str:
    """The torchvision state-dict key of a flax variable path, e.g.
    ``("params", "layer1_0", "downsample_conv", "kernel")`` -> ``layer1.0.downsample.0.weight``.

    >>> torch_key(("batch_stats", "layer4_2", "bn3", "var"))
    'layer4.2.bn3.running_var'
    """
    collection, *mods, leaf = path
    parts = []
    for m in mods:
        if m.startswith("layer"):
            parts.append(m.replace("_", "."))
        elif m.startswith("downsample_"):
            parts.append("downsample.0" if m.endswith("conv") else "downsample.1")
        else:
            parts.append(m)
    return ".".join(parts + [_LEAF[(collection, leaf)]])


def infer_arch(sd: Mapping[str, np.ndarray]) -> tuple[str, tuple[int, ...], int]:
    """``(block, layers, num_classes)`` of a torchvision-layout state dict."""
    if "conv1.weight" not in sd or "fc.weight" not in sd:
        raise ValueError("not a torchvision-layout ResNet state dict (no conv1.weight / "
                         "fc.weight)")
    block = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
    layers = []
    for s in range(1, 5):
        idx = {int(k.split(".")[1]) for k in sd if k.startswith(f"layer{s}.")}
        layers.append(max(idx) + 1 if idx else 0)
    return block, tuple(layers), int(np.shape(sd["fc.weight"])[0])


def _arch_name(block: str, layers: tuple[int, ...]) -> str:
    for name, spec in ARCHS.items():
        if spec == (block, layers):
            return name
    return f"a ResNet with {block} blocks {list(layers)}"


@functools.lru_cache(maxsize=8)
def _variable_shapes(module: ResNet) -> dict:
    """The variables' shapes (``jax.ShapeDtypeStruct`` leaves) of ``module``."""
    return jax.eval_shape(module.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))


def convert_torch_resnet(sd: Mapping[str, np.ndarray], *, arch: str | None = None,
                         where: str = "the state dict") -> tuple[ResNet, dict]:
    """torchvision-layout ResNet state dict -> ``(module, variables)`` (float32).

    ``variables`` = ``{"params", "batch_stats", "normalize"}`` with the ImageNet
    normalisation (replace ``variables["normalize"]`` for another).  With ``arch``
    (``"resnet50"``, ...) the state dict must be that network.  Every tensor the network
    needs must be present with its exact shape; ``num_batches_tracked`` entries are
    ignored and any other extra entry is refused.

    Raises:
      ValueError: naming ``where`` and each missing, misshapen or unexpected key.
    """
    block, layers, num_classes = infer_arch(sd)
    found = _arch_name(block, layers)
    if arch is not None:
        if arch not in ARCHS:
            raise ValueError(f"unknown ResNet {arch!r}; choose from {', '.join(ARCHS)}")
        if ARCHS[arch] != (block, layers):
            raise ValueError(f"{where} holds {found}, not {arch} ({ARCHS[arch][0]} blocks "
                             f"{list(ARCHS[arch][1])})")
    module = ResNet(block=block, layers=layers, num_classes=num_classes)
    shapes = _variable_shapes(module)
    flat = jax.tree_util.tree_flatten_with_path(
        {k: v for k, v in shapes.items() if k != "normalize"})[0]
    missing, bad, leaves, used = [], [], [], set()
    for kp, aval in flat:
        path = tuple(k.key for k in kp)
        key = torch_key(path)
        if key not in sd:
            missing.append(key)
            leaves.append(None)
            continue
        used.add(key)
        a = np.asarray(sd[key])
        if path[-1] == "kernel" and a.ndim == 4:          # (O, I, kh, kw) -> (kh, kw, I, O)
            a = a.transpose(2, 3, 1, 0)
        elif path[-1] == "kernel":                         # Linear (O, I) -> (I, O)
            a = a.T
        if a.shape != aval.shape:
            want = aval.shape if a.ndim != 4 else tuple(aval.shape[i] for i in (3, 2, 0, 1))
            got = np.shape(sd[key])
            bad.append(f"{key} {tuple(got)} (expected {tuple(want)})")
        if not (np.issubdtype(a.dtype, np.floating)
                or a.dtype.name == "bfloat16"):
            bad.append(f"{key} has dtype {a.dtype} (expected floating point)")
        leaves.append(a)
    extra = sorted(k for k in sd if k not in used and not k.endswith("num_batches_tracked"))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {', '.join(missing[:6])}"
                        + (" ..." if len(missing) > 6 else ""))
    if bad:
        problems.append("shape mismatch: " + "; ".join(bad[:6]) + (" ..." if len(bad) > 6 else ""))
    if extra:
        problems.append(f"{len(extra)} unexpected tensor(s): {', '.join(extra[:6])}"
                        + (" ..." if len(extra) > 6 else ""))
    if problems:
        raise ValueError(f"{where} does not fit a torchvision-layout {found}: "
                         + "; ".join(problems))
    treedef = jax.tree_util.tree_structure({k: v for k, v in shapes.items() if k != "normalize"})
    variables = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(np.asarray(a, np.float32)) for a in leaves])
    variables["normalize"] = {"mean": jnp.asarray(IMAGENET_MEAN, jnp.float32),
                              "std": jnp.asarray(IMAGENET_STD, jnp.float32)}
    return module, variables


def random_state_dict(arch: str, *, seed: int = 0,
                      num_classes: int = 1000) -> dict[str, np.ndarray]:
    """Random float32 weights in torchvision's layout (numpy only, no compilation).

    Convolutions He-normal (fan-in), batch norm in eval mode with running mean 0 and
    variance 1, scale 1 and bias 0 except the last batch norm of each residual branch,
    whose scale is 0.2 (so activations and logits stay of order one through the
    residual sums), linear head normal with std ``1/sqrt(fan-in)``.  For tests and
    timing: the cost of a network does not depend on its weights.
    """
    module = resnet_module(arch, num_classes=num_classes)
    shapes = _variable_shapes(module)
    rng = np.random.default_rng(seed)
    last_bn = "bn2" if module.block == "basic" else "bn3"
    sd: dict[str, np.ndarray] = {}
    for kp, aval in jax.tree_util.tree_flatten_with_path(
            {k: v for k, v in shapes.items() if k != "normalize"})[0]:
        path = tuple(k.key for k in kp)
        key, shape = torch_key(path), aval.shape
        if path[-1] == "kernel" and len(shape) == 4:          # HWIO -> OIHW
            kh, kw, cin, cout = shape
            a = rng.standard_normal((cout, cin, kh, kw)) * np.sqrt(2.0 / (cin * kh * kw))
        elif path[-1] == "kernel":
            a = rng.standard_normal(shape[::-1]) / np.sqrt(shape[0])
        elif path[-1] == "scale":
            a = np.full(shape, 0.2 if path[-2] == last_bn else 1.0)
        elif path[-1] == "var":
            a = np.ones(shape)
        else:                                                  # bias, mean
            a = np.zeros(shape)
        sd[key] = a.astype(np.float32)
    return sd


def init_resnet(arch: str, *, seed: int = 0, num_classes: int = 1000
                ) -> tuple[ResNet, dict]:
    """Random ``(module, variables)`` from :func:`random_state_dict` (for tests and timing)."""
    return convert_torch_resnet(random_state_dict(arch, seed=seed, num_classes=num_classes),
                                arch=arch, where=f"random {arch} weights")
