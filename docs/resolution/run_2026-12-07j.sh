#!/bin/bash
# Session of 2026-12-07 (fourth), last: live mode with 30 sources per pair at 56 px, the robust
# driver's CSP phase (the one phase-domain result that moves live) and then its pixel edit.
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 30 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/n30 --domains csp_phase,pixel \
    --sizes 56 --drivers cnn+robust@56 > docs/resolution/n30/log_56_live.txt 2>&1
