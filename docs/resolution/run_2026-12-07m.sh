#!/bin/bash
# Session of 2026-12-07 (fifth), after run_2026-12-07k.sh's first command was killed for memory
# (17 GB: 64 sources per compiled call at 112 px, live): the same two commands, run again with
# the library's new default of 4 sources per call at 112 px (evaluate.default_chunk).  Finished
# cells are skipped, so rerunning resumes.
exec "$(dirname "$0")/run_2026-12-07k.sh"
