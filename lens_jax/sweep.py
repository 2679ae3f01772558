"""Amplification sweeps over a data set: images x targets x alphas (x domains), sharded
over a device mesh, chunked, streamed to a Zarr store and resumable.

    import lens_jax as lj
    res = lj.sweep.run(model, images, targets, l2_budget=1.0, out_dir="runs/s1")
    res = lj.sweep.load("runs/s1")                   # later, or from another process

    plan      lens_jax._sweep_plan: every argument validated once -> a Plan (static)
    store     lens_jax._store: a Zarr v3 group through TensorStore (record, chunks,
              stamps, lock)
    compute   pairs (image, target) --chunk--> one global batch sharded over the mesh's
              image axis --shard_map(vmap(lens.morph_stream))--> per-pair metrics (+
              frames for a few images) --> one Zarr chunk per array ... load(out_dir)

* **Work unit**: one (image, target) pair is one run of :func:`lens_jax.lens.morph_stream`,
  the single-image core :func:`lens_jax.morph` runs too (one gradient, ``n_alpha``
  frames, the classifier at every frame, the same NaN guards and ``reached``).
  ``targets`` of shape ``(N,)`` gives one pair per image, ``(N, T)`` gives ``T`` pairs per
  image (results gain a ``T`` axis).  Pairs whose frames are not kept never hold all
  their frames: the core renders, classifies and measures ``alpha_chunk`` frames at a
  time in fixed mode.  ``keep_frames`` changes only what is kept, never a value.
* **Classifier**: anything :func:`lens_jax.classifier.as_classifier` takes (a callable
  ``logits_fn(images)``, a pair ``(apply_fn, params)``, a flax ``nnx.Module``, ...).
  Its parameters are traced arguments of the chunk program, never constants in it: new
  parameter values of the same shapes reuse the compiled program.
* **Devices**: any :class:`jax.sharding.Mesh`, with every schedule (raw alphas, scalar
  or 1-D ``l2_budget``, ``step_cap``, the automatic one) and every mode.  Images are
  sharded over ``image_axis`` (default: the mesh's first axis) and, optionally, the
  frames of each pair over ``alpha_axis`` (default: an axis named ``"alphas"`` if the
  mesh has one); any other axis holds replicas.  Each chunk is built as a global array
  and computed by one ``jax.jit(jax.shard_map(...))``: every device runs the
  single-device program on its slice, with no communication, so results equal the
  one-device path.  ``mesh=None`` uses every device of ``jax.devices()`` (all hosts after
  :func:`jax.distributed.initialize`).  An alpha axis needs ``alphas=`` in fixed mode or
  a 1-D ``l2_budget``; each alpha shard then recomputes the pair's gradient.
* **Memory**: a chunk of ``chunk_size`` pairs is on the devices at once (every chunk is
  padded to ``chunk_size`` rounded up to the image-axis devices, so one program serves
  them all; padding is dropped).  Only the small metrics come back for every pair;
  frames come back only for ``keep_frames`` images.  With ``out_dir`` nothing
  accumulates in host memory until :func:`load`.
* **Store** (``out_dir``): a Zarr v3 group written through TensorStore (see
  :mod:`lens_jax._store`): one array per result with one crc32c-checked Zarr chunk per
  sweep chunk, the configuration, its hash and the classifier's fingerprint in the
  group's attributes (with their own sha256), and a stamp per chunk (a digest of the
  record and of the chunk's rows) written last.  A rerun skips every chunk whose stamp
  verifies, recomputes damaged or foreign ones (named on stderr) and refuses a different
  configuration, classifier or data with a ``ValueError``; an edited record is refused
  on load and resume; one process at a time may write a folder (a lock; a second
  writer gets a ``RuntimeError``).  ``zarr.open_group(out_dir)`` reads the arrays.
* **Classifier fingerprint** (resume): the sha256 of its parameters where it has any
  (for a plain function, the arrays it closes over), of its traced program, and its
  logits on probe images (8 spread over the data with parameters; up to 1024 without)
  and 4 fixed random images.

Multi-host (TPU pods, several GPU hosts): call ``jax.distributed.initialize()`` on every
host first, then run the same :func:`run` call everywhere with the same ``images``
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

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from . import _store
from ._batching import pad_index
from ._io import progress_bar
from . import _sweep_plan as _plan
from ._store import FORMAT
from ._sweep_plan import sweep_mesh
from .checks import check_count
from .classifier import Classifier, as_classifier, predict, trace_with_consts
from .domains import domain_names, get_domain
from .lens import PROBLEMS, morph_stream
from .pyramid import SteerablePyramid
from .schedule import Schedule

__all__ = ["run", "load", "sweep_mesh", "SweepResult", "FORMAT"]

_METRICS = _store.METRICS
_N_PROBE = 8             # probe images for a classifier with parameters (plus their hash)
_N_PROBE_NO_PARAMS = 1024    # ... and for one without (a closure): logits are all we have
_N_RANDOM_PROBES = 4     # fixed random images, probed too


class SweepResult(NamedTuple):
    """Result of :func:`run` / :func:`load` (host NumPy arrays).

    ``N`` images, ``T`` targets per image (the ``T`` axis is present only when
    ``targets`` was 2-D), ``n`` frames per pair, ``K`` classes, ``M`` kept images.

    Attributes:
      probs, logits: ``(N, [T,] n, K)`` classifier outputs at every frame (``probs``
        NaN where the logits are not finite).
      l2: ``(N, [T,] n)`` L2 distance of each frame to its source image.
      alphas: ``(N, [T,] n)`` amplification of each frame (per pair: budgets and
        step caps depend on the image).
      reached: ``(N, [T,] n)`` bool, False where an L2 budget was not reached, where
        the logits are not finite, and for a pair with a problem.
      max_change: ``(N, [T,] n)`` largest |edit| of each frame (see ``Morph.max_change``;
        a phase above pi has wrapped).
      problem: ``(N, [T])`` int codes, 0 where fine, else the index into
        :data:`lens_jax.lens.PROBLEMS` (non-finite logits or gradient at the source,
        ``loss="margin"`` with the predicted source == target); such a pair's floats
        are NaN and ``reached`` False.
      target, source: ``(N, [T])`` int classes.
      frames: ``(M, [T,] n, H, W, C)`` frames of the images in ``frame_index``.
      frame_index: ``(M,)`` sorted image indices whose frames were kept.
      info: the sweep configuration (as stored in the Zarr group's attributes).
    """
    probs: np.ndarray
    logits: np.ndarray
    l2: np.ndarray
    alphas: np.ndarray
    reached: np.ndarray
    max_change: np.ndarray
    problem: np.ndarray
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

def _fingerprint(clf: Classifier, images, plan: _plan.Plan) -> tuple[dict, np.ndarray]:
    """The classifier's identity for resume: ``({"params": sha256 | None, "code":
    sha256 of its traced program, "probe_index": [...]}, probe logits)``.  Probes:
    images spread over the data (8 when the classifier has parameters, whose hash is
    compared too; up to 1024 when it has none) and a few fixed random images (index
    ``-1, -2, ...``)."""
    N, H, W, C = plan.shape
    leaves = [np.asarray(v) for v in jax.tree.leaves(clf.params)]
    ph = _store.params_hash(leaves)
    jaxpr = trace_with_consts(clf.apply, (clf.params,
                                          jax.ShapeDtypeStruct((2, H, W, C), plan.dtype)))
    code = _store.code_hash(str(jaxpr.jaxpr), [np.asarray(c) for c in jaxpr.consts])
    m = min(N, _N_PROBE if ph is not None else _N_PROBE_NO_PARAMS)
    idx = np.unique(np.linspace(0, N - 1, m).round().astype(np.int64))
    x = np.stack([np.asarray(images[int(i)]) for i in idx]).astype(plan.dtype)
    if x.ndim == 3:
        x = x[..., None]
    rnd = np.random.default_rng(0).random((_N_RANDOM_PROBES, H, W, C)).astype(plan.dtype)
    x = np.concatenate([x, rnd])
    logits = np.asarray(predict(clf, x, batch_size=min(len(x), 64)), np.float64)
    index = idx.tolist() + [-1 - i for i in range(_N_RANDOM_PROBES)]
    return {"params": ph, "code": code, "probe_index": index,
            "probe_sha256": _store.hash_arrays(logits)}, logits


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

def _schedule(kind: str, sched, n_frames: int) -> Schedule:
    """The :class:`Schedule` of the plan's (possibly alpha-sharded) schedule values."""
    if kind == "alphas":
        return Schedule("alphas", sched, None, None, n_frames)
    if kind in ("budget", "budgets"):
        return Schedule(kind, None, None, sched, n_frames)
    return Schedule("step_cap", None, sched, None, n_frames)


