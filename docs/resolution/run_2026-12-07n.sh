#!/bin/bash
# Session of 2026-12-07 (sixth): finish L2 = 2 in live mode at 112 px (run_2026-12-07k.sh's second
# command, cut off by the end of the last session during the standard driver's joint CSP cell).
# Finished cells are skipped, so rerunning resumes.
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 2 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/budget2 --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 112 --drivers cnn,cnn+robust@112 >> docs/resolution/budget2/log_live112.txt 2>&1
