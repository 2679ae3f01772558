#!/bin/bash
# Reduced resolution study (see docs/resolution/README.md).  Runs from a frozen snapshot of
# the repository (HEAD at 7c21e3a plus this branch's data.py, train.py, evaluate.py
# Endpoints.wrapped and experiments/resolution.py), so that half-finished edits by others in
# the shared checkout cannot break an hour-long run.  The drivers are trained by separate
# processes (pretrain.py = job.load_model with the same arguments as the script); each
# step waits for the models it needs, so no two processes ever train the same model.
set -u
cd /tmp/res/snap
export PYTHONPATH=/tmp/res/snap
PY=/work/main/.venv/bin/python
OUT=/work/main/docs/resolution
COMMON="--datasets mnist5k --domains pixel,csp_phase,csp_joint,csp_flow_joint --modes fixed --budgets 4,6 --n 10 --n-specificity 1 --out $OUT"
running() { pgrep -f "pretrain.py $1" >/dev/null; }
echo "start $(date -u)"
while running "cnn:28:r" || running "mlp:28:s resnet_mini"; do sleep 20; done
$PY experiments/resolution.py $COMMON --sizes 28 --drivers cnn,cnn+robust@28
echo "28 px done $(date -u)"
until grep -q "DONE cnn:112:s" /tmp/res/pretrain1.log; do sleep 20; done
$PY experiments/resolution.py $COMMON --sizes 28,112 --drivers cnn,cnn+robust@28
echo "112 px done $(date -u)"
while running "cnn:56:r" || running "cnn:112:s cnn:56:s"; do sleep 20; done
$PY experiments/resolution.py $COMMON --sizes 28,112,56 --drivers cnn,cnn+robust@28,cnn+robust@56
echo "all done $(date -u)"
