#!/bin/bash
# Reduced resolution study, last part: joint CSP flow at 56 and 112 px (28 px has it), then
# one pass per size over every domain, which computes nothing (all cells exist) and writes
# the galleries and the summary of every cell.
set -u
cd /tmp/res/snap
export PYTHONPATH=/tmp/res/snap
PY=/work/main/.venv/bin/python
OUT=/work/main/docs/resolution
COMMON="--datasets mnist5k --modes fixed --budgets 4,6 --n 10 --n-specificity 1 --epochs-large 4 --out $OUT"
while kill -0 $(cat /tmp/res/run3.pid) 2>/dev/null; do sleep 10; done
$PY experiments/resolution.py $COMMON --domains csp_flow_joint --sizes 56 --drivers cnn,cnn+robust@56 &
$PY experiments/resolution.py $COMMON --domains csp_flow_joint --sizes 112 --drivers cnn &
wait
echo "joint CSP flow at 56 and 112 px done $(date -u)"
ALL="--domains pixel,csp_phase,csp_joint,csp_flow_joint"
$PY experiments/resolution.py $COMMON $ALL --sizes 112 --drivers cnn
$PY experiments/resolution.py $COMMON $ALL --sizes 56 --drivers cnn,cnn+robust@56
$PY experiments/resolution.py $COMMON $ALL --sizes 28 --drivers cnn,cnn+robust
echo "all done $(date -u)"
