"""Cache location and atomic writes shared by the whole package.

Every file lens_jax writes (datasets, checkpoints, sweep chunks, tables, figures)
goes through :func:`atomic_write` or one of its wrappers: the content is written to a
temporary file in the same directory, flushed, fsynced and renamed over the target,
so an interrupted run never leaves a truncated file behind.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = ["cache_dir", "atomic_write", "atomic_write_bytes", "atomic_write_text",
           "atomic_save_npz", "atomic_save_json"]


def cache_dir(*parts: str) -> Path:
    """``$LENS_JAX_CACHE`` (default ``~/.cache/lens_jax``) joined with ``parts``, created."""
    root = os.environ.get("LENS_JAX_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "lens_jax")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)          # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """``np.savez`` to ``path`` atomically (object arrays are refused on load anyway)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
