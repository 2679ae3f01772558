#!/bin/bash
# Session of 2026-12-07 (sixth): live mode with 30 sources per pair for the standard driver's
# joint domains at 28 and then 56 px.  Finished cells are skipped, so rerunning resumes.
set -u
PY=.venv/bin/python
for S in 28 56; do
  $PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 30 --n-specificity 1 \
      --epochs-large 4 --out docs/resolution/n30 --domains csp_joint,csp_flow_joint \
      --sizes $S --drivers cnn >> docs/resolution/n30/log_live_joint_standard.txt 2>&1
done
