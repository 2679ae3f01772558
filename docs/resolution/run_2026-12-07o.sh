#!/bin/bash
# Session of 2026-12-07 (sixth): live mode with 30 sources per pair for the robust driver's
# joint domains (joint CSP, joint CSP flow) at 56 and 28 px, beside its CSP phase and pixel
# cells (run_2026-12-07j.sh, run_2026-12-07m.sh).  Finished cells are skipped, so rerunning resumes.
set -u
PY=.venv/bin/python
for S in 56 28; do
  $PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 30 --n-specificity 1 \
      --epochs-large 4 --out docs/resolution/n30 --domains csp_joint,csp_flow_joint \
      --sizes $S --drivers cnn+robust@$S > docs/resolution/n30/log_${S}_live_joint.txt 2>&1
done
