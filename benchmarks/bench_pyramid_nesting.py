"""Why the pyramid's compiled programs are used for eager calls only.

Called eagerly, ``SteerablePyramid.forward`` and ``inverse`` run one jitted program each;
under a transformation they are traced inline.  Case B of ``bench_pyramid.py`` (64 images
of 64x64, height 4, order 3, complex, float32), inside ``jax.jit``: the public path, the
same computation with the two jitted programs nested (``_jit_forward``/``_jit_inverse``),
and inlined (``_forward``/``_inverse``), interleaved timings; prints medians, the ratios to
the inlined program and the largest output difference.

    python benchmarks/bench_pyramid_nesting.py [--repeats 25]
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from lens_jax.pyramid import SteerablePyramid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=25)
    args = ap.parse_args()
    pyr = SteerablePyramid((64, 64), height=4, order=3, is_complex=True)
    x = jnp.asarray(np.random.default_rng(0).random((64, 64, 64)), jnp.float32)
    want = frozenset(pyr._parse_levels("all", arg="scales"))
    levels = frozenset(pyr._parse_levels("all"))

    from lens_jax.pyramid import _jit_forward, _jit_inverse

    def public(x):
        return pyr.inverse(pyr.forward(x))

    def nested(x):
        return _jit_inverse(pyr, _jit_forward(pyr, x, want), pyr.synthesis, levels, None)

    def inline(x):
        return pyr._inverse(pyr._forward(x, want), pyr.synthesis, levels, None)

    paths = {"public": public, "nested": nested, "inline": inline}
    cases = {
        "forward+inverse": {k: jax.jit(f) for k, f in paths.items()},
        "forward+inverse+gradient": {
            k: jax.jit(jax.grad(lambda x, f=f: jnp.sum(f(x) ** 2))) for k, f in paths.items()},
    }
    for name, fns in cases.items():
        outs = {k: np.asarray(jax.block_until_ready(f(x))) for k, f in fns.items()}
        times = {k: [] for k in fns}
        for _ in range(args.repeats):
            for k, f in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(x))
                times[k].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items()}
        diff = max(float(np.abs(outs[k] - outs["inline"]).max()) for k in outs)
        print(f"{name:25s} " + "  ".join(f"{k} {1e3 * med[k]:6.2f} ms" for k in med)
              + f"  nested/inlined {med['nested'] / med['inline']:.3f}  public/inlined "
              f"{med['public'] / med['inline']:.3f}  max |diff| {diff:.3g}")


if __name__ == "__main__":
    main()
