"""Train the small classifiers, with orbax checkpoints that survive interruption.

:func:`train_classifier` runs AdamW with a linear-warmup cosine schedule, a jitted
train step and a progress bar showing loss and accuracy (plain lines in a log),
evaluates on the test split after every epoch and, given a ``workdir``, saves an orbax
checkpoint after every epoch (params, optimiser state, epoch, PRNG key, history,
config), and a long epoch's state every ``checkpoint_seconds`` (10 minutes) into
``workdir/in_epoch``. Orbax writes each checkpoint to a temporary directory and renames it when
complete, so an interrupted run leaves only finished checkpoints behind; calling
:func:`train_classifier` again with the same arguments resumes from the last one
and ends with the same parameters as an uninterrupted run (the
epoch-``e`` shuffle is a function of ``(seed, e)`` only, and the schedule depends
on the total epoch count, which is part of the checkpointed config).

:func:`load_or_train` is the entry point used by the experiments: it returns a
cached finished model for ``(dataset, model, seed)`` or trains one on
``lens_jax.data.load(dataset, "train")`` and evaluates on ``"test"``.

Both take ``adversary=PGD(...)`` for adversarial training (every batch replaced by
PGD examples against the current params, eps ramped up over the first epochs; see
:mod:`lens_jax.adversarial`); :func:`load_or_train` keeps such models in their own
cache folders, with their own defaults (:data:`ADVERSARIAL_DEFAULTS`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import models as _models
from ._checkpoint import (CheckpointCorruptError, CheckpointUnverifiedError, manager,
                          move_aside, read_meta, restore_meta, restore_state, save)
from ._io import cache_dir, exclusive, progress_bar
from .adversarial import DEFAULT_ATTACKS, PGD, attack_core, robust_accuracy
from .classifier import as_classifier, predict

__all__ = ["TrainResult", "CheckpointMismatchError", "CheckpointCorruptError",
           "CheckpointUnverifiedError",
           "train_classifier", "load_or_train",
           "restore_checkpoint", "accuracy_and_loss", "accuracy", "make_optimizer",
           "DEFAULTS", "default_epochs", "default_lr", "PGD", "robust_accuracy",
           "DEFAULT_ATTACKS", "ADVERSARIAL_DEFAULTS"]

#: (epochs, peak lr) per (dataset, model) for :func:`load_or_train` (batch 128, AdamW,
#: warmup + cosine). Chosen for the accuracy targets digits >= 97%, mnist5k >= 95%,
#: fashion_mnist >= 90% (driver CNN), synthetic >= 99%. Measured on a 2-core CPU,
#: seed 0 (test accuracy after the last epoch): digits cnn 97.3% (20 ep, lr 2e-3;
#: 96.6-97.3% over seeds: the 297-image test split is hard, an RBF SVC gets 98.0%),
#: mnist5k cnn 96.9%, resnet_mini 97.5%, mlp 94.9%; fashion_mnist cnn 91.6%;
#: synthetic cnn 100%.
DEFAULTS: dict[tuple[str, str], tuple[int, float]] = {
    ("digits", "cnn"): (20, 2e-3), ("digits", "resnet_mini"): (12, 1e-3),
    ("digits", "mlp"): (20, 1e-3),
    ("mnist5k", "cnn"): (12, 1e-3), ("mnist5k", "resnet_mini"): (12, 1e-3),
    ("mnist5k", "mlp"): (20, 1e-3),
    ("fashion_mnist", "cnn"): (8, 1e-3), ("fashion_mnist", "resnet_mini"): (5, 1e-3),
    ("fashion_mnist", "mlp"): (10, 1e-3),
    ("synthetic", "cnn"): (12, 1e-3), ("synthetic", "resnet_mini"): (12, 1e-3),
    ("synthetic", "mlp"): (20, 1e-3),
}


#: (epochs, peak lr, ramp_epochs) for adversarial training (``adversary=`` given) per
#: (dataset, model), used by :func:`load_or_train`; eps is ramped linearly from ~0 over
#: the first ``ramp_epochs`` epochs. See :data:`DEFAULT_ATTACKS` for the attacks. Not
#: tabulated: the standard recipe's epochs + 3, its lr, ramp over 3 epochs.
#: mnist5k cnn (L2 PGD eps 2, 5 steps, 10 epochs, 3-epoch ramp; 148 s of CPU time),
#: measured with
#: ``robust_accuracy(fn, *data.load("mnist5k", "test"), PGD("l2", 2, 50, restarts=2))``:
#: clean 97.1%, PGD-50 x 2 restarts 65.9% (standard driver: 96.9% / 32.8%).  With 7
#: steps and 15 epochs (about twice the training cost): 97.2% / 68.7%; with 5 steps
#: and 8 epochs: 97.0% / 65.1%.
#: fashion_mnist has 15x the images of mnist5k per epoch, so fewer epochs and a
#: one-epoch ramp keep its training affordable on a CPU (L2 eps 1.5, 7 steps): clean
#: 82.1% on the whole test split; on a seeded 1000-image subset clean 81.2% and
#: PGD-50 x 2 at eps 1.5 65.1% (standard driver: 91.1% / 9.3%);
#: ``python experiments/robust_drivers.py``.
ADVERSARIAL_DEFAULTS: dict[tuple[str, str], tuple[int, float, int]] = {
    ("mnist5k", "cnn"): (10, 1e-3, 3),
    ("fashion_mnist", "cnn"): (4, 1e-3, 1),
    ("digits", "cnn"): (20, 2e-3, 3),
    ("synthetic", "cnn"): (12, 1e-3, 3),
}


def _defaults(dataset: str, model_name: str, adversarial: bool = False
              ) -> tuple[int, float, int]:
    key = dataset.split("/")[0].removesuffix("_local")
    standard = DEFAULTS.get((key, model_name), (12, 1e-3))
    if adversarial:
        return ADVERSARIAL_DEFAULTS.get((key, model_name), (standard[0] + 3, standard[1], 3))
    return (*standard, 0)


def default_epochs(dataset: str, model_name: str, *, adversarial: bool = False) -> int:
    """Default epoch count for ``(dataset, model_name)`` (12 when not tabulated);
    ``adversarial=True``: from :data:`ADVERSARIAL_DEFAULTS`."""
    return _defaults(dataset, model_name, adversarial)[0]


def default_lr(dataset: str, model_name: str, *, adversarial: bool = False) -> float:
    """Default peak learning rate for ``(dataset, model_name)`` (1e-3 when not
    tabulated); ``adversarial=True``: from :data:`ADVERSARIAL_DEFAULTS`."""
    return _defaults(dataset, model_name, adversarial)[1]


class CheckpointMismatchError(ValueError):
    """A workdir holds checkpoints of a different run configuration."""


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train_classifier`."""

    params: Any
    model: Any                     # the flax module
    history: list[dict]            # one dict per finished epoch
    test_accuracy: float           # after the last epoch (nan without test data)
    workdir: Path | None = None
    resumed_from: int = 0          # epochs restored from a checkpoint (0: fresh run)

    @property
    def logits_fn(self) -> Callable[[jax.Array], jax.Array]:
        return _models.make_logits_fn(self.model, self.params)


