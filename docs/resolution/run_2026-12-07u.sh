#!/bin/bash
# Session of 2026-12-07 (seventh): the other default domains (Fourier phase, CSP flow, warp) in
# the fixed-gradient grid with 30 sources per pair (n30/), 28 and 56 px first, then 112 px.
# Finished cells are skipped, so rerunning resumes (a cell cut off reruns).
set -u
PY=.venv/bin/python
D=fourier_phase,csp_flow,warp
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 30 --n-specificity 1 \
    --out docs/resolution/n30 --domains $D --sizes 28 --drivers cnn,cnn+robust >> docs/resolution/n30/log_other28.txt 2>&1
for S in 56 112; do
  $PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 30 --n-specificity 1 \
      --epochs-large 4 --out docs/resolution/n30 --domains $D --sizes $S --drivers cnn+robust@$S,cnn \
      >> docs/resolution/n30/log_other${S}.txt 2>&1
done
