"""Schedules of a morph: which amplifications the frames sit at, parsed and checked once.

A morph's frames are ``render(-alpha_i * g)`` for a schedule of ``alpha_i``, given one
of four ways (:meth:`Schedule.parse`):

==============  =============================================================================
``alphas``      raw amplification factors ``(n,)`` (cumulative step sizes in live modes)
``step_cap``    ``n_frames`` frames whose edit parameters change by at most ``step_cap``
                per frame (radians for phases)
``budget``      a scalar ``l2_budget``: ``n_frames`` frames from the source to the frame at
                image-space L2 distance ``B``
``budgets``     a 1-D ``l2_budget``: one frame per budget (matched image change)
==============  =============================================================================

With none given the schedule is ``step_cap`` with a final change of the domain's
``final_change`` (its registry entry) over ``n_frames`` frames.

:func:`budget_alphas` finds the amplification reaching an L2 budget.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .checks import check_count
from .domains import REGISTRY, Domain, RegistryView

__all__ = ["Schedule", "budget_alphas", "implicit_alphas", "KINDS", "DEFAULT_FINAL_CHANGE"]

KINDS = ("alphas", "step_cap", "budget", "budgets")

_GRID = 1e-4 * 2.0 ** np.arange(30)     # budget search: max parameter change per frame
_BISECT_ITERS = 24                       # bracket [a, 2a] -> relative width 6e-8


#: The automatic schedule's final change per domain (a view of the registry entries'
#: ``final_change``; kept for compatibility).
DEFAULT_FINAL_CHANGE = RegistryView("final_change")


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class Schedule(NamedTuple):
    """A validated schedule (build it with :meth:`Schedule.parse`).

    Attributes:
      kind: one of :data:`KINDS`.
      alphas: ``(n,)`` raw alphas (``kind == "alphas"``), else None.
      step_cap: scalar cap per frame (``kind == "step_cap"``), else None.
      budgets: ``(m,)`` L2 budgets (``"budget"``: one; ``"budgets"``: one per frame).
      n_frames: frame count for ``step_cap`` and ``budget`` (steps of live budget
        searches); the output has ``n_frames`` frames for those kinds, ``len(alphas)``
        or ``len(budgets)`` frames otherwise.
      auto: True when no schedule was given (``step_cap`` from the domain).
    """
    kind: str
    alphas: Any
    step_cap: Any
    budgets: Any
    n_frames: int
    auto: bool = False

    @property
    def length(self) -> int:
        """Number of frames the schedule gives."""
        if self.kind == "alphas":
            return int(self.alphas.shape[0])
        if self.kind == "budgets":
            return int(self.budgets.shape[0])
        return self.n_frames

    def arrays(self) -> tuple:
        """``(alphas, budgets, step_cap)``: the traced parts (None where unused)."""
        return self.alphas, self.budgets, self.step_cap

    @classmethod
    def parse(cls, *, alphas=None, step_cap=None, l2_budget=None, n_frames: int = 12,
              domain: Any = "csp_phase", mode: str = "fixed", dtype=None) -> "Schedule":
        """Validate one schedule and return it (arrays as ``dtype``, default float32).

        Args:
          alphas, step_cap, l2_budget: at most one (see the module docstring).
          n_frames: an integer >= 2 where it is used (``step_cap``, a scalar
            ``l2_budget``, the automatic schedule, and live-mode budget searches).
          domain: registry name or :class:`lens_jax.domains.Domain` (its
            ``final_change`` sets the automatic schedule).
          mode: ``"fixed"``, ``"live"`` or ``"live_local"`` (live modes need
            non-decreasing alphas: they are cumulative steps).

        Raises:
          ValueError / TypeError naming the argument: two schedules, ``n_frames`` not an
          integer (2.7) or below 2, empty/non-1-D/non-finite alphas, non-positive or
          non-finite budgets or step cap, decreasing alphas in a live mode.

        >>> Schedule.parse(n_frames=5, domain="csp_phase").step_cap  # pi over 4 steps
        Array(0.7853982, dtype=float32)
        >>> Schedule.parse(l2_budget=[1.0, 2.0]).kind
        'budgets'
        """
        dtype = jnp.dtype(jnp.float32 if dtype is None else dtype)
        chosen = [n for n, v in (("alphas", alphas), ("step_cap", step_cap),
                                 ("l2_budget", l2_budget)) if v is not None]
        if len(chosen) > 1:
            raise ValueError(f"give at most one schedule; got {', '.join(chosen)}")
        if isinstance(domain, Domain):        # validated by get_domain
            spec = domain.spec
        elif isinstance(domain, str) and domain in REGISTRY:
            spec = REGISTRY[domain]
        else:
            raise ValueError(f"unknown domain {domain!r}; choose one of {tuple(REGISTRY)}")
        n = check_count("n_frames", n_frames)
        need_n = (alphas is None and (l2_budget is None or np.ndim(l2_budget) == 0
                                      or mode != "fixed"))
        if need_n and n < 2:
            raise ValueError(f"n_frames must be >= 2 for this schedule (the source and at "
                             f"least one edited frame); got {n}")
        if alphas is not None:
            a = jnp.asarray(alphas, dtype)
            if a.ndim != 1 or a.shape[0] == 0:
                raise ValueError(f"alphas must be a non-empty 1-D array; got shape {a.shape}")
            if _concrete(a):
                h = np.asarray(a)
                if not np.all(np.isfinite(h)):
                    raise ValueError("alphas contain NaN/Inf")
                if mode != "fixed" and np.any(np.diff(h) < 0):
                    raise ValueError("alphas must be non-decreasing in live modes "
                                     "(they are cumulative steps)")
            return cls("alphas", a, None, None, n)
        if l2_budget is not None:
            b = jnp.asarray(l2_budget, dtype)
            kind = "budget" if b.ndim == 0 else "budgets"
            b = jnp.atleast_1d(b)
            if b.ndim != 1 or b.shape[0] == 0:
                raise ValueError("l2_budget must be a number or a non-empty 1-D array; "
                                 f"got shape {b.shape}")
            if _concrete(b):
                h = np.asarray(b)
                if not np.all(np.isfinite(h) & (h > 0)):
                    raise ValueError(f"l2_budget values must be positive and finite; got {h}")
            return cls(kind, None, None, b, n)
        auto = step_cap is None
        if auto:
            step_cap = spec.final_change / (n - 1)
        s = jnp.asarray(step_cap, dtype)
        if s.ndim != 0:
            raise ValueError(f"step_cap must be a scalar; got shape {s.shape}")
        if _concrete(s) and not (np.isfinite(float(s)) and float(s) > 0):
            raise ValueError(f"step_cap must be a positive finite number; got {step_cap}")
        return cls("step_cap", None, s, None, n, auto)


def budget_alphas(dist_fn: Callable, budgets: jax.Array, unit: jax.Array, *,
                  chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Vectorised search of ``alpha`` with ``dist_fn(alpha) == budget``.

    Scans a doubling grid ``unit * 1e-4 * 2**k`` (``k < 30``), takes the first bracket
    where the distance reaches each budget (distance need not be monotone: phases wrap,
    pixels clip), and bisects inside it.  Returns ``(alphas, reached)``; an unreached
    budget gets the grid alpha of largest distance.  ``chunk``: evaluate the grid this
    many alphas at a time (bounds memory; same values).

    The search itself has no derivative (comparisons); :func:`lens_jax.morph` adds the
    implicit one (``d alpha / d budget = 1 / (d dist / d alpha)``, see
    :func:`implicit_alphas`).

    >>> a, ok = budget_alphas(lambda a: 2.0 * a, jnp.array([1.0]), jnp.asarray(1.0))
    >>> round(float(a[0]), 4), bool(ok[0])
    (0.5, True)
    """
    grid = jnp.asarray(_GRID, unit.dtype) * unit
    d = jax.vmap(dist_fn)(grid) if chunk is None else \
        jax.lax.map(dist_fn, grid, batch_size=int(chunk))
    hit = d[None, :] >= budgets[:, None]
    reached = jnp.any(hit, axis=1)
    k = jnp.argmax(hit, axis=1)
    lo = jnp.where(k > 0, grid[jnp.maximum(k - 1, 0)], 0.0)
    hi = grid[k]

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        ok = jax.vmap(dist_fn)(mid) >= budgets
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    lo, hi = jax.lax.fori_loop(0, _BISECT_ITERS, body, (lo, hi))
    far = grid[jnp.argmax(d)]
    return jnp.where(reached, hi, far), reached



