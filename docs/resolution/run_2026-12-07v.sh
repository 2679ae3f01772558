#!/bin/bash
# Session of 2026-12-07 (seventh): after run_2026-12-07u.sh, target specificity on 3 sources per
# pair (spec3/: 3 sources per pair, each also edited toward all nine other digits at L2 = 6),
# the protocol domains, fixed gradient at 28, 56 and 112 px, then live at 28 px.
# Finished cells are skipped, so rerunning resumes (a cell cut off reruns).
set -u
PY=.venv/bin/python
D=pixel,csp_phase,csp_joint,csp_flow_joint
while pgrep -f run_2026-12-07u.sh > /dev/null; do sleep 60; done
mkdir -p docs/resolution/spec3
for S in 28 56 112; do
  $PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 3 --n-specificity 3 \
      --epochs-large 4 --out docs/resolution/spec3 --domains $D --sizes $S --drivers cnn+robust@$S,cnn \
      >> docs/resolution/spec3/log_${S}.txt 2>&1
done
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 3 --n-specificity 3 \
    --out docs/resolution/spec3 --domains $D --sizes 28 --drivers cnn+robust,cnn >> docs/resolution/spec3/log_28_live.txt 2>&1
