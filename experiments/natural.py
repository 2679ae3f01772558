"""Study 5: a natural photograph through an ImageNet classifier: pixel, CSP phase, CSP flow.

scikit-image's ``chelsea`` (or ``--image``: another scikit-image sample or a photo file)
is resized to 224x224 (``--crop``: shorter side to 256, centre 224x224 crop, the
ResNet evaluation transform) and morphed toward lynx (287), tiger (292), red fox (277)
and leopard (288) (add kit fox 278, flamingo 130 with ``--targets``).  The driver is
the pretrained ImageNet EfficientNet-Lite0 by default (a standard, not robust, model:
no robust ImageNet weights install offline); ``--classifier resnet50 --weights PATH``
drives it with a ResNet-50 torch checkpoint instead, e.g. the paper's adversarially
trained one (the robustness library's ``imagenet_l2_3_0.pt``), read without torch and
without running code from the file.  Target specificity per domain and
mode: the mean cosine between the edits the photo receives toward the different targets
(near 1: the edit says "less cat", not "more lynx").  Edits are luminance only
(Y of YIQ, chroma fixed), pixel edits too.  Both the fixed gradient (one gradient at the
source: the method) and the live gradient (recomputed after each of ``--frames - 1``
equal steps, persistent coordinates) end at the same L2 distance ``B`` from the source
(the step size is searched).  ``B`` defaults to 27.7: the RMS change per pixel of L2 = 2
on 28x28 MNIST (2 / 28 * sqrt(224 * 224 * 3)), close to the follow-up's natural-image
reference (L2 = 27.84).

    python experiments/natural.py [--out outputs/natural] [--targets 287,292,277,288]
        [--modes fixed,live] [--budget 27.7] [--frames 12] [--quick]
        [--classifier efficientnet_lite0 | resnet50 --weights PATH] [--crop]
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lens_jax import evaluate as ev  # noqa: E402
from lens_jax import studies  # noqa: E402
from lens_jax.tables import markdown_table, record_command, write_tables  # noqa: E402

TARGETS = (287, 292, 277, 288)


def _photo(name: str) -> np.ndarray:
    """A scikit-image sample by name (``chelsea``, ``coffee``, ...) or an image file."""
    if Path(name).is_file():
        from PIL import Image
        with Image.open(name) as im:
            return np.asarray(im.convert("RGB"))
    import skimage.data
    if not callable(getattr(skimage.data, name, None)):
        raise SystemExit(f"natural.py: error: --image {name!r} is neither a file nor a "
                         "scikit-image sample (chelsea, coffee, astronaut, ...)")
    return getattr(skimage.data, name)()


def main(argv=None) -> int:
    parser = studies.study_parser(__doc__.splitlines()[0], out="outputs/natural",
                                  image="chelsea", targets=",".join(map(str, TARGETS)),
                                  domains="pixel,csp_phase,csp_flow,csp_flow_joint",
                                  modes="fixed,live", budget=0.0,
                                  frames=12, size=224, gifs=True,
                                  classifier="efficientnet_lite0", weights=None, crop=False)
    args = studies.parse_study_args(parser, argv=argv)
    import jax
    from lens_jax import morph, pretrained, viz
    from lens_jax.compare import morph_figure
    out = Path(args.out)
    targets = [int(t) for t in args.targets.split(",")]
    domains = [d.strip() for d in args.domains.split(",")]
    modes = [m.strip() for m in args.modes.split(",")]
    frames, size, gifs = args.frames, args.size, args.gifs
    if args.quick:
        targets, modes, frames, size, gifs = targets[:2], modes[:1], 3, 32, False
    B = args.budget if args.budget > 0 else 2.0 / 28.0 * math.sqrt(size * size * 3)
    t0 = time.perf_counter()
    try:
        loaded = pretrained.load_pretrained(args.classifier, weights=args.weights)
    except KeyError as e:
        parser.error(str(e.args[0]))
    if loaded.input_shape[-1] != 3:
        parser.error(f"--classifier {args.classifier} is not an RGB ImageNet classifier")
    fn, label = loaded.logits_fn, loaded.label
    names = [n.split(",")[0] for n in loaded.class_names]
    img = np.asarray(pretrained.imagenet_preprocess(_photo(args.image), size=size,
                                                    mode="crop" if args.crop else "resize"),
                     np.float32)
    src = int(np.asarray(ev.predict(fn, img[None])).argmax())
    print(f"[natural] {label}; {args.image} {size}x{size}: top-1 {names[src]}; L2 budget "
          f"{B:.2f}; writing to {out}/", flush=True)
    rows, grid, ends = [], [], {}
    for t in targets:
        morphs, cls, grow = {}, {t: names[t], src: names[src]}, [(img, f"-> {names[t]}")]
        for d in domains:
            for mode in modes:
                t1, lab = time.perf_counter(), f"{ev.label(d)}, {mode}"
                m = jax.tree.map(np.asarray, morph(fn, img, target=t, domain=d, mode=mode,
                                                   color="luminance", l2_budget=B,
                                                   n_frames=frames))
                morphs[lab] = m
                ends.setdefault((d, mode), []).append(m.frames[-1] - img)
                pt, pred = m.probs[:, t], int(m.probs[-1].argmax())
                rows.append({"classifier": args.classifier, "image": args.image, "target": t,
                             "target_name": names[t],
                             "domain": d, "mode": mode, "reached": bool(m.reached[-1]),
                             "l2": float(m.l2[-1]), "p_target_0": float(pt[0]),
                             "p_target": float(pt[-1]), "p_target_max": float(pt.max()),
                             "l2_at_max": float(m.l2[int(pt.argmax())]),
                             "p_source": float(m.probs[-1, src]), "pred_name": names[pred],
                             "max_change": float(m.max_change[-1]),
                             "seconds": round(time.perf_counter() - t1, 1)})
                r = rows[-1]
                print(f"[natural] -> {names[t]:<9} {lab:<17} L2={r['l2']:.2f} p "
                      f"{r['p_target_0']:.3f} -> {r['p_target']:.3f} (max "
                      f"{r['p_target_max']:.3f}), top-1 {r['pred_name']} ({r['seconds']} s)",
                      flush=True)
                grow.append((m.frames[-1], f"{lab}\np={r['p_target']:.3f}, {names[pred]}"))
                stem = f"{args.image}_to{t}_{d}_{mode}"
                viz.strip(m.frames, probs=m.probs, target=t, source=src, alphas=m.alphas,
                          class_names=cls, diff=True, path=out / f"{stem}_strip.png",
                          title=f"{args.image} → {names[t]} · {lab} · L2 {r['l2']:.1f}")
                if gifs:
                    viz.gif(m.frames, out / f"{stem}.gif", probs=m.probs, target=t,
                            source=src, alphas=m.alphas, class_names=cls)
        grid.append(grow)
        morph_figure(morphs, img, out / f"{args.image}_to{t}_rows.png", target=t,
                     class_names=cls, title=f"{args.image} → {names[t]}: same L2 = {B:.1f}")
        viz.prob_curves({k: m.l2 for k, m in morphs.items()},
                        {k: m.probs for k, m in morphs.items()}, target=t, source=src,
                        class_names=cls, xlabel="L2 distance to the source", budgets=[B],
                        path=out / f"{args.image}_to{t}_prob_vs_l2.png",
                        logy=max(float(m.probs[:, t].max()) for m in morphs.values()) < 0.3)
    ov = studies.grid_figure(out / f"{args.image}_overview.png", grid, panel_size=2.0,
                             suptitle=f"{label}: {args.image} -> ImageNet targets "
                                      f"at the same L2 = {B:.1f}")
    paths = write_tables(rows, out / "results")
    spec = [{"domain": d, "mode": mode, "targets": len(e),
             "specificity": ev.target_specificity(np.stack(e)) if len(e) > 1 else None}
            for (d, mode), e in ends.items()]
    write_tables(spec, out / "specificity")
    print(markdown_table(spec))
    wall = time.perf_counter() - t0
    record_command(out, wall, argv=["experiments/natural.py", *args.argv])
    print(markdown_table(rows))
    print(f"[natural] wall {wall:.0f} s; overview {ov}; table {paths['md']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
