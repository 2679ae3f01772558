#!/bin/bash
# Reduced resolution study, steps after 28 px (see docs/resolution/README.md).  Same snapshot
# and scheme as run_reduced.sh; the drivers at 56 and 112 px are trained for 4 epochs
# (--epochs-large 4) so that they fit the session.
set -u
cd /tmp/res/snap
export PYTHONPATH=/tmp/res/snap
PY=/work/main/.venv/bin/python
OUT=/work/main/docs/resolution
COMMON="--datasets mnist5k --domains pixel,csp_phase,csp_joint,csp_flow_joint --modes fixed --budgets 4,6 --n 10 --n-specificity 1 --epochs-large 4 --out $OUT"
done_() { grep -q "DONE $1" /tmp/res/pretrain*.log; }
while kill -0 5766 2>/dev/null; do sleep 20; done
echo "28 px done $(date -u)"
until done_ "cnn:112:s:4"; do sleep 20; done
$PY experiments/resolution.py $COMMON --sizes 28,112 --drivers cnn,cnn+robust@28
echo "112 px (standard) done $(date -u)"
until done_ "cnn:56:s:4" && done_ "cnn:56:r:4"; do sleep 20; done
R112=""; done_ "cnn:112:r:4" && R112=",cnn+robust@112"
$PY experiments/resolution.py $COMMON --sizes 28,112,56 --drivers cnn,cnn+robust@28,cnn+robust@56$R112
echo "56 px done $(date -u)"
if [ -z "$R112" ]; then
  until done_ "cnn:112:r:4"; do sleep 20; done
  $PY experiments/resolution.py $COMMON --sizes 28,112,56 --drivers cnn,cnn+robust@28,cnn+robust@56,cnn+robust@112
  echo "robust 112 px done $(date -u)"
fi
