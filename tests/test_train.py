"""Training, orbax checkpoints, resume after interruption, cached models."""

import time
from pathlib import Path

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
    a = T.train_classifier("mlp", small, None, **kw, seed=3)
    b = T.train_classifier("mlp", small, None, **kw, seed=3)
    c = T.train_classifier("mlp", small, None, **kw, seed=4)
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


def test_resume_after_interrupt_matches_uninterrupted(tmp_path):
    x, y = _tiny_xy(256)
    train, test = (x, y), (x[:64], y[:64])
    kw = dict(TINY_MLP, epochs=2, seed=1)
    full = T.train_classifier("mlp", train, test, workdir=tmp_path / "full", **kw)

    def interrupt(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.train_classifier("mlp", train, test, workdir=tmp_path / "cut", callback=interrupt,
                           **kw)
    _, _, meta = T.restore_checkpoint(tmp_path / "cut")
    assert meta["epoch"] == 1 and meta["finished"] is False

    seen = []
    resumed = T.train_classifier("mlp", train, test, workdir=tmp_path / "cut",
                                 callback=lambda e, r: seen.append(e), **kw)
    assert resumed.resumed_from == 1 and seen == [2]
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in full.history]
    assert _leaves_equal(resumed.params, full.params)

    # a finished run returns without training
    again = T.train_classifier("mlp", train, test, workdir=tmp_path / "cut",
                               callback=lambda e, r: seen.append(e), **kw)
    assert again.resumed_from == 2 and seen == [2]
    assert _leaves_equal(again.params, full.params)


def test_interrupted_epoch_resumes_from_its_last_step_bit_equal(tmp_path, monkeypatch):
    x, y = _tiny_xy(256)                        # 8 steps of 32 per epoch
    # robust: the attack's random starts and ramp depend on the global step too
    kw = dict(TINY_MLP, epochs=2, seed=3, ramp_epochs=1,
              adversary=T.PGD("l2", 0.5, 2, random_start=True))
    full = T.train_classifier("mlp", (x, y), (x, y), **kw)
    original, calls = T._make_steps, []

    def counted(limit):
        def make(*a):
            step = original(*a)

            def run(*args):
                if len(calls) == limit:
                    raise KeyboardInterrupt
                calls.append(1)
                return step(*args)
            return run
        return make

    run = tmp_path / "run"
    monkeypatch.setattr(T, "_make_steps", counted(11))      # cut after 3 steps of epoch 2
    with pytest.raises(KeyboardInterrupt):
        T.train_classifier("mlp", (x, y), (x, y), workdir=run, checkpoint_seconds=0, **kw)
    assert T.restore_checkpoint(run)[2]["epoch"] == 1 and (run / "in_epoch").is_dir()
    calls.clear()
    monkeypatch.setattr(T, "_make_steps", counted(-1))
    resumed = T.train_classifier("mlp", (x, y), (x, y), workdir=run, **kw)
    assert len(calls) == 5 and resumed.resumed_from == 1    # steps 4..8 of epoch 2 only
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in full.history]
    assert _leaves_equal(resumed.params, full.params)
    assert not (run / "in_epoch").exists()       # superseded by the epoch's checkpoint

    # a damaged in-epoch checkpoint: discarded with a warning, the epoch reruns whole
    run2 = tmp_path / "run2"
    calls.clear()
    monkeypatch.setattr(T, "_make_steps", counted(11))
    with pytest.raises(KeyboardInterrupt):
        T.train_classifier("mlp", (x, y), (x, y), workdir=run2, checkpoint_seconds=0, **kw)
    (step_dir,) = [p for p in (run2 / "in_epoch").iterdir() if p.name.isdigit()]
    for f in _array_files(step_dir):
        _flip(f)
    calls.clear()
    monkeypatch.setattr(T, "_make_steps", counted(-1))
    with pytest.warns(RuntimeWarning, match=r"\(step 11, within epoch 2\) is damaged.*"
                      "epoch 2 restarts from its first step"):
        again = T.train_classifier("mlp", (x, y), (x, y), workdir=run2, **kw)
    assert len(calls) == 8 and _leaves_equal(again.params, full.params)
    with pytest.raises(ValueError, match="checkpoint_seconds"):
        T.train_classifier("mlp", (x, y), None, checkpoint_seconds=-1, **TINY_MLP)


