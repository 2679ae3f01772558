"""Amplification sweeps over a data set: images x targets x alphas (x domains), sharded
over a device mesh, chunked, streamed to disk and resumable.

    plan      lens_jax._sweep_plan: every argument validated once -> a Plan (static)
    store     lens_jax._store: manifest, chunk files, input hashes, resume, load
    compute   pairs (image, target) --chunk--> one global batch sharded over the mesh's
              image axis --shard_map(vmap(morph))--> per-pair metrics (+ frames for a
              few images) --> chunk_000012.npz (atomic) ... load_sweep(out_dir)

* **Work unit**: one (image, target) pair is one :func:`lens_jax.morph` call (one
  gradient, ``n_alpha`` frames).  ``targets`` of shape ``(N,)`` gives one pair per image,
  ``(N, T)`` gives ``T`` pairs per image (results gain a ``T`` axis).  For raw alphas in
  fixed mode, chunks that keep no frames compute the same thing without ``morph``'s
  frames array (:func:`lens_jax.prepare_edit`, one ``jax.grad``, then each group of
  ``alpha_chunk`` frames rendered, classified and measured and dropped), so memory does
  not grow with the number of alphas.
* **Classifier**: anything :func:`lens_jax.models.as_classifier` takes (a callable
  ``logits_fn(images)``, a pair ``(apply_fn, params)``, a flax ``nnx.Module``, ...).
  Its parameters are traced arguments of the chunk program, never constants in it: new
  parameter values of the same shapes reuse the compiled program.
* **Devices**: any :class:`jax.sharding.Mesh`.  Images are sharded over ``image_axis``
  (default: the mesh's first axis) and, optionally, the frames of each pair over
  ``alpha_axis`` (default: an axis named ``"alphas"`` if the mesh has one); any other
  axis holds replicas.  Each chunk is built as a global array and computed by one
  ``jax.jit(jax.shard_map(...))``: every device runs the single-device program on its
  slice, with no communication, so results equal the one-device path (bitwise on CPU in
  our tests).  ``mesh=None`` uses every device of ``jax.devices()`` (all hosts after
  :func:`jax.distributed.initialize`).  An alpha axis needs ``alphas=`` or a 1-D
  ``l2_budget`` in fixed mode; each alpha shard then recomputes the pair's gradient.
* **Memory**: a chunk of ``chunk_size`` pairs is on the devices at once (every chunk is
  padded to ``chunk_size`` rounded up to the image-axis devices, so one program serves
  them all; padding is dropped); ``alpha_chunk`` renders, classifies and measures the
  frames of each pair in groups of that many.  Only the small metrics come back for
  every pair; frames come back only for ``keep_frames`` images.  With ``out_dir``
  nothing accumulates in host memory until :func:`load_sweep`.
* **Streaming, resume, integrity**: ``out_dir/sweep.json`` (the configuration, its hash,
  the input hash of every chunk, a fingerprint of the classifier: the sha256 of its
  parameters where it has them, and its logits on up to eight probe images spread over
  the data) and one ``chunk_NNNNNN.npz`` per chunk, written atomically with its index,
  its pair range and its input hash.  A rerun skips every valid chunk, recomputes
  damaged ones (named on stderr) and refuses a different configuration, classifier or
  data with a ``ValueError``; :func:`load_sweep` checks every chunk and names a bad one.

Multi-host (TPU pods, several GPU hosts): call ``jax.distributed.initialize()`` on every
host first, then run the same :func:`sweep` call everywhere with the same ``images``
(each host reads the slices its devices own).  Process 0 writes ``out_dir`` (put it on a
shared file system to resume from another host) and returns the result; the others
return ``None`` when ``out_dir`` is given.  See ``experiments/multihost_sweep.py``.

Why ``shard_map(..., check_vma=False)``: the edit parameters of a domain are created
inside the per-device program from device-*invariant* values; with ``check_vma=True``
JAX transposes their implicit broadcast into a ``psum``, so ``jax.grad`` would sum the
gradients of all devices' images.  Without the check every device differentiates its
own images.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from . import _store
from . import _sweep_plan as _plan
from ._sweep_plan import sweep_mesh
from ._store import FORMAT, MANIFEST
from .domains import DOMAINS, split_color
from .lens import morph, prepare_edit
from .classifier import Classifier, as_classifier
from .pyramid import SteerablePyramid

__all__ = ["sweep", "load_sweep", "sweep_mesh", "SweepResult", "MANIFEST", "FORMAT"]

_METRICS = ("probs", "logits", "l2", "alphas", "reached", "max_change", "target", "source")
_N_PROBE = 8          # probe images for the classifier's fingerprint


class SweepResult(NamedTuple):
    """Result of :func:`sweep` / :func:`load_sweep` (host NumPy arrays).

    ``N`` images, ``T`` targets per image (the ``T`` axis is present only when
    ``targets`` was 2-D), ``n`` frames per pair, ``K`` classes, ``M`` kept images.

    Attributes:
      probs, logits: ``(N, [T,] n, K)`` classifier outputs at every frame.
      l2: ``(N, [T,] n)`` L2 distance of each frame to its source image.
      alphas: ``(N, [T,] n)`` amplification of each frame (per pair: budgets and
        step caps depend on the image).
      reached: ``(N, [T,] n)`` bool, False where an L2 budget was not reached.
      max_change: ``(N, [T,] n)`` largest |edit| of each frame (see ``Morph.max_change``;
        a phase above pi has wrapped).
      target, source: ``(N, [T])`` int classes.
      frames: ``(M, [T,] n, H, W, C)`` frames of the images in ``frame_index``.
      frame_index: ``(M,)`` sorted image indices whose frames were kept.
      info: the sweep configuration (as written to ``sweep.json``).
    """
    probs: np.ndarray
    logits: np.ndarray
    l2: np.ndarray
    alphas: np.ndarray
    reached: np.ndarray
    max_change: np.ndarray
    target: np.ndarray
    source: np.ndarray
    frames: np.ndarray
    frame_index: np.ndarray
    info: dict

    @property
    def target_prob(self) -> np.ndarray:
        """``(N, [T,] n)`` probability of the target class at every frame."""
        return np.take_along_axis(self.probs, self.target[..., None, None], axis=-1)[..., 0]

    @property
    def source_prob(self) -> np.ndarray:
        return np.take_along_axis(self.probs, self.source[..., None, None], axis=-1)[..., 0]

    @property
    def margin(self) -> np.ndarray:
        t = np.take_along_axis(self.logits, self.target[..., None, None], axis=-1)[..., 0]
        s = np.take_along_axis(self.logits, self.source[..., None, None], axis=-1)[..., 0]
        return t - s

    @property
    def pred(self) -> np.ndarray:
        return np.argmax(self.logits, axis=-1)


# ----------------------------------------------------------------------------------
# helpers: fingerprint, global arrays, multi-host agreement
# ----------------------------------------------------------------------------------

def _fingerprint(clf: Classifier, images, plan: _plan.Plan) -> dict:
    """The classifier's identity for resume: the sha256 of its parameters (when it has
    any) and its logits on up to ``_N_PROBE`` images spread over the data."""
    N = plan.shape[0]
    idx = np.unique(np.linspace(0, N - 1, min(_N_PROBE, N)).round().astype(np.int64))
    x = np.stack([np.asarray(images[int(i)]) for i in idx]).astype(plan.dtype)
    if x.ndim == 3:
        x = x[..., None]
    logits = np.asarray(jax.jit(clf.apply)(clf.params, jnp.asarray(x)), np.float64)
    leaves = [np.asarray(v) for v in jax.tree.leaves(clf.params)]
    return {"params": _store.params_hash(leaves), "probe_index": idx.tolist(),
            "probe_logits": logits.tolist()}


def _global(x: np.ndarray, sharding) -> jax.Array:
    """A global array from the host copy every process holds (multi-host safe)."""
    if isinstance(sharding, jax.sharding.SingleDeviceSharding):
        return jax.device_put(x, sharding)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _to_host(x: jax.Array) -> np.ndarray:
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _agree(value: np.ndarray) -> np.ndarray:
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.broadcast_one_to_all(value))


def _agree_ok(err: BaseException | None) -> None:
    """Raise on every process when process 0 failed (so no one hangs in a collective)."""
    flag = _agree(np.array(0 if err is None else 1, np.int32))
    if err is not None:
        raise err
    if int(flag):
        raise RuntimeError("process 0 refused this sweep (see its error)")


# ----------------------------------------------------------------------------------
# compute: the per-chunk program
# ----------------------------------------------------------------------------------

def _pair_fn(apply, *, kind, has_source, domain, loss, mode, pyramid, color, n_frames,
             alpha_chunk, want_frames):
    """``(params, image, target, source, sched) -> dict`` for one pair, vmapped over pairs
    (``params`` broadcast).

    With frames (or any schedule but raw alphas in fixed mode): one :func:`morph` call.
    Metrics only, raw alphas, fixed mode: the same computation as ``morph`` (one
    gradient, ``render(-alpha * g)``, the source at ``alpha == 0``), but each group of
    ``alpha_chunk`` frames is classified and measured as it is rendered, so the frames of
    a pair are never all in memory (``morph`` returns them, so it keeps them all).
    """
    def with_morph(params, image, target, source, sched):
        logits_fn = lambda x: apply(params, x)          # noqa: E731 - params traced
        kw = {} if kind is None else {kind: sched}
        m = morph(logits_fn, image, target=target, source=source if has_source else None,
                  domain=domain, loss=loss, mode=mode, pyramid=pyramid, color=color,
                  n_frames=n_frames, chunk_size=alpha_chunk, **kw)
        out = {name: getattr(m, name) for name in _METRICS}
        if want_frames:
            out["frames"] = m.frames
        return out

    def streamed(params, image, target, source, alphas):
        logits_fn = lambda x: apply(params, x)          # noqa: E731 - params traced
        ed = prepare_edit(logits_fn, image, target=target,
                          source=source if has_source else None, domain=domain, loss=loss,
                          color=color, pyramid=pyramid)
        g = jax.grad(ed.loss)(ed.zeros)
        state = ed.domain.analyse(split_color(image, color)[0])

        def per_alpha(a):
            fr = ed.render(jax.tree.map(lambda v: -a * v, g), straight_through=False)
            fr = jnp.where(a == 0, image, fr)
            return logits_fn(fr[None])[0], jnp.sqrt(jnp.sum((fr - image) ** 2))

        n = alphas.shape[0]
        if alpha_chunk is None or alpha_chunk >= n:
            z, l2 = jax.vmap(per_alpha)(alphas)
        else:
            z, l2 = jax.lax.map(per_alpha, alphas, batch_size=int(alpha_chunk))
        return {"probs": jax.nn.softmax(z, axis=-1), "logits": z, "l2": l2,
                "alphas": alphas, "reached": jnp.ones(alphas.shape, bool),
                "max_change": jnp.abs(alphas) * ed.domain.change(state, g),
                "target": jnp.asarray(target, jnp.int32), "source": ed.source}

    fast = kind == "alphas" and mode == "fixed" and not want_frames
    return jax.vmap(streamed if fast else with_morph, in_axes=(None, 0, 0, 0, None))


def _build_chunk_fn(apply, mesh: Mesh, image_axis: str, alpha_axis: str | None, **static):
    """The jitted chunk function ``(params, x, t, s, sched)`` and its input shardings."""
    f = _pair_fn(apply, **static)
    if mesh.size == 1:
        one = jax.sharding.SingleDeviceSharding(mesh.devices.flat[0])
        return jax.jit(f), [one] * 5
    per_pair = P(image_axis)
    per_frame = P(image_axis, alpha_axis)
    out_specs = {name: per_pair if name in ("target", "source") else per_frame
                 for name in _METRICS}
    if static["want_frames"]:
        out_specs["frames"] = per_frame
    in_specs = (P(), per_pair, per_pair, per_pair, P(alpha_axis))
    # check_vma=False: see the module docstring (gradients w.r.t. device-invariant zeros)
    fn = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                               check_vma=False))
    return fn, [NamedSharding(mesh, s) for s in in_specs]


_FN_CACHE: dict = {}


def _chunk_fn(apply, mesh, image_axis, alpha_axis, **static):
    """:func:`_build_chunk_fn`, cached on the (static) apply function and options."""
    try:
        key = (apply, mesh, image_axis, alpha_axis, tuple(sorted(static.items())))
        hash(key)
    except TypeError:
        return _build_chunk_fn(apply, mesh, image_axis, alpha_axis, **static)
    if key not in _FN_CACHE:
        if len(_FN_CACHE) > 32:
            _FN_CACHE.clear()
        _FN_CACHE[key] = _build_chunk_fn(apply, mesh, image_axis, alpha_axis, **static)
    return _FN_CACHE[key]


def _put_params(params, sharding):
    """The classifier's parameters, replicated on the mesh (multi-host safe)."""
    if jax.process_count() == 1:
        return jax.device_put(params, sharding)
    return jax.tree.map(lambda v: _global(np.asarray(v), sharding), params)


