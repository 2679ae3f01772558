"""Training, orbax checkpoints, resume after interruption, cached models."""

import jax
import numpy as np
import pytest

from lens_jax import train as T

from conftest import sk_digits


@pytest.fixture(scope="module")
def digits():
    """scikit-learn digits at 32x32 (600 train / 200 test)."""
    return sk_digits(32)


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(u), np.asarray(v))
                                      for u, v in zip(la, lb))


def test_training_learns(digits):
    train, test = digits
    r = T.train_classifier("cnn", train, test, num_classes=10, epochs=4, batch_size=64,
                           seed=0, progress=False)
    losses = [h["train_loss"] for h in r.history]
    assert len(r.history) == 4 and losses[-1] < 0.5 * losses[0]
    assert r.test_accuracy > 0.85
    assert r.test_accuracy == r.history[-1]["test_acc"]
    acc = T.accuracy(r.logits_fn(test[0]), test[1])
    assert abs(acc - r.test_accuracy) < 1e-9


def test_deterministic_given_seed(digits):
    train, _ = digits
    small = (train[0][:128], train[1][:128])
    kw = dict(num_classes=10, epochs=1, batch_size=32, progress=False)
    a = T.train_classifier("mlp", small, **kw, seed=3)
    b = T.train_classifier("mlp", small, **kw, seed=3)
    c = T.train_classifier("mlp", small, **kw, seed=4)
    assert _leaves_equal(a.params, b.params)
    assert not _leaves_equal(a.params, c.params)


def test_checkpoint_roundtrip(digits, tmp_path):
    train, test = digits
    r = T.train_classifier("cnn", train, test, num_classes=10, epochs=1, batch_size=64,
                           workdir=tmp_path / "run", progress=False)
    params, model, meta = T.restore_checkpoint(tmp_path / "run")
    assert _leaves_equal(params, r.params)
    assert all(p.dtype == np.float32 for p in jax.tree_util.tree_leaves(params))
    assert meta["epoch"] == 1 and meta["finished"] is True
    assert meta["history"] == r.history
    assert meta["config"]["model"] == "cnn" and type(model) is type(r.model)
    # no temporary directories are left behind
    assert not [p for p in (tmp_path / "run").iterdir() if "tmp" in p.name]


def test_resume_after_interrupt_matches_uninterrupted(digits, tmp_path):
    train, test = digits
    kw = dict(num_classes=10, epochs=2, batch_size=64, seed=1, progress=False)
    full = T.train_classifier("cnn", train, test, workdir=tmp_path / "full", **kw)

    def interrupt(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.train_classifier("cnn", train, test, workdir=tmp_path / "cut", callback=interrupt,
                           **kw)
    _, _, meta = T.restore_checkpoint(tmp_path / "cut")
    assert meta["epoch"] == 1 and meta["finished"] is False

    seen = []
    resumed = T.train_classifier("cnn", train, test, workdir=tmp_path / "cut",
                                 callback=lambda e, r: seen.append(e), **kw)
    assert resumed.resumed_from == 1 and seen == [2]
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in full.history]
    assert _leaves_equal(resumed.params, full.params)

    # a finished run returns without training
    again = T.train_classifier("cnn", train, test, workdir=tmp_path / "cut",
                               callback=lambda e, r: seen.append(e), **kw)
    assert again.resumed_from == 2 and seen == [2]
    assert _leaves_equal(again.params, full.params)


def test_config_mismatch(digits, tmp_path):
    train, _ = digits
    small = (train[0][:128], train[1][:128])
    kw = dict(num_classes=10, epochs=1, batch_size=64, progress=False, workdir=tmp_path)
    T.train_classifier("mlp", small, lr=1e-3, **kw)
    with pytest.raises(T.CheckpointMismatchError, match="lr"):
        T.train_classifier("mlp", small, lr=2e-3, **kw)
    r = T.train_classifier("mlp", small, lr=2e-3, resume=False, **kw)
    assert r.resumed_from == 0
    assert T.restore_checkpoint(tmp_path)[2]["config"]["lr"] == 2e-3


