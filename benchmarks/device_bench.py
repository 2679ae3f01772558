"""Accelerator figures in one prepared script: pyramid and sweep throughput at sizes that
fill a GPU, checked against the CPU path, with the FFT floor.

    python benchmarks/device_bench.py --json device.json          # on the GPU machine
    python benchmarks/device_bench.py --small                      # anywhere, ~1-2 minutes

What it measures (every timing: the fastest of ``--reps`` runs after a warm-up, with
``block_until_ready``):

* **pyramid**: ``forward`` and ``inverse(forward(x))`` of the lens's pyramid (order 3,
  tight frame, adjoint synthesis) on a batch; per-image time; and the **FFT floor**: the
  same batch of bare FFTs the transform cannot avoid (``rfft2``/``irfft2`` of the image,
  of every band's 2K real channels and of the residuals, same shapes), timed alone.
  ``floor fraction = t_fft / t_pyramid`` (1.0: the masks, crops and complex bookkeeping
  cost nothing).
* **sweep**: :func:`lens_jax.sweep.run` over every device (``mesh=None``), metrics only
  (frames kept for none), one target per image: images x alphas per second, after a
  compile-only warm-up on the first chunk.
* **check**: the first images of each sweep and pyramid batch recomputed on
  ``jax.devices("cpu")[0]``; max |diff| of probabilities, relative L2 and pyramid
  reconstruction, against tolerances that allow TF32 matmuls on the accelerator.

* **ResNet-50 at 224x224** (random weights; the cost does not depend on them): one fixed
  CSP-phase morph of chelsea, 16 frames, against the classifier floor (one gradient +
  the 16 frames' forward passes, in JAX) and against plenoptic + torch doing the same
  morph with the same weights (``benchmarks/bench_natural.py``'s pipeline) on the same
  card when torch sees it (``torch.cuda.is_available()``; otherwise torch runs on the
  CPU and the row says so); and a ResNet-50 sweep of natural 224x224 crops.

Sizes: on a GPU/TPU, 4096 images of 64x64 (32 alphas) and 224x224 RGB natural images
(scikit-image samples, random crops; 16 alphas; ResNet-50: 64 images); on CPU or with
``--small``, small sizes (a note says so).  Writes a JSON (atomically) with ``--json``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lens_jax.tables import save_json  # noqa: E402
from lens_jax.domains import default_pyramid  # noqa: E402
import importlib  # noqa: E402

_sweep_mod = importlib.import_module("lens_jax.sweep")
sweep = getattr(_sweep_mod, "run", None) or getattr(_sweep_mod, "sweep")
sweep_mesh = _sweep_mod.sweep_mesh

T0 = time.perf_counter()
K_CLASSES = 10


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def timeit(fn, *args, reps: int = 5) -> float:
    """Fastest seconds of ``fn(*args)`` over ``reps`` runs after a warm-up, synchronised."""
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
    return float(np.min(ts))


# ----------------------------------------------------------------------------------
# data and classifiers
# ----------------------------------------------------------------------------------

def smooth_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    r = np.random.default_rng(seed)
    x = r.random((n, size, size)).astype(np.float32)
    k = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
    x = np.real(np.fft.ifft2(np.fft.fft2(x) * np.exp(-k * 2 * size))).astype(np.float32)
    lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    return (0.1 + 0.8 * (x - lo) / (hi - lo))[..., None]


def natural_images(n: int, size: int = 224, seed: int = 0) -> tuple[np.ndarray, str]:
    """``(n, size, size, 3)`` random crops (and flips) of scikit-image samples."""
    r = np.random.default_rng(seed)
    try:
        import skimage.data as sd
        srcs = [getattr(sd, name)() for name in ("chelsea", "astronaut", "coffee", "rocket")
                if hasattr(sd, name)]
        srcs = [s.astype(np.float32) / 255.0 for s in srcs
                if s.ndim == 3 and min(s.shape[:2]) >= size]
        source = "scikit-image samples (chelsea, astronaut, coffee, rocket), random crops"
    except Exception:                                    # noqa: BLE001
        srcs = []
    if not srcs:
        x = smooth_images(n, size, seed)
        return np.repeat(x, 3, axis=-1), "synthetic smooth noise (scikit-image missing)"
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        s = srcs[i % len(srcs)]
        y = r.integers(0, s.shape[0] - size + 1)
        x = r.integers(0, s.shape[1] - size + 1)
        c = s[y:y + size, x:x + size]
        out[i] = c[:, ::-1] if r.random() < 0.5 else c
    return np.clip(out, 0.0, 1.0), source


def conv_classifier(channels: int, seed: int = 0):
    """A small random conv net ``(B, H, W, C) -> (B, 10)``: stride-2 convs, global mean."""
    r = np.random.default_rng(seed)
    w1 = jnp.asarray(r.standard_normal((3, 3, channels, 16)).astype(np.float32) / 3.0)
    w2 = jnp.asarray(r.standard_normal((3, 3, 16, 32)).astype(np.float32) / 12.0)
    w3 = jnp.asarray(r.standard_normal((32, K_CLASSES)).astype(np.float32) / 4.0)
    dn = ("NHWC", "HWIO", "NHWC")

    def logits_fn(x):
        h = jnp.tanh(jax.lax.conv_general_dilated(x, w1, (2, 2), "SAME", dimension_numbers=dn))
        h = jnp.tanh(jax.lax.conv_general_dilated(h, w2, (2, 2), "SAME", dimension_numbers=dn))
        return jnp.mean(h, axis=(1, 2)) @ w3 * 4.0
    return logits_fn


# ----------------------------------------------------------------------------------
# pyramid and its FFT floor
# ----------------------------------------------------------------------------------

def fft_floor_fn(pyr):
    """The FFTs forward + inverse must do, on inputs of the same shapes, and nothing else."""
    H, W = pyr.image_shape
    K = pyr.num_orientations
    norm = "ortho"

    def rt(a, s):                                  # one rfft2 + one irfft2
        return jnp.fft.irfft2(jnp.fft.rfft2(a, norm=norm), s=s, norm=norm)

    def f(x, bands, lp):
        y = rt(rt(x, (H, W)), (H, W))              # image in/out and the high-pass residual
        bs = [rt(b, b.shape[-2:]) for b in bands]  # each band: 2K real channels, out and in
        return y, bs, rt(lp, lp.shape[-2:])
    shapes = [(2 * K, h, w) for h, w in pyr.band_shapes]
    return jax.jit(f), shapes, tuple(pyr.lowpass_shape)


def bench_pyramid(n: int, size: int, reps: int, cpu) -> dict:
    say(f"pyramid: {n} images of {size}x{size}")
    pyr = default_pyramid((size, size))
    x = jnp.asarray(smooth_images(n, size)[..., 0])
    fwd = jax.jit(pyr.forward)
    rec = jax.jit(lambda a: pyr.inverse(pyr.forward(a)))
    t_fwd = timeit(fwd, x, reps=reps)
    t_rec = timeit(rec, x, reps=reps)
    ff, shapes, lps = fft_floor_fn(pyr)
    r = np.random.default_rng(1)
    bands = [jnp.asarray(r.standard_normal((n,) + s).astype(np.float32)) for s in shapes]
    lp = jnp.asarray(r.standard_normal((n,) + lps).astype(np.float32))
    t_fft = timeit(ff, x, bands, lp, reps=reps)
    err_rec = float(jnp.max(jnp.abs(rec(x) - x)))
    row = {"kind": "pyramid", "n": n, "size": size, "height": pyr.height,
           "t_forward_s": t_fwd, "t_fwd_inv_s": t_rec, "t_fft_floor_s": t_fft,
           "us_per_image_fwd_inv": 1e6 * t_rec / n, "images_per_s": n / t_rec,
           "floor_fraction": t_fft / t_rec, "reconstruction_max_err": err_rec}
    if cpu is not None:
        xs = np.asarray(x[:2])
        on_cpu = np.asarray(jax.jit(lambda a: pyr.inverse(pyr.forward(a)))(
            jax.device_put(xs, cpu)))
        row["cpu_max_abs_diff"] = float(np.max(np.abs(np.asarray(rec(x)[:2]) - on_cpu)))
        row["check_ok"] = row["cpu_max_abs_diff"] < 1e-4
    say(f"  fwd {1e3 * t_fwd:.2f} ms, fwd+inv {1e3 * t_rec:.2f} ms "
        f"({row['us_per_image_fwd_inv']:.1f} us/image), FFT floor {1e3 * t_fft:.2f} ms "
        f"-> {row['floor_fraction']:.2f} of the floor")
    return row


# ----------------------------------------------------------------------------------
# sweeps
# ----------------------------------------------------------------------------------

def bench_sweep(name: str, images: np.ndarray, n_alphas: int, domain: str, chunk: int,
                alpha_chunk, cpu, n_check: int = 4, f=None) -> dict:
    n, size, _, ch = images.shape
    say(f"sweep {name}: {n} images {size}x{size}x{ch}, {n_alphas} alphas, {domain}, "
        f"chunk {chunk}, alpha_chunk {alpha_chunk}, {len(jax.devices())} device(s)")
    f = conv_classifier(ch) if f is None else f
    alphas = np.linspace(0.0, 3.0, n_alphas).astype(np.float32)
    targets = (np.arange(n) % K_CLASSES).astype(np.int32)
    if getattr(f, "model", None) is not None:           # an ImageNet classifier
        alphas = np.linspace(0.0, 0.5, n_alphas).astype(np.float32)
        targets = (np.arange(n) * 37 % 1000).astype(np.int32)
    kw = dict(domain=domain, alphas=alphas, chunk_size=chunk, alpha_chunk=alpha_chunk,
              keep_frames=0, progress=False)
    t = time.perf_counter()
    sweep(f, images[:chunk], targets[:chunk], **kw)          # compile (and one chunk)
    t_compile = time.perf_counter() - t
    say(f"  compiled + first chunk in {t_compile:.1f} s")
    t = time.perf_counter()
    res = sweep(f, images, targets, **kw)
    wall = time.perf_counter() - t
    row = {"kind": "sweep", "name": name, "n": n, "size": size, "channels": ch,
           "n_alphas": n_alphas, "domain": domain, "chunk_size": chunk,
           "alpha_chunk": alpha_chunk, "devices": len(jax.devices()), "wall_s": wall,
           "compile_and_first_chunk_s": t_compile,
           "image_alphas_per_s": n * n_alphas / wall, "us_per_frame": 1e6 * wall / (n * n_alphas),
           "median_final_target_prob": float(np.median(res.target_prob[:, -1]))}
    say(f"  {row['image_alphas_per_s']:.0f} images x alphas / s "
        f"({row['us_per_frame']:.1f} us per frame, {wall:.2f} s)")
    if cpu is not None:
        m = n_check
        ref = sweep(f, images[:m], targets[:m], mesh=sweep_mesh(devices=[cpu]),
                    **{**kw, "chunk_size": m})
        dp = float(np.max(np.abs(res.probs[:m] - ref.probs)))
        dl = float(np.max(np.abs(res.l2[:m] - ref.l2) / np.maximum(ref.l2, 1e-6)))
        row.update(cpu_probs_max_abs_diff=dp, cpu_l2_max_rel_diff=dl,
                   check_ok=bool(dp < 5e-3 and dl < 1e-3))
        say(f"  CPU check on {m} images: max |dprob| {dp:.2e}, max rel dL2 {dl:.2e} "
            f"-> {'ok' if row['check_ok'] else 'MISMATCH'}")
    return row


def bench_resnet_morph(reps: int) -> dict:
    """ResNet-50 at 224x224: a fixed CSP-phase morph (16 frames) vs the classifier floor
    and vs plenoptic + torch (same weights; on this card when torch sees it)."""
    from bench_natural import FRAMES, TARGET, TorchCSPPhase, photo, torch_resnet
    import lens_jax as lj
    from lens_jax import pretrained as P
    from lens_jax import resnet as R
    from lens_jax.classifier import as_classifier
    say("ResNet-50 morph: chelsea 224x224, CSP phase, fixed, 16 frames")
    sd = R.random_state_dict("resnet50", seed=0)
    module, variables = R.convert_torch_resnet(sd, arch="resnet50")
    f = P._resnet_classifier(module, variables, label="resnet50 (random)",
                             class_names=P.imagenet_classes())
    clf = as_classifier(f)
    img = photo()
    x = jnp.asarray(img)
    src = int(np.argmax(np.asarray(f(x[None]))[0]))
    m = lj.morph(f, x, target=TARGET, source=src, domain="csp_phase", n_frames=FRAMES,
                 l2_budget=27.7)
    alphas = jnp.asarray(np.asarray(m.alphas), jnp.float32)

    def morph():
        return lj.morph(f, x, target=TARGET, source=src, domain="csp_phase", alphas=alphas).probs

    def nll(p, xi):
        return -jax.nn.log_softmax(clf.apply(p, xi[None])[0])[TARGET]
    frames = jnp.broadcast_to(x[None], (FRAMES,) + x.shape)
    floor = jax.jit(lambda p, fr, xi: (jax.nn.softmax(clf.apply(p, fr), -1),
                                       jax.grad(nll, argnums=1)(p, xi)))
    t_morph = timeit(morph, reps=reps)
    t_floor = timeit(floor, clf.params, frames, x, reps=reps)
    row = {"kind": "resnet_morph", "size": 224, "frames": FRAMES, "t_morph_s": t_morph,
           "t_floor_s": t_floor, "morph_over_floor": t_morph / t_floor}
    try:
        import torch
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        ref = TorchCSPPhase(torch_resnet(sd, dev), 224, default_pyramid((224, 224)).height, dev)
        a_np = np.asarray(alphas)

        def run_torch():
            p = ref(img, a_np, TARGET)
            if dev == "cuda":
                torch.cuda.synchronize()
            return p
        run_torch()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            run_torch()
            ts.append(time.perf_counter() - t)
        row.update(torch_device=dev, t_torch_s=float(np.min(ts)),
                   torch_over_jax=float(np.min(ts)) / t_morph)
    except ImportError:                                    # no torch: JAX rows only
        row.update(torch_device=None, t_torch_s=None, torch_over_jax=None)
    say(f"  morph {1e3 * t_morph:.1f} ms, floor {1e3 * t_floor:.1f} ms -> "
        f"{row['morph_over_floor']:.2f}x the floor"
        + (f"; plenoptic + torch ({row['torch_device']}) {1e3 * row['t_torch_s']:.1f} ms = "
           f"{row['torch_over_jax']:.2f}x lens_jax" if row.get("t_torch_s") else ""))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="small sizes (any machine)")
    ap.add_argument("--json", default=None, help="write the results here (atomically)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--domain", default="csp_phase")
    ap.add_argument("--no-resnet", action="store_true", help="skip the ResNet-50 rows")
    args = ap.parse_args(argv)

    dev = jax.devices()[0]
    accel = dev.platform != "cpu"
    small = args.small or not accel
    note = None
    if not accel:
        note = ("no accelerator found: small sizes on CPU; these are not accelerator "
                "figures (rerun on a GPU machine without --small)")
    elif args.small:
        note = "--small: small sizes on the accelerator"
    try:
        cpu = jax.devices("cpu")[0]
    except RuntimeError:
        cpu = None
        note = (note + "; " if note else "") + "no CPU backend: CPU check skipped"
    say(f"jax {jax.__version__}, {len(jax.devices())} x {dev.device_kind} ({dev.platform})"
        + (f"; NOTE: {note}" if note else ""))

    if small:
        pyr_cfg = [(64, 64), (4, 224)]
        sweep_cfg = [("64x64", smooth_images(64, 64), 8, 32, None),
                     ("224x224 rgb", None, 4, 2, None)]
        n_nat = 2
    else:
        pyr_cfg = [(4096, 64), (512, 224)]
        sweep_cfg = [("64x64", smooth_images(4096, 64), 32, 512, None),
                     ("224x224 rgb", None, 16, 32, 8)]
        n_nat = 256
    nat, nat_source = natural_images(n_nat)
    rows = []
    for n, size in pyr_cfg:
        rows.append(bench_pyramid(n, size, args.reps, cpu))
    for name, imgs, n_alpha, chunk, achunk in sweep_cfg:
        imgs = nat if imgs is None else imgs
        rows.append(bench_sweep(name, imgs, n_alpha, args.domain, chunk, achunk, cpu,
                                n_check=2 if small else 4))
    if not small:                         # the pixel domain for scale: no transform at all
        rows.append(bench_sweep("64x64", sweep_cfg[0][1], 32, "pixel", 512, None, cpu))
    if not args.no_resnet:
        sys.path.insert(0, os.path.dirname(__file__))
        from lens_jax import pretrained as P
        rows.append(bench_resnet_morph(args.reps))
        n_r = 2 if small else 64
        rows.append(bench_sweep("224x224 rgb, ResNet-50", nat[:n_r], 16, args.domain,
                                2 if small else 16, 8, cpu, n_check=2, f=P.resnet50(seed=0)))

    print()
    print(f"device: {len(jax.devices())} x {dev.device_kind} ({dev.platform})"
          + (f" -- NOTE: {note}" if note else ""))
    print("| benchmark | size | batch | alphas | images x alphas / s | pyramid fwd+inv "
          "per batch (ms) | per image (us) | FFT-floor fraction | CPU check |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        chk = "-" if "check_ok" not in r else ("ok" if r["check_ok"] else "MISMATCH")
        if r["kind"] == "resnet_morph":
            tt = "-" if not r.get("t_torch_s") else (
                f"plenoptic + torch ({r['torch_device']}) {1e3 * r['t_torch_s']:.1f} ms, "
                f"{r['torch_over_jax']:.2f}x")
            print(f"| ResNet-50 CSP-phase morph, 16 frames | 224x224x3 | 1 | 16 | - | "
                  f"morph {1e3 * r['t_morph_s']:.1f} ms | floor {1e3 * r['t_floor_s']:.1f} ms "
                  f"| {r['morph_over_floor']:.2f}x floor | {tt} |")
            continue
        if r["kind"] == "pyramid":
            print(f"| pyramid fwd+inv | {r['size']}x{r['size']} | {r['n']} | - | - | "
                  f"{1e3 * r['t_fwd_inv_s']:.2f} | {r['us_per_image_fwd_inv']:.1f} | "
                  f"{r['floor_fraction']:.2f} | {chk} |")
        else:
            print(f"| sweep {r['domain']} | {r['size']}x{r['size']}x{r['channels']} | "
                  f"{r['n']} | {r['n_alphas']} | {r['image_alphas_per_s']:.0f} | - | - | - | "
                  f"{chk} |")
    ok = all(r.get("check_ok", True) for r in rows)
    if args.json:
        save_json(args.json, {
            "benchmark": "device_bench", "jax": jax.__version__,
            "device": dev.device_kind, "platform": dev.platform,
            "n_devices": len(jax.devices()), "small": small, "note": note,
            "natural_images": nat_source, "host": platform.node(),
            "cpus": os.cpu_count(), "wall_s": time.perf_counter() - T0, "checks_ok": ok,
            "rows": rows})
        print(f"\nwrote {args.json}")
    say("done" + ("" if ok else " -- CPU CHECK FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
