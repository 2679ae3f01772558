"""The on-disk store of a sweep: a Zarr v3 group written through TensorStore.

    out_dir/zarr.json        the group; its attributes: ``lens_jax`` (the record: format,
                             configuration + its hash, chunk size, the input hash of every
                             chunk, the classifier's fingerprint) and ``lens_jax_sha256``
                             (the digest of that record, checked on every open)
    out_dir/probs/ ...       one array per result (``probs``, ``logits``, ``l2``, ``alphas``,
                             ``reached``, ``max_change``, ``problem``, ``target``,
                             ``source``): leading axis the ``N * T`` pairs, one Zarr chunk
                             per sweep chunk, each with a crc32c checksum
    out_dir/frames/          the kept pairs' frames, one Zarr chunk per pair
    out_dir/probe_logits/    the classifier's logits at the probe images (fingerprint)
    out_dir/stamps/          ``(n_chunks, 32)`` uint8: chunk ``k``'s stamp, a digest of the
                             record and of every array's rows of chunk ``k``; written last,
                             so a chunk is finished exactly when its stamp verifies

The process writing the folder holds an exclusive ``flock`` on the folder itself.

Any Zarr v3 reader opens the arrays (``zarr.open_group(out_dir)["probs"][:]``); every
key is written atomically by TensorStore's key-value store (temporary file + rename).
A chunk is trusted only when its stamp matches: a chunk file from another sweep (other
domain, classifier or data), a bit flip (crc32c) or a half-written chunk is named on
resume and recomputed, and named by :func:`load_chunks` (a ``ValueError``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ._io import Busy, exclusive

FORMAT = "lens_jax.sweep/4"      # /4: Zarr v3 through TensorStore (/3: npz chunks + sweep.json)
GROUP = "zarr.json"
OLD_MANIFEST = "sweep.json"      # the /3 format's manifest
METRICS = ("probs", "logits", "l2", "alphas", "reached", "max_change", "problem", "target",
           "source")
ARRAYS = METRICS + ("frames", "probe_logits", "stamps")
_FIX = "use another out_dir, or resume=False to start this sweep afresh there"


# ----------------------------------------------------------------------------------
# hashes and fingerprints
# ----------------------------------------------------------------------------------

def hash_arrays(*arrays) -> str:
    """A digest of arrays' dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def config_hash(config: dict) -> str:
    return hashlib.blake2b(_canonical(config), digest_size=16).hexdigest()


def record_hash(record: dict) -> str:
    return hashlib.sha256(_canonical(record)).hexdigest()


def params_hash(leaves: list) -> str | None:
    """sha256 of a classifier's parameter leaves (``None`` when it has none)."""
    if not leaves:
        return None
    h = hashlib.sha256()
    for a in leaves:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def code_hash(jaxpr_text: str, consts: list) -> str:
    """sha256 of a classifier's traced program (function addresses masked, so the same
    code hashes alike in every process) and of the constants it holds."""
    h = hashlib.sha256(re.sub(r" at 0x[0-9a-fA-F]+", "", jaxpr_text).encode())
    h.update((params_hash(consts) or "").encode())
    return h.hexdigest()


def same_classifier(old: dict, old_logits: np.ndarray, new: dict, new_logits: np.ndarray,
                    path: Path) -> None:
    """Compare two fingerprints (``{"params": hash|None, "probe_index": [...]}`` and the
    probe logits); ValueError naming what differs."""
    if (old.get("params") is None) != (new.get("params") is None) or \
            old.get("params") != new.get("params"):
        then = "none" if old.get("params") is None else old["params"][:12] + "..."
        now = "none" if new.get("params") is None else new["params"][:12] + "..."
        raise ValueError(f"{path}: the classifier differs from the one that started this "
                         f"sweep (its parameters' sha256 {then} then, {now} now); {_FIX}")
    if old.get("code") != new.get("code"):
        raise ValueError(f"{path}: the classifier differs from the one that started this "
                         f"sweep (its traced program differs: other code or layers, or "
                         f"another JAX version); {_FIX}")
    a = np.asarray(old_logits, np.float64)
    b = np.asarray(new_logits, np.float64)
    if list(old["probe_index"]) != list(new["probe_index"]) or a.shape != b.shape:
        raise ValueError(f"{path}: the classifier's probe set differs; {_FIX}")
    finite = np.abs(a[np.isfinite(a)])
    scale = 1.0 + float(finite.max(initial=0.0))
    close = np.isclose(a, b, rtol=1e-3, atol=1e-3 * scale, equal_nan=True)
    close = close.reshape(len(a), -1).all(1)
    if not close.all():
        i = int(np.argmin(close))
        at = old["probe_index"][i]
        where = f"image {at}" if at >= 0 else f"random probe {-at - 1}"
        raise ValueError(f"{path}: the classifier differs from the one that started this "
                         f"sweep (logits at {where}: {a[i][:4]} then, {b[i][:4]} now); "
                         f"{_FIX}")


