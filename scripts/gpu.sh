#!/usr/bin/env bash
# The course's GPU command: the GPU lessons at full settings (notebook 05, torch.compile; notebook 08, the whole
# ladder, each rung split into stages) on the full-size random checkpoint (the real shapes, so real speed and
# memory, offline), written to results/<gpu>-<date>.md for committing. Notebook 08 alone took 6 minutes on an
# H200 (results/nvidia-h200-2026-11-26), before it also split each rung into stages.
# Another selection:  bash scripts/gpu.sh --only 04 05 08.  Already set up (no network):
#   AUDIOLDM2_MODEL=full-size python -m helpers.run_course --only 05 08 --results-dir results
set -euo pipefail
cd "$(dirname "$0")/.."
export AUDIOLDM2_MODEL=${AUDIOLDM2_MODEL:-full-size}
exec bash scripts/course.sh --only 05 08 --results-dir results "$@"
