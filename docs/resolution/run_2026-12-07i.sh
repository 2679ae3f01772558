#!/bin/bash
# Session of 2026-12-07 (fourth): the rest of the fixed-gradient grid at 30 sources per pair
# (n30/): the joint domains at 28 px (both drivers) and the standard driver at 56 and 112 px.
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 30 --n-specificity 1 \
    --out docs/resolution/n30 --domains csp_joint,csp_flow_joint \
    --sizes 28 --drivers cnn,cnn+robust > docs/resolution/n30/log_28b.txt 2>&1
for S in 56 112; do
  $PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 30 --n-specificity 1 \
      --epochs-large 4 --out docs/resolution/n30 --domains pixel,csp_phase,csp_joint,csp_flow_joint \
      --sizes $S --drivers cnn > docs/resolution/n30/log_${S}_standard.txt 2>&1
done
