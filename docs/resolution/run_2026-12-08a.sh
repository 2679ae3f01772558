#!/bin/bash
# Session of 2026-12-08: beside run_2026-12-07x/y, digits live with 30 sources per pair (n30/) at
# 112 px: the robust driver's joint CSP and joint CSP flow, then the standard driver's protocol
# domains (pixel, CSP phase, joint CSP, joint CSP flow).
# Finished cells are skipped, so rerunning resumes (a cell cut off reruns).
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 30 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/n30 --domains csp_joint,csp_flow_joint --sizes 112 \
    --drivers cnn+robust@112 >> docs/resolution/n30/log_112_live.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 30 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/n30 --domains csp_phase,pixel,csp_joint,csp_flow_joint --sizes 112 \
    --drivers cnn >> docs/resolution/n30/log_112_live_standard.txt 2>&1
