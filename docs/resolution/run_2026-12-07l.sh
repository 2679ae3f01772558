#!/bin/bash
# Session of 2026-12-07 (fifth): the full training recipes at 112 px (the 28-px ones: standard
# CNN 12 epochs, robust 10 epochs; the grid's 112-px drivers had 4), fixed gradient, every
# protocol domain, L2 = 4, 6, 10 sources per pair, in a folder of its own (full112/).  Training
# checkpoints every epoch and resumes, so the run can span sessions.
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 10 --n-specificity 1 \
    --out docs/resolution/full112 --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 112 --drivers cnn,cnn+robust@112 >> docs/resolution/log_full112.txt 2>&1