# ----------------------------------------------------------------------------------
# Optimiser, steps, evaluation
# ----------------------------------------------------------------------------------

def make_optimizer(lr: float, total_steps: int, *, weight_decay: float = 1e-4,
                   warmup_steps: int | None = None) -> optax.GradientTransformation:
    """AdamW with linear warmup to ``lr`` then cosine decay to ``lr / 100``."""
    total_steps = max(int(total_steps), 1)
    if warmup_steps is None:
        warmup_steps = max(1, total_steps // 20)
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    optax_schedule = optax.warmup_cosine_decay_schedule(
        init_value=lr / 10, peak_value=lr, warmup_steps=warmup_steps,
        decay_steps=total_steps, end_value=lr / 100)

    def schedule(count):
        # optax's schedules mix a Python float and the int32 step count
        # (optax/schedules/_schedule.py); they run with standard promotion so training
        # works under jax_numpy_dtype_promotion="strict" too (same values)
        with jax.numpy_dtype_promotion("standard"):
            return optax_schedule(count)
    return optax.adamw(schedule, weight_decay=weight_decay)


_STEP_CACHE: dict[Any, Callable] = {}


def _make_steps(model, tx, adversary: PGD | None = None):
    """Jitted train step for ``(model, tx[, adversary])``, memoised so repeated runs
    of one configuration (resume, tests) compile once."""
    memo = (model, tx, adversary)
    try:
        return _STEP_CACHE[memo]
    except (KeyError, TypeError):
        pass
    step = _build_steps(model, tx) if adversary is None else _build_adv_steps(model, tx, adversary)
    try:
        if len(_STEP_CACHE) > 16:
            _STEP_CACHE.clear()
        _STEP_CACHE[memo] = step
    except TypeError:      # unhashable module attributes: no memo
        pass
    return step


@functools.lru_cache(maxsize=16)
def _optimizer(lr: float, total_steps: int, weight_decay: float) -> optax.GradientTransformation:
    return make_optimizer(lr, total_steps, weight_decay=weight_decay)


def _update(model, tx):
    """``update(params, opt_state, x, y) -> (params, opt_state, loss, acc)``: one
    optimiser step on the batch ``(x, y)`` (traceable; the steps below jit it)."""
    def loss_fn(params, x, y):
        logits = model.apply({"params": params}, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, logits

    def update(params, opt_state, x, y):
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        acc = jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))
        return params, opt_state, loss, acc

    return update


def _build_steps(model, tx):
    return jax.jit(_update(model, tx))


