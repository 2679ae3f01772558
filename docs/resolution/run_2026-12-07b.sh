#!/bin/bash
# Session of 2026-12-07 (second): 112 px with a robust driver (PGD eps 2 x 112/28 = 8), both
# drivers retrained at 112 px (4 epochs, as the 56-px ones), MNIST, 10 sources per pair.
# 1. fixed gradient, every protocol domain, L2 = 4, 6 (x 4 at 112 px)
# 2. live, pixel and CSP phase, L2 = 4, 6
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 112 --drivers cnn,cnn+robust@112 > docs/resolution/log_112.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution --domains pixel,csp_phase \
    --sizes 112 --drivers cnn,cnn+robust@112 > docs/resolution/log_112_live.txt 2>&1
# (2 was stopped after the standard driver's two live cells to run the robust driver's live CSP
# phase first; its live pixel cell is left for the next run of the same command)
# 3. live CSP phase, robust 112-px driver (the standard one's cell is done and skipped)
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution --domains csp_phase \
    --sizes 112 --drivers cnn,cnn+robust@112 > docs/resolution/log_112_live2.txt 2>&1