def _pair_fn(apply, *, kind, has_source, domain, loss, mode, pyramid, color, n_frames,
             alpha_chunk, want_frames, num_classes, hw):
    """``(params, images, targets, sources, sched) -> dict`` over a batch of pairs
    (``params`` and ``sched`` broadcast): :func:`lens_jax.lens.morph_stream` per pair,
    the core :func:`lens_jax.morph` runs too."""
    dom = get_domain(domain, hw, pyramid=pyramid)

    def one(params, image, target, source, sched):
        m, problem = morph_stream(Classifier(apply, params), image, target,
                                  source if has_source else None,
                                  _schedule(kind, sched, n_frames), domain=dom,
                                  num_classes=num_classes, loss=loss, mode=mode, color=color,
                                  chunk_size=alpha_chunk, keep_frames=want_frames)
        out = {name: getattr(m, name) for name in _METRICS if name != "problem"}
        out["problem"] = problem
        if want_frames:
            out["frames"] = m.frames
        return out

    return jax.vmap(one, in_axes=(None, 0, 0, 0, None))


def _build_chunk_fn(apply, mesh: Mesh, image_axis: str, alpha_axis: str | None,
                    sched_ndim: int, **static):
    """The jitted chunk function ``(params, x, t, s, sched)`` and its input shardings."""
    f = _pair_fn(apply, **static)
    if mesh.size == 1:
        one = jax.sharding.SingleDeviceSharding(mesh.devices.flat[0])
        return jax.jit(f), [one] * 5
    per_pair = P(image_axis)
    per_frame = P(image_axis, alpha_axis)
    out_specs = {name: per_pair if name in ("target", "source", "problem") else per_frame
                 for name in _METRICS}
    if static["want_frames"]:
        out_specs["frames"] = per_frame
    # the schedule: sharded over the alpha axis (alphas, 1-D budgets) or replicated
    # (a 0-d step cap, a scalar budget): P() fits any rank
    sched_spec = P(alpha_axis) if alpha_axis is not None and sched_ndim == 1 else P()
    in_specs = (P(), per_pair, per_pair, per_pair, sched_spec)
    # check_vma=False: see the module docstring (gradients w.r.t. device-invariant zeros)
    fn = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                               check_vma=False))
    return fn, [NamedSharding(mesh, s) for s in in_specs]


