#!/bin/bash
# Session of 2026-12-08: after run_2026-12-07y.sh, the other default domains (Fourier phase,
# CSP flow, warp) live at 112 px with 30 sources per pair (n30/), both drivers.
# Finished cells are skipped, so rerunning resumes (a cell cut off reruns).
set -u
PY=.venv/bin/python
while pgrep -f run_2026-12-07y.sh > /dev/null; do sleep 60; done
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 30 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/n30 --domains fourier_phase,csp_flow,warp --sizes 112 \
    --drivers cnn+robust@112,cnn >> docs/resolution/n30/log_other112_live.txt 2>&1
