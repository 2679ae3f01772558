#!/bin/bash
# Session of 2026-12-07 (seventh): after run_2026-12-07x.sh, L2 = 2 with 30 sources per pair
# (budget2/n30), every default domain, fixed gradient, 28, 56 and 112 px, both drivers.
# Finished cells are skipped, so rerunning resumes (a cell cut off reruns).
set -u
PY=.venv/bin/python
while pgrep -f run_2026-12-07x.sh > /dev/null; do sleep 60; done
mkdir -p docs/resolution/budget2/n30
for S in 28 56 112; do
  $PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 2 --n 30 --n-specificity 1 \
      --epochs-large 4 --out docs/resolution/budget2/n30 --sizes $S --drivers cnn+robust@$S,cnn \
      >> docs/resolution/budget2/n30/log_${S}.txt 2>&1
done
