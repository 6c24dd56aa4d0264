#!/usr/bin/env bash
# Make .venv (once) and install the course into it with the pinned versions. test.sh and course.sh run it first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch==2.13.0 comes from the `torch` extra: on a machine with a local CPU wheel pip takes that one.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[torch,test,lab]"