# ----------------------------------------------------------------------------------
# the folder: checks, lock, clearing
# ----------------------------------------------------------------------------------

def check_folder(path: Path) -> None:
    """``out_dir`` is a folder (or absent) and not a sweep of the old npz format."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out_dir={str(path)!r} is an existing file; give a folder path "
                         "(it is created if missing)")
    if is_old_format(path):
        raise ValueError(
            f"{path} holds a sweep in the old format ({OLD_MANIFEST} + chunk_*.npz, "
            f"lens_jax.sweep/3); this version stores sweeps as Zarr v3 ({FORMAT}).  Rerun "
            "the sweep with resume=False to replace it there (deletes the old chunks), or "
            "into another out_dir; a lens_jax release before the Zarr store still reads "
            "the old folder")


def is_old_format(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / OLD_MANIFEST).exists()
                              or any(path.glob("chunk_[0-9]*.npz")))


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the sweep folder ``path`` (created) while writing: a
    ``flock`` on the folder itself (no lock file, so the folder stays a clean Zarr
    hierarchy), released when the block ends or the process dies.  A second writer gets
    a ``RuntimeError`` naming the holder's process id where the system tells it."""
    try:
        with exclusive(path, wait=False, what="a sweep"):
            yield
    except Busy as e:
        raise RuntimeError(
            f"{e.path} is being written by another sweep{e.holder}; two writers would mix "
            "their chunks: wait for it to finish (then rerun to resume, or load it), "
            "or use another out_dir") from None


def clear(path: Path) -> None:
    """Delete a sweep's files (this format's or the old one's; nothing else) from ``path``.
    A Zarr group that is not a lens_jax sweep is left alone (ValueError)."""
    path = Path(path)
    if not path.is_dir():
        return
    with contextlib.suppress(OSError, UnicodeDecodeError, json.JSONDecodeError):
        meta = json.loads((path / GROUP).read_bytes())
        if isinstance(meta, dict) and "lens_jax" not in (meta.get("attributes") or {}):
            raise ValueError(f"{path} holds a Zarr group that is not a lens_jax sweep; "
                             "resume=False deletes only a sweep's own files: use another "
                             "out_dir")
    for p in path.iterdir():
        if p.name in ARRAYS and p.is_dir() and (p / GROUP).exists():
            shutil.rmtree(p)
        elif p.name.startswith("chunk_") and p.name.endswith(".npz"):
            p.unlink()
    (path / GROUP).unlink(missing_ok=True)
    (path / OLD_MANIFEST).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------
# TensorStore access
# ----------------------------------------------------------------------------------

def _ts():
    import tensorstore as ts
    return ts


_CONTEXT = None


