#!/usr/bin/env bash
# The course's GPU command: notebook 08, the whole ladder with rung 7 beyond the blog, each rung split into stages,
# at full settings on the full-size random checkpoint (the real shapes, so real speed and memory, offline),
# written to results/<gpu>-<date>.md for committing. 08 took 7 minutes on an H200
# (results/nvidia-h200-2026-11-26-run2), before rung 7.
# Then, in a second call (one device command may run 10 minutes):  bash scripts/gpu.sh --only 09 10
# (where the time goes; the techniques beyond the blog). Already set up (no network):
#   AUDIOLDM2_MODEL=full-size python -m helpers.run_course --only 08 --results-dir results
set -euo pipefail
cd "$(dirname "$0")/.."
export AUDIOLDM2_MODEL=${AUDIOLDM2_MODEL:-full-size}
exec bash scripts/course.sh --only 08 --results-dir results "$@"
