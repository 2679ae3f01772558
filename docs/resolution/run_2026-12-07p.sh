#!/bin/bash
# Session of 2026-12-07 (sixth): after run_2026-12-07o.sh, live mode with 30 sources per pair for
# the standard driver's pixel and CSP-phase cells at 56 px (at 28 px they exist; the robust
# driver's at every size).  Finished cells are skipped, so rerunning resumes.
set -u
PY=.venv/bin/python
while pgrep -f run_2026-12-07o.sh > /dev/null; do sleep 60; done
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 30 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/n30 --domains csp_phase,pixel \
    --sizes 56 --drivers cnn > docs/resolution/n30/log_56_live_standard.txt 2>&1