def test_bad_inputs():
    x = np.zeros((10, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="labels"):
        T.train_classifier("mlp", (x, np.full(10, 5)), num_classes=3, epochs=1, progress=False)
    with pytest.raises(ValueError, match="images"):
        T.train_classifier("mlp", (x, np.zeros(9, int)), num_classes=3, epochs=1,
                           progress=False)


def test_load_or_train_caches(digits, tmp_path, fake_data):
    """load_or_train with a stand-in ``lens_jax.data`` (the tests never need the real one)."""
    train, test = digits
    calls = fake_data({"train": (train[0][:256], train[1][:256]), "test": test})

    fn, params, info = T.load_or_train("mlp", "toy", epochs=2, cache=tmp_path, progress=False)
    assert calls == [("toy", "train"), ("toy", "test")]
    assert info["epochs"] == 2 and info["num_classes"] == 10 and info["lr"] == 1e-3
    assert info["input_shape"] == (32, 32, 1) and len(info["history"]) == 2
    default = T.default_epochs("toy", "mlp")
    folder = "toy_mlp_s0" if default == 2 else "toy_mlp_s0_e2"
    assert (tmp_path / "models" / folder).is_dir()
    assert fn(test[0][:5]).shape == (5, 10)

    fn2, params2, info2 = T.load_or_train("mlp", "toy", epochs=2, cache=tmp_path,
                                          progress=False)
    assert len(calls) == 2                      # served from the cache, no data loaded
    assert _leaves_equal(params, params2)
    assert info2["test_accuracy"] == info["test_accuracy"]
    np.testing.assert_array_equal(np.asarray(fn(test[0][:5])), np.asarray(fn2(test[0][:5])))

    # another epoch count is another run, in its own folder: the first model survives
    _, _, info3 = T.load_or_train("mlp", "toy", epochs=1, cache=tmp_path, progress=False)
    assert len(calls) == 4 and info3["epochs"] == 1
    _, params4, _ = T.load_or_train("mlp", "toy", epochs=2, cache=tmp_path, progress=False)
    assert len(calls) == 4 and _leaves_equal(params, params4)


def test_defaults_table():
    assert T.default_epochs("mnist5k", "cnn") >= 8
    assert T.default_epochs("fashion_mnist_local", "cnn") == T.default_epochs("fashion_mnist", "cnn")
    assert T.default_epochs("unknown", "cnn") > 0 and T.default_lr("unknown", "mlp") == 1e-3


# ----------------------------------------------------------------------------------
# damaged checkpoints (issue 12)
# ----------------------------------------------------------------------------------

def _array_files(step_dir):
    """The files holding a checkpoint's arrays (the biggest ones under state/)."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_size, reverse=True)


def _flip(path, n=64, where=0.5):
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i:i + n] = bytes(b ^ 0xA5 for b in data[i:i + n])
    path.write_bytes(bytes(data))


@pytest.fixture()
def tiny_run(tmp_path):
    r = np.random.default_rng(0)
    x = r.random((64, 8, 8, 1)).astype(np.float32)
    y = (x.mean((1, 2, 3)) > 0.5).astype(np.int32)
    res = T.train_classifier("mlp", (x, y), (x, y), num_classes=2, epochs=1, batch_size=32,
                             workdir=tmp_path / "run", progress=False,
                             model_kwargs={"width": 16, "depth": 1})
    return tmp_path / "run", res


def test_checkpoint_with_flipped_bytes_is_detected(tiny_run):
    """64 flipped bytes restored without error: parameters off by up to 2.7e35 while the
    metadata still reported the old accuracy."""
    run, res = tiny_run
    params, _, meta = T.restore_checkpoint(run)                 # intact: verified, equal
    assert _leaves_equal(params, res.params) and len(meta["content_sha256"]) == 64
    _flip(_array_files(run / "1")[0])
    with pytest.raises(T.CheckpointCorruptError,
                       match=r"run \(epoch 1\) is damaged: its arrays. sha256"):
        T.restore_checkpoint(run)
    assert issubclass(T.CheckpointCorruptError, ValueError)


def test_train_zero_epochs_is_refused():
    x = np.zeros((8, 8, 8, 1), np.float32)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="epochs"):
            T.train_classifier("mlp", (x, np.zeros(8, int)), num_classes=2, epochs=bad,
                               progress=False)


def test_load_or_train_sets_a_damaged_model_aside_and_retrains(digits, tmp_path, fake_data):
    train, test = digits
    calls = fake_data({"train": (train[0][:128], train[1][:128]), "test": test})
    kw = dict(epochs=1, cache=tmp_path, progress=False, batch_size=64)
    _, params, info = T.load_or_train("mlp", "toy", **kw)
    folder = tmp_path / "models" / ("toy_mlp_s0" if T.default_epochs("toy", "mlp") == 1
                                    else "toy_mlp_s0_e1")
    _flip(_array_files(folder / "1")[0])
    with pytest.warns(RuntimeWarning, match=r"(?s)damaged.*moved it aside"):
        _, params2, info2 = T.load_or_train("mlp", "toy", **kw)
    assert len(calls) == 4                                   # trained again
    aside = list(folder.parent.glob(folder.name + ".damaged-*"))
    assert len(aside) == 1 and folder.is_dir()
    assert _leaves_equal(params, params2)                    # same seed: the same weights
    T.restore_checkpoint(folder)                             # the fresh one verifies
