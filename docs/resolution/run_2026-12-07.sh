#!/bin/bash
# Session of 2026-12-07: cells the reduced run lacked.  Models retrained on a fresh machine
# (same code and seeds; the drivers' test accuracies equal the earlier ones: 96.9%, 97.1%).
# 1. L2 = 2 at 28 px, fixed, every domain, both drivers (docs/resolution/budget2, 380 s)
# 2. live CSP phase at 28 px, both drivers (docs/resolution, log_live4.txt)
# 3. live CSP phase at 56 px, both drivers (4-epoch drivers as before; log_live5.txt)
# 4. L2 = 2 at 56 px, fixed, every domain, both drivers (docs/resolution/budget2, log56.txt)
# 5. one pass over every live domain at 28 and 56 px (computes nothing: galleries, summary)
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 2 --n 10 --n-specificity 1 \
    --out docs/resolution/budget2 --domains pixel,csp_phase,csp_joint,csp_flow_joint --sizes 28 \
    --drivers cnn,cnn+robust > docs/resolution/budget2/log.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution --domains csp_phase --sizes 28 --drivers cnn,cnn+robust \
    > docs/resolution/log_live4.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution --domains csp_phase --sizes 56 --drivers cnn,cnn+robust@56 \
    > docs/resolution/log_live5.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed --budgets 2 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/budget2 --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 56 --drivers cnn,cnn+robust@56 > docs/resolution/budget2/log56.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 28,56 --drivers cnn,cnn+robust
# 6. thirty sources per pair at 28 px, pixel and CSP phase, fixed and live: robust, then standard
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed,live --budgets 4,6 --n 30 \
    --n-specificity 1 --out docs/resolution/n30 --domains pixel,csp_phase --sizes 28 \
    --drivers cnn+robust > docs/resolution/n30/log.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes fixed,live --budgets 4,6 --n 30 \
    --n-specificity 1 --out docs/resolution/n30 --domains pixel,csp_phase --sizes 28 \
    --drivers cnn > docs/resolution/n30/log_cnn.txt 2>&1
