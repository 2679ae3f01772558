#!/bin/bash
# Session of 2026-12-07 (sixth): a control for Fashion-MNIST's 112-px drivers, which were trained
# on the first 4,000 garments for 4 epochs (the 28-px ones: all 60,000, 12 and 10 epochs): the
# 28-px drivers trained with that same recipe (--same-recipe), the same fixed cells.  If their
# counts match the 60,000-image drivers', the recipe does not explain the 28 -> 112 px change.
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets fashion_mnist --modes fixed --budgets 2,4,6 --n 10 --n-specificity 1 \
    --out docs/resolution/fashion_recipe112 --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 28 --drivers cnn,cnn+robust --epochs-large 4 --n-train-large 4000 --same-recipe \
    > docs/resolution/fashion_recipe112/log.txt 2>&1
