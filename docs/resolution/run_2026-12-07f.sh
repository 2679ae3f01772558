#!/bin/bash
# Session of 2026-12-07 (fourth), after run_2026-12-07e.sh: 30 sources per pair for the paper's
# fixed CSP-phase edit with the robust driver at 112 px (the other three domains are in n30/),
# and for every domain with the robust driver at 56 px; L2 = 4, 6.
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 30 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/n30 --domains csp_phase \
    --sizes 112 --drivers cnn+robust@112 > docs/resolution/n30/log_112b.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 30 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/n30 --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 56 --drivers cnn+robust@56 > docs/resolution/n30/log_56.txt 2>&1
