"""Traced classifier weights (the default) vs ``constant_params=True`` (weights compiled
in as constants, keyed by their fingerprint), interleaved, on bench_lens.py's cases:

  single: one 64x64 grey image, 32 alphas;  batch: 64 images of 64x64, 16 alphas

with the driver CNN through ``lj.morph_batch`` (CSP phase, fixed mode).

    python benchmarks/bench_params.py [--repeats 20]
"""
from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _timing import interleaved, machine_info  # noqa: E402

import lens_jax as lj  # noqa: E402
from lens_jax.models import CNN, init_params, make_logits_fn  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    H = W = 64
    model = CNN(num_classes=10)
    f = make_logits_fn(model, init_params(model, jax.random.key(0), (H, W, 1)))
    rng = np.random.default_rng(0)
    for case, (B, A) in {"single": (1, 32), "batch": (64, 16)}.items():
        imgs = jnp.asarray(rng.random((B, H, W, 1)).astype(np.float32) * 0.8 + 0.1)
        t = jnp.asarray(rng.integers(0, 10, B))
        alphas = jnp.linspace(0.0, 0.5, A, dtype=jnp.float32)

        def run(const):
            return jax.block_until_ready(lj.morph_batch(
                f, imgs, target=t, source=0, alphas=alphas, constant_params=const).probs)
        np.testing.assert_allclose(run(False), run(True), atol=1e-5)
        times = interleaved({"traced (default)": lambda: run(False),
                             "constant_params=True": lambda: run(True)},
                            repeats=args.repeats, warmup=2)
        med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        ratio = med["traced (default)"] / med["constant_params=True"]
        print(f"{case}: median ms " + ", ".join(f"{k} {v:.2f}" for k, v in med.items())
              + f"; traced / constant = {ratio:.2f}")
    print(f"machine: {machine_info()}")


if __name__ == "__main__":
    main()
