"""Study 1: does a CSP-phase morph move the feature where a pixel morph cross-fades?

Data: the ``synthetic`` set (32x32, one Gaussian blob; class 0 "left" when the blob centre
``cx < (S - 1) / 2``, class 1 "right" otherwise; lens_jax/datasets/synthetic.py), so the
correct class change is a horizontal translation. Two drivers: a CNN trained (or reused) on
it, and a linear softmax regression fitted here (a template-like classifier, as in the
method.md §16 calibration, whose pixel gradient is the same image for every source).
For ``--n`` test sources of class 0 that the driver classifies correctly, every domain is
morphed toward class 1 at the matched L2 budgets (one gradient at the source, endpoints at
L2 = B). At each endpoint we fit the best global translation of the source
(:func:`lens_jax.metrics.best_translation`): ``dx`` (pixels, + = toward the target side)
and the fraction of the edit energy that translated copy explains; plus the smooth-warp
explained energy E and the driver's p(target). Medians with 95% bootstrap CIs, and the
median shift separately for blobs in the outer (left) and inner half of the class-0 slot
with the correlation of ``dx`` with the blob position ``cx``: a driver's gradient can also
be lowered by moving the blob *out of* the class-0 slot on its far side.

An endpoint that did not reach a budget (phase edits are bounded: rotating the phases of
the bands cannot move more energy than the bands hold) is the farthest frame found; the
``reached`` column counts them.

    python experiments/synthetic.py [--out outputs/synthetic] [--n 32] [--budgets 1,2,4]
        [--drivers cnn,linear] [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, experiment_args, load_model, record_command, write_rows  # noqa: E402

import numpy as np  # noqa: E402

DOMAINS = ("pixel", "fourier_phase", "csp_phase", "csp_joint")


def fit_linear(x, y, num_classes, *, steps=300, lr=0.05, weight_decay=1e-3, seed=0):
    """Softmax regression on flattened pixels (full batch, Adam): a linear driver."""
    import jax
    import jax.numpy as jnp
    import optax
    n, d = len(x), int(np.prod(x.shape[1:]))
    X = jnp.asarray(x.reshape(n, d), jnp.float32)
    Y = jnp.asarray(y, jnp.int32)
    params = {"w": jnp.zeros((d, num_classes), jnp.float32),
              "b": jnp.zeros((num_classes,), jnp.float32)}
    opt = optax.adam(lr)

    def loss(p):
        z = X @ p["w"] + p["b"]
        return (optax.softmax_cross_entropy_with_integer_labels(z, Y).mean()
                + weight_decay * jnp.sum(p["w"] ** 2))

    @jax.jit
    def step(p, st):
        g = jax.grad(loss)(p)
        u, st = opt.update(g, st, p)
        return optax.apply_updates(p, u), st

    st = opt.init(params)
    for _ in range(steps):
        params, st = step(params, st)
    w, b = params["w"], params["b"]

    def logits_fn(images):
        return images.reshape(images.shape[0], -1).astype(jnp.float32) @ w + b
    return logits_fn


def summary_figure(path, summary, domains, budgets, drivers):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from lens_jax import viz
    from lens_jax.compare import DOMAIN_LABELS

    fig = Figure(figsize=(11, 3.1 * len(drivers) + 0.3), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(len(drivers), 3, squeeze=False))
    keys = [("dx", "blob shift dx (px, + = toward target)"),
            ("explained", "edit energy explained by the shift"),
            ("p_target", "driver p(right)")]
    for r, drv in enumerate(drivers):
        for ax, (k, lab) in zip(axes[r], keys):
            for j, d in enumerate(domains):
                rs = [next(s for s in summary if s["driver"] == drv and s["domain"] == d
                           and s["budget"] == B) for B in budgets]
                est = np.array([s[f"{k}_median"] for s in rs])
                lo = np.array([s[f"{k}_lo"] for s in rs])
                hi = np.array([s[f"{k}_hi"] for s in rs])
                xs = np.array(budgets) * (1 + 0.03 * (j - 1.5))
                ax.errorbar(xs, est, yerr=[est - lo, hi - est], marker="o", ms=4, capsize=3,
                            label=DOMAIN_LABELS.get(d, d))
            ax.set_xlabel("L2 budget")
            ax.set_title(f"{drv} driver: {lab}", fontsize=9)
            ax.grid(alpha=0.3)
            if k == "p_target":
                ax.set_ylim(-0.02, 1.02)
        axes[r, 0].axhline(0, color="0.5", lw=0.8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Synthetic blob, left → right: medians and 95% bootstrap CIs over sources",
                 fontsize=10)
    return viz.save_figure(fig, path)


def main(argv=None) -> int:
    args = experiment_args(__doc__.splitlines()[0], argv, out="outputs/synthetic", n=32,
                           budgets="1,2,4", examples=2, frames=12, warp=True,
                           dataset="synthetic", drivers="cnn,linear")
    import jax
    import jax.numpy as jnp
    from lens_jax import data, metrics
    from lens_jax.compare import DOMAIN_LABELS, compare_domains
    from lens_jax.lens import morph

    out = Path(args.out)
    budgets = sorted(float(b) for b in str(args.budgets).split(","))
    drivers = [d.strip() for d in str(args.drivers).split(",") if d.strip()]
    n, examples, frames, warp_steps, domains = args.n, args.examples, args.frames, 200, DOMAINS
    if args.quick:
        n, examples, frames, warp_steps = 3, 1, 4, 20
        budgets, domains, args.warp = budgets[:2], ("pixel", "csp_phase"), False
        drivers = drivers[:1]
    with Timer() as timer:
        x, y, dinfo = data.load(args.dataset, "test", with_info=True)
        S = x.shape[1]
        names = dinfo["class_names"]
        cx = dinfo["params"]["cx"]
        fns, accs = {}, {}
        for drv in drivers:
            if drv == "linear":
                xt, yt = data.load(args.dataset, "train")
                fns[drv] = fit_linear(xt, yt, len(names), seed=args.seed)
            else:
                fns[drv] = load_model(drv, args.dataset, quick=args.quick, seed=args.seed)[0]
            accs[drv] = float(np.mean(np.asarray(fns[drv](x)).argmax(1) == y))
            print(f"[synthetic] {drv} driver on {args.dataset}: test accuracy {accs[drv]:.4f}",
                  flush=True)
        ok = (y == 0)
        for drv in drivers:
            ok &= np.asarray(fns[drv](x)).argmax(1) == 0
        idx = np.where(ok)[0][:n]
        print(f"[synthetic] {len(idx)} sources of class 0 ({names[0]}, classified correctly "
              f"by every driver) -> class 1 ({names[1]}); budgets {budgets}", flush=True)
        rows = []
        bt = jax.jit(lambda a, b: metrics.best_translation(a, b, max_shift=8))
        for drv in drivers:
            driver = fns[drv]
            for d in domains:
                for i in idx:
                    i = int(i)
                    m = morph(driver, x[i], target=1, source=0, domain=d,
                              l2_budget=jnp.asarray(budgets, jnp.float32))
                    frames_e = np.asarray(m.frames)
                    for b, B in enumerate(budgets):
                        end = frames_e[b]
                        tr = bt(x[i], end)
                        row = {"driver": drv, "index": i, "domain": d, "budget": B,
                               "reached": bool(m.reached[b]), "l2": float(m.l2[b]),
                               "alpha": float(m.alphas[b]), "p_target": float(m.probs[b, 1]),
                               "flipped": bool(np.argmax(m.probs[b]) == 1),
                               "dx": float(tr.shift[1]), "dy": float(tr.shift[0]),
                               "explained": float(tr.explained),
                               "cx": float(cx[i]), "dx_needed": float((S - 1) / 2 - cx[i])}
                        if args.warp:
                            row["E_warp"] = float(metrics.warp_explained_energy(
                                x[i], end, steps=warp_steps))
                        rows.append(row)
                rs = [r for r in rows if r["driver"] == drv and r["domain"] == d
                      and r["budget"] == budgets[-1]]
                print(f"[synthetic] {drv}: {DOMAIN_LABELS[d]:<13} B={budgets[-1]:g}: median dx "
                      f"{np.median([r['dx'] for r in rs]):+.2f} px, explained "
                      f"{np.median([r['explained'] for r in rs]):.2f}, p(right) "
                      f"{np.median([r['p_target'] for r in rs]):.3f} ({timer.wall_s:.0f} s)",
                      flush=True)
        summary = []
        for drv in drivers:
            for B in budgets:
                for d in domains:
                    rs = [r for r in rows if r["driver"] == drv and r["domain"] == d
                          and r["budget"] == B]
                    srow = {"driver": drv, "budget": B, "domain": d, "n": len(rs),
                            "reached": sum(r["reached"] for r in rs)}
                    for k in ("dx", "explained", "p_target") + (("E_warp",) if args.warp
                                                                 else ()):
                        ci = metrics.bootstrap_ci([r[k] for r in rs], n_boot=2000, key=0)
                        srow[f"{k}_median"], srow[f"{k}_lo"], srow[f"{k}_hi"] = ci[:3]
                    srow["|dy| median"] = float(np.median([abs(r["dy"]) for r in rs]))
                    # direction vs position inside the class-0 slot (centre: u = 0.35)
                    cxs = np.array([r["cx"] for r in rs])
                    dxs = np.array([r["dx"] for r in rs])
                    mid = 0.35 * (S - 1)
                    srow["dx_outer_half"] = float(np.median(dxs[cxs < mid])) \
                        if np.any(cxs < mid) else float("nan")
                    srow["dx_inner_half"] = float(np.median(dxs[cxs >= mid])) \
                        if np.any(cxs >= mid) else float("nan")
                    srow["corr_cx_dx"] = float(np.corrcoef(cxs, dxs)[0, 1]) \
                        if len(rs) > 2 and np.std(dxs) > 0 else float("nan")
                    srow["flips"] = sum(r["flipped"] for r in rs)
                    summary.append(srow)
        table = [{"driver": s["driver"], "budget": s["budget"],
                  "domain": DOMAIN_LABELS[s["domain"]],
                  "reached": f"{s['reached']}/{s['n']}",
                  "median dx (px) [95% CI]": f"{s['dx_median']:+.2f} [{s['dx_lo']:+.2f}, "
                                             f"{s['dx_hi']:+.2f}]",
                  "median |dy| (px)": s["|dy| median"],
                  "dx, cx < slot centre": s["dx_outer_half"],
                  "dx, cx ≥ slot centre": s["dx_inner_half"],
                  "corr(cx, dx)": s["corr_cx_dx"],
                  "explained by shift [CI]": f"{s['explained_median']:.2f} "
                                             f"[{s['explained_lo']:.2f}, {s['explained_hi']:.2f}]",
                  **({"E warp [CI]": f"{s['E_warp_median']:.2f} [{s['E_warp_lo']:.2f}, "
                                     f"{s['E_warp_hi']:.2f}]"} if args.warp else {}),
                  "driver p(right) [CI]": f"{s['p_target_median']:.3f} "
                                          f"[{s['p_target_lo']:.3f}, {s['p_target_hi']:.3f}]",
                  "flips": f"{s['flips']}/{s['n']}"} for s in summary]
        write_rows(rows, out / "per_source")
        write_rows(summary, out / "summary_raw")
        tpaths = write_rows(table, out / "summary")
        fig = summary_figure(out / "synthetic_summary.png", summary, domains, budgets, drivers)
        B_ex = 2.0 if 2.0 in budgets else budgets[-1]
        for drv in drivers:
            for i in idx[:examples]:
                compare_domains(fns[drv], x[int(i)], target=1, source=0, domains=domains,
                                l2_budget=B_ex, n_frames=frames, class_names=names,
                                out_dir=out, name=f"blob_{int(i)}_{drv}", warp=args.warp,
                                warp_steps=warp_steps, max_shift=8,
                                title=f"{drv} driver, blob #{int(i)} (cx={cx[int(i)]:.1f}): "
                                      "left → right")
        needed = float(np.median([(S - 1) / 2 - cx[int(i)] for i in idx]))
    record_command(out, timer.wall_s)
    print(Path(tpaths["md"]).read_text())
    print("[synthetic] driver test accuracies: "
          + ", ".join(f"{k} {v:.4f}" for k, v in accs.items()))
    print(f"[synthetic] median shift needed to cross the class boundary: {needed:+.2f} px")
    print(f"[synthetic] wall {timer.wall_s:.0f} s; figure {fig}; table {tpaths['md']}; "
          f"strips {out}/blob_*_strip.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