def test_config_mismatch(digits, tmp_path):
    train, _ = digits
    small = (train[0][:128], train[1][:128])
    kw = dict(num_classes=10, epochs=1, batch_size=64, progress=False, workdir=tmp_path)
    T.train_classifier("mlp", small, None, lr=1e-3, **kw)
    with pytest.raises(T.CheckpointMismatchError, match="lr"):
        T.train_classifier("mlp", small, None, lr=2e-3, **kw)
    r = T.train_classifier("mlp", small, None, lr=2e-3, resume=False, **kw)
    assert r.resumed_from == 0
    assert T.restore_checkpoint(tmp_path)[2]["config"]["lr"] == 2e-3


def test_bad_inputs():
    x = np.zeros((10, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="labels"):
        T.train_classifier("mlp", (x, np.full(10, 5)), None, num_classes=3, epochs=1,
                           progress=False)
    with pytest.raises(ValueError, match="images"):
        T.train_classifier("mlp", (x, np.zeros(9, int)), None, num_classes=3, epochs=1,
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


def test_load_or_train_on_the_first_n_training_images(digits, tmp_path, fake_data):
    """``n_train`` trains on the first n images, in a folder of its own (the full-set
    model is untouched), is served from the cache, and is checked."""
    train, test = digits
    calls = fake_data({"train": (train[0][:256], train[1][:256]), "test": test})
    _, _, info = T.load_or_train("mlp", "toy", epochs=1, n_train=130, cache=tmp_path,
                                 progress=False)
    assert info["n_train"] == 130 and calls == [("toy", "train"), ("toy", "test")]
    folder = Path(info["workdir"])
    assert folder.name.endswith("_n130") and folder.parent == tmp_path / "models"
    _, _, ref = T.load_or_train("mlp", "toy", epochs=1, cache=tmp_path, progress=False)
    assert ref["n_train"] == 256 and ref["workdir"] != info["workdir"] and len(calls) == 4
    res = T.train_classifier("mlp", (train[0][:130], train[1][:130]), test, num_classes=10,
                             epochs=1, progress=False)   # the same run, by hand
    assert info["test_accuracy"] == pytest.approx(res.test_accuracy, abs=1e-6)
    _, _, again = T.load_or_train("mlp", "toy", epochs=1, n_train=130, cache=tmp_path,
                                  progress=False)
    assert len(calls) == 4 and again["test_accuracy"] == info["test_accuracy"]
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match="n_train"):
            T.load_or_train("mlp", "toy", epochs=1, n_train=bad, cache=tmp_path,
                            progress=False)
    with pytest.raises(ValueError, match="only 256 training images"):
        T.load_or_train("mlp", "toy", epochs=1, n_train=300, cache=tmp_path, progress=False)


def test_defaults_table():
    assert T.default_epochs("mnist5k", "cnn") >= 8
    assert T.default_epochs("fashion_mnist_local", "cnn") \
        == T.default_epochs("fashion_mnist", "cnn")
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


def test_checkpoint_with_flipped_bytes_is_detected(tiny_run, capfd):
    """64 flipped bytes restored without error: parameters off by up to 2.7e35 while the
    metadata still reported the old accuracy.  The damaged file is named before TensorStore
    reads it, so stderr stays clean (a read failing part-way printed "Event loop is
    closed" tracebacks from TensorStore's threads)."""
    run, res = tiny_run
    params, _, meta = T.restore_checkpoint(run)                 # intact: verified, equal
    assert _leaves_equal(params, res.params) and len(meta["content_sha256"]) == 64
    for where in (0.0, 0.5):                                   # a chunk header, then data
        _flip(_array_files(run / "1")[0], where=where)
        with pytest.raises(T.CheckpointCorruptError,
                           match=r"run \(epoch 1\) is damaged: state/\S+ differs from the "
                                 r"sha256 saved with it; delete the folder"):
            T.restore_checkpoint(run)
        _flip(_array_files(run / "1")[0], where=where)         # undone: readable again
        assert _leaves_equal(T.restore_checkpoint(run)[0], res.params)
    time.sleep(0.5)                                            # any late thread output
    assert capfd.readouterr().err == ""
    assert issubclass(T.CheckpointCorruptError, ValueError)


def test_checkpoint_without_a_file_record_is_checked_by_its_array_hash(tiny_run):
    """A step saved before file records existed (no lens_jax_files.json) is still verified
    by the sha256 of its arrays, and a damaged file list is refused, never trusted."""
    run, _ = tiny_run
    record = run / "1" / "lens_jax_files.json"
    saved = record.read_text()
    record.write_text('{"state/x": 3}')
    with pytest.raises(T.CheckpointCorruptError, match="file list lens_jax_files.json cannot"):
        T.restore_checkpoint(run)
    record.write_text(saved)
    record.unlink()
    _flip(_array_files(run / "1")[0])
    # which file comes first varies: flipped data fails its sha256, a flipped chunk header
    # makes the array unreadable; either is named as damage, never restored
    with pytest.raises(T.CheckpointCorruptError,
                       match=r"run \(epoch 1\) is damaged: its arrays(. sha256| cannot be read)"):
        T.restore_checkpoint(run)


def test_train_zero_epochs_is_refused():
    x = np.zeros((8, 8, 8, 1), np.float32)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="epochs"):
            T.train_classifier("mlp", (x, np.zeros(8, int)), None, num_classes=2, epochs=bad,
                               progress=False)


