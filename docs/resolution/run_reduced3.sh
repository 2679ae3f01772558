#!/bin/bash
# Reduced resolution study after 28 px (see docs/resolution/README.md): two tracks in
# parallel (56 px and 112 px), each waiting for the drivers it needs (trained by
# pretrain.py with the script's own load_model calls, 4 epochs at S > 28: --epochs-large 4).
set -u
cd /tmp/res/snap
export PYTHONPATH=/tmp/res/snap
PY=/work/main/.venv/bin/python
OUT=/work/main/docs/resolution
COMMON="--datasets mnist5k --modes fixed --budgets 4,6 --n 10 --n-specificity 1 --epochs-large 4 --out $OUT"
D3="--domains pixel,csp_phase,csp_joint"
done_() { grep -q "DONE $1" /tmp/res/pretrain*.log; }
(
  until done_ "cnn:56:s:4"; do sleep 15; done
  kill 7015 2>/dev/null   # the same process would go on to train cnn+robust at 112 px: no time
  $PY experiments/resolution.py $COMMON $D3 --sizes 56 --drivers cnn
  echo "56 px standard done $(date -u)"
  until done_ "cnn:56:r:4"; do sleep 15; done
  $PY experiments/resolution.py $COMMON $D3 --sizes 56 --drivers cnn,cnn+robust@56
  echo "56 px robust done $(date -u)"
) &
(
  until done_ "cnn:112:s:4"; do sleep 15; done
  $PY experiments/resolution.py $COMMON $D3 --sizes 112 --drivers cnn
  echo "112 px standard done $(date -u)"
) &
wait
while kill -0 5766 2>/dev/null; do sleep 15; done
$PY experiments/resolution.py $COMMON --domains pixel,csp_phase,csp_joint,csp_flow_joint --sizes 28 --drivers cnn,cnn+robust
echo "all done (summary of every cell) $(date -u)"
