#!/bin/bash
# Session of 2026-12-07 (sixth): after run_2026-12-07p.sh, Fashion-MNIST in live mode at 112 px
# (the 4,000-garment, 4-epoch drivers), 10 sources per pair, the robust driver's CSP phase and
# pixel first.  Finished cells are skipped, so rerunning resumes (a cell cut off reruns).
set -u
PY=.venv/bin/python
while pgrep -f run_2026-12-07p.sh > /dev/null; do sleep 60; done
$PY -u experiments/resolution.py --datasets fashion_mnist --modes live --budgets 2,4,6 --n 10 --n-specificity 1 \
    --out docs/resolution --domains csp_phase,pixel,csp_joint,csp_flow_joint --sizes 112 \
    --drivers cnn+robust@112,cnn --epochs-large 4 --n-train-large 4000 >> docs/resolution/log_fashion112_live.txt 2>&1
