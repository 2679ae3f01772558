#!/bin/bash
# Session of 2026-12-07 (fourth), after run_2026-12-07f.sh: the three default domains the grid
# had left out (Fourier phase, CSP flow without amplitude, the smooth warp), fixed gradient,
# both drivers, 28, 56 and 112 px, L2 = 4, 6, 10 sources per pair.
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 10 --n-specificity 1 \
    --out docs/resolution --domains fourier_phase,csp_flow,warp \
    --sizes 28 --drivers cnn,cnn+robust > docs/resolution/log_other28.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution --domains fourier_phase,csp_flow,warp \
    --sizes 56 --drivers cnn,cnn+robust@56 > docs/resolution/log_other56.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 4,6 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution --domains fourier_phase,csp_flow,warp \
    --sizes 112 --drivers cnn,cnn+robust@112 > docs/resolution/log_other112.txt 2>&1
