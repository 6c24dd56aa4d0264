#!/usr/bin/env bash
# The course command: set up .venv, then execute every notebook headless into runs/<time>/ and write
# summary.md and ladder.png there. Uses $AUDIOLDM2_MODEL (default cvssp/audioldm2, downloaded from the hub).
# Offline dry run on a tiny random-weights checkpoint built here:  AUDIOLDM2_MODEL=tiny bash scripts/course.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m helpers.run_course "$@"
