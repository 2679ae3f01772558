"""Cache location and atomic writes shared by the whole package.

Every file lens_jax writes (datasets, checkpoints, sweep chunks, tables, figures)
goes through :func:`atomic_write` or one of its wrappers: the content is written to a
temporary file in the same directory, flushed, fsynced and renamed over the target,
so an interrupted run never leaves a truncated file behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

__all__ = ["cache_dir", "exclusive", "Busy", "atomic_write", "atomic_write_bytes",
           "atomic_write_text", "progress_bar", "LogProgress"]


def cache_dir(*parts: str) -> Path:
    """``$LENS_JAX_CACHE`` (default ``~/.cache/lens_jax``) joined with ``parts``, created."""
    root = os.environ.get("LENS_JAX_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "lens_jax")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


class Busy(RuntimeError):
    """Another process holds the lock that :func:`exclusive` was asked not to wait for."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is locked by another process{holder}")
        self.path, self.holder = path, holder


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, *, wait: bool, what: str = "") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (a folder, or a file; created when missing)
    for the block; the system releases it when the block ends or the process dies.

    ``wait=False``: a lock held elsewhere raises :class:`Busy` (naming the holder's process
    where the system tells it).  ``wait=True``: block until it is free, printing one line
    (``what`` names the work) to stderr first.  On a file system without locks (some NFS)
    a note is printed and the block runs unlocked."""
    path = Path(path)
    if path.suffix == ".lock":
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    else:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            if not wait:
                raise Busy(path, holder) from None
            print(f"lens_jax: waiting for process{holder or ' (another one)'}, which holds "
                  f"{path}{f' ({what})' if what else ''} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            fcntl.flock(fd, fcntl.LOCK_EX)
            print(f"lens_jax: {path} is free after {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
        except OSError as e:                # a file system without locks (some NFS)
            print(f"lens_jax: cannot lock {path} ({e}); make sure no other process "
                  f"writes it{f' ({what})' if what else ''}", file=sys.stderr, flush=True)
        yield
    finally:
        os.close(fd)                        # releases the lock


def _lock_holder(fd: int) -> str:
    """`` (process N on HOST)`` from /proc/locks for the locked inode (Linux); else ``""``."""
    with contextlib.suppress(OSError, ValueError):
        st = os.fstat(fd)
        want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == want:
                return f" (process {parts[4]} on {socket.gethostname()})"
    return ""


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


class LogProgress:
    """A progress report for logs: one plain line per ``step`` percent (or, without a
    total, per ``interval_s`` seconds) and one at the end; the subset of tqdm's interface
    lens_jax uses (``update``, ``set_postfix``, ``set_description``, ``close``, a context
    manager, ``n``, ``total``)."""

    def __init__(self, total: int | None = None, *, desc: str = "", stream: Any = None,
                 step: float = 10.0, interval_s: float = 60.0, initial: int = 0,
                 **_: Any):
        import sys
        import time
        self.total, self.desc, self.n = total, desc, int(initial)
        self.stream = sys.stderr if stream is None else stream
        self.step, self.interval_s = float(step), float(interval_s)
        self._clock = time.monotonic
        self._t0 = self._last_t = self._clock()
        self._last_pct = 0.0
        self._postfix = ""
        self.closed = False

    def _line(self) -> None:
        el = self._clock() - self._t0
        if self.total:
            pct = 100.0 * self.n / self.total
            text = f"{self.desc}: {pct:3.0f}% {self.n}/{self.total} [{el:.0f} s]"
        else:
            text = f"{self.desc}: {self.n} [{el:.0f} s]"
        print(text + (f" {self._postfix}" if self._postfix else ""), file=self.stream,
              flush=True)

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = self._clock()
        if self.total:
            pct = 100.0 * self.n / self.total
            if pct >= 100.0:
                return                   # the end is printed once, by close()
            if pct - self._last_pct >= self.step:
                self._last_pct = pct - pct % self.step
                self._last_t = now
                self._line()
        elif now - self._last_t >= self.interval_s:
            self._last_t = now
            self._line()

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self._postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: int | None = None, *, desc: str = "", stream: Any = None, **kwargs: Any):
    """The package's progress bar, suited to where it is written.

    On a terminal: a live tqdm bar (redrawn in place).  Elsewhere (stderr redirected to a
    log file, CI): :class:`LogProgress`, plain lines without carriage returns -- one per
    10% of ``total`` (or per minute without a total) and one at the end -- instead of
    the hundreds of redraws tqdm writes into a log.  ``kwargs`` go to tqdm (e.g. ``leave``,
    ``unit``, ``initial``; on a log only ``initial`` counts).

    >>> import io
    >>> log = io.StringIO()
    >>> with progress_bar(1000, desc="work", stream=log) as bar:
    ...     for _ in range(1000):
    ...         bar.update(1)
    >>> lines = log.getvalue().splitlines()
    >>> len(lines), lines[-1].startswith("work: 100% 1000/1000"), "\\r" in log.getvalue()
    (10, True, False)
    """
    import sys
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, file=stream, dynamic_ncols=True, **kwargs)
    return LogProgress(total, desc=desc, stream=stream, **kwargs)
