"""The on-disk store of a :func:`lens_jax.sweep`: a manifest, one file per chunk, hashes.

    out_dir/sweep.json          format, configuration + its hash, chunk size, the input
                                hash of every chunk, the classifier's fingerprint
    out_dir/chunk_NNNNNN.npz    one chunk's arrays, its index, its pair range [s, e) and
                                the hash of its inputs (written atomically)

Every chunk is checked when it is read: it must be a readable zip whose members pass
their CRC, and carry the index, pair range and input hash the manifest expects, so a
chunk file copied over another, truncated or bit-flipped is named, never loaded as
someone else's rows.  On resume a damaged chunk is reported on stderr and recomputed;
:func:`load_chunks` raises a ``ValueError`` naming it.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_save_json, atomic_save_npz

MANIFEST = "sweep.json"
FORMAT = "lens_jax.sweep/3"      # /3: chunks carry index + pair range; classifier fingerprint
_CHUNK_RE = re.compile(r"^chunk_(\d{6})\.npz$")
# keys of a chunk file that describe it rather than hold results
_CHUNK_META = ("input_hash", "chunk_index", "pairs")


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


def config_hash(config: dict) -> str:
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


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


def same_classifier(old: dict, new: dict, path: Path) -> None:
    """Compare two fingerprints ``{"params": hash|None, "probe_index": [...],
    "probe_logits": [...]}``; ValueError naming what differs."""
    fix = "use another out_dir, or resume=False to start afresh there"
    if old.get("params") is not None and new.get("params") is not None \
            and old["params"] != new["params"]:
        raise ValueError(f"{path}: the classifier differs from the one that started this "
                         f"sweep (its parameters' sha256 {old['params'][:12]}... then, "
                         f"{new['params'][:12]}... now); {fix}")
    a = np.asarray(old["probe_logits"], np.float64)
    b = np.asarray(new["probe_logits"], np.float64)
    if list(old["probe_index"]) != list(new["probe_index"]) or a.shape != b.shape:
        raise ValueError(f"{path}: the classifier's probe set differs ({fix})")
    scale = 1.0 + float(np.max(np.abs(a)))
    close = np.isclose(a, b, rtol=1e-3, atol=1e-3 * scale).reshape(len(a), -1).all(1)
    if not close.all():
        i = int(np.argmin(close))
        img = old["probe_index"][i]
        raise ValueError(f"{path}: the classifier differs from the one that started this "
                         f"sweep (logits at image {img}: {a[i][:4]} then, {b[i][:4]} now); "
                         f"{fix}")


# ----------------------------------------------------------------------------------
# manifest
# ----------------------------------------------------------------------------------

def chunk_path(out_dir: Path, k: int) -> Path:
    return Path(out_dir) / f"chunk_{k:06d}.npz"


def read_manifest(out_dir: Path) -> dict | None:
    """The manifest in ``out_dir`` (``None`` if there is none); ValueError if unreadable."""
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        man = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is damaged ({e}); delete the folder or rerun with "
                         "resume=False to start this sweep afresh") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        fmt = man.get("format") if isinstance(man, dict) else None
        raise ValueError(f"{path} is not a {FORMAT} sweep manifest (format {fmt!r}); use "
                         "another out_dir, or resume=False to start afresh there")
    return man


def write_manifest(out_dir: Path, **fields: Any) -> None:
    atomic_save_json(Path(out_dir) / MANIFEST, {"format": FORMAT, **fields})


def clear(out_dir: Path) -> None:
    """Delete a sweep's manifest and chunks (nothing else) from ``out_dir``."""
    out_dir = Path(out_dir)
    for p in out_dir.iterdir():
        if _CHUNK_RE.match(p.name):
            p.unlink()
    (out_dir / MANIFEST).unlink(missing_ok=True)


def check_resume(man: dict, config: dict, chash: str, chunk_size, path: Path) -> int:
    """Validate a stored manifest against this call's configuration; its chunk size."""
    if man["config_hash"] != chash:
        old = man["config"]
        diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        raise ValueError(
            f"{path} holds a different sweep (differs in: {', '.join(diff)}); use another "
            "out_dir, or resume=False to start this sweep afresh there")
    if chunk_size is not None and int(chunk_size) != man["chunk_size"]:
        raise ValueError(f"{path} was written with chunk_size={man['chunk_size']}; "
                         f"got chunk_size={chunk_size} (omit it to resume)")
    return int(man["chunk_size"])