class _Chunks:
    """Compute the chunks ``todo`` of a plan, one in flight while the previous is stored."""

    def __init__(self, clf: Classifier, images, plan: _plan.Plan, cs: int):
        self.clf, self.images, self.plan, self.cs = clf, images, plan, cs
        self.keep_set = np.zeros(plan.shape[0], bool)
        self.keep_set[plan.keep] = True
        self.static = dict(kind=plan.kind, has_source=plan.sources is not None,
                           domain=plan.domain, loss=plan.loss, mode=plan.mode,
                           pyramid=plan.pyramid, color=plan.color, n_frames=plan.n_frames,
                           alpha_chunk=plan.alpha_chunk)
        self.params = {}                      # placed once per sharding

    def dispatch(self, k: int):
        plan, T = self.plan, self.plan.targets.shape[1]
        pairs, x, t, sv, xu = _plan.chunk_inputs(plan, self.images, self.cs, k)
        _plan.check_values(xu, pairs[0] // T)
        D = plan.devices
        bp = -(-self.cs // D) * D                 # every chunk has one shape: one compile
        if bp != len(pairs):                      # pad with the chunk's first pair
            pad = np.zeros(bp - len(pairs), np.int64)
            x, t, sv = (np.concatenate([v, v[pad]]) for v in (x, t, sv))
        want = bool(self.keep_set[pairs // T].any())
        fn, shardings = _chunk_fn(self.clf.apply, plan.mesh, plan.image_axis,
                                  plan.alpha_axis, want_frames=want, **self.static)
        if shardings[0] not in self.params:
            self.params[shardings[0]] = _put_params(self.clf.params, shardings[0])
        args = [_global(v, sh) for v, sh in zip((x, t, sv, plan.sched), shardings[1:])]
        return k, pairs, fn(self.params[shardings[0]], *args)

    def collect(self, item) -> tuple[int, np.ndarray, dict]:
        """Host arrays of a dispatched chunk (padding and alpha padding dropped)."""
        k, pairs, res = item
        plan, b, n = self.plan, len(pairs), self.plan.n_alpha
        arrays = {}
        for name in _METRICS:
            v = _to_host(res[name])[:b]
            arrays[name] = v[:, :n] if v.ndim >= 2 else v
        sel = np.nonzero(self.keep_set[pairs // plan.targets.shape[1]])[0]
        if "frames" in res:
            arrays["frames"] = _to_host(res["frames"])[:b][:, :n][sel]
        else:
            _, H, W, C = plan.shape
            arrays["frames"] = np.zeros((0, n, H, W, C), plan.dtype)
        arrays["frame_pairs"] = pairs[sel]
        arrays["pairs"] = np.array([pairs[0], pairs[-1] + 1], np.int64)
        return k, pairs, arrays

    def run(self, todo: list[int], store: Callable[[int, dict], None]) -> None:
        pending = None
        for k in todo:
            item = self.dispatch(k)
            if pending is not None:
                store(*self.collect(pending)[::2])
            pending = item
        if pending is not None:
            store(*self.collect(pending)[::2])


# ----------------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------------

def sweep(logits_fn: Any, images, targets, *, sources=None,
          domain: str | Sequence[str] = "csp_phase", alphas=None, l2_budget=None,
          step_cap: float | None = None, n_frames: int = 12, loss: str = "nll",
          mode: str = "fixed", color: str = "luminance",
          pyramid: SteerablePyramid | None = None, mesh: Mesh | None = None,
          image_axis: str | None = None, alpha_axis: str | None = None,
          chunk_size: int | None = None, alpha_chunk: int | None = None,
          keep_frames: int | Sequence[int] | None = 0,
          out_dir: str | os.PathLike | None = None, resume: bool = True,
          progress: bool = True, on_chunk: Callable[[int, dict], Any] | None = None
          ) -> SweepResult | dict[str, SweepResult] | None:
    """Morph every image toward every target at every amplification, over a mesh.

    Args:
      logits_fn: the classifier, in any form :func:`lens_jax.models.as_classifier`
        takes: a JAX function ``(B, H, W, C)`` images in [0, 1] -> ``(B, K)`` logits, a
        pair ``(apply_fn, params)``, a flax ``nnx.Module``, ...  Its parameters are
        traced arguments (new values reuse the compiled program).
      images: ``(N, H, W, C)`` or ``(N, H, W)`` float array in [0, 1]; any array with
        NumPy slicing (a ``np.memmap`` keeps a large split on disk).  Read chunk by chunk.
      targets: an int (every image), ``(N,)`` (one target per image) or ``(N, T)``
        (``T`` targets per image; results gain a ``T`` axis).
      sources: ``(N,)`` source classes (default: the classifier's prediction).
      domain: one of ``lens_jax.DOMAINS``, or a sequence of them: then a dict
        ``{domain: SweepResult}`` is returned and each domain streams to
        ``out_dir/<domain>``.
      alphas, l2_budget, step_cap, n_frames, loss, mode, color, pyramid: the schedule and
        options of :func:`lens_jax.morph` (same meaning), shared by every pair.
      mesh: any :class:`~jax.sharding.Mesh` (e.g. ``jax.make_mesh((8,), ("data",))`` or
        :func:`sweep_mesh`).  ``None``: every device on one axis.  A one-device mesh
        runs plain ``jax.jit``.
      image_axis: the mesh axis the images are sharded over (default: its first axis).
      alpha_axis: a mesh axis to shard the frames of each pair over (default: the axis
        named ``"alphas"`` if there is one, else none).  Other axes hold replicas.
      chunk_size: pairs per chunk (default: from a memory budget, a multiple of the
        image-axis devices; on resume, the stored value).  Padded to the devices.
      alpha_chunk: render and classify at most this many frames of a pair at once.
      keep_frames: frames are returned only for these images: a count ``k`` (the first
        ``k``) or a sequence of image indices.  Metrics are returned for all.
      out_dir: stream chunks and a manifest there and resume from them.
      resume: with ``out_dir``: skip finished chunks and recompute damaged ones
        (``False``: delete this sweep's files there and start afresh).
      progress: a tqdm bar over chunks (process 0 only).
      on_chunk: ``on_chunk(k, arrays)`` after chunk ``k`` is stored (or kept).

    Returns:
      A :class:`SweepResult` (a dict of them for several domains).  In a multi-process
      run with ``out_dir``, only process 0 returns it (others: ``None``).

    Raises:
      ValueError: bad shapes, values, schedule or mesh axes; a resume against a
        different configuration, classifier (parameters or probe logits) or data.
      TypeError: a classifier or mesh of the wrong kind.

    >>> import numpy as np, jax.numpy as jnp
    >>> from lens_jax.sweep import sweep
    >>> f = lambda x: jnp.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], -1)
    >>> imgs = np.full((4, 16, 16), 0.5, np.float32)
    >>> r = sweep(f, imgs, 1, alphas=[0.0, 1.0, 2.0], domain="pixel", progress=False)
    >>> r.probs.shape, r.l2.shape, r.frames.shape
    ((4, 3, 2), (4, 3), (0, 3, 16, 16, 1))
    """
    clf = as_classifier(logits_fn)
    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
        raise ValueError(f"chunk_size must be an int >= 1; got {chunk_size!r}")
    opts = dict(sources=sources, alphas=alphas, l2_budget=l2_budget, step_cap=step_cap,
                n_frames=n_frames, loss=loss, mode=mode, color=color, pyramid=pyramid,
                mesh=mesh, image_axis=image_axis, alpha_axis=alpha_axis,
                alpha_chunk=alpha_chunk, keep_frames=keep_frames)
    run = dict(chunk_size=chunk_size, resume=resume, progress=progress, on_chunk=on_chunk)
    if isinstance(domain, str):
        return _sweep_one(clf, images, targets, domain=domain, out_dir=out_dir, opts=opts,
                          **run)
    domains = list(domain)
    if not domains or len(set(domains)) != len(domains):
        raise ValueError(f"domain must be a name or a sequence of distinct names; got "
                         f"{domain!r}")
    for d in domains:
        if d not in DOMAINS:
            raise ValueError(f"unknown domain {d!r}; choose from {DOMAINS}")
    return {d: _sweep_one(clf, images, targets, domain=d,
                          out_dir=None if out_dir is None else Path(out_dir) / d,
                          opts=opts, **run)
            for d in domains}


def _open_store(outp: Path, clf: Classifier, images, plan: _plan.Plan, chunk_size,
                resume: bool) -> tuple[int, list[str], np.ndarray]:
    """Manifest and resume (process 0 decides, everyone follows):
    ``(chunk size, input hashes, done mask)``."""
    primary = jax.process_index() == 0
    path = outp / MANIFEST
    man, err, stored = None, None, np.array(0, np.int64)
    if primary:
        try:
            if not resume and outp.is_dir():
                _store.clear(outp)
            fp = _fingerprint(clf, images, plan)
            man = _store.read_manifest(outp)
            if man is not None:
                stored = np.array(_store.check_resume(
                    man, plan.config, _store.config_hash(plan.config), chunk_size, path))
        except BaseException as e:          # noqa: BLE001 - re-raised on every process
            err = e
    _agree_ok(err)
    cs = int(_agree(stored)) or int(chunk_size or _plan.auto_chunk_size(plan))
    n_chunks = -(-plan.n_pairs // cs)
    hashes: list[str] = []
    done = np.zeros(n_chunks, bool)
    if primary:
        try:
            hashes = [_plan.chunk_hash(plan, images, cs, k) for k in range(n_chunks)]
            if man is None:
                _store.write_manifest(
                    outp, config=plan.config, config_hash=_store.config_hash(plan.config),
                    chunk_size=cs, n_chunks=n_chunks, n_pairs=plan.n_pairs,
                    chunk_hashes=hashes, classifier=fp)
            else:
                _store.check_inputs(man, hashes, path)          # data first, then model
                _store.same_classifier(man["classifier"], fp, path)
                done = _store.scan(outp, man)
        except BaseException as e:          # noqa: BLE001 - re-raised on every process
            err = e
    _agree_ok(err)
    return cs, hashes, _agree(done.astype(np.int32)).astype(bool)


def _sweep_one(clf: Classifier, images, targets, *, domain: str, out_dir, opts: dict,
               chunk_size, resume, progress, on_chunk):
    """One domain: plan, open the store, compute the missing chunks, assemble."""
    plan, images = _plan.make_plan(clf, images, targets, domain=domain, **opts)
    primary = jax.process_index() == 0
    outp = None if out_dir is None else Path(out_dir)
    if outp is None:
        cs = int(chunk_size or _plan.auto_chunk_size(plan))
        hashes, done = [], np.zeros(-(-plan.n_pairs // cs), bool)
    else:
        cs, hashes, done = _open_store(outp, clf, images, plan, chunk_size, resume)
    todo = [k for k in range(len(done)) if not done[k]]
    kept: list[dict] = []
    bar = None
    if progress and primary:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(done), initial=len(done) - len(todo), unit="chunk",
                   desc=f"sweep {domain}", leave=False)

    def store(k: int, arrays: dict) -> None:
        if outp is None:
            kept.append(arrays)
        elif primary:
            _store.write_chunk(outp, k, arrays, input_hash=hashes[k],
                               pairs=tuple(int(v) for v in arrays["pairs"]))
        if bar is not None:
            bar.update(1)
        if on_chunk is not None:
            on_chunk(k, arrays)

    try:
        _Chunks(clf, images, plan, cs).run(todo, store)
    finally:
        if bar is not None:
            bar.close()
    if outp is None:
        return _assemble(kept, plan.config, len(done))
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("lens_jax.sweep:done")
    return load_sweep(outp) if primary else None


def load_sweep(out_dir: str | os.PathLike) -> SweepResult | dict[str, SweepResult]:
    """Concatenate the chunks a finished :func:`sweep` wrote to ``out_dir``.

    Every chunk is checked (readable, CRCs, its index, pair range and input hash).  A
    folder of several domains (``out_dir/<domain>/sweep.json``) gives a dict.

    Raises:
      FileNotFoundError: no sweep there.  ValueError: chunks missing or damaged (named;
      rerun the sweep with this ``out_dir`` to finish or repair it), a chunk that belongs
      elsewhere, or a damaged manifest.
    """
    out_dir = Path(out_dir)
    man = _store.read_manifest(out_dir)
    if man is None:
        subs = {p.name: p for p in sorted(out_dir.iterdir()) if (p / MANIFEST).exists()} \
            if out_dir.is_dir() else {}
        if not subs:
            raise FileNotFoundError(f"no {MANIFEST} in {out_dir} or its subfolders")
        return {name: load_sweep(p) for name, p in subs.items()}
    chunks = _store.load_chunks(out_dir, man)
    return _assemble(chunks, man["config"], int(man["n_chunks"]))


# ----------------------------------------------------------------------------------
# assembling results
# ----------------------------------------------------------------------------------

def _assemble(chunks: list[dict], config: dict, n_chunks: int) -> SweepResult:
    if len(chunks) != n_chunks:
        raise ValueError(f"{n_chunks - len(chunks)} of {n_chunks} chunks are missing")
    chunks = sorted(chunks, key=lambda c: int(c["pairs"][0]))
    N, T = config["n_images"], config["T"]
    n = config["n_alpha"]
    H, W, C = config["image_shape"]
    lead = (N, T) if config["targets_2d"] else (N,)
    out = {}
    for name in _METRICS:
        v = np.concatenate([c[name] for c in chunks])
        if v.shape[0] != N * T:
            raise ValueError(f"chunks hold {v.shape[0]} pairs; expected {N * T}")
        out[name] = v.reshape(lead + v.shape[1:])
    keep = np.asarray(config["keep_frames"], np.int64)
    fp = np.concatenate([c["frame_pairs"] for c in chunks])
    dtype = np.dtype(config["dtype"]) if config["dtype"] in ("float32", "float64") \
        else np.dtype(np.float32)
    fr = np.concatenate([c["frames"] for c in chunks]) if chunks else \
        np.zeros((0, n, H, W, C), dtype)
    order = np.argsort(fp, kind="stable")
    fr = fr[order].reshape(((keep.size, T) if config["targets_2d"] else (keep.size,))
                           + (n, H, W, C))
    return SweepResult(frames=fr, frame_index=keep, info=dict(config), **out)