def _build_adv_steps(model, tx, attack: PGD):
    """Train step on PGD examples against the current params.

    ``train_step(params, opt_state, x, y, eps, key)``: the batch is replaced by
    ``attack`` run with radius ``eps`` (traced: the ramp does not recompile) and step
    size ``eps * attack.alpha / attack.eps``; returns the loss and accuracy on the
    adversarial batch.
    """
    ratio = attack.alpha / attack.eps
    update = _update(model, tx)

    @jax.jit
    def train_step(params, opt_state, x, y, eps, key):
        eps = eps.astype(x.dtype)
        clf = as_classifier((model.apply, {"params": params}))
        x_adv = attack_core(clf.apply, clf.params, x, y, eps, eps * ratio, key,
                            norm=attack.norm, steps=attack.steps, restarts=attack.restarts,
                            random_start=attack.random_start, track=False)
        return update(params, opt_state, x_adv, y)

    return train_step


def _ramp_eps(attack: PGD, ramp_epochs: int, steps_per_epoch: int, global_step: int) -> float:
    """Radius at 0-based ``global_step``: linear from ``eps / R`` to ``eps`` over the
    first ``R = ramp_epochs * steps_per_epoch`` steps, then ``eps``."""
    ramp = int(ramp_epochs) * int(steps_per_epoch)
    if ramp <= 0:
        return attack.eps
    return attack.eps * min(1.0, (global_step + 1) / ramp)


def accuracy_and_loss(model, params, images: np.ndarray, labels: np.ndarray, *,
                      batch_size: int = 1000) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the linen ``model`` with ``params`` on
    ``images``/``labels`` (logits from :func:`lens_jax.classifier.predict`)."""
    logits = np.asarray(predict((model.apply, {"params": params}), np.asarray(images),
                                batch_size=min(int(batch_size), max(len(images), 1))),
                        np.float64)
    labels = np.asarray(labels)
    m = logits.max(axis=-1)
    lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=-1))
    loss = float(np.mean(lse - logits[np.arange(len(labels)), labels]))
    return accuracy(logits, labels), loss


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax of ``logits`` equals ``labels``."""
    return float(np.mean(np.argmax(np.asarray(logits), axis=-1) == np.asarray(labels)))


# ----------------------------------------------------------------------------------
# Checkpoints (orbax)
# ----------------------------------------------------------------------------------

def _target_state(config: Mapping[str, Any], *, abstract: bool = False):
    """(model, tx, state) matching a checkpoint config: freshly initialised, or with
    ``abstract`` only its structure (``jax.eval_shape``: no initialiser runs or
    compiles, which made loading a cached model take seconds)."""
    model = _models.get_model(config["model"], config["num_classes"],
                              **config.get("model_kwargs", {}))
    tx = _optimizer(float(config["lr"]), int(config["total_steps"]),
                    float(config["weight_decay"]))

    def init():
        key = jax.random.PRNGKey(config["seed"])
        params = _models.init_params(model, key, config["input_shape"])
        return {"params": params, "opt_state": tx.init(params),
                "rng": jax.random.key_data(key)}
    return model, tx, (jax.eval_shape(init) if abstract else init())


def restore_checkpoint(workdir: str | os.PathLike, *, step: int | None = None,
                       allow_unverified: bool = False) -> tuple[Any, Any, dict]:
    """Load ``(params, model, meta)`` from a :func:`train_classifier` workdir.

    ``meta`` holds ``epoch``, ``finished``, ``history``, ``test_accuracy``, the
    run's ``config`` and ``content_sha256`` (the hash of the saved arrays, verified
    here). ``step`` (an epoch number) defaults to the latest checkpoint.  The model's
    structure comes from ``jax.eval_shape`` (no initialiser runs), so loading takes
    well under a second.

    A checkpoint without ``content_sha256`` (an older lens_jax) cannot be verified and is
    refused unless ``allow_unverified=True``; one holding NaN or inf is refused always.

    Raises:
      FileNotFoundError: no checkpoint.  CheckpointCorruptError (a ``ValueError``): the
      checkpoint cannot be read or its arrays differ from the hash saved with them (or,
      without a hash, are not finite).  CheckpointUnverifiedError (a
      ``CheckpointCorruptError``): no hash and ``allow_unverified`` is false.
    """
    workdir = Path(workdir)
    mngr, latest, meta = read_meta(workdir)
    if latest is None:
        if mngr is not None:
            mngr.close()
        raise FileNotFoundError(f"no checkpoint in {workdir}")
    try:
        if step is not None and step != latest:
            meta = restore_meta(mngr, step, workdir)
        step = latest if step is None else step
        model, _, target = _target_state(meta["config"], abstract=True)
        state = restore_state(mngr, step, target, allow_unverified=allow_unverified,
                              meta=meta)
    finally:
        mngr.close()
    return state["params"], model, meta


def _fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha1()
    h.update(str((images.shape, str(images.dtype), labels.shape)).encode())
    h.update(np.ascontiguousarray(images).data)
    h.update(np.ascontiguousarray(labels).data)
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------