def test_a_second_process_waits_for_the_trainer_and_loads_its_model(digits, tmp_path,
                                                                   fake_data, capfd,
                                                                   monkeypatch):
    """Two callers of load_or_train for one model (two studies, two test workers): the
    second waits on the model's lock, says so, and loads what the first finished -- it
    neither trains a second copy nor reads a half-written checkpoint."""
    import shutil
    import threading

    from lens_jax._io import exclusive
    train, test = digits
    calls = fake_data({"train": (train[0][:128], train[1][:128]), "test": test})
    kw = dict(epochs=1, progress=False, batch_size=64)
    _, params, _ = T.load_or_train("mlp", "toy", cache=tmp_path / "elsewhere", **kw)
    made = next((tmp_path / "elsewhere" / "models").glob("toy_mlp_s0*"))
    assert len(calls) == 2
    models = tmp_path / "shared" / "models"
    got = {}

    def no_training(*a, **k):
        raise AssertionError("the waiting caller trained a second copy")
    monkeypatch.setattr(T, "train_classifier", no_training)
    with exclusive(models / f".{made.name}.lock", wait=False):   # "the first trainer"
        waiter = threading.Thread(target=lambda: got.update(
            r=T.load_or_train("mlp", "toy", cache=tmp_path / "shared", **kw)))
        waiter.start()
        for _ in range(200):
            if "waiting for process" in capfd.readouterr().err:
                break
            waiter.join(0.05)
        else:
            raise AssertionError("the second caller did not say that it waits")
        assert waiter.is_alive() and not got            # still waiting: nothing read yet
        shutil.copytree(made, models / made.name)         # the first one's finished model
    waiter.join(60)
    assert not waiter.is_alive() and "r" in got, "the waiting caller failed"
    assert _leaves_equal(params, got["r"][1])              # the first one's model
    assert " is free after " in capfd.readouterr().err


def test_exclusive_refuses_naming_the_holder_and_releases(tmp_path):
    """``_io.exclusive``: ``wait=False`` names the holder; the lock is released at exit
    (``wait=True`` is the test above, through ``load_or_train``)."""
    import os

    from lens_jax._io import Busy, exclusive
    path = tmp_path / "x.lock"
    with exclusive(path, wait=False):
        with pytest.raises(Busy, match=f"process {os.getpid()}"):
            with exclusive(path, wait=False):
                pass
    with exclusive(path, wait=False):                    # free again
        pass


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


# ----------------------------------------------------------------------------------
# issue 19: silent NaN weights, weak answers; issue 18: a cached model loads fast
# ----------------------------------------------------------------------------------

def _tiny_xy(n=64):
    r = np.random.default_rng(0)
    x = r.random((n, 8, 8, 1)).astype(np.float32)
    return x, (x.mean((1, 2, 3)) > 0.5).astype(np.int32)


TINY_MLP = dict(num_classes=2, epochs=1, batch_size=32, progress=False,
                model_kwargs={"width": 16, "depth": 1})


def _strip_hash(step_dir):
    """Make a checkpoint look like one of an older lens_jax (no content_sha256, no file
    record)."""
    import json
    meta = step_dir / "meta" / "metadata"
    d = json.loads(meta.read_text())
    d.pop("content_sha256")
    meta.write_text(json.dumps(d))
    (step_dir / "lens_jax_files.json").unlink()


