#!/bin/bash
# Session of 2026-12-07 (fourth): Fashion-MNIST at 112 px.  Both 112-px drivers train on the
# first 4,000 training images (as many as the digit drivers' mnist5k), 4 epochs (as the digit
# drivers above 28 px); robust: L2 PGD eps 1.5 x 112/28 = 6, 7 steps.  Judges: the 28-px
# ResNet-mini and MLP trained on all 60,000 (cached by run_2026-12-07c.sh).  Fixed gradient,
# every protocol domain, L2 = 2, 4, 6 (x 4 at 112 px), 10 sources per pair.
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets fashion_mnist --modes fixed --budgets 2,4,6 --n 10 \
    --n-specificity 1 --out docs/resolution --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 112 --drivers cnn,cnn+robust@112 --epochs-large 4 --n-train-large 4000 \
    > docs/resolution/log_fashion112.txt 2>&1
