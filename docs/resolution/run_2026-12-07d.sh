#!/bin/bash
# Session of 2026-12-07 (fourth): the cells still missing from the 10-per-pair grid.
# 1. live, the standard 112-px driver's joint CSP and joint CSP flow (the robust ones are done
#    and skipped), L2 = 4, 6
# 2. L2 = 2 in live mode, every protocol domain, both drivers, 28 then 56 then 112 px
#    (this script was stopped after step 1; the 28- and 56-px commands of step 2 ran after
#    run_2026-12-07f.sh and run_2026-12-07h.sh, the 112-px one did not run)
set -u
PY=.venv/bin/python
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 4,6 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution --domains csp_joint,csp_flow_joint \
    --sizes 112 --drivers cnn,cnn+robust@112 > docs/resolution/log_112_live7.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 2 --n 10 --n-specificity 1 \
    --out docs/resolution/budget2 --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 28 --drivers cnn,cnn+robust > docs/resolution/budget2/log_live28.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 2 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/budget2 --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 56 --drivers cnn,cnn+robust@56 > docs/resolution/budget2/log_live56.txt 2>&1
$PY -u experiments/resolution.py --datasets mnist5k --modes live --budgets 2 --n 10 --n-specificity 1 \
    --epochs-large 4 --out docs/resolution/budget2 --domains pixel,csp_phase,csp_joint,csp_flow_joint \
    --sizes 112 --drivers cnn,cnn+robust@112 > docs/resolution/budget2/log_live112.txt 2>&1
