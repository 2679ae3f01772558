#!/bin/bash
# Session of 2026-12-07 (third): Fashion-MNIST at 28 px, full recipes (standard CNN 8 epochs,
# robust CNN L2 PGD eps 1.5, 7 steps, 4 epochs; judges ResNet-mini and MLP), fixed gradient,
# every protocol domain, L2 = 2, 4, 6, 10 sources per pair.
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets fashion_mnist --modes fixed --budgets 2,4,6 --n 10 \
    --n-specificity 1 --out docs/resolution --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 28 --drivers cnn,cnn+robust > docs/resolution/log_fashion28.txt 2>&1
