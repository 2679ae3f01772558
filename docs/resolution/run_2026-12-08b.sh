#!/bin/bash
# Session of 2026-12-08: the full-recipe Fashion-MNIST drivers at 112 px (all 60,000 garments,
# default epochs; the robust one first, the long pole of the full study). Training checkpoints
# every epoch and every 10 minutes within one, so rerunning this script resumes.
set -u
PY=.venv/bin/python
$PY -u docs/resolution/pretrain.py --dataset=fashion_mnist cnn:112:r cnn:112:s \
    >> docs/resolution/log_fashion112_full_drivers.txt 2>&1
