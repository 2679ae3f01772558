"""Reference numbers and settings of the follow-up's evaluation protocol (study material).

The follow-up manuscript to arXiv 2506.02300, "Confidence Is Not Evidence: Probing
Classifier Sensitivity with Steerable Lens" (Mahdisoltani & Fleet, unpublished), reports
one MNIST table; :data:`FOLLOWUP_MNIST` holds it, and :func:`side_by_side` puts our rows
beside it.  The protocol's pairs and budgets are here too.  The core library
(:mod:`lens_jax.evaluate`) computes; this module only holds what the studies compare with.

>>> len(FOLLOWUP_MNIST), FOLLOWUP_N, BUDGETS
(8, 300, (1.0, 2.0))
"""
from __future__ import annotations

from typing import Mapping, Sequence

from .. import evaluate as ev

__all__ = ["MNIST_PAIRS", "FASHION_PAIRS", "BUDGETS", "FOLLOWUP_MNIST", "FOLLOWUP_N",
           "side_by_side"]

#: MNIST source -> target pairs of the follow-up's protocol.
MNIST_PAIRS: tuple[tuple[int, int], ...] = ((3, 8), (1, 7), (5, 6))
#: Fashion-MNIST pairs: sneaker -> ankle boot, shirt -> coat, T-shirt/top -> dress.
FASHION_PAIRS: tuple[tuple[int, int], ...] = ((7, 9), (6, 4), (0, 3))
#: The protocol's matched image-L2 budgets for 28x28 MNIST ([0, 1] scale).
BUDGETS: tuple[float, ...] = (1.0, 2.0)

#: The follow-up manuscript's MNIST table ("Confidence Is Not Evidence", not a result of
#: arXiv 2506.02300): 300 sources, all reach both budgets;
#: p = median driver target probability (a fraction); O, O2, both: counts of 300.
FOLLOWUP_MNIST: tuple[dict, ...] = (
    dict(B=1.0, method="pixel", p=0.2226e-2, O=0, O2=4, both=0, E_warp=0.382, E_gain=0.487),
    dict(B=1.0, method="fourier_phase", p=9.08e-7, O=0, O2=2, both=0, E_warp=0.324,
         E_gain=0.400),
    dict(B=1.0, method="csp_phase", p=0.001071e-2, O=0, O2=4, both=0, E_warp=0.539,
         E_gain=0.715),
    dict(B=1.0, method="csp_joint", p=0.001544e-2, O=0, O2=4, both=0, E_warp=0.507,
         E_gain=0.704),
    dict(B=2.0, method="pixel", p=0.962, O=22, O2=16, both=10, E_warp=0.365, E_gain=0.457),
    dict(B=2.0, method="fourier_phase", p=0.001574e-2, O=20, O2=8, both=3, E_warp=0.345,
         E_gain=0.410),
    dict(B=2.0, method="csp_phase", p=0.3491e-2, O=12, O2=12, both=6, E_warp=0.503,
         E_gain=0.719),
    dict(B=2.0, method="csp_joint", p=0.9521e-2, O=11, O2=16, both=8, E_warp=0.505,
         E_gain=0.722),
)
FOLLOWUP_N = 300


def side_by_side(rows: Sequence[Mapping], followup: Sequence[Mapping], *,
                 n_followup: int = FOLLOWUP_N) -> list[dict]:
    """Our ``(B, method)`` rows beside the follow-up's ("ours | follow-up"); ``all`` is
    compared with the follow-up's "both" (O and O2 together)."""
    fu = {(f["B"], f["method"]): f for f in followup}
    out = []
    for r in rows:
        f = fu.get((r["B"], r["method"]))
        if f is None:
            continue
        n = r["n"]
        out.append({"B": r["B"], "method": ev.label(r["method"]),
                    "reached": f"{r['reached']}/{n} | {n_followup}/{n_followup}",
                    "median G p(target)": f"{ev.fmt_prob(r['p_G'])} | {ev.fmt_prob(f['p'])}",
                    "O": f"{r.get('O', 0)}/{n} | {f['O']}/{n_followup}",
                    "O2": f"{r.get('O2', 0)}/{n} | {f['O2']}/{n_followup}",
                    "both": f"{r['all']}/{n} | {f['both']}/{n_followup}",
                    "E warp": f"{ev.fmt_pct(r['E_warp'])} | {ev.fmt_pct(f['E_warp'])}",
                    "E warp+gain": f"{ev.fmt_pct(r['E_gain'])} | {ev.fmt_pct(f['E_gain'])}"})
    return out