def test_checkpoint_without_hash_is_refused_unless_allowed_and_never_with_nan(tiny_run,
                                                                               tmp_path):
    from lens_jax import _checkpoint as C
    run, res = tiny_run
    _strip_hash(run / "1")
    with pytest.raises(T.CheckpointUnverifiedError, match="allow_unverified=True"):
        T.restore_checkpoint(run)
    params, _, _ = T.restore_checkpoint(run, allow_unverified=True)
    assert _leaves_equal(params, res.params)
    # an old checkpoint whose arrays are NaN: refused even when unverified ones are allowed
    # (it used to restore NaN weights without a word)
    meta = T.restore_checkpoint(run, allow_unverified=True)[2]
    _, _, state = T._target_state(meta["config"])
    nan = jax.tree_util.tree_map(lambda a: np.full_like(np.asarray(a), np.nan), state["params"])
    mngr = C.manager(tmp_path / "old")
    C.save(mngr, 1, nan, state["opt_state"], state["rng"], meta["history"], meta["config"],
           finished=True, test_accuracy=0.9)
    mngr.close()
    _strip_hash(tmp_path / "old" / "1")
    with pytest.raises(T.CheckpointCorruptError, match="NaN or inf"):
        T.restore_checkpoint(tmp_path / "old", allow_unverified=True)


def test_unreadable_checkpoint_gives_one_line_naming_the_file_and_fix(tiny_run):
    run, _ = tiny_run
    for f in _array_files(run / "1"):
        _flip(f, where=1 / 3)
    with pytest.raises(T.CheckpointCorruptError) as e:
        T.restore_checkpoint(run)
    msg = str(e.value)
    assert "\n" not in msg and str(run) in msg and "delete the folder" in msg
    assert len(msg) < 600 and "TensorStore details" not in msg


def test_training_refuses_nan_and_stops_when_the_loss_turns_non_finite(tmp_path):
    x, y = _tiny_xy()
    bad = x.copy()
    bad[3, 2, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf.*image 3"):
        T.train_classifier("mlp", (bad, y), None, **TINY_MLP)
    with pytest.raises(ValueError, match="lr"):
        T.train_classifier("mlp", (x, y), None, lr=float("nan"), **TINY_MLP)
    # a loss that diverges (finite inputs): an error, and no checkpoint marked finished
    kw = dict(TINY_MLP, epochs=2)
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        T.train_classifier("mlp", (x, y), None, lr=1e30, workdir=tmp_path / "run", **kw)
    with pytest.raises(FileNotFoundError):
        T.restore_checkpoint(tmp_path / "run")


def test_training_refuses_weak_inputs_with_named_errors():
    x, y = _tiny_xy()
    with pytest.raises(ValueError, match="batch_size"):
        T.train_classifier("mlp", (x, y), None, **dict(TINY_MLP, batch_size=0))
    with pytest.raises(ValueError, match=r"uint8.*255"):
        T.train_classifier("mlp", ((x * 255).astype(np.uint8), y), None, **TINY_MLP)
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        T.train_classifier("mlp", (x * 255, y), None, **TINY_MLP)
    with pytest.raises(ValueError, match="labels must be integers"):
        T.train_classifier("mlp", (x, y + 0.7), None, **TINY_MLP)


def test_load_or_train_checks_names_before_creating_folders(tmp_path, fake_data):
    import lens_jax
    x, y = _tiny_xy()
    fake_data({"train": (x, y), "test": (x, y)})
    cache = tmp_path / "cache"
    cache.mkdir()
    for bad in ("../evil", "a/b/c", "mnist/..", "/abs"):
        with pytest.raises(ValueError, match="not a data set name"):
            T.load_or_train("mlp", bad, cache=cache, progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        T.load_or_train("mlp2", "toy", cache=cache, progress=False)

    def load(name, split, **kw):      # a mistyped config: the data layer refuses it
        raise ValueError(f"unknown config in {name!r}")
    lens_jax.data.load = load
    with pytest.raises(ValueError, match="unknown config"):
        T.load_or_train("mlp", "toy/nope", cache=cache, progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cache"]


def test_restoring_a_model_runs_no_initialiser(tiny_run, monkeypatch):
    # loading a cached model took 7-12 s, most of it a linen init to rebuild the structure
    run, res = tiny_run

    real = T._models.init_params

    def abstract_only(model, key, shape):       # only traced (jax.eval_shape), never run
        assert isinstance(key, jax.core.Tracer), "restore_checkpoint ran the initialiser"
        return real(model, key, shape)
    monkeypatch.setattr(T._models, "init_params", abstract_only)
    params, _, _ = T.restore_checkpoint(run)
    assert _leaves_equal(params, res.params)
