"""The live modes of the lens (private): the gradient recomputed after every step,
in persistent coordinates of the source decomposition (``"live"``) or step-local,
re-analysing every frame (``"live_local"``), as one ``lax.scan``."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ._edit import Edit, build, descend, max_abs, safe_inv

__all__ = ["live_frames"]


def live_frames(ed: Edit, image, steps, mode, *, step_cap, clf, target, loss, color):
    """Live extrapolation with ``lax.scan``: frames, cumulative alphas, each frame's
    change and wrapped fraction (see :class:`Morph`).

    ``steps[n]`` is the raw step before frame ``n`` (``steps[0] == 0`` keeps the source
    as the first frame); with ``step_cap`` each step is ``step_cap / max|g_n|`` instead
    (and frame 0 is the source).
    """
    dtype = image.dtype
    if mode == "live":
        grad_fn = jax.grad(ed.loss)

        def body(carry, step):
            params, acc, i = carry
            g = grad_fn(params)
            if step_cap is not None:
                step = jnp.where(i == 0, 0.0, step_cap * safe_inv(max_abs(g))).astype(dtype)
            params = jax.tree.map(lambda p, gg: p - step * gg, params, g)
            acc = acc + step
            return (params, acc, i + 1), (ed.render(params, straight_through=False), acc,
                                          ed.change(params), ed.wrapped(params))

        _, out = jax.lax.scan(body, (ed.zeros, jnp.zeros((), dtype), 0), steps)
        return out

    # live_local: re-analyse every frame, step from the gradient at that frame
    def body(carry, step):
        x, acc, i, ch = carry
        e = build(clf, x, target, ed.source, ed.domain, loss, color, ed.num_classes)
        g = jax.grad(e.loss)(e.zeros)
        if step_cap is not None:
            step = jnp.where(i == 0, 0.0, step_cap * safe_inv(max_abs(g))).astype(dtype)
        x_new = e.render(descend(g, step), straight_through=False)
        x_new = jnp.where(step == 0, x, x_new)
        ch = ch + e.change(descend(g, step))
        return (x_new, acc + step, i + 1, ch), (x_new, acc + step, ch, jnp.asarray(jnp.nan, dtype))

    zero = jnp.zeros((), dtype)
    _, out = jax.lax.scan(body, (image, zero, 0, zero), steps)
    return out