def _as_split(data: Sequence[np.ndarray] | None, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(images float32 (N, H, W, C) in [0, 1], labels int32)``, or a ValueError naming
    ``name`` and the fix (never a silent cast of 0..255 images or float labels)."""
    if data is None:
        return None
    images, labels = data
    images, labels = np.asarray(images), np.asarray(labels)
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{name}: images must be floats in [0, 1]; got {images.dtype} "
                         "(for 0..255 images use images.astype(np.float32) / 255)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: labels must be integers (class indices); got "
                         f"{labels.dtype} (cast them with labels.astype(int) if they are "
                         "whole numbers)")
    if images.ndim == 3:          # (N, H, W) greyscale
        images = images[..., None]
    if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{name}: expected (N, H, W, C) images and (N,) labels, got "
                         f"{images.shape} and {labels.shape}")
    finite = np.isfinite(images)
    if not finite.all():
        i = int(np.flatnonzero(~finite.reshape(len(images), -1).all(1))[0])
        raise ValueError(f"{name}: images hold NaN or inf ({int((~finite).sum())} values; "
                         f"first in image {i}); training on them gives NaN weights")
    if images.size and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"{name}: images must lie in [0, 1]; got "
                         f"[{images.min():.4g}, {images.max():.4g}] (for 0..255 images "
                         "divide by 255)")
    return images.astype(np.float32), labels.astype(np.int32)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    return int(value)


def train_classifier(model_name: str, train_data: Sequence[np.ndarray],
                     test_data: Sequence[np.ndarray] | None, *, num_classes: int,
                     epochs: int, batch_size: int = 128, lr: float = 1e-3,
                     weight_decay: float = 1e-4, seed: int = 0,
                     workdir: str | os.PathLike | None = None, resume: bool = True,
                     progress: bool = True, model_kwargs: Mapping[str, Any] | None = None,
                     callback: Callable[[int, dict], None] | None = None,
                     adversary: PGD | None = None, ramp_epochs: int = 3,
                     checkpoint_seconds: float | None = 600.0) -> TrainResult:
    """Train ``get_model(model_name, num_classes)`` on ``train_data = (images, labels)``,
    evaluating on ``test_data`` (``(images, labels)`` or None) after every epoch.

    Images are (N, H, W, C) float in [0, 1] (or (N, H, W)); labels int in
    ``[0, num_classes)``. Each epoch visits a ``(seed, epoch)``-seeded permutation in
    ``N // batch_size`` full batches (the remainder is dropped that epoch; a set
    smaller than ``batch_size`` is one batch). After each epoch the test split is
    evaluated, ``history`` gains ``{"epoch", "train_loss", "train_acc", "test_loss",
    "test_acc", "seconds"}``, a checkpoint is saved when ``workdir`` is given, and
    ``callback(epoch, record)`` runs (raising there interrupts the run cleanly).

    With ``workdir`` holding checkpoints of the same configuration (model, data
    fingerprint, epochs, batch size, lr, seed, ...), training resumes after the last
    finished epoch; a finished run returns at once. A different configuration raises
    :class:`CheckpointMismatchError` (a ``ValueError``) unless ``resume=False``,
    which deletes the old checkpoints and starts over.

    A long epoch is checkpointed part-way too: with a ``workdir``, the running epoch's
    state (and its losses so far) is saved to ``workdir/in_epoch`` at the first step
    ``checkpoint_seconds`` after the last save (None: at epoch ends only), so an
    interrupted run loses at most that much work; a resumed run continues from that
    step and still ends bit-equal to an uninterrupted one. A damaged in-epoch
    checkpoint is discarded with a ``RuntimeWarning`` (the epoch restarts from its
    beginning); it is removed once its epoch is saved.

    ``adversary`` (a :class:`PGD`) turns on adversarial training (Madry et al.,
    2018): every batch is replaced by PGD examples against the current params, with
    the radius ramped linearly from ``eps / R`` to ``eps`` over the first
    ``R = ramp_epochs * steps_per_epoch`` steps (the step size scales with it).
    Random starts use ``fold_in(PRNGKey(seed), global_step)``, so resumed runs stay
    bit-equal to uninterrupted ones; the attack and ramp are part of the checkpointed
    configuration. ``train_loss``/``train_acc`` are then measured on the adversarial
    batches; ``test_acc`` stays clean accuracy.

    Raises:
      ValueError: a bad argument, named: ``batch_size``/``epochs`` not an int >= 1,
        ``lr`` not finite and > 0, images not floats in [0, 1] (0..255 or uint8 images are
        refused, not rescaled) or holding NaN/inf, labels not integers or outside
        ``[0, num_classes)``, an unknown model.
      FloatingPointError: the training loss (or a parameter) turned non-finite; the
        epoch in which it happened is not saved, so no such run is ever marked finished.
    """
    if adversary is not None and not isinstance(adversary, PGD):
        raise TypeError(f"adversary must be a lens_jax.train.PGD or None, got "
                        f"{type(adversary).__name__}")
    if isinstance(ramp_epochs, bool) or not isinstance(ramp_epochs, (int, np.integer)) \
            or ramp_epochs < 0:
        raise ValueError(f"ramp_epochs must be an int >= 0, got {ramp_epochs!r}")
    if checkpoint_seconds is not None and (
            isinstance(checkpoint_seconds, bool)
            or not isinstance(checkpoint_seconds, (int, float, np.integer, np.floating))
            or not checkpoint_seconds >= 0):
        raise ValueError(f"checkpoint_seconds must be a number >= 0 or None, got "
                         f"{checkpoint_seconds!r}")
    if model_name not in _models.MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose from {sorted(_models.MODELS)}")
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    num_classes = _positive_int("num_classes", num_classes)
    for what, v in (("lr", lr), ("weight_decay", weight_decay)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v) or v < 0 or (what == "lr" and v == 0):
            raise ValueError(f"{what} must be a finite number {'> 0' if what == 'lr' else '>= 0'}"
                             f"; got {v!r}")
    train = _as_split(train_data, "train_data")
    test = _as_split(test_data, "test_data")
    images, labels = train
    n = len(images)
    if n == 0:
        raise ValueError("train_data is empty")
    for what, split in (("train_data", train), ("test_data", test)):
        if split is not None and len(split[1]) and (split[1].min() < 0
                                                   or split[1].max() >= num_classes):
            raise ValueError(f"{what}: labels must lie in [0, {num_classes}), got "
                             f"[{split[1].min()}, {split[1].max()}]")
    bs = min(batch_size, n)
    steps_per_epoch = n // bs
    config = {
        "model": model_name, "num_classes": int(num_classes),
        "model_kwargs": dict(model_kwargs or {}), "input_shape": list(images.shape[1:]),
        "epochs": int(epochs), "batch_size": bs, "lr": float(lr),
        "weight_decay": float(weight_decay), "seed": int(seed),
        "steps_per_epoch": steps_per_epoch, "total_steps": steps_per_epoch * int(epochs),
        "n_train": n, "train_fingerprint": _fingerprint(images, labels),
    }
    if adversary is not None:    # standard runs keep their config (and cached checkpoints)
        config["adversary"] = {**adversary.to_dict(), "ramp_epochs": int(ramp_epochs)}
    model, tx, state = _target_state(config)
    history: list[dict] = []
    start_epoch = 0
    mngr = None
    workdir = Path(workdir) if workdir is not None else None
    if workdir is not None:
        mngr, latest, meta = read_meta(workdir)
        if mngr is None:
            mngr = manager(workdir)
        if latest is not None and meta.get("config") != json.loads(json.dumps(config)):
            if resume:
                mngr.close()
                raise CheckpointMismatchError(
                    f"{workdir} holds checkpoints of a different run configuration "
                    f"({_config_diff(meta.get('config', {}), config)}); use another "
                    "workdir or resume=False to start over")
            mngr.close()
            for child in workdir.iterdir():     # orbax step folders (and their temporaries)
                if child.is_dir() and (child.name.split(".")[0].isdigit()
                                       or child.name == _IN_EPOCH):
                    shutil.rmtree(child)
            mngr, latest = manager(workdir), None
        if latest is not None:
            state = restore_state(mngr, latest, state, meta=meta)
            history = list(meta["history"])
            start_epoch = int(meta["epoch"])
    resumed_from = start_epoch
    start_step, losses, accs = 0, [], []
    if workdir is not None and start_epoch < int(epochs):
        part = _resume_in_epoch(workdir / _IN_EPOCH, config, start_epoch, state)
        if part is not None:
            state, start_step, losses, accs = part
    params, opt_state = state["params"], state["opt_state"]
    train_step = _make_steps(model, tx, adversary)
    test_acc = history[-1]["test_acc"] if history else float("nan")
    adv_key = jax.random.PRNGKey(int(seed))
    label = model_name if adversary is None else f"{model_name} {adversary.tag}"

    try:
        for epoch in range(start_epoch, int(epochs)):
            t0 = time.perf_counter()
            perm = np.random.default_rng([int(seed), epoch]).permutation(n)
            first, start_step = start_step, 0      # first: steps restored from in_epoch
            bar = _progress(steps_per_epoch, f"{label} epoch {epoch + 1}/{epochs}", progress,
                            initial=first)
            losses, accs = (losses, accs) if first else ([], [])
            eps = None
            saved_at = time.monotonic()
            for i in range(first, steps_per_epoch):
                idx = perm[i * bs:(i + 1) * bs]
                if adversary is None:
                    params, opt_state, loss, acc = train_step(params, opt_state,
                                                              images[idx], labels[idx])
                else:
                    t = epoch * steps_per_epoch + i
                    eps = _ramp_eps(adversary, ramp_epochs, steps_per_epoch, t)
                    params, opt_state, loss, acc = train_step(
                        params, opt_state, images[idx], labels[idx], np.float32(eps),
                        jax.random.fold_in(adv_key, t))
                losses.append(loss)
                accs.append(acc)
                if bar is not None and (i % 10 == 9 or i == steps_per_epoch - 1):
                    extra = {} if eps is None else {"eps": f"{eps:.2f}"}
                    bar.set_postfix(loss=f"{float(loss):.4f}", acc=f"{float(acc):.3f}", **extra)
                if bar is not None:
                    bar.update(1)
                if (mngr is not None and checkpoint_seconds is not None
                        and i + 1 < steps_per_epoch
                        and time.monotonic() - saved_at >= checkpoint_seconds):
                    _save_in_epoch(workdir / _IN_EPOCH, epoch, i + 1, steps_per_epoch,
                                   params, opt_state, state["rng"], history, config,
                                   losses, accs)
                    saved_at = time.monotonic()
            record = {"epoch": epoch + 1,
                      "train_loss": float(np.mean(jax.device_get(losses))),
                      "train_acc": float(np.mean(jax.device_get(accs)))}
            if not np.isfinite(record["train_loss"]) or not _finite(params):
                if bar is not None:
                    bar.close()
                raise FloatingPointError(
                    f"training {label} diverged in epoch {epoch + 1}: the loss is "
                    f"{record['train_loss']} (non-finite); nothing of this epoch was "
                    f"saved.  Lower lr (now {lr}) or check the data.")
            if eps is not None:
                record["eps"] = float(eps)
            if test is not None:
                test_acc, test_loss = accuracy_and_loss(model, params, *test)
                record.update(test_loss=test_loss, test_acc=test_acc)
            record["seconds"] = round(time.perf_counter() - t0, 3)
            history.append(record)
            if bar is not None:
                bar.set_postfix(loss=f"{record['train_loss']:.4f}",
                                acc=f"{record['train_acc']:.3f}",
                                test_acc=f"{record.get('test_acc', float('nan')):.4f}")
                bar.close()
            if mngr is not None:
                save(mngr, epoch + 1, params, opt_state, state["rng"], history, config,
                      finished=epoch + 1 == int(epochs),
                      test_accuracy=record.get("test_acc", float("nan")))
                shutil.rmtree(workdir / _IN_EPOCH, ignore_errors=True)   # superseded
            if callback is not None:
                callback(epoch + 1, record)
    finally:
        if mngr is not None:
            mngr.close()
    return TrainResult(params=params, model=model, history=history,
                       test_accuracy=float(test_acc), workdir=workdir,
                       resumed_from=resumed_from)


#: the subfolder of a workdir holding the running epoch's latest state
_IN_EPOCH = "in_epoch"


def _save_in_epoch(folder: Path, epoch: int, step: int, steps_per_epoch: int, params,
                   opt_state, rng, history, config, losses, accs) -> None:
    """Save the state after ``step`` steps of epoch ``epoch + 1`` (orbax step number: the
    global step), with the epoch's losses so far; older in-epoch steps are dropped."""
    mngr = manager(folder, max_to_keep=1)
    try:
        save(mngr, epoch * steps_per_epoch + step, params, opt_state, rng, history, config,
             finished=False, test_accuracy=float("nan"), epoch=epoch,
             in_epoch={"step": step,
                       "losses": [float(v) for v in jax.device_get(losses)],
                       "accs": [float(v) for v in jax.device_get(accs)]})
    finally:
        mngr.close()


