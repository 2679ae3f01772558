"""Study orchestration and prose, outside the core library.

* :mod:`lens_jax.studies.job` -- the main job (``python -m lens_jax run``, ``make run``):
  classifiers, the gallery of morphs, measures, the natural-image panel, the report.
* :mod:`lens_jax.studies.protocol` -- the protocol study, ablations, the studies' figures
  and their command-line helpers (used by the scripts in ``experiments/``).

The core (``pyramid``, ``domains``, ``lens``, ``classifier``, ``sweep``, ``evaluate``, ...)
never imports this package; it imports the core.

``from lens_jax import studies; studies.protocol_study(...)`` keeps working: names of
:mod:`lens_jax.studies.protocol` are forwarded on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["job", "protocol"]


def __getattr__(name: str) -> Any:
    if name in ("job", "protocol", "reference"):
        return importlib.import_module(f".{name}", __name__)
    mod = importlib.import_module(".protocol", __name__)
    if name in mod.__all__:
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
