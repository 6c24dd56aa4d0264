#!/usr/bin/env bash
# The course's GPU run: every measurement, in one process of about 8 minutes (python -m helpers.bench), on a GPU
# machine with its own CUDA torch and no network (a cluster's GPU node, a rented or lent GPU). Two steps:
#
#   1. where there is network, with the course installed (bash scripts/setup.sh), the wheels for the GPU machine's
#      Python, torch excepted (--have: that machine's `pip list --format=freeze`, to leave out what it has):
#        .venv/bin/python scripts/offline.py gather WHEELS --python-version 3.12 --platform manylinux_2_28_x86_64 \
#            --extra torchao==0.18.0
#   2. on the GPU machine, in the course's folder (copied there with WHEELS):
#        bash scripts/gpu.sh WHEELS OUT
#
# Step 2 installs beside that machine's python3 only what it lacks (scripts/offline.py install: no virtual
# environment, no torch download, nothing replaced), then runs the benchmark on the full-size random checkpoint
# (the real shapes: real speed and memory, offline; built on first use, 4.2 GB in ~/.cache) with --deadline 480,
# writing OUT/results.jsonl and OUT/summary.md. It writes nothing inside the course's folder.
# Already installed? Then only: python -m helpers.bench --deadline 480 --out OUT
# Variables: PYTHON (default python3), SITE (where the wheels go, default $TMPDIR/audioldm2-faster-site),
# DEADLINE (seconds, default 480), AUDIOLDM2_MODEL (default full-size).
set -euo pipefail
usage="usage: bash scripts/gpu.sh WHEELS OUT   (WHEELS from scripts/offline.py gather; OUT outside this folder)"
WHEELS=${1:?$usage}
OUT=${2:?$usage}
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SITE=${SITE:-${TMPDIR:-/tmp}/audioldm2-faster-site}
DEADLINE=${DEADLINE:-480}
parent=$(cd "$(dirname "$OUT")" 2>/dev/null && pwd) || { echo "error: $(dirname "$OUT") does not exist" >&2; exit 2; }
OUT="$parent/$(basename "$OUT")"
case "$OUT/" in
  "$ROOT"/*) echo "error: OUT ($OUT) is inside the course's folder: name a folder outside it." >&2; exit 2 ;;
esac
mkdir -p "$OUT"
"$PY" "$ROOT/scripts/offline.py" install "$WHEELS" --target "$SITE"
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
export AUDIOLDM2_MODEL=${AUDIOLDM2_MODEL:-full-size}
cd "$OUT"  # nothing the run writes by a relative path lands in the course's folder
{ command -v nvidia-smi >/dev/null && nvidia-smi; "$PY" -m pip list --format=freeze; } > "$OUT/environment.txt" 2>&1 || true
# the benchmark ends itself by its deadline; timeout is only the last resort (SIGTERM: the results file stays valid)
exec timeout --kill-after=30 $((DEADLINE + 60)) "$PY" -m helpers.bench --deadline "$DEADLINE" --out "$OUT"
