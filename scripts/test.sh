#!/usr/bin/env bash
# The test command: set up .venv, then pytest over the helpers' tests and every notebook (nbval),
# all on a tiny random-weights checkpoint built in a temporary folder. No network, no GPU needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
