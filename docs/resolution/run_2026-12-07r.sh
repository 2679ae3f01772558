#!/bin/bash
# Session of 2026-12-07 (sixth): Fashion-MNIST in live mode at 28 px (until now fixed only),
# 10 sources per pair, both drivers, the four protocol domains, L2 = 2, 4, 6.  Finished cells are
# skipped, so rerunning resumes.
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets fashion_mnist --modes live --budgets 2,4,6 --n 10 --n-specificity 1 \
    --out docs/resolution --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 28 --drivers cnn,cnn+robust > docs/resolution/log_fashion28_live.txt 2>&1
