"""Study 5: a natural photograph through EfficientNet-Lite0, luminance CSP phase vs pixel.

scikit-image's ``chelsea`` (``skimage.data.cat()`` is the same photograph) is resized to
224x224 and morphed toward lynx (287), tiger (292), red fox (277), kit fox (278), leopard
(288) and flamingo (130, expected to fail: the legacy runs needed huge steps) with the
pretrained ImageNet EfficientNet-Lite0 as the driver. Edits are luminance only (Y of YIQ,
chroma fixed); pixel edits are luminance-only too, so both domains change the same channel.
Both the fixed gradient (one gradient at the source, the method) and the live gradient
(recomputed after each of the 11 steps, persistent coordinates) are run, every morph
ending at the same L2 distance ``B`` from the source: fixed by the library's budget search;
live with normalised steps (each step changes the edited parameters by at most ``c`` in
max-norm: the per-step cap of method.md §9, so the image changes evenly even when the
gradient shrinks as p(target) approaches 1), ``c`` found by a secant search so that the
last frame lands at ``B`` (a few full live runs; within ``--tol``).
``B`` defaults to 27.7, the RMS change per pixel of L2 = 2 on 28x28 MNIST
(2 / 28 * sqrt(224 * 224 * 3)), close to the follow-up's natural-image reference (L2 = 27.84).

    python experiments/natural.py [--out outputs/natural] [--targets 287,292,277,278,288,130]
        [--modes fixed,live] [--budget 27.7] [--frames 12] [--quick]
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, experiment_args, record_command, write_rows  # noqa: E402

TARGETS = (287, 292, 277, 278, 288, 130)


def load_photo(name: str, size: int):
    """``chelsea`` / ``cat`` (the same photo), ``chelsea_crop`` (centre crop), or any
    scikit-image sample, as a (size, size, 3) float32 image."""
    import skimage.data
    from lens_jax.pretrained import imagenet_preprocess
    base, _, mode = name.partition("_")
    arr = getattr(skimage.data, base)()
    return np.asarray(imagenet_preprocess(arr, size=size, mode="crop" if mode == "crop"
                                          else "resize"), np.float32)


def live_matched(logits_fn, image, *, target, domain, budget, n_frames, h0, color, tol,
                 max_runs):
    """Live morph with capped steps whose last frame is at L2 ``budget`` (secant, log-log).

    ``h0`` is the first guess of the per-step cap. Returns ``(morph, cap, runs, reached)``;
    the run closest to the budget is kept."""
    from lens_jax.lens import morph

    def run(h):
        m = morph(logits_fn, image, target=target, domain=domain, mode="live",
                  step_cap=np.float32(h), n_frames=n_frames, color=color)
        return m, float(m.l2[-1])

    hist = []
    h = float(h0)
    best = None
    for _ in range(int(max_runs)):
        m, L = run(h)
        hist.append((h, L))
        if best is None or abs(math.log(max(L, 1e-9) / budget)) < abs(
                math.log(max(best[1], 1e-9) / budget)):
            best = (m, L, h)
        if abs(L / budget - 1) <= tol:
            break
        if len(hist) >= 2 and hist[-1][1] > 0 and hist[-2][1] > 0 \
                and hist[-1][0] != hist[-2][0] and hist[-1][1] != hist[-2][1]:
            (h1, L1), (h2, L2) = hist[-2], hist[-1]
            slope = (math.log(L2) - math.log(L1)) / (math.log(h2) - math.log(h1))
            slope = slope if slope > 0.2 else 1.0
            h_new = h2 * math.exp((math.log(budget) - math.log(L2)) / slope)
        else:
            h_new = h * budget / max(L, 1e-9)
        h = float(min(max(h_new, h / 8), h * 8))
    m, L, h = best
    return m, h, len(hist), abs(L / budget - 1) <= tol


def overview_figure(path, image, ends, targets, labels, names):
    """Rows = targets; columns = the source, then each (domain, mode) endpoint."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from lens_jax import viz
    ncol = len(labels) + 1
    fig = Figure(figsize=(2.0 * ncol, 2.25 * len(targets) + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(len(targets), ncol, squeeze=False))
    for r, t in enumerate(targets):
        axes[r, 0].imshow(np.clip(image, 0, 1))
        axes[r, 0].set_ylabel(f"→ {names[t].split(',')[0]} ({t})", fontsize=9)
        axes[r, 0].set_xlabel("source", fontsize=7)
        for c, lab in enumerate(labels, start=1):
            frame, p, pred = ends[(t, lab)]
            axes[r, c].imshow(np.clip(frame, 0, 1))
            axes[r, c].set_xlabel(f"p={p:.3f}, top-1: {names[pred].split(',')[0]}", fontsize=7)
            if r == 0:
                axes[r, c].set_title(lab, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("EfficientNet-Lite0, chelsea → ImageNet targets at the same L2 "
                 "(p = driver p(target) at the endpoint)", fontsize=10)
    return viz.save_figure(fig, path, dpi=110)


def main(argv=None) -> int:
    args = experiment_args(__doc__.splitlines()[0], argv, out="outputs/natural",
                           images="chelsea", targets=",".join(map(str, TARGETS)),
                           domains="pixel,csp_phase", modes="fixed,live", budget=0.0,
                           frames=12, size=224, color="luminance", tol=0.02, max_runs=8,
                           gifs=True)
    import jax
    from lens_jax import pretrained, viz
    from lens_jax.compare import DOMAIN_LABELS, morph_figure
    from lens_jax.lens import morph

    out = Path(args.out)
    images = [s.strip() for s in str(args.images).split(",") if s.strip()]
    targets = [int(t) for t in str(args.targets).split(",")]
    domains = [d.strip() for d in str(args.domains).split(",")]
    modes = [m.strip() for m in str(args.modes).split(",")]
    frames, size = args.frames, args.size
    if args.quick:
        targets, modes, frames, size, images = targets[:1], modes[:1], 3, 32, images[:1]
        args.gifs = False
    B = args.budget if args.budget > 0 else 2.0 / 28.0 * math.sqrt(size * size * 3)
    with Timer() as timer:
        fn, _ = pretrained.efficientnet_lite0()
        names = pretrained.imagenet_classes()
        rows = []
        for img_name in images:
            img = load_photo(img_name, size)
            z = np.asarray(fn(img[None]))[0]
            p0 = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            src = int(z.argmax())
            print(f"[natural] {img_name}: {size}x{size}, EfficientNet-Lite0 top-1 "
                  f"{names[src]} ({p0[src]:.3f}); budget L2 = {B:.2f}", flush=True)
            ends, labels = {}, []
            for t in targets:
                tn = names[t].split(",")[0]
                morphs = {}
                for d in domains:
                    fixed = None
                    for mode in modes:
                        lab = f"{DOMAIN_LABELS[d]}, {mode}"
                        t0 = timer.wall_s
                        if mode == "fixed":
                            m = morph(fn, img, target=t, domain=d, color=args.color,
                                      l2_budget=B, n_frames=frames)
                            runs, reached = 1, bool(np.all(m.reached))
                            fixed = m
                        else:
                            if fixed is None:
                                fixed = morph(fn, img, target=t, domain=d, color=args.color,
                                              l2_budget=B, n_frames=frames)
                            # first guess: the fixed morph's per-frame parameter change
                            gmax = max(float(np.max(np.abs(np.asarray(g))))
                                       for g in jax.tree.leaves(fixed.grad))
                            cap0 = float(fixed.alphas[-1]) * gmax / (frames - 1)
                            m, h, runs, reached = live_matched(
                                fn, img, target=t, domain=d, budget=B, n_frames=frames,
                                h0=cap0, color=args.color, tol=args.tol,
                                max_runs=args.max_runs)
                        m = type(m)(*[np.asarray(v) for v in m])
                        morphs[lab] = m
                        if lab not in labels:
                            labels.append(lab)
                        pt = m.probs[:, t]
                        pred = int(m.probs[-1].argmax())
                        ends[(t, lab)] = (m.frames[-1], float(pt[-1]), pred)
                        row = {"image": img_name, "target": t, "target_name": tn,
                               "domain": d, "mode": mode, "l2": float(m.l2[-1]),
                               "reached": reached, "alpha_end": float(m.alphas[-1]),
                               "p_target_0": float(pt[0]), "p_target": float(pt[-1]),
                               "p_target_max": float(pt.max()),
                               "l2_at_max": float(m.l2[int(pt.argmax())]),
                               "p_source": float(m.probs[-1, src]),
                               "pred": pred, "pred_name": names[pred].split(",")[0],
                               "runs": runs, "step_cap": (float(h) if mode != "fixed"
                                                          else None),
                               "seconds": round(timer.wall_s - t0, 1)}
                        rows.append(row)
                        print(f"[natural] → {tn:<9} {lab:<17} L2={row['l2']:.2f} p({tn}) "
                              f"{row['p_target_0']:.3f} -> {row['p_target']:.3f} (max "
                              f"{row['p_target_max']:.3f} at L2 {row['l2_at_max']:.1f}), "
                              f"top-1 {row['pred_name']} ({row['seconds']:.0f} s)",
                              flush=True)
                        stem = f"{img_name}_to{t}_{d}_{mode}"
                        cls = {t: tn, src: names[src].split(",")[0]}
                        viz.strip(m.frames, probs=m.probs, target=t, source=src,
                                  alphas=m.alphas, class_names=cls, diff=True,
                                  path=out / f"{stem}_strip.png",
                                  title=f"{img_name} → {tn} · {lab} · L2 {row['l2']:.1f}")
                        if args.gifs:
                            viz.gif(m.frames, out / f"{stem}.gif", probs=m.probs, target=t,
                                    source=src, alphas=m.alphas, class_names=cls)
                cls = {t: tn, src: names[src].split(",")[0]}
                morph_figure(morphs, img, out / f"{img_name}_to{t}_rows.png", target=t,
                             class_names=cls, title=f"{img_name} → {tn}: same L2 = {B:.1f}")
                logy = max(float(m.probs[:, t].max()) for m in morphs.values()) < 0.3
                viz.prob_curves({k: m.l2 for k, m in morphs.items()},
                                {k: m.probs for k, m in morphs.items()}, target=t,
                                source=src, class_names=cls, logy=logy,
                                xlabel="L2 distance to the source", budgets=[B],
                                path=out / f"{img_name}_to{t}_prob_vs_l2.png",
                                title=f"{img_name} → {tn}")
            ov = overview_figure(out / f"{img_name}_overview.png", img, ends, targets,
                                 labels, names)
        cols = ["image", "target", "target_name", "domain", "mode", "reached", "l2",
                "p_target_0", "p_target", "p_target_max", "l2_at_max", "p_source",
                "pred_name", "runs", "step_cap", "seconds"]
        paths = write_rows(rows, out / "results", cols)
    record_command(out, timer.wall_s)
    print(Path(paths["md"]).read_text())
    print(f"[natural] wall {timer.wall_s:.0f} s; overview {ov}; table {paths['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
