#!/bin/bash
# Reduced resolution study, finish: the robust 56-px joint CSP flow cell (the previous pass
# stopped in the summary: cells with and without an "other driver" in one block, fixed in
# the script), then one pass per size over every domain (computes nothing; galleries, summary).
set -u
cd /tmp/res/snap
export PYTHONPATH=/tmp/res/snap
PY=/work/main/.venv/bin/python
OUT=/work/main/docs/resolution
COMMON="--datasets mnist5k --modes fixed --budgets 4,6 --n 10 --n-specificity 1 --epochs-large 4 --out $OUT"
ALL="--domains pixel,csp_phase,csp_joint,csp_flow_joint"
$PY experiments/resolution.py $COMMON $ALL --sizes 56 --drivers cnn,cnn+robust@56
$PY experiments/resolution.py $COMMON $ALL --sizes 112 --drivers cnn
$PY experiments/resolution.py $COMMON $ALL --sizes 28 --drivers cnn,cnn+robust
echo "all done $(date -u)"
