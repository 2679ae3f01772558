"""Benchmark: lens_jax's steerable pyramid against plenoptic, pyrtools and an FFT floor.

Cases (height 4, order 3, complex, downsampled, float32 unless noted):

* ``S``: one 256x256 image;
* ``B``: a batch of 64 images of 64x64.

Contenders, timed interleaved (A B C A B C ..., see ``_timing.py``) after a warm-up:

* ``lens_jax``: jitted ``inverse(forward(x))`` ("real" synthesis, the anchors' inverse);
  ``lens_jax adjoint``: the "adjoint" synthesis; ``lens_jax tight+adjoint``: the lens'
  configuration (``tight_frame=True``, adjoint synthesis);
* ``plenoptic``: ``SteerablePyramidFreq`` float32, ``torch.set_num_threads(2)``,
  ``recon_pyr(forward(x))`` under ``torch.no_grad()``; ``plenoptic 1thr``: the same with
  one thread (on an oversubscribed machine torch's 2 threads can be several times
  slower than 1; the targets are checked against the faster of the two);
* ``pyrtools``: float64, one image at a time (a Python loop over the batch);
* ``floor``: the same FFT calls as lens_jax, alone, jitted, on arrays of the same shapes
  (forward: 1 rfft2 HxW, 1 irfft2 HxW, per scale one batched irfft2 of 2K band-size
  images, 1 irfft2 low-pass; inverse: 1 rfft2 low-pass, per scale one batched rfft2 of K
  real band images ("real") or one batched complex fft2 of the K bands ("adjoint"),
  1 rfft2 HxW, 1 irfft2 HxW).  What it
  leaves out is lens_jax's own work: mask products, crops, pastes, orientation sums.

Then the same with a gradient: ``d/dx sum(inverse(forward(x))**2)`` (``jax.grad``; torch
autograd ``backward()`` for plenoptic; the floor's VJP for the floor).

Targets (issue): >= 1.5x faster than plenoptic in both cases; <= 1.3x the FFT floor.

``--against REV``: the pyramid of git revision ``REV`` (its ``pyramid.py``,
``_pyramid_plan.py``, ``_trig.py``, loaded as a separate package) is timed in the same
interleaved rounds (``lens_jax@REV ...``), and the ratios ``t(now) / t(REV)`` printed:
the check that a change brought no speed regression, free of the machine's drift.  The
number of instructions (and FFTs) of each compiled program, now and at ``REV``, is
printed too: a load-independent check.

``--recon-errors``: instead of timing, the reconstruction error (max abs, on a uniform
[0, 1] image) of lens_jax, plenoptic and pyrtools at even, odd and non-square sizes.

Usage::

    python benchmarks/bench_pyramid.py [--repeats 30] [--warmup 3] [--json out.json]
    python benchmarks/bench_pyramid.py --no-pyrtools --against HEAD~1
    python benchmarks/bench_pyramid.py --recon-errors
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import blocking, format_summary, interleaved, machine_info, summarize  # noqa: E402

from lens_jax.pyramid import SteerablePyramid  # noqa: E402

HEIGHT, ORDER = 4, 3
CASES = {"S": (1, 256, 256), "B": (64, 64, 64)}     # (batch, H, W)
TARGET_SPEEDUP, TARGET_FLOOR = 1.5, 1.3


# ----------------------------------------------------------------------- FFT floor
def make_floor(pyr: SteerablePyramid, batch_shape: tuple, synthesis: str, dtype=np.float32):
    """A jitted function with exactly lens_jax's FFT calls, and its arguments.

    Returns ``(f, args)``; ``f(*args)`` returns every FFT output.  The forward band
    irfft2 take precomputed spectra (in lens_jax they are mask products of crops of
    the image spectrum); everything else is chained as in lens_jax.
    """
    H, W = pyr.image_shape
    K = pyr.num_orientations
    nb = 2 * K if pyr.is_complex else K
    adjoint = synthesis == "adjoint" and pyr.is_complex
    rng = np.random.default_rng(0)
    cdt = np.result_type(dtype, np.complex64)

    def spec(shape):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(cdt)

    lead = tuple(batch_shape)
    band_specs = tuple(spec(lead + (nb, h, w // 2 + 1)) for h, w in pyr.band_shapes)
    lh, lw = pyr.lowpass_shape
    x = rng.uniform(size=lead + (H, W)).astype(dtype)
    low_spec = spec(lead + (lh, lw // 2 + 1))

    def fft_only(x, band_specs, low_spec):
        X = jnp.fft.rfft2(x)                                       # forward
        hp = jnp.fft.irfft2(X, s=(H, W))
        bands = [jnp.fft.irfft2(b, s=hw) for b, hw in zip(band_specs, pyr.band_shapes)]
        lp = jnp.fft.irfft2(low_spec, s=(lh, lw))
        Y = jnp.fft.rfft2(lp)                                      # inverse
        if adjoint:      # one complex fft2 per band (as lens_jax's adjoint synthesis)
            band_f = [jnp.fft.fft2(jax.lax.complex(b[..., :K, :, :], b[..., K:, :, :]))
                      for b in bands]
        else:
            band_f = [jnp.fft.rfft2(b[..., :K, :, :]) for b in bands]
        hp_f = jnp.fft.rfft2(hp)
        out = jnp.fft.irfft2(X, s=(H, W))
        return out, Y, tuple(band_f), hp_f

    return fft_only, (x, band_specs, low_spec)


def floor_with_grad(fft_only):
    """Forward FFTs plus their transposes (the VJP with the outputs as cotangents)."""
    def f(*args):
        out, vjp = jax.vjp(fft_only, *args)
        return out, vjp(out)
    return f


# ----------------------------------------------------------------------- contenders
def load_base(rev: str):
    """The pyramid module of git revision ``rev``, as the package ``lens_jax_base``."""
    import importlib
    import subprocess
    import tempfile
    root = Path(__file__).resolve().parent.parent
    pkg = Path(tempfile.mkdtemp()) / "lens_jax_base"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for f in ("pyramid.py", "_pyramid_plan.py", "_trig.py"):
        src = subprocess.run(["git", "-C", str(root), "show", f"{rev}:lens_jax/{f}"],
                             capture_output=True, text=True, check=True).stdout
        (pkg / f).write_text(src)
    sys.path.insert(0, str(pkg.parent))
    return importlib.import_module("lens_jax_base.pyramid")


def hlo_size(pyr, x, synthesis, grad=False) -> tuple[int, int]:
    """(instructions, FFTs) of the compiled ``inverse(forward(x))`` (or its gradient)."""
    f = lambda x: pyr.inverse(pyr.forward(x), synthesis=synthesis)
    if grad:
        f = jax.grad(lambda x, g=f: jnp.sum(g(x) ** 2))
    lines = [ln for ln in jax.jit(f).lower(x).compile().as_text().splitlines()
             if " = " in ln and "(" in ln]
    return len(lines), sum(" fft(" in ln for ln in lines)


def lens_jax_fns(pyr: SteerablePyramid, x: jax.Array, synthesis: str):
    def recon(x):
        return pyr.inverse(pyr.forward(x), synthesis=synthesis)

    def loss(x):
        return jnp.sum(recon(x) ** 2)

    fi = jax.jit(recon)
    fg = jax.jit(jax.grad(loss))
    return blocking(lambda: fi(x)), blocking(lambda: fg(x))


def plenoptic_fns(shape, x_np, threads=2):
    """plenoptic float32 with ``threads`` torch threads (set per call: the count is
    global, and on an oversubscribed machine 2 threads can be much slower than 1)."""
    import plenoptic as po
    import torch
    pyr = po.process.SteerablePyramidFreq(shape, height=HEIGHT, order=ORDER, is_complex=True)
    x = torch.as_tensor(x_np[:, None])                             # (B, 1, H, W) float32

    def fi():
        torch.set_num_threads(threads)
        with torch.no_grad():
            return pyr.recon_pyr(pyr(x))

    def fg():
        torch.set_num_threads(threads)
        xg = x.clone().requires_grad_(True)
        loss = (pyr.recon_pyr(pyr(xg)) ** 2).sum()
        loss.backward()
        return xg.grad

    return fi, fg


def pyrtools_fn(x_np):
    import pyrtools as pt
    imgs = x_np.astype(np.float64)

    def fi():
        out = []
        for img in imgs:
            p = pt.pyramids.SteerablePyramidFreq(img, HEIGHT, ORDER, 1, is_complex=True)
            out.append(p.recon_pyr())
        return out

    return fi


def run_case(name, batch, H, W, repeats, warmup, with_pyrtools=True, base=None):
    shape = (H, W)
    x_np = np.random.default_rng(1).uniform(size=(batch, H, W)).astype(np.float32)
    x = jax.device_put(x_np if batch > 1 else x_np[0])
    lead = (batch,) if batch > 1 else ()
    pyr = SteerablePyramid(shape, HEIGHT, ORDER)
    tight = pyr.replace(tight_frame=True)

    real_i, real_g = lens_jax_fns(pyr, x, "real")
    adj_i, adj_g = lens_jax_fns(pyr, x, "adjoint")
    tight_i, tight_g = lens_jax_fns(tight, x, "adjoint")
    floors = {}
    for synthesis in ("real", "adjoint"):
        fft_only, args = make_floor(pyr, lead, synthesis)
        args = jax.device_put(args)
        f1, f2 = jax.jit(fft_only), jax.jit(floor_with_grad(fft_only))
        floors[synthesis] = (blocking(lambda f1=f1, a=args: f1(*a)),
                             blocking(lambda f2=f2, a=args: f2(*a)))
    pl_i, pl_g = plenoptic_fns(shape, x_np, threads=2)
    pl1_i, pl1_g = plenoptic_fns(shape, x_np, threads=1)

    inv = {"lens_jax": real_i, "lens_jax adjoint": adj_i, "lens_jax tight+adjoint": tight_i,
           "floor": floors["real"][0], "floor adjoint": floors["adjoint"][0],
           "plenoptic": pl_i, "plenoptic 1thr": pl1_i}
    if with_pyrtools:
        inv["pyrtools"] = pyrtools_fn(x_np)
    grad = {"lens_jax": real_g, "lens_jax adjoint": adj_g, "lens_jax tight+adjoint": tight_g,
            "floor": floors["real"][1], "floor adjoint": floors["adjoint"][1],
            "plenoptic": pl_g, "plenoptic 1thr": pl1_g}
    if base is not None:
        mod, rev = base
        bpyr = mod.SteerablePyramid(shape, HEIGHT, ORDER)
        for label, bp, synthesis in (("", bpyr, "real"), (" adjoint", bpyr, "adjoint"),
                                     (" tight+adjoint", bpyr.replace(tight_frame=True),
                                      "adjoint")):
            fi, fg = lens_jax_fns(bp, x, synthesis)
            inv[f"lens_jax@{rev}{label}"], grad[f"lens_jax@{rev}{label}"] = fi, fg
            now = pyr.replace(tight_frame=bp.tight_frame)
            for g in (False, True):
                print(f"compiled instructions (total, FFTs), lens_jax{label}"
                      f"{' +gradient' if g else ''}: now {hlo_size(now, x, synthesis, g)}, "
                      f"{rev} {hlo_size(bp, x, synthesis, g)}", flush=True)
    results = {}
    for group, funcs in (("forward+inverse", inv), ("forward+inverse+gradient", grad)):
        times = interleaved(funcs, repeats=repeats, warmup=warmup)
        rows = summarize(times, speedup_over=("plenoptic", "plenoptic 1thr", "pyrtools"),
                         relative_to=("floor",))
        # each lens_jax variant against its own floor (adjoint synthesis: K band fft2)
        med = {r["name"]: r["median_ms"] for r in rows}
        for r in rows:
            if r["name"] in ("lens_jax adjoint", "lens_jax tight+adjoint"):
                r["x_floor"] = r["median_ms"] / med["floor adjoint"]
        title = (f"case {name}: {batch} x {H}x{W}, height {HEIGHT}, order {ORDER}, complex, "
                 f"float32 (pyrtools float64) -- {group}")
        print(format_summary(rows, title), flush=True)
        if base is not None:
            for label in ("", " adjoint", " tight+adjoint"):
                now, then = med[f"lens_jax{label}"], med[f"lens_jax@{base[1]}{label}"]
                print(f"  lens_jax{label}: t(now) / t({base[1]}) = {now / then:.3f} "
                      f"({now:.2f} / {then:.2f} ms)", flush=True)
        print(flush=True)
        results[group] = {"rows": rows, "times_s": times}
    return results


def check_targets(results) -> list[str]:
    lines = []
    for case, res in results.items():
        for group, r in res.items():
            rows = {row["name"]: row for row in r["rows"]}
            for name in ("lens_jax", "lens_jax adjoint", "lens_jax tight+adjoint"):
                row = rows[name]
                # against the faster of plenoptic's 2- and 1-thread runs
                sp = min(row["speedup_vs_plenoptic"], row["speedup_vs_plenoptic 1thr"])
                fl = row["x_floor"]
                ok = sp >= TARGET_SPEEDUP and fl <= TARGET_FLOOR
                lines.append(f"{'ok  ' if ok else 'MISS'} case {case} {group:<25} {name:<23} "
                             f"{sp:5.2f}x faster than plenoptic (target >= {TARGET_SPEEDUP}), "
                             f"{fl:4.2f}x the FFT floor (target <= {TARGET_FLOOR})")
    return lines


def recon_errors(shapes=((256, 256), (255, 255), (240, 320), (256, 255))):
    """Max abs reconstruction error of each implementation (height 4, order 3, complex,
    default normalisation) on a uniform [0, 1] image, float64 and float32."""
    import warnings

    import plenoptic as po
    import pyrtools as pt
    import torch
    jax.config.update("jax_enable_x64", True)
    rows = []
    for shape in shapes:
        x = np.random.default_rng(0).uniform(size=shape)
        row = {"shape": f"{shape[0]}x{shape[1]}"}
        for dt in (np.float64, np.float32):
            xd = x.astype(dt)
            for name, kw in (("lens_jax", {}), ("lens_jax lut+peers",
                                                 {"masks": "lut", "grid": "peers"})):
                pyr = SteerablePyramid(shape, HEIGHT, ORDER, **kw)
                rec = jax.jit(lambda a, p=pyr: p.inverse(p.forward(a)))(xd)
                row[f"{name} {np.dtype(dt).name}"] = float(np.abs(np.asarray(rec) - xd).max())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ppyr = po.process.SteerablePyramidFreq(shape, HEIGHT, ORDER, is_complex=True)
            tdt = torch.float64 if dt == np.float64 else torch.float32
            ppyr = ppyr.to(tdt)
            t = torch.as_tensor(xd[None, None])
            with torch.no_grad():
                rec = ppyr.recon_pyr(ppyr(t)).numpy()[0, 0]
            row[f"plenoptic {np.dtype(dt).name}"] = float(np.abs(rec - xd).max())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp = pt.pyramids.SteerablePyramidFreq(x, HEIGHT, ORDER, 1, is_complex=True)
        row["pyrtools float64"] = float(np.abs(pp.recon_pyr() - x).max())
        rows.append(row)
    cols = [k for k in rows[0] if k != "shape"]
    print(f"reconstruction error, max abs on a uniform [0, 1] image (height {HEIGHT}, "
          f"order {ORDER}, complex)")
    print("| size | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for r in rows:
        print(f"| {r['shape']} | " + " | ".join(f"{r[c]:.1e}" for c in cols) + " |")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cases", default="S,B", help="comma-separated subset of S,B")
    ap.add_argument("--no-pyrtools", action="store_true", help="skip the (slow) pyrtools runs")
    ap.add_argument("--json", type=Path, default=None, help="save the results (atomically)")
    ap.add_argument("--against", metavar="REV", default=None,
                    help="also time the pyramid of git revision REV, interleaved")
    ap.add_argument("--recon-errors", action="store_true",
                    help="print reconstruction errors of lens_jax, plenoptic, pyrtools; no timing")
    args = ap.parse_args(argv)
    if args.recon_errors:
        recon_errors()
        return
    base = (load_base(args.against), args.against) if args.against else None

    info = machine_info()
    info["jax_backend"] = jax.default_backend()
    info["jax_enable_x64"] = bool(jax.config.jax_enable_x64)
    print(f"machine: {info['cpu']}, {info['cores']} cores, load average "
          f"{' '.join(map(str, info['loadavg']))} (shared machine: quote medians and ratios)")
    print("versions: " + ", ".join(f"{k} {info[k]}" for k in
                                   ("python", "jax", "numpy", "torch", "plenoptic", "pyrtools")
                                   if k in info) + f"; JAX backend {info['jax_backend']}")
    print(f"repeats {args.repeats}, warm-up {args.warmup}, interleaved\n", flush=True)
    results = {}
    for case in args.cases.split(","):
        batch, H, W = CASES[case]
        results[case] = run_case(case, batch, H, W, args.repeats, args.warmup,
                                 with_pyrtools=not args.no_pyrtools, base=base)
    lines = check_targets(results)
    print("\n".join(lines))
    info["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    print(f"load average at the end: {' '.join(map(str, info['loadavg_end']))}")
    if args.json:
        from lens_jax.tables import save_json
        save_json(args.json, {"machine": info, "height": HEIGHT, "order": ORDER,
                              "cases": {k: list(v) for k, v in CASES.items()},
                              "results": results, "targets": lines})
        print(f"saved {args.json}")


if __name__ == "__main__":
    main()