def _resume_in_epoch(folder: Path, config: Mapping, epoch: int, target: dict):
    """``(state, step, losses, accs)`` from ``folder``'s in-epoch checkpoint of this run's
    epoch ``epoch + 1``, or None (none, another run's or epoch's, or damaged: warned and
    removed)."""
    if not folder.is_dir():
        return None
    mngr = None
    try:
        mngr, latest, meta = read_meta(folder)
        part = (meta or {}).get("in_epoch")
        if (latest is None or meta.get("config") != json.loads(json.dumps(config))
                or meta.get("epoch") != epoch or not isinstance(part, dict)):
            return None                  # stale: an earlier configuration or epoch
        step = part.get("step")
        if not (isinstance(step, int) and 0 < step < config["steps_per_epoch"]
                and len(part.get("losses", ())) == step == len(part.get("accs", ()))):
            raise CheckpointCorruptError(f"checkpoint {folder} (step {latest}) is damaged: "
                                         "its in-epoch record is inconsistent")
        state = restore_state(mngr, latest, target, meta=meta)
    except CheckpointCorruptError as e:
        if mngr is not None:
            mngr.close()
            mngr = None
        shutil.rmtree(folder, ignore_errors=True)
        what = re.sub(r"\(epoch (\d+)\)", rf"(step \1, within epoch {epoch + 1})", str(e))
        warnings.warn(f"{what}; discarded it: epoch {epoch + 1} restarts from its first step",
                      RuntimeWarning, stacklevel=3)
        return None
    finally:
        if mngr is not None:
            mngr.close()
    return (state, step, [np.float32(v) for v in part["losses"]],
            [np.float32(v) for v in part["accs"]])


