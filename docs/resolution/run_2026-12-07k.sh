#!/bin/bash
# Session of 2026-12-07 (fifth): live mode with 30 sources per pair at 112 px (the robust
# driver's CSP phase and pixel edit, as at 28 and 56 px), then L2 = 2 in live mode at 112 px.
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 30 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/n30 --domains csp_phase,pixel \
    --sizes 112 --drivers cnn+robust@112 > docs/resolution/n30/log_112_live.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 2 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/budget2 --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 112 --drivers cnn,cnn+robust@112 >> docs/resolution/budget2/log_live112.txt 2>&1
