"""The one chunk / pad / trim loop of the package.

:func:`map_chunks` runs ``fn`` over the leading axis of a tuple of arrays in chunks of
one fixed size: the last chunk is padded (with its own first row) so every call has the
same shapes and compiles once, every chunk is dispatched before any result is read back
(JAX runs them asynchronously, one after the other on the device), and the padding is
trimmed from the concatenated results.  :func:`lens_jax.lens.map_batched`,
:func:`lens_jax.classifier.predict`, :mod:`lens_jax.evaluate`, :mod:`lens_jax.train`,
:mod:`lens_jax.adversarial` and the sweep use it; nothing else writes such a loop.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["map_chunks", "pad_index"]


def _count(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer or None; got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1; got {value}")
    return int(value)


def _concat(parts: Sequence[Any], n: int) -> Any:
    def cat(*p):
        if all(isinstance(x, np.ndarray) for x in p):
            return np.concatenate(p)[:n]
        return jnp.concatenate(p)[:n]
    return jax.tree.map(cat, *parts)


def pad_index(start: int, stop: int, rows: int) -> np.ndarray:
    """Row indices ``start .. stop-1`` padded to ``rows`` entries with ``start`` (the
    chunk's first row), so every call sees one shape; :func:`map_chunks` and the sweep's
    sharded chunks pad this way.

    >>> pad_index(4, 6, 4).tolist()
    [4, 5, 4, 4]
    """
    idx = np.arange(start, start + rows)
    return np.where(idx < stop, idx, start)


def map_chunks(fn: Callable[..., Any], arrays: Sequence[Any], *, chunk: int | None,
               progress: Callable[[int, int], Any] | None = None) -> Any:
    """``fn(*arrays)`` over the leading axis in chunks of ``chunk`` rows, concatenated.

    Args:
      fn: called as ``fn(*chunk_arrays)``; returns a pytree of arrays whose leading axis
        is the chunk's rows.
      arrays: arrays sharing their leading size ``n`` (NumPy or JAX); ``None`` entries
        are passed to ``fn`` as ``None``.
      chunk: rows per call.  ``None`` or ``>= n``: one call with all ``n`` rows.  The
        last chunk is padded with its first row so every call sees ``chunk`` rows (one
        compiled program); the padding is dropped from the result.
      progress: optional ``progress(done, n)``, called as each chunk's result is ready
        (all chunks are dispatched first).

    Returns:
      ``fn``'s pytree with the chunks concatenated along the leading axis (NumPy leaves
      stay NumPy; otherwise JAX arrays).

    Raises:
      ValueError: no array, arrays of different leading sizes, or ``chunk`` not a
        positive integer.

    >>> import numpy as np
    >>> map_chunks(lambda x: x * 2, (np.arange(5),), chunk=2).tolist()
    [0, 2, 4, 6, 8]
    >>> calls = []
    >>> out = map_chunks(lambda x, y: calls.append(x.shape) or {"s": x + y},
    ...                  (np.arange(5), np.ones(5)), chunk=3)
    >>> out["s"].tolist(), calls
    ([1.0, 2.0, 3.0, 4.0, 5.0], [(3,), (3,)])
    """
    arrays = tuple(arrays)
    present = [a for a in arrays if a is not None]
    if not present:
        raise ValueError("map_chunks needs at least one array")
    n = int(np.shape(present[0])[0]) if np.ndim(present[0]) else -1
    sizes = [int(np.shape(a)[0]) if np.ndim(a) else -1 for a in present]
    if n < 0 or any(s != n for s in sizes):
        raise ValueError(f"map_chunks arrays must share their leading size; got leading "
                         f"sizes {sizes}")
    if chunk is not None:
        chunk = _count("chunk", chunk)
    if chunk is None or chunk >= n:
        out = fn(*arrays)
        if progress is not None:
            jax.block_until_ready(out)
            progress(n, n)
        return out
    parts = []
    for i in range(0, n, chunk):
        idx = pad_index(i, n, chunk)                        # pad with the chunk's first row
        sel = idx if i + chunk > n else slice(i, i + chunk)
        parts.append(fn(*(None if a is None else a[sel] for a in arrays)))
    if progress is not None:
        for k, p in enumerate(parts):
            jax.block_until_ready(p)
            progress(min((k + 1) * chunk, n), n)
    return _concat(parts, n)