def _finite(params: Any) -> bool:
    return bool(all(np.isfinite(np.asarray(a)).all() for a in jax.tree_util.tree_leaves(params)))


def _config_diff(old: Mapping, new: Mapping) -> str:
    keys = sorted(set(old) | set(new))
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys
             if json.dumps(old.get(k)) != json.dumps(new.get(k))]
    return "; ".join(diffs) or "unknown difference"


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
    if not enabled:
        return None
    return progress_bar(total, desc=desc, leave=True, initial=initial)


# ----------------------------------------------------------------------------------
# Cached models per data set
# ----------------------------------------------------------------------------------

def load_or_train(model_name: str, dataset: str, *, epochs: int | None = None,
                  seed: int = 0, cache: str | os.PathLike | None = None,
                  batch_size: int = 128, lr: float | None = None, progress: bool = True,
                  data_dir: str | os.PathLike | None = None,
                  adversary: PGD | None = None, ramp_epochs: int | None = None,
                  size: int | None = None, n_train: int | None = None,
                  allow_unverified: bool = False,
                  ) -> tuple[Callable[[jax.Array], jax.Array], Any, dict]:
    """A trained ``model_name`` classifier for ``dataset``: ``(logits_fn, params, info)``.

    Looks for a finished checkpoint in ``cache/models/{dataset}_{model_name}_s{seed}``
    (``cache`` defaults to :func:`lens_jax._io.cache_dir`, i.e. ``$LENS_JAX_CACHE`` or
    ``~/.cache/lens_jax``) trained with the same epochs, batch size and lr; otherwise
    trains on ``lens_jax.data.load(dataset, "train")``, evaluating on ``"test"``,
    resuming an interrupted run of the same configuration. ``epochs`` and ``lr``
    default to :data:`DEFAULTS` (:func:`default_epochs`, :func:`default_lr`).
    ``info`` has ``test_accuracy``, ``history``, ``epochs``, ``lr``, ``batch_size``,
    ``input_shape``, ``num_classes``, ``workdir``, ``dataset``, ``model``, ``seed``,
    ``adversary`` (the attack's fields and ``ramp_epochs``, or None), ``n_train``.

    ``adversary`` (a :class:`PGD`, e.g. ``DEFAULT_ATTACKS["mnist5k"]``) trains
    adversarially (see :func:`train_classifier`) with ``epochs``, ``lr`` and
    ``ramp_epochs`` defaulting to :data:`ADVERSARIAL_DEFAULTS`, in its own folder
    (``..._s{seed}_{adversary.tag}``, plus ``_ramp{ramp_epochs}`` when not the
    default), so it never replaces the standard model.

    ``size`` trains on images resized to ``size x size`` (``lens_jax.data.load(...,
    size=size)``: bicubic, antialiased when shrinking), in its own folder (``..._px{size}``).
    ``n_train`` trains on the first ``n_train`` images of the training split (in the data
    set's stored order; resized after selection), in its own folder (``..._n{n_train}``);
    test accuracy is still measured on the whole test split.

    A damaged cached model (unreadable, or arrays that differ from the sha256 saved with
    them) is never returned: its folder is renamed ``<folder>.damaged-<UTC time>``, a
    ``RuntimeWarning`` says so, and a fresh model is trained in its place.  So is a
    cached model without a content hash (an older lens_jax), unless ``allow_unverified``
    (see :func:`restore_checkpoint`).

    One process trains a given model at a time: a finished model is read without a lock;
    otherwise the data are loaded and a lock on ``models/.<folder>.lock`` is taken, the cache
    is checked again and the model trained.  A second process asking for the same model
    meanwhile prints that it waits, then loads the first one's finished checkpoint.

    ``model_name``, ``dataset`` and ``seed`` become a folder name: they are checked before
    anything is created (a name with ``..``, a path separator other than a data set's
    ``name/config``, or an unknown model raise ValueError), and the model's folder is
    created only once its data has loaded.
    """
    _check_path_names(model_name, dataset, seed)
    if adversary is not None and not isinstance(adversary, PGD):
        raise TypeError(f"adversary must be a lens_jax.train.PGD or None, got "
                        f"{type(adversary).__name__}")
    adversarial = adversary is not None
    if epochs is None:
        epochs = default_epochs(dataset, model_name, adversarial=adversarial)
    if lr is None:
        lr = default_lr(dataset, model_name, adversarial=adversarial)
    name = f"{dataset}_{model_name}_s{seed}"
    if epochs != default_epochs(dataset, model_name, adversarial=adversarial):
        # a non-default recipe gets its own folder, so it never replaces the default model
        name += f"_e{epochs}"
    if size is not None:
        name += f"_px{int(size)}"
    if n_train is not None:
        n_train = _positive_int("n_train", n_train)
        name += f"_n{n_train}"
    adv_config = None
    if adversarial:
        default_ramp = _defaults(dataset, model_name, True)[2]
        if ramp_epochs is None:
            ramp_epochs = default_ramp
        name += f"_{adversary.tag}" + ("" if ramp_epochs == default_ramp
                                       else f"_ramp{ramp_epochs}")
        adv_config = json.loads(json.dumps({**adversary.to_dict(),
                                            "ramp_epochs": int(ramp_epochs)}))
    workdir = (Path(cache) if cache is not None else cache_dir()) / "models" / name
    wanted = {"model": model_name, "epochs": int(epochs), "seed": int(seed),
              "lr": float(lr), **({} if n_train is None else {"n_train": n_train})}
    def cached():
        """``(result, meta)`` of a finished model of this configuration, or ``(None, None)``;
        CheckpointCorruptError for a damaged one."""
        mngr, latest, meta = read_meta(workdir)
        if mngr is not None:
            mngr.close()
        if not (latest is not None and meta.get("finished")
                and all(meta["config"].get(k) == v for k, v in wanted.items())
                and meta["config"].get("adversary") == adv_config
                and meta["config"].get("batch_size")
                == min(batch_size, meta["config"].get("n_train", batch_size))):
            return None, None
        params, model, meta = restore_checkpoint(workdir, allow_unverified=allow_unverified)
        return TrainResult(params, model, meta["history"], meta["test_accuracy"],
                           workdir), meta

    try:                        # a finished model: read only, no lock, nothing loaded
        result, meta = cached()
    except CheckpointCorruptError:
        result = None           # set aside below, under the lock
    if result is None:
        from . import data as _data  # lazy: only needed when training
        sized = {} if size is None else {"size": int(size)}
        train = _data.load(dataset, "train", data_dir=data_dir,
                           **(sized if n_train is None else {}))
        if n_train is not None:             # select first, then resize only what is used
            if n_train > len(train[1]):
                raise ValueError(f"n_train={n_train}: {dataset!r} has only {len(train[1])} "
                                 "training images")
            train = (train[0][:n_train], train[1][:n_train])
            if size is not None:
                train = (np.asarray(_data.resize(train[0], int(size))), train[1])
        test = _data.load(dataset, "test", data_dir=data_dir, **sized)
        num_classes = _num_classes(_data, dataset, train[1], test[1])
        # one process trains a given model at a time: a second one (another study, another
        # test worker) waits here, then finds the first one's finished model
        lock = workdir.parent / f".{name.replace('/', '__')}.lock"
        with exclusive(lock, wait=True, what=f"training {name}"):
            try:
                result, meta = cached()
            except CheckpointCorruptError as e:     # never serve damaged weights: retrain
                move_aside(workdir, e)
            if result is None:
                kwargs = dict(num_classes=num_classes, epochs=epochs, batch_size=batch_size,
                              lr=lr, seed=seed, workdir=workdir, progress=progress)
                if adversarial:
                    kwargs.update(adversary=adversary, ramp_epochs=ramp_epochs)
                try:   # resume an interrupted run of this configuration
                    result = train_classifier(model_name, train, test, resume=True, **kwargs)
                except CheckpointMismatchError:   # another configuration here: start over
                    result = train_classifier(model_name, train, test, resume=False, **kwargs)
                except CheckpointCorruptError as e:   # a damaged partial run: start over
                    move_aside(workdir, e)
                    result = train_classifier(model_name, train, test, resume=True, **kwargs)
                mngr, _, meta = read_meta(workdir)
                mngr.close()
    config = meta["config"]
    info = {"dataset": dataset, "model": model_name, "seed": seed,
            "epochs": config["epochs"], "lr": config["lr"],
            "batch_size": config["batch_size"], "num_classes": config["num_classes"],
            "input_shape": tuple(config["input_shape"]),
            "test_accuracy": float(result.test_accuracy), "history": result.history,
            "workdir": str(workdir), "adversary": config.get("adversary"),
            "n_train": config.get("n_train")}
    return result.logits_fn, result.params, info


_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def _check_path_names(model_name: Any, dataset: Any, seed: Any) -> None:
    """Refuse names that would make the model folder escape the cache (``../x``) or
    create stray folders, before anything is created."""
    if not isinstance(model_name, str) or model_name not in _models.MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose from {sorted(_models.MODELS)}")
    if not isinstance(dataset, str):
        raise ValueError(f"dataset must be a data set name (str); got {dataset!r}")
    parts = dataset.split("/")
    if len(parts) > 2 or any(not _PART.fullmatch(p) or ".." in p for p in parts):
        raise ValueError(f"{dataset!r} is not a data set name (letters, digits, '_', '.', "
                         "'-', optionally 'name/config'; no '..' or other path parts)")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int; got {seed!r}")


def _num_classes(data_mod, dataset: str, *label_arrays: np.ndarray) -> int:
    try:
        return len(data_mod.class_names(dataset))
    except Exception:  # noqa: BLE001 - fall back to the labels seen
        return int(max(int(np.max(a)) for a in label_arrays) + 1)
