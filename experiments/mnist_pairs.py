"""Study 2: MNIST pairs 3 -> 8, 1 -> 7, 5 -> 6 in every domain at matched L2 budgets.

Driver: the CNN trained on mnist5k; independent evaluators: ResNetMini, TinyMLP (trained on
mnist5k) and the pretrained ccexam CNN. For the first ``--per-pair`` test images of each
source class that the driver classifies correctly, every domain (pixel, Fourier phase, CSP
phase, joint CSP) is morphed toward the target with :func:`lens_jax.compare_domains` at
each budget (1 and 2 are the protocol's MNIST budgets, method.md §9; 4 shows where the
edits go when pushed further); strips, GIFs, a combined figure per source and a gallery
(source and every domain's endpoint, one row per pair) are written for each budget in
``--fig-budgets``.

    python experiments/mnist_pairs.py [--out outputs/mnist_pairs] [--per-pair 2]
        [--budgets 1,2,4] [--fig-budgets 2,4] [--frames 12] [--mode fixed] [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, experiment_args, load_model, record_command, write_rows  # noqa: E402

PAIRS = ((3, 8), (1, 7), (5, 6))


def gallery_figure(path, sources, endpoints, rows_by_pair, domains):
    """Rows = pairs; columns = source, then each domain's endpoint with p(target)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from lens_jax import viz
    from lens_jax.compare import DOMAIN_LABELS

    pairs = list(sources)
    fig = Figure(figsize=(1.5 * (len(domains) + 1) + 0.3, 1.85 * len(pairs) + 0.5),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(len(pairs), len(domains) + 1, squeeze=False))
    for r, (s, t) in enumerate(pairs):
        img, i = sources[(s, t)]
        axes[r, 0].imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(f"{s} → {t}", fontsize=10)
        axes[r, 0].set_xlabel(f"source #{i}", fontsize=7)
        for c, d in enumerate(domains, start=1):
            row = rows_by_pair[(s, t)][d]
            axes[r, c].imshow(endpoints[(s, t)][d][..., 0], cmap="gray", vmin=0, vmax=1,
                              interpolation="nearest")
            ev = [k[:-10] for k, v in row.items() if k.endswith("_is_target") and v]
            axes[r, c].set_xlabel(f"p({t})={row['p_target']:.3f}"
                                  + (f"\n→{t}: {','.join(ev)}" if ev else ""), fontsize=7)
            if r == 0:
                axes[r, c].set_title(DOMAIN_LABELS.get(d, d), fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    B = next(iter(next(iter(rows_by_pair.values())).values()))["budget"]
    fig.suptitle(f"MNIST endpoints at the same image change (L2 = {B:g})", fontsize=10)
    return viz.save_figure(fig, path)


def main(argv=None) -> int:
    args = experiment_args(__doc__.splitlines()[0], argv, out="outputs/mnist_pairs",
                           per_pair=2, budgets="1,2,4", fig_budgets="2,4", frames=12,
                           mode="fixed",
                           domains="pixel,fourier_phase,csp_phase,csp_joint", warp=True)
    import numpy as np
    from lens_jax import data, pretrained
    from lens_jax.compare import compare_domains

    out = Path(args.out)
    budgets = sorted(float(b) for b in str(args.budgets).split(","))
    fig_budgets = {float(b) for b in str(args.fig_budgets).split(",") if b.strip()}
    domains = tuple(d.strip() for d in str(args.domains).split(","))
    per_pair, frames, warp_steps = args.per_pair, args.frames, 200
    pairs = PAIRS
    if args.quick:
        per_pair, frames, warp_steps, args.warp = 1, 3, 20, False
        budgets, domains, pairs = [2.0], domains[:1] + domains[2:3], PAIRS[:1]
        fig_budgets = {2.0}
    with Timer() as timer:
        print(f"[mnist_pairs] classifiers (driver cnn, evaluators"
              f"{'' if args.quick else ' resnet_mini, mlp,'} ccexam)", flush=True)
        driver, _, dinfo = load_model("cnn", "mnist5k", quick=args.quick, seed=args.seed)
        evaluators = {}
        if not args.quick:
            for m in ("resnet_mini", "mlp"):
                evaluators[m] = load_model(m, "mnist5k", seed=args.seed)[0]
        evaluators["ccexam"] = pretrained.ccexam_mnist()[0]
        x, y = data.load("mnist5k", "test")
        pred = np.asarray(driver(x)).argmax(1)
        digits = [str(k) for k in range(10)]
        rows, sources = [], {}
        endpoints = {B: {} for B in fig_budgets}
        by_pair = {B: {} for B in fig_budgets}
        for s, t in pairs:
            idx = np.where((y == s) & (pred == s))[0][:per_pair]
            for j, i in enumerate(idx):
                i = int(i)
                for B in budgets:
                    figs = B in fig_budgets
                    res = compare_domains(
                        driver, x[i], target=t, source=s, domains=domains, l2_budget=B,
                        n_frames=frames, mode=args.mode, class_names=digits,
                        evaluators=evaluators, out_dir=out if figs else None,
                        name=f"mnist_{s}to{t}_{i}_B{B:g}",
                        title=f"MNIST {s} → {t} (test #{i})",
                        warp=args.warp, warp_steps=warp_steps, return_morphs=True,
                        verbose=True)
                    rs, morphs = res
                    for r in rs:
                        r["index"] = i
                    rows += rs
                    if figs and j == 0:
                        sources[(s, t)] = (x[i], i)
                        endpoints[B][(s, t)] = {d: np.asarray(m.frames[-1])
                                                for d, m in morphs.items()}
                        by_pair[B][(s, t)] = {r["domain"]: r for r in rs}
        gal = [gallery_figure(out / f"gallery_B{B:g}.png", sources, endpoints[B], by_pair[B],
                              domains) for B in sorted(fig_budgets)]
        ev = list(evaluators)
        cols = (["name", "index", "domain", "budget", "reached", "alpha_star", "p_target_0",
                 "p_target", "p_source", "pred", "flip_frame", "l2", "ssim", "E_warp",
                 "E_warp_gain", "shift_dx", "shift_dy"]
                + [f"{e}_is_target" for e in ev])
        paths = write_rows(rows, out / "results", cols)
        # per budget and domain: medians and transfer counts
        summary = []
        for B in budgets:
            for d in domains:
                rs = [r for r in rows if r["budget"] == B and r["domain"] == d]
                n = len(rs)
                srow = {"budget": B, "domain": d, "n": n,
                        "reached": sum(r["reached"] for r in rs),
                        "median p(target)": float(np.median([r["p_target"] for r in rs])),
                        "driver flips": sum(r["pred"] == r["target"] for r in rs)}
                for e in ev:
                    srow[f"{e} → target"] = sum(bool(r[f"{e}_is_target"]) for r in rs)
                if args.warp:
                    srow["median E warp"] = float(np.nanmedian([r["E_warp"] for r in rs]))
                    srow["median E warp+gain"] = float(np.nanmedian([r["E_warp_gain"]
                                                                     for r in rs]))
                summary.append(srow)
        spaths = write_rows(summary, out / "summary")
    record_command(out, timer.wall_s)
    print(Path(paths["md"]).read_text())
    print(Path(spaths["md"]).read_text())
    print(f"[mnist_pairs] driver test accuracy {dinfo['test_accuracy']:.3f}; wall "
          f"{timer.wall_s:.0f} s; gallery {gal}; tables {paths['md']}, {spaths['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
