"""A fixed csp_flow morph versus a fixed csp_phase morph (and the other flow domains).

Same classifier (the project's driver CNN, random weights: the cost does not depend on
them), same image, 12 frames at fixed alphas (the schedule search is left out: the
frames, the one gradient and the classifier on every frame are what a morph costs).
Sizes 28x28 and 64x64.  Interleaved timing (A B C, C A B, ...); medians and the ratio
``median(csp_flow) / median(csp_phase)`` (target <= 1.5).

    python benchmarks/bench_flow.py [--repeats 20] [--json PATH]
"""
from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _timing import format_summary, interleaved, machine_info, summarize  # noqa: E402

import lens_jax as lj  # noqa: E402
from lens_jax.domains import get_domain  # noqa: E402
from lens_jax.models import CNN, init_params, make_logits_fn  # noqa: E402

CONTENDERS = (("csp_phase", "csp_phase", {}),
              ("csp_flow", "csp_flow", {}),
              ("csp_flow (amplitude=move)", "csp_flow", {"amplitude": "move"}),
              ("csp_flow_joint", "csp_flow_joint", {}),
              ("warp", "warp", {}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    results = {}
    for H in (28, 64):
        model = CNN(num_classes=10)
        params = init_params(model, jax.random.key(0), (H, H, 1))
        f = make_logits_fn(model, params)
        rng = np.random.default_rng(0)
        img = jnp.asarray(rng.random((H, H, 1)).astype(np.float32) * 0.8 + 0.1)
        alphas = jnp.linspace(0.0, 0.5, args.frames, dtype=jnp.float32)
        funcs = {}
        for label, name, opts in CONTENDERS:
            dom = get_domain(name, (H, H), **opts)
            if opts:
                # options travel as a Domain through prepare_edit (morph takes names)
                def run(dom=dom):
                    return jax.block_until_ready(_morph_domain(f, img, dom, alphas))
            else:
                def run(name=name):
                    return jax.block_until_ready(
                        lj.morph(f, img, target=3, source=0, domain=name, alphas=alphas).probs)
            funcs[label] = run
        times = interleaved(funcs, repeats=args.repeats, warmup=args.warmup)
        med = {k: float(np.median(v)) for k, v in times.items()}
        rows = summarize(times, relative_to=["csp_phase"])
        print(f"\n== {H}x{H}, one image, {args.frames} frames, fixed mode ==")
        print(format_summary(rows))
        ratio = med["csp_flow"] / med["csp_phase"]
        print(f"   csp_flow / csp_phase (medians): {ratio:.2f}x (target <= 1.5x)")
        results[f"{H}x{H}"] = {"median_s": med, "rows": rows, "ratio_flow_phase": ratio}
    info = machine_info()
    print(f"\nmachine: {info}")
    results["machine"] = info
    if args.json:
        from lens_jax.tables import save_json
        save_json(args.json, results)




_CACHE = {}


def _morph_domain(f, img, dom, alphas):
    """A fixed morph through ``prepare_edit`` for a domain with non-default options:
    one gradient, ``vmap`` of the render, the classifier on the frames (jitted)."""
    key = (id(f), dom, img.shape, alphas.shape)
    if key not in _CACHE:
        def core(img, alphas):
            ed = lj.prepare_edit(f, img, target=3, source=0, domain=dom)
            g = jax.grad(ed.loss)(ed.zeros)
            frames = jax.vmap(lambda a: ed.render(jax.tree.map(lambda t: -a * t, g),
                                                  straight_through=False))(alphas)
            return jax.nn.softmax(f(frames), -1)
        _CACHE[key] = jax.jit(core)
    return _CACHE[key](img, alphas)


if __name__ == "__main__":
    main()
