"""ResNet-18/-50 from torch checkpoints (torchvision/timm and robustness-library layouts).

The reference is torch itself: a torchvision-layout ResNet written here with plain
``torch.nn`` (torchvision is not importable next to this torch), random weights, random
batch-norm statistics, saved with ``torch.save`` in each layout; lens_jax's logits must
equal torch's eval-mode logits to 1e-4 relative in float32.  Images are small (64x64,
batch 2): the network is fully convolutional, so the numbers test the same graph.
"""
import argparse
import collections
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lens_jax import pretrained as P
from lens_jax import resnet as R

torch = pytest.importorskip("torch")
tnn = torch.nn


# ---------------------------------------------------------------------------------- torch side

class _Basic(tnn.Module):
    expansion = 1

    def __init__(self, cin, w, stride, down):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, w, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(w)
        self.conv2 = tnn.Conv2d(w, w, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(w)
        self.relu = tnn.ReLU()
        self.downsample = tnn.Sequential(tnn.Conv2d(cin, w, 1, stride, bias=False),
                                         tnn.BatchNorm2d(w)) if down else None

    def forward(self, x):
        h = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(h + (x if self.downsample is None else self.downsample(x)))


class _Bottleneck(tnn.Module):
    expansion = 4

    def __init__(self, cin, w, stride, down):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, w, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(w)
        self.conv2 = tnn.Conv2d(w, w, 3, stride, 1, bias=False)     # stride here: v1.5
        self.bn2 = tnn.BatchNorm2d(w)
        self.conv3 = tnn.Conv2d(w, 4 * w, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(4 * w)
        self.relu = tnn.ReLU()
        self.downsample = tnn.Sequential(tnn.Conv2d(cin, 4 * w, 1, stride, bias=False),
                                         tnn.BatchNorm2d(4 * w)) if down else None

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(h)))))
        return self.relu(h + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(tnn.Module):
    """torchvision.models.ResNet's layout and forward (same state-dict keys)."""

    def __init__(self, arch="resnet50", num_classes=1000):
        super().__init__()
        kind, layers = R.ARCHS[arch]
        block = _Basic if kind == "basic" else _Bottleneck
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU()
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        cin = 64
        for s, n in enumerate(layers):
            w, blocks = 64 * 2 ** s, []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                down = b == 0 and (stride != 1 or cin != w * block.expansion)
                blocks.append(block(cin, w, stride, down))
                cin = w * block.expansion
            setattr(self, f"layer{s + 1}", tnn.Sequential(*blocks))
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.fc = tnn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _random_torch_resnet(arch, seed):
    """Random weights and random, non-trivial batch-norm statistics: running stats from
    a train-mode pass over noise, then scale, shift, mean and variance perturbed."""
    torch.manual_seed(seed)
    m = TorchResNet(arch)
    for mod in m.modules():
        if isinstance(mod, tnn.Conv2d):
            tnn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        if isinstance(mod, tnn.BatchNorm2d):
            mod.momentum = 1.0                       # running stats = this batch's
            tnn.init.uniform_(mod.weight, 0.5, 1.5)
            tnn.init.normal_(mod.bias, 0.0, 0.2)
    m.train()
    with torch.no_grad():
        m(torch.rand(4, 3, 64, 64))
        for mod in m.modules():
            if isinstance(mod, tnn.BatchNorm2d):
                mod.running_mean += 0.1 * torch.randn_like(mod.running_mean)
                mod.running_var *= torch.empty_like(mod.running_var).uniform_(0.7, 1.4)
    return m.eval()


class _NeverRun:
    """Stands for a dill-pickled schedule: unpickling it would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def r50():
    return _random_torch_resnet("resnet50", 0)


@pytest.fixture(scope="module")
def x_small():
    return np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)


def _torch_logits(model, x_nhwc, mean=R.IMAGENET_MEAN, std=R.IMAGENET_STD):
    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x.float()).numpy()


def _assert_logits_equal(ours, ref):
    ours = np.asarray(ours)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert np.std(ref) > 0.1                                  # not a degenerate network
    # 1e-4 relative: elementwise against the logits' scale, and as a whole
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert np.linalg.norm(ours - ref) <= 1e-4 * np.linalg.norm(ref)


# ---------------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("layout", ["torchvision", "wrapped_legacy"])
def test_resnet50_torchvision_layout_matches_torch(tmp_path, r50, x_small, layout):
    path = tmp_path / "r50.pth"
    sd = r50.state_dict()
    if layout == "torchvision":
        torch.save(sd, path)                                  # zip, plain state dict
    else:   # timm/torchvision training scripts: {'state_dict': ...}, DataParallel 'module.'
        torch.save({"state_dict": collections.OrderedDict(
            ("module." + k, v) for k, v in sd.items()), "epoch": 7, "arch": "resnet50",
            "args": argparse.Namespace(lr=0.1)},
            path, _use_new_zipfile_serialization=False)
    clf = P.resnet50(weights=path)
    _assert_logits_equal(clf(x_small), _torch_logits(r50, x_small))
    assert clf.class_names[285] == "Egyptian cat" and len(clf.class_names) == 1000


def _robustness_checkpoint(path, model, attacker_sd, mean, std, marker, *,
                           pickle_module=None):
    """The robustness library's layout: AttackerModel state dict under 'model' with
    'module.' (DataParallel) + 'normalizer', 'model', 'attacker.normalize', 'attacker.model';
    optimiser state, a schedule whose class the reader does not admit (with dill: a
    lambda, pickled by value), the training options."""
    sd = collections.OrderedDict()
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    sd["module.normalizer.new_mean"], sd["module.normalizer.new_std"] = m, s
    for k, v in model.state_dict().items():
        sd["module.model." + k] = v
    sd["module.attacker.normalize.new_mean"], sd["module.attacker.normalize.new_std"] = m, s
    for k, v in attacker_sd.items():
        sd["module.attacker.model." + k] = v
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad()
    model.fc.bias.sum().backward()
    opt.step()                                                # creates momentum buffers
    with torch.no_grad():                                     # undo the step
        model.fc.bias += 0.1 * model.fc.bias.grad
    schedule = {"never_run": _NeverRun(marker)}
    if pickle_module is not None:
        schedule["lr_lambda"] = lambda epoch: 0.1 ** (epoch // 30)
    ckpt = {"model": sd, "optimizer": opt.state_dict(), "schedule": schedule,
            "epoch": 90, "args": argparse.Namespace(eps=3.0, constraint="2")}
    kw = {} if pickle_module is None else {"pickle_module": pickle_module}
    torch.save(ckpt, path, **kw)


@pytest.mark.parametrize("saver", ["pickle", "dill"])
def test_resnet50_robustness_layout_matches_torch(tmp_path, r50, x_small, saver):
    import pickle
    pickle_module = pytest.importorskip("dill") if saver == "dill" else None
    # the attack model's copy, with other values (using it instead would fail the check)
    attacker = collections.OrderedDict(
        (k, v * 1.5 + 0.1 if v.is_floating_point() else v) for k, v in r50.state_dict().items())
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)             # not ImageNet's: must be read
    path, marker = tmp_path / "robust.pt", tmp_path / "pwned"
    _robustness_checkpoint(path, r50, attacker, mean, std, marker, pickle_module=pickle_module)
    if saver == "dill":                                       # dill really wrote its globals
        with zipfile.ZipFile(path) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("data.pkl")][0]
            assert b"dill._dill" in zf.read(pkl)
    # the plain reader refuses the file, naming the class it would need
    with pytest.raises(pickle.UnpicklingError, match=r"robust\.pt: refused global"):
        P.load_torch_checkpoint(path)
    clf = P.resnet50(weights=path)
    assert not marker.exists()                                # nothing was executed
    np.testing.assert_allclose(np.asarray(clf.params["normalize"]["mean"]), mean, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(clf.params["normalize"]["std"]), std, rtol=1e-6)
    _assert_logits_equal(clf(x_small), _torch_logits(r50, x_small, mean, std))
    assert not marker.exists()
    # the tensors stay readable (attacker copy, optimiser buffers); the foreign entries
    # are dropped
    flat = P.load_torch_checkpoint(path, skip_foreign=True)
    assert "model.module.attacker.model.fc.weight" in flat
    assert any(k.startswith("optimizer.state.") and k.endswith(".momentum_buffer")
               for k in flat)
    assert not any(k.startswith(("schedule", "args")) for k in flat)


def test_resnet18_matches_torch_and_arch_is_checked(tmp_path, x_small):
    m = _random_torch_resnet("resnet18", 2)
    path = tmp_path / "r18.pth"
    torch.save(m.state_dict(), path)
    clf = P.resnet18(weights=path)
    _assert_logits_equal(clf(x_small), _torch_logits(m, x_small))
    with pytest.raises(ValueError, match=r"r18\.pth.*holds resnet18, not resnet50"):
        P.resnet50(weights=path)


# ---------------------------------------------------------------------------------- bad files

@pytest.fixture(scope="module")
def r18_sd():
    return _random_torch_resnet("resnet18", 3).state_dict()


def test_missing_and_misshapen_tensors_are_listed_by_key(tmp_path, r18_sd):
    sd = collections.OrderedDict(r18_sd)
    del sd["layer3.1.bn2.running_var"]
    sd["layer2.0.conv2.weight"] = torch.zeros(128, 128, 5, 5)
    sd["extra.weight"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError) as err:
        P.resnet18(weights=path)
    msg = str(err.value)
    assert "broken.pth" in msg
    assert "missing tensor(s): layer3.1.bn2.running_var" in msg
    assert "layer2.0.conv2.weight (128, 128, 5, 5) (expected (128, 128, 3, 3))" in msg
    assert "unexpected tensor(s): extra.weight" in msg


def test_tensor_needing_another_class_is_named_not_run(tmp_path, r18_sd):
    sd = dict(r18_sd)
    marker = tmp_path / "pwned"
    sd["layer1.0.bn1.bias"] = _NeverRun(marker)
    path = tmp_path / "odd.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"odd\.pth.*missing tensor\(s\): layer1\.0\.bn1\.bias"
                       r".*skipped.*layer1\.0\.bn1\.bias \(<skipped posix\.system>\)"):
        P.resnet18(weights=path)
    assert not marker.exists()


def test_not_a_resnet_and_pickled_module_are_named(tmp_path, r18_sd):
    path = tmp_path / "other.pth"
    torch.save({"w": torch.ones(3)}, path)
    with pytest.raises(ValueError, match=r"other\.pth: not a ResNet checkpoint"):
        P.resnet50(weights=path)
    # a whole pickled nn.Module (torch.save(model)): its classes are never imported
    path = tmp_path / "module.pth"
    torch.save(tnn.Linear(2, 2), path)
    with pytest.raises(ValueError, match=r"module\.pth: holds no tensors.*torch\.nn.*state_dict"):
        P.resnet50(weights=path)


# ---------------------------------------------------------------------------------- the classifier

def test_random_resnet50_is_a_traced_classifier(x_small):
    from lens_jax.classifier import as_classifier
    clf = P.resnet50(seed=0)
    c = as_classifier(clf)
    leaves = jax.tree.leaves(c.params)
    assert sum(a.size for a in leaves) > 25_000_000          # the weights are params
    assert set(c.params) == {"params", "batch_stats", "normalize"}
    z = np.asarray(clf(x_small))
    assert z.shape == (2, 1000) and np.all(np.isfinite(z)) and 0.3 < np.std(z) < 30
    # new values of the same shapes are seen (nothing compiled in)
    p2 = jax.tree.map(lambda a: a, c.params)
    p2["params"]["fc"]["bias"] = p2["params"]["fc"]["bias"] + 1.0
    np.testing.assert_allclose(np.asarray(jax.jit(c.apply)(p2, jnp.asarray(x_small))), z + 1.0,
                               rtol=1e-5, atol=1e-4)
    assert P.resnet50(seed=0).model == clf.model


def test_load_pretrained_registry():
    assert {"resnet50", "resnet18", "efficientnet_lite0", "ccexam"} <= set(P.PRETRAINED)
    with pytest.raises(KeyError, match="resnet50"):
        P.load_pretrained("resnet51")
    loaded = P.load_pretrained("resnet18")
    assert loaded.input_shape == (224, 224, 3) and "random weights" in loaded.label
    assert loaded.class_names[967] == "espresso"


# ---------------------------------------------------------------------------------- natural images

@pytest.fixture(scope="module")
def chelsea224():
    skdata = pytest.importorskip("skimage.data")
    # the ResNet evaluation transform: shorter side to 256, centre 224x224 crop
    return P.imagenet_preprocess(skdata.chelsea(), mode="crop")


def test_morph_photo_with_resnet50_pixel(chelsea224):
    """A 224x224 photo, luminance edits, random-weight ResNet-50: the morph runs and
    its endpoint is what one gradient step predicts (p(target) up, chroma kept)."""
    import lens_jax as lj
    clf = P.resnet50(seed=0)
    m = lj.morph(clf, chelsea224, target=287, domain="pixel", color="luminance",
                 alphas=jnp.asarray([0.0, 2.0], jnp.float32))
    probs = np.asarray(m.probs)
    assert m.frames.shape == (2, 224, 224, 3) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(np.asarray(m.frames[0]), chelsea224, atol=1e-6)
    assert probs[1, 287] > probs[0, 287]
    # luminance only: the YIQ chroma of the edit is zero wherever nothing clipped
    d = np.asarray(m.frames[1], np.float64) - chelsea224
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    inside = np.all((np.asarray(m.frames[1]) > 0) & (np.asarray(m.frames[1]) < 1), -1)
    chroma = (d @ yiq.T)[..., 1:][inside]
    assert np.abs(chroma).max() < 1e-4 * max(np.abs(d).max(), 1e-3) + 1e-5
    assert float(m.l2[1]) > 0


def test_cli_run_on_ones_photos_with_a_resnet50_checkpoint(r50, chelsea224, tmp_path, capsys):
    """The researcher's path: ``run --classifier resnet50 --weights CKPT --images FOLDER
    --target CLASS`` (a torchvision-layout ResNet-50 checkpoint, a 224x224 photo file) writes
    the page; the source's predicted class is the torch model's on the same pixels."""
    import json

    from PIL import Image

    from lens_jax import cli
    torch.save(r50.state_dict(), tmp_path / "r50.pth")
    (tmp_path / "imgs").mkdir()
    pixels = np.round(chelsea224 * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "imgs" / "chelsea.png")
    out = tmp_path / "page"
    assert cli.main(["run", "--classifier", "resnet50", "--weights", str(tmp_path / "r50.pth"),
                     "--images", str(tmp_path / "imgs"), "--target", "tiger cat", "--domains",
                     "pixel", "--frames", "2", "--budget", "3", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    ref = _torch_logits(r50, (pixels / 255.0).astype(np.float32)[None])[0]
    source = P.imagenet_classes()[int(np.argmax(ref))]
    assert "resnet50 (r50.pth)" in said and f"chelsea.png: {source} → tiger cat" in said
    (row,) = json.loads((out / "metrics.json").read_text())
    assert row["image"] == "chelsea.png" and row["domain"] == "pixel"
    assert row["reached"] and row["l2"] == pytest.approx(3.0, rel=1e-3)
    page = (out / "index.html").read_text()
    assert "<!DOCTYPE html>" in page and "tiger cat" in page and 'type="range"' in page


def _strided_conv_classifier(seed=0):
    """ImageNet-shaped logits (1000) from one 8x8 stride-8 convolution, tanh, mean pool and
    a linear head: a smooth nonlinear classifier over the whole 224x224 image that compiles
    in a fraction of a ResNet's time."""
    r = np.random.default_rng(seed)
    k = jnp.asarray(r.standard_normal((8, 8, 3, 32)) * 0.05, jnp.float32)
    w = jnp.asarray(r.standard_normal((32, 1000)) * 0.3, jnp.float32)

    def logits_fn(x):
        h = jax.lax.conv_general_dilated(x, k, (8, 8), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.tanh(h).mean((1, 2)) @ w
    return logits_fn


@pytest.mark.slow     # every domain compiles its own program at 224x224
def test_morph_photo_every_domain_at_224(chelsea224):
    """Every registered domain at 224x224 on a photo: the domains' property at this size
    (a pyramid of 6 scales, the flow grid, the colour handling).  The classifier is a
    strided convolution (a ResNet's compile time per domain was most of this test); the
    ResNet-18 runs the domain with the most machinery, csp_flow_joint, and ResNet-50 the
    pixel domain (the test above).  Two raw amplifications, not an L2 budget: the budget's
    search compiles a grid of 30 renders per domain (40% of this test's time) and is tested
    at small sizes in tests/test_lens.py."""
    import lens_jax as lj
    from lens_jax.domains import domain_names
    light = _strided_conv_classifier()
    cases = [(d, light) for d in domain_names()] + [("csp_flow_joint", P.resnet18(seed=0))]
    for d, clf in cases:
        m = lj.morph(clf, chelsea224, target=287, domain=d, color="luminance",
                     alphas=jnp.asarray([0.0, 1e3], jnp.float32))
        np.testing.assert_allclose(np.asarray(m.frames[0]), chelsea224, atol=1e-6, err_msg=d)
        probs = np.asarray(m.probs)
        assert m.frames.shape == (2, 224, 224, 3), d
        assert np.all(np.isfinite(probs)) and np.all(np.isfinite(np.asarray(m.l2))), d
        assert float(m.l2[-1]) > 0, d
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5, err_msg=d)