def implicit_alphas(dist_fn: Callable, alphas: jax.Array, budgets: jax.Array,
                    reached: jax.Array) -> jax.Array:
    """``alphas`` (found by :func:`budget_alphas`) with the derivative of the solution
    of ``dist_fn(alpha) == budget`` (implicit function theorem): one Newton step at the
    solution whose *value* is zero, so

        d alpha / d budget = 1 / dist'(alpha),
        d alpha / d theta  = -(d dist / d theta) / dist'(alpha)

    for anything ``theta`` that ``dist_fn`` closes over (image, classifier parameters).
    Values are unchanged.  Where a budget was not reached (or ``dist'`` is not a
    positive finite number) the derivative is zero: that alpha does not depend on the
    budget.

    >>> f = lambda b: implicit_alphas(lambda a: 2.0 * a, jnp.array([b / 2]), jnp.array([b]),
    ...                               jnp.array([True]))[0]
    >>> float(jax.grad(f)(1.0))
    0.5
    """
    a0 = jax.lax.stop_gradient(alphas)

    def one(a, b):
        d, slope = jax.jvp(dist_fn, (a,), (jnp.ones_like(a),))
        slope = jax.lax.stop_gradient(slope)
        good = jnp.isfinite(slope) & (slope > 0)
        step = (b - d) / jnp.where(good, slope, 1.0)
        return jnp.where(good, step - jax.lax.stop_gradient(step), 0.0)

    corr = jax.vmap(one)(a0, budgets)
    return a0 + jnp.where(reached, corr, 0.0).astype(alphas.dtype)
