"""Study 1: does a CSP-phase morph move the feature where a pixel morph cross-fades?

Data: the ``synthetic`` set (32x32, one Gaussian blob; class 0 "left" when the blob
centre ``cx < (S - 1) / 2``, class 1 "right" otherwise), so the correct class change is a
horizontal translation.  Two drivers: a CNN trained (or reused) on it, and a linear
softmax regression fitted here (a template-like classifier whose pixel gradient is the
same image for every source).  For ``--n`` test sources of class 0 that every driver
classifies correctly, every domain is morphed toward class 1 at the matched L2 budgets
(one gradient at the source).  At each endpoint: the best global translation of the
source (``dx`` in pixels, + = toward the target side) and the fraction of the edit energy
it explains, the warp-explained energy E and the driver's p(target); medians with 95%
bootstrap intervals, and ``corr(cx, dx)``: a driver can also lower its loss by pushing
the blob out of the class-0 slot on its far side.  An endpoint that did not reach a
budget (rotating phases cannot move more energy than the bands hold) is the farthest
frame found; ``reached`` counts them.

    python experiments/synthetic.py [--out outputs/synthetic] [--n 32] [--budgets 1,2,4]
        [--drivers cnn,linear] [--quick]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lens_jax import evaluate as ev  # noqa: E402
from lens_jax.studies import job, protocol  # noqa: E402
from lens_jax.tables import markdown_table, record_command, write_tables  # noqa: E402


def main(argv=None) -> int:
    parser = protocol.study_parser(__doc__.splitlines()[0], out="outputs/synthetic", n=32,
                                  budgets="1,2,4", frames=12, warp=True,
                                  drivers="cnn,linear", domains=",".join(ev.METHODS))
    args = protocol.parse_study_args(parser, argv=argv)
    import jax
    from lens_jax import data, metrics
    from lens_jax.compare import compare_domains
    out = Path(args.out)
    budgets = sorted(float(b) for b in args.budgets.split(","))
    drivers = [d.strip() for d in args.drivers.split(",") if d.strip()]
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    n, frames, steps, warp = args.n, args.frames, 200, args.warp
    if args.quick:
        n, frames, steps, warp = 3, 4, 20, False
        budgets, domains, drivers = budgets[:2], ["pixel", "csp_phase"], drivers[:1]
    t0 = time.perf_counter()
    x, y, info = data.load("synthetic", "test", with_info=True)
    S, names, cx = x.shape[1], info["class_names"], np.asarray(info["params"]["cx"])
    fns = {}
    for d in drivers:
        if d == "linear":
            xt, yt = data.load("synthetic", "train")
            fns[d] = protocol.fit_linear(xt, yt, len(names))
        else:
            fns[d] = job.load_driver(d, "synthetic", quick=args.quick, seed=args.seed)[0]
        acc = float(np.mean(ev.predict(fns[d], x).argmax(1) == y))
        print(f"[synthetic] {d} driver: test accuracy {acc:.4f}", flush=True)
    ok = y == 0
    for fn in fns.values():
        ok &= ev.predict(fn, x).argmax(1) == 0
    idx = np.flatnonzero(ok)[:n]
    src = ev.Sources(x[idx], np.zeros(len(idx), np.int32), np.ones(len(idx), np.int32),
                     np.zeros(len(idx), np.int32), idx, np.arange(len(idx)))
    print(f"[synthetic] {len(idx)} sources of class 0 -> 1; budgets {budgets}", flush=True)
    shift = jax.jit(jax.vmap(lambda a, b: metrics.best_translation(a, b, max_shift=8)))
    rows, summary = [], []
    for d in drivers:
        for dom in domains:
            ep = ev.endpoints(fns[d], src, domain=dom, budgets=budgets)
            for b, B in enumerate(budgets):
                end = ep.frames[:, b]
                tr = shift(src.images, end)
                E = ev.warp_energy(src.images, end, gain=False, steps=steps) if warp \
                    else np.full(len(idx), np.nan)
                rs = [{"driver": d, "domain": dom, "budget": B, "index": int(i),
                       "cx": float(cx[i]), "reached": bool(ep.reached[j, b]),
                       "l2": float(ep.l2[j, b]), "p_target": float(ep.probs[j, b, 1]),
                       "dx": float(tr.shift[j, 1]), "dy": float(tr.shift[j, 0]),
                       "explained": float(tr.explained[j]), "E_warp": float(E[j])}
                      for j, i in enumerate(idx)]
                rows += rs
                s = {"driver": d, "budget": B, "domain": ev.label(dom),
                     "reached": f"{sum(r['reached'] for r in rs)}/{len(rs)}"}
                for k in ("dx", "explained", "p_target") + (("E_warp",) if warp else ()):
                    ci = ev.bootstrap([r[k] for r in rs], np.arange(len(rs)), seed=0)
                    s[f"median {k} [95% CI]"] = (f"{ci.estimate:+.3g} [{ci.low:+.3g}, "
                                                 f"{ci.high:+.3g}]")
                dxs, cxs = np.array([r["dx"] for r in rs]), np.array([r["cx"] for r in rs])
                s["median |dy|"] = float(np.median(np.abs([r["dy"] for r in rs])))
                s["corr(cx, dx)"] = (float(np.corrcoef(cxs, dxs)[0, 1])
                                     if len(rs) > 2 and dxs.std() > 0 else float("nan"))
                s["flips"] = f"{int(np.sum(ep.probs[:, b].argmax(-1) == 1))}/{len(rs)}"
                summary.append(s)
            print(f"[synthetic] {d}: {ev.label(dom)} done ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    write_tables(rows, out / "per_source")
    paths = write_tables(summary, out / "summary")
    B_ex = 2.0 if 2.0 in budgets else budgets[-1]
    for d in drivers:
        for i in idx[:1 if args.quick else 2]:
            compare_domains(fns[d], x[int(i)], target=1, source=0, domains=domains,
                            l2_budget=B_ex, n_frames=frames, class_names=names, out_dir=out,
                            name=f"blob_{int(i)}_{d}", warp=warp, warp_steps=steps,
                            max_shift=8, verbose=False,
                            title=f"{d} driver, blob #{int(i)} (cx={cx[int(i)]:.1f})")
    wall = time.perf_counter() - t0
    record_command(out, wall, argv=["experiments/synthetic.py", *args.argv])
    print(markdown_table(summary))
    print(f"[synthetic] median shift needed to cross the boundary: "
          f"{np.median((S - 1) / 2 - cx[idx]):+.2f} px; wall {wall:.0f} s; table "
          f"{paths['md']}; strips {out}/blob_*_strip.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