def check_inputs(man: dict, hashes: list[str], path: Path) -> None:
    bad = [k for k, (h0, h1) in enumerate(zip(man["chunk_hashes"], hashes)) if h0 != h1]
    if bad or len(man["chunk_hashes"]) != len(hashes):
        raise ValueError(
            f"{path}: the images, targets or sources differ from those that started this "
            f"sweep (chunks {bad[:5]}{' ...' if len(bad) > 5 else ''}); use another out_dir "
            "or resume=False")


# ----------------------------------------------------------------------------------
# chunks
# ----------------------------------------------------------------------------------

def pair_range(k: int, chunk_size: int, n_pairs: int) -> tuple[int, int]:
    return k * chunk_size, min((k + 1) * chunk_size, n_pairs)


def write_chunk(out_dir: Path, k: int, arrays: dict, *, input_hash: str,
                pairs: tuple[int, int]) -> None:
    arrays = {n: v for n, v in arrays.items() if n not in _CHUNK_META}
    atomic_save_npz(chunk_path(out_dir, k), input_hash=np.array(input_hash),
                    chunk_index=np.array(k, np.int64),
                    pairs=np.array(pairs, np.int64), **arrays)


def read_chunk(path: Path, k: int, *, pairs: tuple[int, int], input_hash: str) -> dict:
    """Every array of chunk ``k``, checked; ValueError naming the file if it is damaged
    (unreadable, bad CRC, truncated) or is not chunk ``k`` of this sweep."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {name: z[name] for name in z.files}      # reads (and CRCs) every member
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{path} is damaged ({type(e).__name__}: {e})") from None
    missing = [m for m in _CHUNK_META if m not in data]
    if missing:
        raise ValueError(f"{path} is damaged or not a sweep chunk (no {missing})")
    got_k = int(data["chunk_index"])
    got = tuple(int(v) for v in np.asarray(data["pairs"]).reshape(-1)[:2])
    if got_k != k or got != tuple(pairs):
        raise ValueError(f"{path} holds chunk {got_k} (pairs {got[0]}..{got[1] - 1}); "
                         f"expected chunk {k} (pairs {pairs[0]}..{pairs[1] - 1}): the file "
                         "was copied or renamed")
    if str(data["input_hash"]) != input_hash:
        raise ValueError(f"{path} was computed from other inputs than this sweep's chunk {k}")
    n = pairs[1] - pairs[0]
    short = [name for name, v in data.items()
             if name not in _CHUNK_META + ("frames", "frame_pairs") and len(v) != n]
    if short:
        raise ValueError(f"{path}: {short} do not hold the chunk's {n} pairs")
    return {name: v for name, v in data.items() if name not in ("input_hash", "chunk_index")}


def scan(out_dir: Path, man: dict) -> np.ndarray:
    """Which chunks are present and valid (resume): a damaged or foreign chunk is named on
    stderr and will be recomputed."""
    n_chunks, cs, n_pairs = int(man["n_chunks"]), int(man["chunk_size"]), int(man["n_pairs"])
    done = np.zeros(n_chunks, bool)
    for k in range(n_chunks):
        path = chunk_path(out_dir, k)
        if not path.exists():
            continue
        try:
            read_chunk(path, k, pairs=pair_range(k, cs, n_pairs),
                       input_hash=man["chunk_hashes"][k])
            done[k] = True
        except ValueError as e:
            print(f"lens_jax.sweep: {e}; recomputing chunk {k}", file=sys.stderr, flush=True)
    return done


def load_chunks(out_dir: Path, man: dict) -> list[dict]:
    """All chunks of a finished sweep, each checked (ValueError naming the first bad one)."""
    n_chunks, cs, n_pairs = int(man["n_chunks"]), int(man["chunk_size"]), int(man["n_pairs"])
    missing = [k for k in range(n_chunks) if not chunk_path(out_dir, k).exists()]
    if missing:
        raise ValueError(f"{out_dir}: sweep incomplete, {len(missing)} of {n_chunks} chunks "
                         f"missing (first: {missing[:5]}); rerun sweep() with this out_dir "
                         "to finish it")
    chunks = []
    for k in range(n_chunks):
        try:
            chunks.append(read_chunk(chunk_path(out_dir, k), k,
                                     pairs=pair_range(k, cs, n_pairs),
                                     input_hash=man["chunk_hashes"][k]))
        except ValueError as e:
            raise ValueError(f"{e}; rerun sweep() with this out_dir to recompute it") from None
    return chunks
