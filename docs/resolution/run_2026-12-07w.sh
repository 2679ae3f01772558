#!/bin/bash
# Session of 2026-12-07 (seventh): after run_2026-12-07v.sh, Fashion-MNIST with 30 sources per
# pair (n30/fashion_mnist), fixed gradient, every default domain, L2 = 2, 4, 6, at 28 px (the
# 60,000-garment drivers) and 112 px (the 4,000-garment, 4-epoch drivers).
# Finished cells are skipped, so rerunning resumes (a cell cut off reruns).
set -u
PY=.venv/bin/python
while pgrep -f run_2026-12-07v.sh > /dev/null; do sleep 60; done
$PY -u experiments/resolution.py --datasets fashion_mnist --modes fixed --budgets 2,4,6 --n 30 --n-specificity 1 \
    --out docs/resolution/n30 --sizes 28 --drivers cnn,cnn+robust >> docs/resolution/n30/log_fashion28.txt 2>&1
$PY -u experiments/resolution.py --datasets fashion_mnist --modes fixed --budgets 2,4,6 --n 30 --n-specificity 1 \
    --out docs/resolution/n30 --sizes 112 --drivers cnn+robust@112,cnn --epochs-large 4 --n-train-large 4000 \
    >> docs/resolution/n30/log_fashion112.txt 2>&1