def _context():
    """One TensorStore context without a cache: every read comes from the files."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = _ts().Context({"cache_pool": {"total_bytes_limit": 0}})
    return _CONTEXT


def kvstore(path: Path) -> dict:
    """The TensorStore key-value store of a sweep folder (a local folder today; any
    TensorStore kvstore spec works the same way)."""
    return {"driver": "file", "path": str(Path(path).resolve()) + "/"}


def _kv_sub(path: Path, name: str) -> dict:
    return {"driver": "file", "path": str((Path(path) / name).resolve()) + "/"}


def _short(e: BaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return msg[:300]


def layout(config: dict, chunk_size: int, n_chunks: int, n_probe: int) -> dict:
    """``{name: (shape, chunk shape)}`` of every array, from the configuration."""
    P = config["n_images"] * config["T"]
    n, K = config["n_alpha"], config["num_classes"]
    H, W, C = config["image_shape"]
    cs = int(chunk_size)
    out = {}
    for name in METRICS:
        if name in ("probs", "logits"):
            out[name] = ((P, n, K), (cs, n, K))
        elif name in ("target", "source", "problem"):
            out[name] = ((P,), (cs,))
        else:
            out[name] = ((P, n), (cs, n))
    n_kept = len(config["keep_frames"]) * config["T"]
    out["frames"] = ((n_kept, n, H, W, C), (1, n, H, W, C))
    out["probe_logits"] = ((n_probe, K), (max(n_probe, 1), K))
    out["stamps"] = ((n_chunks, 32), (1, 32))
    return out


def kept_pairs(config: dict) -> np.ndarray:
    """Sorted pair indices whose frames are kept (rows of ``frames``)."""
    T = config["T"]
    keep = np.asarray(config["keep_frames"], np.int64)
    return (keep[:, None] * T + np.arange(T)[None, :]).reshape(-1)


def _array_spec(path: Path, name: str, shape, chunks, dtype, attrs: dict | None) -> dict:
    meta = {"shape": list(shape),
            "chunk_grid": {"name": "regular",
                           "configuration": {"chunk_shape": [int(c) for c in chunks]}},
            "data_type": np.dtype(dtype).name, "fill_value": False
            if np.dtype(dtype) == bool else 0,
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                       {"name": "crc32c"}]}
    if attrs is not None:
        meta["attributes"] = attrs
    return {"driver": "zarr3", "kvstore": _kv_sub(path, name), "metadata": meta}


def _array_attrs(record_id: str, config_hash_: str) -> dict:
    return {"lens_jax_format": FORMAT, "lens_jax_record": record_id,
            "lens_jax_config_hash": config_hash_}


# ----------------------------------------------------------------------------------
# the group record
# ----------------------------------------------------------------------------------

def read_record(path: Path) -> dict | None:
    """The verified record of the sweep in ``path`` (``None`` if there is none).

    ValueError naming the file when the group metadata is unreadable, not a lens_jax
    sweep, or edited (its digest or its configuration hash does not match)."""
    path = Path(path)
    check_folder(path)
    f = path / GROUP
    if not f.exists():
        return None
    try:
        meta = json.loads(f.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{f} is damaged ({e}); delete the folder or rerun with "
                         "resume=False to start this sweep afresh") from None
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    rec = attrs.get("lens_jax") if isinstance(attrs, dict) else None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        fmt = rec.get("format") if isinstance(rec, dict) else None
        raise ValueError(f"{f} is not a {FORMAT} sweep (format {fmt!r}); {_FIX}")
    if attrs.get("lens_jax_sha256") != record_hash(rec):
        raise ValueError(f"{f}: the sweep's record does not match its sha256 (the file was "
                         f"edited or damaged); {_FIX}")
    try:
        chash = config_hash(rec["config"])
        if rec["config_hash"] != chash:
            raise ValueError(f"{f}: the configuration does not match its hash (edited or "
                             f"damaged); {_FIX}")
        for key in ("chunk_size", "n_chunks", "n_pairs"):
            int(rec[key])
        if len(rec["chunk_hashes"]) != int(rec["n_chunks"]) or \
                int(rec["n_chunks"]) != -(-int(rec["n_pairs"]) // int(rec["chunk_size"])):
            raise ValueError(f"{f}: n_chunks, n_pairs, chunk_size and chunk_hashes disagree "
                             f"(edited or damaged); {_FIX}")
    except (KeyError, TypeError) as e:
        raise ValueError(f"{f} is damaged (missing {e}); {_FIX}") from None
    return rec


def create(path: Path, record: dict, probe_logits: np.ndarray) -> None:
    """Write the group (with ``record``), the stamps and the probe logits."""
    ts = _ts()
    path = Path(path)
    rid = record_hash(record)
    lay = layout(record["config"], record["chunk_size"], record["n_chunks"],
                 len(probe_logits))
    attrs = _array_attrs(rid, record["config_hash"])
    for name, dtype, value in (("stamps", np.uint8, None),
                               ("probe_logits", np.float64, probe_logits)):
        shape, chunks = lay[name]
        t = ts.open(_array_spec(path, name, shape, chunks, dtype, attrs), create=True,
                    delete_existing=True, context=_context()).result()
        if value is not None and value.size:
            t.write(np.asarray(value, dtype)).result()
    group = {"zarr_format": 3, "node_type": "group",
             "attributes": {"lens_jax": record, "lens_jax_sha256": rid}}
    kv = ts.KvStore.open(kvstore(path), context=_context()).result()
    kv.write(GROUP, json.dumps(group, indent=1).encode()).result()   # last: the commit


def _open(path: Path, name: str, record: dict, rid: str):
    """Open array ``name`` of the sweep and check it belongs to this record."""
    ts = _ts()
    lay = layout(record["config"], record["chunk_size"], record["n_chunks"],
                 len(record["classifier"]["probe_index"]))
    try:
        t = ts.open({"driver": "zarr3", "kvstore": _kv_sub(path, name)}, open=True,
                    context=_context()).result()
    except ValueError as e:
        if "NOT_FOUND" in str(e):
            return None
        raise ValueError(f"{Path(path) / name / GROUP} is damaged ({_short(e)}); "
                         f"{_FIX}") from None
    attrs = t.spec().to_json().get("metadata", {}).get("attributes", {})
    shape, _ = lay[name]
    if attrs.get("lens_jax_record") != rid or tuple(t.shape) != tuple(shape):
        raise ValueError(f"{Path(path) / name}: the array belongs to another sweep or was "
                         f"edited (shape {tuple(t.shape)}, expected {tuple(shape)}); {_FIX}")
    return t


def probe_logits(path: Path, record: dict) -> np.ndarray:
    t = _open(path, "probe_logits", record, record_hash(record))
    if t is None:
        raise ValueError(f"{path}: probe_logits is missing; {_FIX}")
    try:
        return np.asarray(t.read().result())
    except ValueError as e:
        raise ValueError(f"{Path(path) / 'probe_logits'} is damaged ({_short(e)}); "
                         f"{_FIX}") from None


# ----------------------------------------------------------------------------------
# chunks
# ----------------------------------------------------------------------------------

def pair_range(k: int, chunk_size: int, n_pairs: int) -> tuple[int, int]:
    return k * chunk_size, min((k + 1) * chunk_size, n_pairs)


def _kept_rows(record: dict, k: int) -> tuple[int, int]:
    """Rows ``[a, b)`` of ``frames`` that belong to chunk ``k``."""
    kp = kept_pairs(record["config"])
    s, e = pair_range(k, int(record["chunk_size"]), int(record["n_pairs"]))
    return int(np.searchsorted(kp, s)), int(np.searchsorted(kp, e))


def stamp(rid: str, k: int, arrays: dict) -> np.ndarray:
    """Chunk ``k``'s stamp: a digest of the record and of the chunk's arrays."""
    h = hashlib.blake2b(digest_size=32)
    h.update(f"{rid}:{k}".encode())
    for name in METRICS + ("frames",):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return np.frombuffer(h.digest(), np.uint8)


class Writer:
    """Writes the chunks of one sweep (process 0 only, under :func:`lock`)."""

    def __init__(self, path: Path, record: dict):
        self.path, self.record, self.rid = Path(path), record, record_hash(record)
        self.arrays: dict = {}

    def _array(self, name, dtype):
        if name not in self.arrays:
            ts = _ts()
            shape, chunks = layout(self.record["config"], self.record["chunk_size"],
                                   self.record["n_chunks"],
                                   len(self.record["classifier"]["probe_index"]))[name]
            spec = _array_spec(self.path, name, shape, chunks, dtype,
                               _array_attrs(self.rid, self.record["config_hash"]))
            try:
                t = ts.open(spec, create=True, open=True, context=_context()).result()
            except ValueError as e:          # e.g. another dtype than this run computes
                raise ValueError(f"{self.path / name} does not fit this sweep's results "
                                 f"({_short(e)}); {_FIX}") from None
            self.arrays[name] = t
        return self.arrays[name]

    def write(self, k: int, arrays: dict) -> None:
        """Write chunk ``k`` (``arrays``: every metric's rows of the chunk and the kept
        frames of its pairs); the stamp last."""
        s, e = pair_range(k, int(self.record["chunk_size"]), int(self.record["n_pairs"]))
        a, b = _kept_rows(self.record, k)
        if arrays["frames"].shape[0] != b - a:
            raise ValueError(f"chunk {k} has {arrays['frames'].shape[0]} kept pairs' frames; "
                             f"expected {b - a}")
        futures = [self._array(name, arrays[name].dtype)[s:e].write(arrays[name])
                   for name in METRICS]
        if b > a:
            futures.append(self._array("frames", arrays["frames"].dtype)[a:b]
                           .write(arrays["frames"]))
        for f in futures:
            f.result()
        self._array("stamps", np.uint8)[k].write(stamp(self.rid, k, arrays)).result()


def _read_chunk(path: Path, record: dict, rid: str, k: int, opened: dict) -> dict:
    """Chunk ``k``'s arrays, verified against its stamp; ValueError naming the chunk."""
    s, e = pair_range(k, int(record["chunk_size"]), int(record["n_pairs"]))
    a, b = _kept_rows(record, k)
    where = f"{path}: chunk {k} (pairs {s}..{e - 1})"
    if opened.get("stamps") is None:
        raise ValueError(f"{where} is missing")
    futures = {"stamps": opened["stamps"][k].read()}
    for name in METRICS:
        if opened.get(name) is None:
            raise ValueError(f"{where} is missing ({name} was never written)")
        futures[name] = opened[name][s:e].read()
    if b > a and opened.get("frames") is None:
        raise ValueError(f"{where} is missing (frames were never written)")
    futures["frames"] = opened["frames"][a:b].read() if b > a else None
    out = {}
    for name, f in futures.items():
        try:
            out[name] = None if f is None else np.asarray(f.result())
        except ValueError as err:
            raise ValueError(f"{where} is damaged: {name} ({_short(err)})") from None
    if out["frames"] is None:
        H, W, C = record["config"]["image_shape"]
        dt = opened["frames"].dtype.numpy_dtype if opened.get("frames") is not None \
            else np.dtype(record["config"]["compute_dtype"])
        out["frames"] = np.zeros((0, record["config"]["n_alpha"], H, W, C), dt)
    st = out.pop("stamps")
    if not st.any():
        raise ValueError(f"{where} is missing (not finished)")
    if not np.array_equal(st, stamp(rid, k, out)):
        raise ValueError(f"{where} does not match its stamp: its files come from another "
                         "sweep (another domain, classifier or data), were edited, or were "
                         "left half-written")
    return out


