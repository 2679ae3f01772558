"""Why do the joint domains transfer less live than fixed?  A diagnosis at 28 px (robust
driver, L2 = 6, the first N sources of each pair; sixth session of 2026-12-07).

For each source: the live path (the gradient recomputed at each of 11 steps) with the lens's
constant raw step (``lj.morph(..., mode="live", l2_budget=6)``) and with each step normalised
(``c / max|g|``, as ``step_cap``; ``c`` bisected so the last frame has L2 = 6), against the
fixed gradient; the driver's p(target), whether all three independent classifiers call the
endpoint the target, and how much the largest gradient entry of each part of the edit grows
along the raw live path (last step / first).  Uses the lens's private Edit (the pieces of one
morph).  Run: python docs/resolution/live_joint_diag.py csp_flow_joint 3
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np

import lens_jax as lj
from lens_jax import data, evaluate as ev
from lens_jax._edit import build, l2_distance, max_abs, safe_inv
from lens_jax.adversarial import default_attack
from lens_jax.classifier import as_classifier
from lens_jax.domains import get_domain
from lens_jax.studies import job, reference

B, STEPS = 6.0, 11
dom_name, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
fn, _, _ = job.load_model("cnn", "mnist5k", adversary=default_attack("mnist5k"))
std, _, _ = job.load_model("cnn", "mnist5k")
judges = [as_classifier(f) for f in job.load_evaluators("mnist5k", progress=False)[0].values()]
src = ev.select_sources(*data.load("mnist5k", "test"), reference.MNIST_PAIRS, n_per_pair=n,
                        seed=None, driver=std)
clf = as_classifier(fn)
res, growth = {"live, raw steps": [], "live, normalised steps": [], "fixed": []}, []
for i in range(len(src.id)):
    img, t = jnp.asarray(src.images[i]), int(src.target[i])
    ed = build(clf, img, t, None, get_domain(dom_name, tuple(img.shape[:2])), "nll",
               "luminance", 10)
    g_fn = jax.grad(ed.loss)

    @jax.jit(static_argnums=1)
    def path(c, normalised):
        def body(p, _):
            g = g_fn(p)
            s = c * safe_inv(max_abs(g)) if normalised else c
            return jax.tree.map(lambda a, b: a - s * b, p, g), {k: max_abs(v) for k, v in
                                                                  g.items()}
        p, gmax = jax.lax.scan(body, ed.zeros, None, length=STEPS)
        return ed.render(p, straight_through=False), gmax

    lo, hi = 0.0, 0.01
    while float(l2_distance(path(hi, True)[0], img)) < B and hi < 1e3:
        lo, hi = hi, 2 * hi
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if float(l2_distance(path(mid, True)[0], img)) < B else (lo, mid)
    frames = {"live, normalised steps": path(hi, True)[0]}
    for mode, key in (("live", "live, raw steps"), ("fixed", "fixed")):
        m = lj.morph(fn, img, target=t, domain=dom_name, mode=mode, l2_budget=B, n_frames=12)
        frames[key] = jnp.asarray(m.frames[-1])
        if mode == "live":
            gmax = path(float(np.asarray(m.alphas)[1]), False)[1]
            growth.append({k: float(v[-1] / v[0]) for k, v in gmax.items()})
    for k, fr in frames.items():
        res[k].append((float(jax.nn.softmax(clf(fr[None])[0])[t]),
                       all(int(jnp.argmax(j(fr[None])[0])) == t for j in judges),
                       float(l2_distance(fr, img))))
print(f"{dom_name}, {len(src.id)} sources, robust 28-px driver, L2 = {B:g}:")
for k, v in res.items():
    v = np.array(v)
    print(f"  {k:24} median p(target) {np.median(v[:, 0]):.2f}   all three judges "
          f"{int(v[:, 1].sum())}/{len(v)}   median L2 {np.median(v[:, 2]):.2f}")
for part in growth[0]:
    print(f"  raw live path: max|gradient| of {part}, last step / first: median "
          f"{np.median([g[part] for g in growth]):.1f} (range "
          f"{min(g[part] for g in growth):.1f}-{max(g[part] for g in growth):.1f})")
