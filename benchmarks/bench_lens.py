"""Complete CSP-phase sweeps: lens_jax versus a plenoptic + torch autograd pipeline.

A sweep = one gradient of the target NLL w.r.t. the pyramid phases at the source, the
frames for every alpha, and the classifier on every frame.  Cases:

  single: one 64x64 grey image, 32 alphas
  batch:  64 images of 64x64, 16 alphas

The classifier is the project's driver CNN (conv32-pool-conv64-pool-fc128-fc10) with the
SAME weights in JAX (flax) and torch.  The reference is what a user would write today:
plenoptic's SteerablePyramidFreq (complex, tight frame), phase increments as leaf
tensors, torch autograd for the gradient, a Python loop over alphas under no_grad.
The floor is the classifier alone: its forward pass on the same frames plus one
gradient through it (what any lens must pay), timed two ways (two jitted programs, or
one) and taken as the faster.  "synthesis FFTs only" times exactly the
FFTs of one adjoint synthesis per frame (in calls of 64 frames); floor + that is about
the least an FFT-based CSP lens can cost.  All run interleaved (A B C A B C ...).

    python benchmarks/bench_lens.py [--repeats 20] [--json PATH]
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
from lens_jax.models import CNN, init_params, make_logits_fn  # noqa: E402


def torch_cnn(params):
    import torch
    import torch.nn.functional as F

    p = jax.tree.map(lambda a: torch.as_tensor(np.asarray(a)), params)

    def conv(x, q):   # flax (kh, kw, in, out) -> torch (out, in, kh, kw)
        return F.conv2d(x, q["kernel"].permute(3, 2, 0, 1), q["bias"], padding=1)

    def f(x):          # x: (N, 1, H, W) in [0, 1]
        x = 2.0 * x - 1.0
        x = F.avg_pool2d(F.relu(conv(x, p["conv0"])), 2)
        x = F.avg_pool2d(F.relu(conv(x, p["conv1"])), 2)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)   # flax flattens NHWC
        x = F.relu(x @ p["fc"]["kernel"] + p["fc"]["bias"])
        return x @ p["head"]["kernel"] + p["head"]["bias"]
    return f


def torch_sweep(pyr, f, x, target, alphas):
    """plenoptic + torch autograd: gradient w.r.t. phases, loop over alphas."""
    import torch
    c0 = pyr.forward(x)
    keys = [k for k in c0 if not isinstance(k, str)]
    deltas = {k: torch.zeros(c0[k].shape, dtype=torch.float32, requires_grad=True)
              for k in keys}

    def render(d):
        c = dict(c0)
        for k in keys:
            c[k] = c0[k] * torch.exp(1j * d[k])
        return torch.clamp(pyr.recon_pyr(c), 0.0, 1.0)

    logp = torch.log_softmax(f(render(deltas)), -1)
    loss = -logp[torch.arange(x.shape[0]), target].sum()
    loss.backward()
    g = {k: deltas[k].grad for k in keys}
    probs = []
    with torch.no_grad():
        for a in alphas:
            probs.append(torch.softmax(f(render({k: -float(a) * g[k] for k in keys})), -1))
    return torch.stack(probs, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import plenoptic as po
    import torch
    torch.set_num_threads(2)

    H = W = 64
    model = CNN(num_classes=10)
    params = init_params(model, jax.random.key(0), (H, W, 1))
    f = make_logits_fn(model, params)
    tf = torch_cnn(params)
    rng = np.random.default_rng(0)
    pyr_t = po.process.SteerablePyramidFreq((H, W), height=4, order=3, is_complex=True,
                                            tight_frame=True)
    results = {}
    for case, (B, A) in {"single": (1, 32), "batch": (64, 16)}.items():
        imgs = rng.random((B, H, W, 1)).astype(np.float32) * 0.8 + 0.1
        targets = rng.integers(0, 10, B)
        alphas = jnp.linspace(0.0, 0.5, A, dtype=jnp.float32)
        xj, tj = jnp.asarray(imgs), jnp.asarray(targets)
        xt = torch.as_tensor(imgs).permute(0, 3, 1, 2).contiguous()
        tt = torch.as_tensor(targets)

        sweep = {}
        for synth in ("adjoint", "real"):
            pyr = lj.default_pyramid((H, W)).replace(synthesis=synth)
            # morph_batch: the lens vmapped over images, the classifier on one flat batch
            sweep[synth] = (lambda x, t, pyr=pyr: lj.morph_batch(
                f, x, target=t, source=0, domain="csp_phase", alphas=alphas,
                pyramid=pyr).probs)

        def nll(x, t):
            return -jax.nn.log_softmax(f(x[None])[0])[t]

        frames0 = jnp.broadcast_to(xj[:, None], (B, A, H, W, 1)).reshape(B * A, H, W, 1)
        # the floor, two ways; the faster one is THE floor.  "two programs": the classifier
        # jitted alone (its weights compile in as constants) and the gradient jitted alone;
        # "one program": both in one jit (on XLA:CPU the shared weights are then operands
        # of the fused network and are repacked on every call, ~2x slower for one image)
        floor_one = jax.jit(lambda fr, x, t: (f(fr), jax.vmap(jax.grad(nll))(x, t)))
        f_alone = jax.jit(f)
        g_alone = jax.jit(lambda x, t: jax.vmap(jax.grad(nll))(x, t))

        def floor_two(fr, x, t):
            return jax.block_until_ready((f_alone(fr), g_alone(x, t)))
        # about the least an FFT-based CSP lens can cost: the classifier floor plus exactly
        # the FFTs that one adjoint synthesis per frame needs (one complex fft2 of the K
        # bands per scale, the high-pass rfft2, the final irfft2), on same-shape arrays
        pyr_a = lj.default_pyramid((H, W))
        K = pyr_a.num_orientations
        fft_in = [jnp.asarray(rng.random((B * A, K) + tuple(hw))
                              + 1j * rng.random((B * A, K) + tuple(hw)), jnp.complex64)
                  for hw in pyr_a.band_shapes]
        hp_in = jnp.asarray(rng.random((B * A, H, W)), jnp.float32)
        spec = jnp.fft.rfft2(hp_in)

        def ffts(ins, hp, spec):
            return ([jnp.fft.fft2(a) for a in ins] + [jnp.fft.rfft2(hp)]
                    + [jnp.fft.irfft2(spec, s=(H, W))])
        ffts_j = jax.jit(ffts)
        # in calls of at most 64 frames (cache-resident, as lens_jax's CPU calls): one
        # call over all 1,024 frames of the batch case is ~2x slower (memory-bound)
        per = 64
        fft_chunks = [([a[i:i + per] for a in fft_in], hp_in[i:i + per], spec[i:i + per])
                      for i in range(0, B * A, per)]

        def synth_ffts():
            return jax.block_until_ready([ffts_j(*ch) for ch in fft_chunks])

        # the two pipelines compute the same thing at alpha = 0
        pj = np.asarray(sweep["real"](xj, tj))
        pt = torch_sweep(pyr_t, tf, xt, tt, np.asarray(alphas)).numpy()
        agree0 = float(np.abs(pj[:, 0] - pt[:, 0]).max())
        agree = float(np.abs(pj - pt).max())

        funcs = {
            "lens_jax (adjoint)": lambda: jax.block_until_ready(sweep["adjoint"](xj, tj)),
            "lens_jax (real)": lambda: jax.block_until_ready(sweep["real"](xj, tj)),
            "floor: classifier only": lambda: floor_two(frames0, xj, tj),
            "floor (one program)": lambda: jax.block_until_ready(floor_one(frames0, xj, tj)),
            "synthesis FFTs only": synth_ffts,
            "plenoptic + torch": lambda: torch_sweep(pyr_t, tf, xt, tt, np.asarray(alphas)),
        }
        times = interleaved(funcs, repeats=args.repeats, warmup=args.warmup)
        print(f"\n== {case}: {B} image(s) of {H}x{W}, {A} alphas, CSP phase (fixed) ==")
        print(f"   probabilities, lens_jax 'real' synthesis vs plenoptic: "
              f"max |diff| {agree0:.1e} at alpha=0, {agree:.1e} over the sweep")
        med = {k: float(np.median(v)) for k, v in times.items()}
        floor_name = min(("floor: classifier only", "floor (one program)"), key=med.get)
        rows = summarize(times, speedup_over=["plenoptic + torch"], relative_to=[floor_name])
        for r in rows:
            r["frames_per_s"] = B * A / med[r["name"]]
        print(format_summary(rows))
        fl = med[floor_name]
        print(f"   floor = {floor_name!r} (the faster of the two ways)")
        bound = fl + med["synthesis FFTs only"]
        for k in ("lens_jax (adjoint)", "lens_jax (real)"):
            print(f"   {k}: {med['plenoptic + torch'] / med[k]:.2f}x the reference, "
                  f"{med[k] / fl:.2f}x the floor, {med[k] / bound:.2f}x floor + synthesis FFTs")
        print(f"   floor + synthesis FFTs (sum of medians): {bound / fl:.2f}x the classifier "
              "floor (about the least an adjoint FFT-based CSP lens can cost here)")
        results[case] = {"images": B, "alphas": A, "median_s": med, "rows": rows,
                         "floor": floor_name, "floor_plus_ffts_s": bound,
                         "agree_alpha0": agree0, "agree_sweep": agree}
    info = machine_info()
    print(f"\nmachine: {info}")
    results["machine"] = info
    if args.json:
        from lens_jax.tables import save_json
        save_json(args.json, results)


if __name__ == "__main__":
    main()