def _open_all(path: Path, record: dict, rid: str) -> dict:
    return {name: _open(path, name, record, rid) for name in METRICS + ("frames", "stamps")}


def scan(path: Path, record: dict) -> np.ndarray:
    """Which chunks are finished and valid (resume): a damaged or foreign chunk is named
    on stderr and will be recomputed."""
    rid = record_hash(record)
    n_chunks = int(record["n_chunks"])
    done = np.zeros(n_chunks, bool)
    opened = _open_all(path, record, rid)
    if opened["stamps"] is None:
        return done
    try:
        stamps = np.asarray(opened["stamps"].read().result())
    except ValueError:
        stamps = np.ones((n_chunks, 32), np.uint8)      # damaged: check chunk by chunk
    for k in range(n_chunks):
        if not stamps[k].any():
            continue                                    # never finished: no message
        try:
            _read_chunk(path, record, rid, k, opened)
            done[k] = True
        except ValueError as e:
            print(f"lens_jax.sweep: {e}; recomputing chunk {k}", file=sys.stderr, flush=True)
    return done


def load_chunks(path: Path, record: dict) -> list[dict]:
    """Every chunk of a finished sweep, each verified (ValueError naming the first bad or
    missing one)."""
    rid = record_hash(record)
    n_chunks = int(record["n_chunks"])
    opened = _open_all(path, record, rid)
    stamps = np.zeros((n_chunks, 32), np.uint8)
    if opened["stamps"] is not None:
        with contextlib.suppress(ValueError):
            stamps = np.asarray(opened["stamps"].read().result())
    missing = [k for k in range(n_chunks) if not stamps[k].any()]
    if missing:
        raise ValueError(f"{path}: sweep incomplete, {len(missing)} of {n_chunks} chunks "
                         f"missing (first: {missing[:5]}); rerun the sweep with this "
                         "out_dir to finish it")
    chunks = []
    for k in range(n_chunks):
        try:
            chunks.append(_read_chunk(path, record, rid, k, opened))
        except ValueError as e:
            raise ValueError(f"{e}; rerun the sweep with this out_dir to recompute it") \
                from None
    return chunks


# ----------------------------------------------------------------------------------
# resume checks
# ----------------------------------------------------------------------------------

def check_resume(record: dict, config: dict, chash: str, chunk_size, path: Path) -> int:
    """Validate a stored record against this call's configuration; its chunk size."""
    if record["config_hash"] != chash:
        old = record["config"]
        diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        raise ValueError(f"{path} holds a different sweep (differs in: {', '.join(diff)}); "
                         f"{_FIX}")
    if chunk_size is not None and int(chunk_size) != int(record["chunk_size"]):
        raise ValueError(f"{path} was written with chunk_size={record['chunk_size']}; "
                         f"got chunk_size={chunk_size} (omit it to resume)")
    return int(record["chunk_size"])


def check_inputs(record: dict, hashes: list[str], path: Path) -> None:
    old = record["chunk_hashes"]
    bad = [k for k, (h0, h1) in enumerate(zip(old, hashes)) if h0 != h1]
    if bad or len(old) != len(hashes):
        raise ValueError(
            f"{path}: the images, targets or sources differ from those that started this "
            f"sweep (chunks {bad[:5]}{' ...' if len(bad) > 5 else ''}); {_FIX}")
