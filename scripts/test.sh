#!/usr/bin/env bash
# The test command: set up .venv, then pytest over the helpers' tests and every notebook (nbval),
# all on a tiny random-weights checkpoint built in a temporary folder. No network, no GPU needed.
# Two pytest-xdist workers (AUDIOLDM2_TEST_WORKERS=N for more, 0 for none), each on its share of the cores; the
# 15 slowest tests are listed at the end. Arguments go to pytest: bash scripts/test.sh tests/test_loading.py
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n "${AUDIOLDM2_TEST_WORKERS:-2}" --durations=15 "$@"
