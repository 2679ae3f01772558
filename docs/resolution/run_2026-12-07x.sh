#!/bin/bash
# Session of 2026-12-07 (seventh): after run_2026-12-07w.sh, the other default domains (Fourier
# phase, CSP flow, warp) in live mode with 30 sources per pair (n30/), 28 px, then 56 px.
# Finished cells are skipped, so rerunning resumes (a cell cut off reruns).
set -u
PY=.venv/bin/python
D=fourier_phase,csp_flow,warp
while pgrep -f run_2026-12-07w.sh > /dev/null; do sleep 60; done
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 30 --n-specificity 1 \
    --out docs/resolution/n30 --domains $D --sizes 28 --drivers cnn+robust,cnn >> docs/resolution/n30/log_other28_live.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 30 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/n30 --domains $D --sizes 56 --drivers cnn+robust@56,cnn \
    >> docs/resolution/n30/log_other56_live.txt 2>&1
