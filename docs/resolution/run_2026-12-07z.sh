#!/bin/bash
# Session of 2026-12-07 (seventh): Fashion-MNIST live with 30 sources per pair (n30/fashion_mnist),
# the protocol domains at 28 px, L2 = 2, 4, 6, both drivers (beside run_2026-12-07x.sh).
# Finished cells are skipped, so rerunning resumes (a cell cut off reruns).
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets fashion_mnist --modes live --budgets 2,4,6 --n 30 --n-specificity 1 \
    --out docs/resolution/n30 --domains csp_phase,pixel,csp_flow_joint,csp_joint --sizes 28 --drivers cnn+robust,cnn \
    >> docs/resolution/n30/log_fashion28_live.txt 2>&1
