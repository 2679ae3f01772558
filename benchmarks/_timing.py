"""Interleaved wall-clock timing shared by the benchmarks.

On a shared, noisy machine the load drifts during a run.  Timing implementation A for
all its repeats and then B lets that drift land on one of them; :func:`interleaved`
runs one call of each per round (A B C, C A B, B C A, ...), in a fresh (seeded) random
order every round, so drift, periodic background work and carry-over from the previous
call (e.g. torch's OpenMP threads still spinning after it returns) hit every contender
alike.  Quote the **median** and ratios of medians; "best" is the least disturbed run.

Every function must block until its work is done (for JAX wrap it with
:func:`blocking`, which calls ``jax.block_until_ready`` on the result).
"""
from __future__ import annotations

import os
import platform
import random
import statistics
import subprocess
import time
from typing import Any, Callable, Mapping, Sequence

__all__ = ["interleaved", "blocking", "summarize", "format_summary", "machine_info"]


def blocking(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` followed by ``jax.block_until_ready`` on its result (JAX is asynchronous)."""
    import jax

    def run(*args, **kwargs):
        return jax.block_until_ready(fn(*args, **kwargs))

    run.__name__ = getattr(fn, "__name__", "blocking")
    return run


def interleaved(funcs: Mapping[str, Callable[[], Any]], repeats: int = 20,
                warmup: int = 3, *, seed: int = 0) -> dict[str, list[float]]:
    """Time argument-less ``funcs`` interleaved; returns ``{name: [seconds, ...]}``.

    Each function first runs ``warmup`` times (compilation, caches, thread pools), also
    interleaved; then ``repeats`` rounds follow, each calling every function once in a
    random order (``random.Random(seed)``), so no function always follows the same one.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0; got {repeats}, {warmup}")
    names = list(funcs)
    for _ in range(warmup):
        for name in names:
            funcs[name]()
    rng = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            funcs[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def summarize(times: Mapping[str, Sequence[float]], *,
              speedup_over: Sequence[str] = (), relative_to: Sequence[str] = ()) -> list[dict]:
    """One row per function: median and best in ms, ``speedup_over`` ratios
    ``median(ref) / median(fn)`` (> 1: fn is faster) and ``relative_to`` ratios
    ``median(fn) / median(ref)`` (e.g. the cost over an FFT floor)."""
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for name, ts in times.items():
        row = {"name": name, "median_ms": 1e3 * med[name], "best_ms": 1e3 * min(ts),
               "n": len(ts)}
        for ref in speedup_over:
            if ref in med and ref != name:
                row[f"speedup_vs_{ref}"] = med[ref] / med[name]
        for ref in relative_to:
            if ref in med and ref != name:
                row[f"x_{ref}"] = med[name] / med[ref]
        rows.append(row)
    return rows


def format_summary(rows: Sequence[dict], title: str = "") -> str:
    """A plain-text table of :func:`summarize` rows."""
    ratio_keys: list[str] = []
    for row in rows:
        ratio_keys += [k for k in row if k.startswith(("speedup_vs_", "x_"))
                       and k not in ratio_keys]
    # "plenoptic/t": how many times faster than plenoptic; "t/floor": cost over a floor
    heads = {k: (k[len("speedup_vs_"):] + "/t" if k.startswith("speedup_vs_")
                 else "t/" + k[len("x_"):]) for k in ratio_keys}
    width = max([len(r["name"]) for r in rows] + [8])
    cols = [f"{'':<{width}}", f"{'median ms':>10}", f"{'best ms':>9}"] + \
        [f"{heads[k]:>{max(len(heads[k]), 8)}}" for k in ratio_keys]
    lines = [title] if title else []
    lines.append("  ".join(cols))
    for row in rows:
        cells = [f"{row['name']:<{width}}", f"{row['median_ms']:>10.2f}",
                 f"{row['best_ms']:>9.2f}"]
        for k in ratio_keys:
            w = max(len(heads[k]), 8)
            cells.append(f"{row[k]:>{w - 1}.2f}x" if k in row else f"{'':>{w}}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def machine_info() -> dict:
    """CPU model, core count, load average and library versions, for the record."""
    model = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.SubprocessError):
        pass
    info = {"cpu": model, "cores": os.cpu_count(),
            "loadavg": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    for mod in ("jax", "numpy", "torch", "plenoptic", "pyrtools"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:        # optional references
            pass
    return info
