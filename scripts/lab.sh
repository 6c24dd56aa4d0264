#!/usr/bin/env bash
# The course in JupyterLab: set up .venv (once; JupyterLab comes with it), then open the notebooks.
# Arguments go to jupyter lab, e.g.  bash scripts/lab.sh --no-browser --port 8889
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$(id -u)" = 0 ]; then set -- --allow-root "$@"; fi  # in a container you are often root: Jupyter refuses it unasked
exec .venv/bin/jupyter lab --ServerApp.root_dir=notebooks "$@"
