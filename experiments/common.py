"""Shared plumbing for the scripts in ``experiments/`` (kept small and stable).

Every experiment is a ``main(argv=None)`` that:

    args = experiment_args("what it studies", out="outputs/NAME", n=32)
    with Timer() as t:
        ...  # call the library, write tables and figures under args.out
    record_command(args.out, t.wall_s)

``record_command`` writes ``command.txt`` (the exact command line and its wall time) into the
output folder, so every table in a README can be traced to the command that made it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

__all__ = ["experiment_args", "Timer", "record_command", "repo_root", "load_model",
           "write_rows"]


def repo_root() -> Path:
    """The repository root (the folder above ``experiments/``)."""
    return Path(__file__).resolve().parent.parent


def _parse_value(text: str, like):
    if isinstance(like, bool):
        return text.lower() in ("1", "true", "yes", "y", "on")
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text)
    return text


def experiment_args(description: str, argv=None, **defaults) -> argparse.Namespace:
    """Parse the common flags plus one ``--name`` flag per keyword default.

    Always present: ``--out DIR`` (default ``outputs/<script name>``), ``--quick`` (a tiny
    version, used by smoke tests), ``--seed`` (default 0). Every other keyword becomes a
    flag whose type follows its default (``n=32`` gives ``--n INT``; booleans take
    ``--flag``/``--no-flag``; underscores become dashes). ``argv`` defaults to ``sys.argv[1:]``.
    """
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "experiment"
    out_default = defaults.pop("out", f"outputs/{script}")
    seed_default = defaults.pop("seed", 0)
    quick_default = defaults.pop("quick", False)
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=out_default, help=f"output folder (default {out_default})")
    p.add_argument("--quick", action="store_true", default=quick_default,
                   help="tiny sizes for smoke tests")
    p.add_argument("--seed", type=int, default=seed_default, help=f"seed (default {seed_default})")
    for name, value in defaults.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=value,
                           help=f"(default {value})")
        elif value is None:
            p.add_argument(flag, dest=name, default=None, help="(default None)")
        else:
            p.add_argument(flag, dest=name, type=lambda s, v=value: _parse_value(s, v),
                           default=value, help=f"(default {value})")
    args = p.parse_args(sys.argv[1:] if argv is None else list(argv))
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


class Timer:
    """Wall-clock timer: ``with Timer() as t: ...``; then ``t.wall_s`` (also live while inside)."""

    def __init__(self):
        self.start = None
        self.end = None

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.end = None
        return self

    def __exit__(self, *exc) -> None:
        self.end = time.perf_counter()

    @property
    def wall_s(self) -> float:
        if self.start is None:
            return 0.0
        return (self.end if self.end is not None else time.perf_counter()) - self.start


def record_command(out_dir, wall_s: float, argv=None) -> Path:
    """Write ``out_dir/command.txt``: the exact command, wall time, host; returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if argv is None and os.environ.get("LENS_JAX_EXPERIMENT_COMMAND"):
        cmd = os.environ["LENS_JAX_EXPERIMENT_COMMAND"]     # set by `python -m lens_jax experiment`
    else:
        argv = list(sys.argv if argv is None else argv)
        cmd = " ".join(shlex.quote(a) for a in argv)
        if argv and argv[0].endswith(".py"):
            cmd = "python " + cmd
    try:
        import jax
        backend = f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind})"
    except Exception:  # pragma: no cover - jax always present in practice
        backend = "jax unavailable"
    text = (
        f"command: {cmd}\n"
        f"cwd: {os.getcwd()}\n"
        f"wall_s: {wall_s:.1f}\n"
        f"host: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}\n"
        f"backend: {backend}\n"
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
    )
    path = out / "command.txt"
    path.write_text(text)
    return path


def load_model(model: str, dataset: str, *, quick: bool = False, seed: int = 0,
               epochs: int | None = None, quick_epochs: int = 1):
    """``lens_jax.train.load_or_train`` with a separate cache for ``--quick`` models.

    Quick models (``quick_epochs`` epochs) live under ``$LENS_JAX_CACHE/quick`` so a smoke
    test never replaces a fully trained model. Returns ``(logits_fn, params, info)``.
    """
    from lens_jax import train
    from lens_jax._io import cache_dir
    if quick:
        return train.load_or_train(model, dataset, epochs=quick_epochs, seed=seed,
                                   cache=cache_dir("quick"), progress=False)
    return train.load_or_train(model, dataset, epochs=epochs, seed=seed)


def write_rows(rows, stem, columns=None, *, floatfmt: str = ".4g") -> dict:
    """Write ``rows`` (list of dicts) as ``stem.md``, ``stem.csv`` and ``stem.json``."""
    from lens_jax.cli import write_tables
    return write_tables(rows, Path(stem), columns, floatfmt=floatfmt)