#: compiled chunk functions per (classifier apply, mesh, options); an entry holds its
#: classifier's apply (for a plain closure, the closure and what it closes over), so the
#: cache is kept small: the oldest entry goes first
_FN_CACHE: dict = {}
_FN_CACHE_MAX = 8


def _chunk_fn(apply, mesh, image_axis, alpha_axis, sched_ndim, **static):
    """:func:`_build_chunk_fn`, cached on the (static) apply function and options."""
    try:
        key = (apply, mesh, image_axis, alpha_axis, sched_ndim,
               tuple(sorted(static.items())))
        hash(key)
    except TypeError:
        return _build_chunk_fn(apply, mesh, image_axis, alpha_axis, sched_ndim, **static)
    if key not in _FN_CACHE:
        while len(_FN_CACHE) >= _FN_CACHE_MAX:
            _FN_CACHE.pop(next(iter(_FN_CACHE)))
        _FN_CACHE[key] = _build_chunk_fn(apply, mesh, image_axis, alpha_axis, sched_ndim,
                                         **static)
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
                           alpha_chunk=plan.alpha_chunk, num_classes=plan.num_classes,
                           hw=tuple(plan.shape[1:3]))
        self.params = {}                      # placed once per sharding

    def dispatch(self, k: int):
        plan, T = self.plan, self.plan.targets.shape[1]
        pairs, x, t, sv, xu = _plan.chunk_inputs(plan, self.images, self.cs, k)
        _plan.check_values(xu, pairs[0] // T)
        D = plan.devices
        bp = -(-self.cs // D) * D                 # every chunk has one shape: one compile
        if bp != len(pairs):                      # padded as map_chunks pads (first pair)
            sel = pad_index(0, len(pairs), bp)
            x, t, sv = (v[sel] for v in (x, t, sv))
        want = bool(self.keep_set[pairs // T].any())
        fn, shardings = _chunk_fn(self.clf.apply, plan.mesh, plan.image_axis,
                                  plan.alpha_axis, plan.sched.ndim, want_frames=want,
                                  **self.static)
        if shardings[0] not in self.params:
            self.params[shardings[0]] = _put_params(self.clf.params, shardings[0])
        args = [_global(v, sh) for v, sh in zip((x, t, sv, plan.sched), shardings[1:])]
        return k, pairs, fn(self.params[shardings[0]], *args)

    def collect(self, item) -> tuple[int, dict]:
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
        return k, arrays

    def run(self, todo: list[int], store: Callable[[int, dict], None]) -> None:
        pending = None
        for k in todo:
            item = self.dispatch(k)
            if pending is not None:
                store(*self.collect(pending))
            pending = item
        if pending is not None:
            store(*self.collect(pending))


# ----------------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------------

def run(logits_fn: Any, images, targets, *, sources=None,
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
      logits_fn: the classifier, in any form :func:`lens_jax.classifier.as_classifier`
        takes: a JAX function ``(B, H, W, C)`` images in [0, 1] -> ``(B, K)`` logits, a
        pair ``(apply_fn, params)``, a flax ``nnx.Module``, ...  Its parameters are
        traced arguments (new values reuse the compiled program).
      images: ``(N, H, W, C)`` or ``(N, H, W)`` float array in [0, 1]; any array with
        NumPy slicing (a ``np.memmap`` keeps a large split on disk).  Read chunk by chunk.
      targets: an int (every image), ``(N,)`` (one target per image) or ``(N, T)``
        (``T`` targets per image; results gain a ``T`` axis).
      sources: ``(N,)`` source classes (default: the classifier's prediction).
      domain: a registered domain name (:func:`lens_jax.domains.domain_names`), or a
        sequence of them: then a dict ``{domain: SweepResult}`` is returned and each
        domain streams to ``out_dir/<domain>``.
      alphas, l2_budget, step_cap, n_frames, loss, mode, color, pyramid: the schedule and
        options of :func:`lens_jax.morph` (same meaning), shared by every pair.
      mesh: any :class:`~jax.sharding.Mesh` (e.g. ``jax.make_mesh((8,), ("data",))`` or
        :func:`sweep_mesh`).  ``None``: every device on one axis.  A one-device mesh
        runs plain ``jax.jit``.
      image_axis: the mesh axis the images are sharded over (default: its first axis).
      alpha_axis: a mesh axis to shard the frames of each pair over (default: the axis
        named ``"alphas"`` if there is one, else none).  Other axes hold replicas.
      chunk_size: pairs per chunk, an int >= 1 (default: from a memory budget, a
        multiple of the image-axis devices; on resume, the stored value).  Padded to
        the devices.
      alpha_chunk: render and classify at most this many frames of a pair at once.
      keep_frames: frames are returned only for these images: a count ``k`` (the first
        ``k``) or a sequence of image indices.  Metrics are returned for all.
      out_dir: a folder: stream the sweep there as a Zarr v3 store and resume from it.
      resume: with ``out_dir``: skip finished chunks and recompute damaged ones
        (``False``: delete this sweep's files there and start afresh).
      progress: a bar over chunks on a terminal, plain lines in a log (process 0
        only).
      on_chunk: ``on_chunk(k, arrays)`` after chunk ``k`` is stored (or kept).

    Returns:
      A :class:`SweepResult` (a dict of them for several domains).  In a multi-process
      run with ``out_dir``, only process 0 returns it (others: ``None``).  Pairs with a
      problem (see ``SweepResult.problem``) are NaN there and named on stderr.

    Raises:
      ValueError: bad shapes, values, schedule, counts or mesh axes; ``loss="margin"``
        with a given source equal to the target; an ``out_dir`` that is a file, holds
        the old npz format, or holds a different sweep (configuration, classifier:
        parameters or probe logits, data) or an edited record.
      RuntimeError: another process is writing ``out_dir``.
      TypeError: a classifier or mesh of the wrong kind.

    >>> import numpy as np, jax.numpy as jnp
    >>> from lens_jax.sweep import run
    >>> f = lambda x: jnp.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], -1)
    >>> imgs = np.full((4, 16, 16), 0.5, np.float32)
    >>> r = run(f, imgs, 1, alphas=[0.0, 1.0, 2.0], domain="pixel", progress=False)
    >>> r.probs.shape, r.l2.shape, r.frames.shape
    ((4, 3, 2), (4, 3), (0, 3, 16, 16, 1))
    """
    # a plain callable is traced once on an example image: the arrays it closes over
    # become traced parameters (as in morph), so an updated model is never stale
    images, (_, H, W, C), dtype = _plan.check_images(images)
    clf = as_classifier(logits_fn, example=jax.ShapeDtypeStruct((1, H, W, C), dtype))
    if chunk_size is not None:
        chunk_size = check_count("chunk_size", chunk_size)
    opts = dict(sources=sources, alphas=alphas, l2_budget=l2_budget, step_cap=step_cap,
                n_frames=n_frames, loss=loss, mode=mode, color=color, pyramid=pyramid,
                mesh=mesh, image_axis=image_axis, alpha_axis=alpha_axis,
                alpha_chunk=alpha_chunk, keep_frames=keep_frames)
    kw = dict(chunk_size=chunk_size, resume=resume, progress=progress, on_chunk=on_chunk)
    if out_dir is not None:            # a file, or the old format, refused up front
        if resume:
            _store.check_folder(Path(out_dir))
        else:
            _not_a_file(Path(out_dir))
    if isinstance(domain, str):
        return _sweep_one(clf, images, targets, domain=domain, out_dir=out_dir, opts=opts,
                          **kw)
    domains = list(domain)
    if not domains or len(set(domains)) != len(domains):
        raise ValueError(f"domain must be a name or a sequence of distinct names; got "
                         f"{domain!r}")
    names = domain_names()
    for d in domains:
        if d not in names:
            raise ValueError(f"unknown domain {d!r}; choose from {names}")
    return {d: _sweep_one(clf, images, targets, domain=d,
                          out_dir=None if out_dir is None else Path(out_dir) / d,
                          opts=opts, **kw)
            for d in domains}


def _not_a_file(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ValueError(f"out_dir={str(path)!r} is an existing file; give a folder path "
                         "(it is created if missing)")


def _open_store(outp: Path, clf: Classifier, images, plan: _plan.Plan, chunk_size,
                resume: bool) -> tuple[int, dict | None, np.ndarray]:
    """Record and resume (process 0 decides, everyone follows):
    ``(chunk size, record (process 0), done mask)``."""
    primary = jax.process_index() == 0
    rec, err, stored = None, None, np.array(0, np.int64)
    fp = logits = None
    if primary:
        try:
            if not resume:
                _not_a_file(outp)
                _store.clear(outp)
            fp, logits = _fingerprint(clf, images, plan)
            rec = _store.read_record(outp)
            if rec is not None:
                stored = np.array(_store.check_resume(
                    rec, plan.config, _store.config_hash(plan.config), chunk_size, outp))
        except BaseException as e:          # noqa: BLE001 - re-raised on every process
            err = e
    _agree_ok(err)
    cs = int(_agree(stored)) or int(chunk_size or _plan.auto_chunk_size(plan))
    n_chunks = -(-plan.n_pairs // cs)
    done = np.zeros(n_chunks, bool)
    if primary:
        try:
            hashes = [_plan.chunk_hash(plan, images, cs, k) for k in range(n_chunks)]
            if rec is None:
                rec = {"format": FORMAT, "config": plan.config,
                       "config_hash": _store.config_hash(plan.config), "chunk_size": cs,
                       "n_chunks": n_chunks, "n_pairs": plan.n_pairs,
                       "chunk_hashes": hashes, "classifier": fp}
                _store.create(outp, rec, logits)
            else:
                _store.check_inputs(rec, hashes, outp)          # data first, then model
                old_logits = _store.probe_logits(outp, rec)
                if _store.hash_arrays(old_logits) != rec["classifier"]["probe_sha256"]:
                    raise ValueError(f"{outp / 'probe_logits'} does not match the record's "
                                     "hash (edited or damaged); resume=False starts afresh")
                _store.same_classifier(rec["classifier"], old_logits, fp, logits, outp)
                done = _store.scan(outp, rec)
        except BaseException as e:          # noqa: BLE001 - re-raised on every process
            err = e
    _agree_ok(err)
    return cs, rec, _agree(done.astype(np.int32)).astype(bool)


def _sweep_one(clf: Classifier, images, targets, *, domain: str, out_dir, opts: dict,
               chunk_size, resume, progress, on_chunk):
    """One domain: plan, open the store (locked), compute the missing chunks, assemble."""
    plan, images = _plan.make_plan(clf, images, targets, domain=domain, **opts)
    primary = jax.process_index() == 0
    outp = None if out_dir is None else Path(out_dir)
    with contextlib.ExitStack() as stack:
        if outp is not None and primary:
            stack.enter_context(_store.lock(outp))
        if outp is None:
            cs = int(chunk_size or _plan.auto_chunk_size(plan))
            rec, done = None, np.zeros(-(-plan.n_pairs // cs), bool)
        else:
            cs, rec, done = _open_store(outp, clf, images, plan, chunk_size, resume)
        writer = _store.Writer(outp, rec) if rec is not None else None
        todo = [k for k in range(len(done)) if not done[k]]
        kept: list[dict] = []
        bar = None
        if progress and primary:          # a bar on a terminal, plain lines in a log
            bar = stack.enter_context(progress_bar(len(done), desc=f"sweep {domain}",
                                                   initial=len(done) - len(todo),
                                                   unit="chunk", leave=False))

        def store(k: int, arrays: dict) -> None:
            if outp is None:
                kept.append(arrays)
            elif writer is not None:
                writer.write(k, arrays)
            if bar is not None:
                bar.update(1)
            if on_chunk is not None:
                on_chunk(k, arrays)

        _Chunks(clf, images, plan, cs).run(todo, store)
        if outp is None:
            res = _assemble(kept, plan.config)
        else:
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils
                multihost_utils.sync_global_devices("lens_jax.sweep:done")
            res = load(outp) if primary else None
    if res is not None:
        _note_problems(res, domain)
    return res


def _note_problems(res: SweepResult, domain: str) -> None:
    """Name pairs with a problem or non-finite logits on stderr (their values are NaN)."""
    bad = np.argwhere(res.problem != 0)
    nonfinite = ~np.isfinite(res.logits).all(-1) & (res.problem == 0)[..., None]
    if bad.size:
        at = tuple(int(i) for i in bad[0])
        print(f"lens_jax.sweep ({domain}): {len(bad)} pair(s) have a problem, their values "
              f"are NaN and reached False; first at (image, [target]) {at}: "
              f"{PROBLEMS[int(res.problem[at])]}", file=sys.stderr, flush=True)
    if nonfinite.any():
        at = tuple(int(i) for i in np.argwhere(nonfinite)[0])
        print(f"lens_jax.sweep ({domain}): the classifier returned non-finite logits at "
              f"{int(nonfinite.sum())} frame(s) (probs NaN, reached False there); first at "
              f"(image, [target,] frame) {at}", file=sys.stderr, flush=True)


def load(out_dir: str | os.PathLike) -> SweepResult | dict[str, SweepResult]:
    """The result of a finished :func:`run` from its ``out_dir``.

    The record (configuration, its hash, the classifier's fingerprint) is verified
    against its sha256 and every chunk against its stamp.  A folder of several domains
    (``out_dir/<domain>/zarr.json``) gives a dict.

    Raises:
      FileNotFoundError: no sweep there.  ValueError: chunks missing or damaged (named;
      rerun the sweep with this ``out_dir`` to finish or repair it), a chunk that belongs
      to another sweep, an edited or damaged record, a folder of the old npz format.
    """
    out_dir = Path(out_dir)
    rec = _store.read_record(out_dir)
    if rec is None:
        subs = {p.name: p for p in sorted(out_dir.iterdir())
                if (p / _store.GROUP).exists() or _store.is_old_format(p)} \
            if out_dir.is_dir() else {}
        if not subs:
            raise FileNotFoundError(f"no lens_jax sweep ({_store.GROUP}) in {out_dir} or "
                                    "its subfolders")
        return {name: load(p) for name, p in subs.items()}
    return _assemble(_store.load_chunks(out_dir, rec), rec["config"])


# ----------------------------------------------------------------------------------
# assembling results
# ----------------------------------------------------------------------------------

def _assemble(chunks: list[dict], config: dict) -> SweepResult:
    N, T = config["n_images"], config["T"]
    n = config["n_alpha"]
    H, W, C = config["image_shape"]
    lead = (N, T) if config["targets_2d"] else (N,)
    out = {}
    for name in _METRICS:
        v = np.concatenate([c[name] for c in chunks])
        if v.shape[0] != N * T:         # the store checks its layout; this is a bug guard
            raise AssertionError(f"chunks hold {v.shape[0]} pairs; expected {N * T}")
        out[name] = v.reshape(lead + v.shape[1:])
    keep = np.asarray(config["keep_frames"], np.int64)
    fr = np.concatenate([c["frames"] for c in chunks])
    fr = fr.reshape(((keep.size, T) if config["targets_2d"] else (keep.size,))
                    + (n, H, W, C))
    return SweepResult(frames=fr, frame_index=keep, info=dict(config), **out)
