"""Tables and run records: markdown, CSV and JSON, written atomically.

>>> print(markdown_table([{"a": 1, "b": 0.123456}]))
| a | b |
|---:|---:|
| 1 | 0.1235 |
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._io import atomic_write, atomic_write_text

__all__ = ["plain", "markdown_table", "html_table", "write_tables", "write_csv",
           "save_json", "read_json", "save_text", "save_npz", "record_command"]


def plain(v: Any) -> Any:
    """A JSON/CSV-friendly value: NumPy scalars and arrays to Python, NaN to None,
    paths to strings; dicts, lists and tuples converted recursively."""
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return plain(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def scalar(v: Any) -> Any:
    """A NumPy/JAX value as a Python scalar (size 1) or list; anything else as is."""
    if isinstance(v, np.ndarray) or type(v).__module__.startswith("jax"):
        a = np.asarray(v)
        return a.item() if a.size == 1 else a.tolist()
    return v


def is_number(v: Any) -> bool:
    """True for ints and floats (NumPy's too), not for bools."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_))


def format_cell(v: Any, floatfmt: str) -> str:
    """One table cell as text: empty for None, floats with ``floatfmt``."""
    v = scalar(v)
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return format(float(v), floatfmt)
    return str(v)


def _columns(rows: Sequence[Mapping], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    return list(dict.fromkeys(k for r in rows for k in r))


def _numeric_columns(rows: Sequence[Mapping], cols: Sequence[str]) -> dict[str, bool]:
    """Columns whose present values are all numbers (right-aligned)."""
    out = {}
    for c in cols:
        vals = [scalar(r.get(c)) for r in rows if scalar(r.get(c)) is not None]
        out[c] = bool(vals) and all(is_number(v) for v in vals)
    return out


def markdown_table(rows: Sequence[Mapping], *, columns: Sequence[str] | None = None,
                   floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured markdown table of ``rows`` (dicts); the one table renderer
    of lens_jax (:func:`html_table` is the same table as HTML).

    Columns default to the keys in order of first appearance; a missing key or None is an
    empty cell; floats use ``floatfmt`` (NaN -> "nan"); numeric columns are right-aligned
    (``---:``); "|" in text is escaped and newlines become spaces.  No trailing newline.
    """
    cols = _columns(rows, columns)
    if not cols:
        return ""

    def text(v: Any) -> str:
        return format_cell(v, floatfmt).replace("|", "\\|").replace("\n", " ")

    num = _numeric_columns(rows, cols)
    lines = ["| " + " | ".join(text(c) for c in cols) + " |",
             "|" + "|".join("---:" if num[c] else "---" for c in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(text(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def html_table(rows: Sequence[Mapping], *, columns: Sequence[str] | None = None,
               floatfmt: str = ".4g", numeric_class: str | None = None) -> str:
    """The table of :func:`markdown_table` as escaped HTML.  Numeric columns are
    right-aligned: inline, or with ``numeric_class`` by that CSS class (the report page)."""
    if isinstance(rows, Mapping) or not all(isinstance(r, Mapping) for r in rows):
        raise TypeError("table rows must be a sequence of dicts")
    cols = _columns(rows, columns)
    num = _numeric_columns(rows, cols)

    def attr(c: str) -> str:
        if not num[c]:
            return ""
        return f" class={numeric_class}" if numeric_class else ' style="text-align:right"'

    scope = ' scope="col"' if numeric_class else ""
    head = "".join(f"<th{scope}{attr(c) if numeric_class else ''}>{html.escape(str(c))}</th>"
                   for c in cols)
    body = ["<tr>" + "".join(f"<td{attr(c)}>{html.escape(format_cell(r.get(c), floatfmt))}"
                             "</td>" for c in cols) + "</tr>" for r in rows]
    return ("<table>\n<thead><tr>" + head + "</tr></thead>\n<tbody>\n"
            + "\n".join(body) + "\n</tbody>\n</table>")


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping], *,
              columns: Sequence[str] | None = None) -> Path:
    """``rows`` as CSV (header = the union of keys, or ``columns``), atomically."""
    cols = _columns(rows, columns)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: plain(r.get(k)) for k in cols})
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as JSON (NaN as null), atomically; read back and checked."""
    text = json.dumps(plain(obj), indent=1, allow_nan=False) + "\n"
    atomic_write_text(path, text)
    if Path(path).read_text() != text:
        raise OSError(f"{path} does not read back as written")
    return Path(path)


def save_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` to ``path`` atomically (a crash leaves the old file or the new, never half)."""
    atomic_write_text(path, text)
    return Path(path)


def save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """``arrays`` as a compressed ``.npz`` file, atomically (read it back with ``np.load``,
    which refuses object arrays by default)."""
    with atomic_write(path) as f:
        np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file written by :func:`save_json`; a damaged file raises ValueError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it and rerun") from None


def write_tables(rows: Sequence[Mapping], stem: str | os.PathLike, *,
                 columns: Sequence[str] | None = None, floatfmt: str = ".4g"
                 ) -> dict[str, Path]:
    """``stem.md`` (markdown, ``columns`` only), ``stem.csv`` (``columns``) and
    ``stem.json`` (every key); atomically.  Returns ``{"md", "csv", "json"}`` paths."""
    stem = Path(stem)
    paths = {k: stem.with_name(stem.name + "." + k) for k in ("md", "csv", "json")}
    # the .md says what the .csv and .json say: a non-finite value is an empty cell
    atomic_write_text(paths["md"], markdown_table([plain(dict(r)) for r in rows], columns=columns,
                                                  floatfmt=floatfmt) + "\n")
    write_csv(paths["csv"], rows, columns=columns)
    save_json(paths["json"], list(rows))
    return paths


def record_command(out_dir: str | os.PathLike, wall_s: float, *,
                   argv: Sequence[str] | None = None) -> Path:
    """``out_dir/command.txt``: the command (``argv``, default ``sys.argv``), wall time,
    host, backend and date, so every table can be traced to the run that made it.

    Runs that resume or add to a folder keep its history: an existing ``command.txt``
    follows the new record under ``Earlier runs into this folder`` (newest first)."""
    argv = list(sys.argv if argv is None else argv)
    cmd = " ".join(shlex.quote(str(a)) for a in argv)
    if argv and str(argv[0]).endswith(".py"):
        cmd = "python " + cmd
    try:
        import jax
        backend = f"jax {jax.__version__} on {jax.default_backend()}"
    except Exception:  # noqa: BLE001 - jax is always present in practice
        backend = "jax unavailable"
    path = Path(out_dir) / "command.txt"
    record = (f"command: {cmd}\ncwd: {os.getcwd()}\nwall_s: {wall_s:.1f}\n"
              f"host: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
              f"python {platform.python_version()}\nbackend: {backend}\n"
              f"date: {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    old = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    if old.strip():
        last, _, earlier = old.partition(_EARLIER)
        record += _EARLIER + last.strip("\n") + "\n" + (f"\n{earlier}" if earlier else "")
    atomic_write_text(path, record)
    return path


_EARLIER = "\nEarlier runs into this folder (newest first):\n\n"
