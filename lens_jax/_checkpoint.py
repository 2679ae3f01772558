"""Orbax checkpoints of the training loop: save with a content hash, read back and
verify, move a damaged folder aside (the private part of :mod:`lens_jax.train`; orbax
loads on first use)."""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np


def _ocp():
    # orbax (and TensorStore) load on first use: ``import lens_jax.train`` stays light
    import orbax.checkpoint as ocp
    return ocp


def manager(workdir: Path, max_to_keep: int = 2):
    ocp = _ocp()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(workdir.resolve(), options=options)


class CheckpointCorruptError(ValueError):
    """A checkpoint that cannot be read back, or whose arrays do not match the content
    hash saved with them."""


class CheckpointUnverifiedError(CheckpointCorruptError):
    """A checkpoint without a content hash (written by an older lens_jax): its arrays
    cannot be verified, so it is refused unless the caller opts in."""


_FIX = ("delete the folder (or move it aside) and train again; "
        "lens_jax.train.load_or_train does this itself")


def _short(err: Exception) -> str:
    """One line of an orbax/TensorStore error (they embed the whole TensorStore spec)."""
    text = str(err).split("See full TensorStore details")[0]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if len(line) > 200:
        line = line[:197] + "..."
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


def _state_hash(state: Any) -> str:
    """sha256 over the arrays of a checkpoint state (tree order, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(state):
        a = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


#: the sha256 of every file of a saved step, written beside them once orbax has finished
_FILES = "lens_jax_files.json"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_file_hashes(step_dir: Path) -> None:
    """Record the sha256 of every file of a finished step (atomically: a temporary file
    renamed into place), so a damaged file is named before orbax or TensorStore read it."""
    hashes = {p.relative_to(step_dir).as_posix(): _sha256_file(p)
              for p in sorted(step_dir.rglob("*")) if p.is_file() and p.name != _FILES}
    tmp = step_dir / f".{_FILES}.tmp"
    tmp.write_text(json.dumps(hashes, indent=0, sort_keys=True), encoding="utf-8")
    os.replace(tmp, step_dir / _FILES)


def _verify_files(workdir: Path, step: int) -> None:
    """Check a step's files against the sha256 recorded at save time (a step saved by an
    older lens_jax has no record: its arrays are still checked by ``content_sha256``).

    A damaged file is refused here, before TensorStore reads it: its read failing
    part-way leaves reads in flight that print tracebacks from other threads."""
    step_dir = workdir / str(step)
    record = step_dir / _FILES
    if not record.is_file():
        return
    where = f"checkpoint {workdir} (epoch {step}) is damaged"
    try:
        hashes = json.loads(record.read_text(encoding="utf-8"))
        if not (isinstance(hashes, dict) and hashes
                and all(isinstance(k, str) and isinstance(v, str) and len(v) == 64
                        for k, v in hashes.items())):
            raise ValueError("not a map of file names to sha256 digests")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointCorruptError(f"{where}: its file list {_FILES} cannot be read "
                                     f"({e}); {_FIX}") from None
    for rel, want in hashes.items():
        path = step_dir / rel
        if ".." in Path(rel).parts or not path.is_file():
            raise CheckpointCorruptError(f"{where}: {rel} is missing; {_FIX}")
        if _sha256_file(path) != want:
            raise CheckpointCorruptError(f"{where}: {rel} differs from the sha256 saved "
                                         f"with it; {_FIX}")


def restore_meta(mngr, step: int, workdir: Path) -> dict:
    ocp = _ocp()
    _verify_files(Path(mngr.directory), step)
    try:
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types
        raise CheckpointCorruptError(f"checkpoint {workdir} (epoch {step}) is damaged: its "
                                     f"metadata cannot be read ({_short(e)}); {_FIX}"
                                     ) from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise CheckpointCorruptError(f"checkpoint {workdir} (epoch {step}) is damaged: "
                                     "its metadata has no config")
    return meta


def read_meta(workdir: Path) -> tuple[Any, int | None, dict | None]:
    """(manager, latest finished epoch, its metadata) of a checkpoint directory.

    Raises :class:`CheckpointCorruptError` when the metadata cannot be read."""
    if not workdir.is_dir():
        return None, None, None
    mngr = manager(workdir)
    step = mngr.latest_step()
    if step is None:
        return mngr, None, None
    try:
        return mngr, step, restore_meta(mngr, step, workdir)
    except CheckpointCorruptError:
        mngr.close()
        raise


def restore_state(mngr, step: int, target: Any, *, allow_unverified: bool = False,
                  meta: dict | None = None) -> dict:
    """The state saved at ``step`` (``target``: its structure, arrays or
    ``jax.ShapeDtypeStruct``), verified against the sha256 saved with it.  ``meta``: the
    step's metadata when the caller has read it with :func:`restore_meta` (which verified
    the step's files), so they are not hashed twice.

    A checkpoint without a hash (written before content hashes existed) cannot be
    verified: it is refused (:class:`CheckpointUnverifiedError`) unless
    ``allow_unverified``, and refused in any case when an array holds NaN or inf.

    Raises:
      CheckpointCorruptError: the arrays cannot be read, differ from their hash, or (no
        hash) are not finite; :class:`CheckpointUnverifiedError` as above.
    """
    ocp = _ocp()
    workdir = Path(mngr.directory)
    if meta is None:       # else: read (and its files verified) by restore_meta already
        meta = restore_meta(mngr, step, workdir)
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    try:
        state = mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))["state"]
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types
        raise CheckpointCorruptError(f"checkpoint {workdir} (epoch {step}) is damaged: its "
                                     f"arrays cannot be read ({_short(e)}); {_FIX}"
                                     ) from None
    want = meta.get("content_sha256")
    if want is not None:
        got = _state_hash(state)
        if got != want:
            raise CheckpointCorruptError(
                f"checkpoint {workdir} (epoch {step}) is damaged: its arrays' sha256 "
                f"{got[:16]}... differs from the {want[:16]}... saved with them; {_FIX}")
        return state
    bad = [jax.tree_util.keystr(k) for k, a in jax.tree_util.tree_leaves_with_path(state)
           if np.issubdtype(np.asarray(a).dtype, np.inexact)
           and not np.all(np.isfinite(np.asarray(a)))]
    if bad:
        raise CheckpointCorruptError(
            f"checkpoint {workdir} (epoch {step}) is damaged: it has no content hash and "
            f"{len(bad)} array(s) hold NaN or inf (first: {bad[0]}); {_FIX}")
    if not allow_unverified:
        raise CheckpointUnverifiedError(
            f"checkpoint {workdir} (epoch {step}) has no content hash (written by an older "
            "lens_jax), so its arrays cannot be verified; pass allow_unverified=True to load "
            "it anyway (its values are finite), or delete the folder to train again")
    return state


def save(mngr, step, params, opt_state, rng, history, config, *, finished, test_accuracy,
         epoch=None, in_epoch=None):
    """Save a step: ``epoch`` (default ``step``) is the number of finished epochs;
    ``in_epoch`` (a dict) marks a checkpoint taken part-way through the next epoch."""
    ocp = _ocp()
    state = {"params": params, "opt_state": opt_state, "rng": rng}
    meta = {"epoch": step if epoch is None else epoch, "finished": bool(finished),
            "history": history, "config": config, "test_accuracy": test_accuracy,
            "content_sha256": _state_hash(state)}      # verified by restore_state
    if in_epoch is not None:
        meta["in_epoch"] = in_epoch
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave(json.loads(json.dumps(meta)))), force=True)
    mngr.wait_until_finished()
    _write_file_hashes(Path(mngr.directory) / str(step))


def move_aside(workdir: Path, err: Exception) -> Path:
    """Rename a damaged model folder to ``<name>.damaged-<UTC time>`` and warn."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    dest = workdir.with_name(f"{workdir.name}.damaged-{stamp}")
    k = 1
    while dest.exists():
        dest = workdir.with_name(f"{workdir.name}.damaged-{stamp}-{k}")
        k += 1
    os.replace(workdir, dest)
    warnings.warn(f"{err}; moved it aside to {dest} and training a fresh model in "
                  f"{workdir}", RuntimeWarning, stacklevel=3)
    return dest
