#!/bin/bash
# Session of 2026-12-08: target specificity on 3 sources per pair (spec3/, as run_2026-12-07v.sh)
# for the other default domains (Fourier phase, CSP flow, warp), fixed at 28, 56 and 112 px,
# then Fashion-MNIST fixed at 28 and 112 px (every default domain; the 112-px drivers as in n30/:
# 4,000 garments, 4 epochs), then the other domains live at 28 px.
# Finished cells are skipped, so rerunning resumes (a cell cut off reruns).
set -u
PY=.venv/bin/python
D=fourier_phase,csp_flow,warp
for S in 28 56 112; do
  $PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 3 --n-specificity 3 \
      --epochs-large 4 --out docs/resolution/spec3 --domains $D --sizes $S --drivers cnn+robust@$S,cnn \
      >> docs/resolution/spec3/log_${S}.txt 2>&1
done
$PY -u experiments/resolution.py --datasets fashion_mnist --modes fixed --budgets 4,6 --n 3 --n-specificity 3 \
    --out docs/resolution/spec3 --sizes 28 --drivers cnn,cnn+robust >> docs/resolution/spec3/log_fashion28.txt 2>&1
$PY -u experiments/resolution.py --datasets fashion_mnist --modes fixed --budgets 4,6 --n 3 --n-specificity 3 \
    --out docs/resolution/spec3 --sizes 112 --drivers cnn+robust@112,cnn --epochs-large 4 --n-train-large 4000 \
    >> docs/resolution/spec3/log_fashion112.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 3 --n-specificity 3 \
    --out docs/resolution/spec3 --domains $D --sizes 28 --drivers cnn+robust,cnn >> docs/resolution/spec3/log_28_live.txt 2>&1
