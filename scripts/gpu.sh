#!/usr/bin/env bash
# The course's GPU call, on a GPU machine with its own CUDA torch and no network (a cluster's GPU node, a rented or
# lent GPU), in about 9 minutes all told: every notebook run on the GPU, then every measurement of the course.
#
#   1. where there is network, with the course installed (bash scripts/setup.sh), the wheels for the GPU machine's
#      Python, torch excepted (--have: that machine's `pip list --format=freeze`, to leave out what it has):
#        .venv/bin/python scripts/offline.py gather WHEELS --python-version 3.12 --platform manylinux_2_28_x86_64 \
#            --extra torchao==0.18.0
#   2. on the GPU machine, in the course's folder (copied there with WHEELS):
#        bash scripts/gpu.sh WHEELS OUT
#   A dry run where the course is installed (no wheels: WHEELS is -), e.g. on a CPU with the tiny checkpoint:
#        PYTHON=.venv/bin/python AUDIOLDM2_MODEL=tiny DEADLINE=90 bash scripts/gpu.sh - /tmp/gpu-dry-run
#
# Step 2, within TOTAL seconds (default 540) from its start:
#   - installs beside that machine's python3 only what it lacks (scripts/offline.py install: no virtual environment,
#     no torch download, nothing replaced);
#   - builds the full-size random checkpoint (the real shapes: real speed and memory, offline; 4.2 GB in the cache)
#     in the background while the notebooks run;
#   - runs the twelve notebooks through the course runner, PARALLEL (3) runners at a time, in the GPU check profile:
#     the tiny checkpoint in smoke mode (2 steps, 2.56 s clips), so that every code path a GPU takes (float16,
#     torch.compile with CUDA graphs, CUDA events, offload) runs once, in minutes; its figures measure nothing. At
#     most NOTEBOOKS_S seconds (default 180; 0: none); a notebook that fails, or the time running out, never stops
#     what follows;
#   - gives the benchmark (python -m helpers.bench, full-size) the time that is left.
# OUT gets at most eight files: environment.txt (nvidia-smi, the host CPU, pip list), install.txt, notebooks.txt
# (one verdict per notebook), notebooks.zip (the executed notebooks, the runners' summaries and logs),
# checkpoint.txt, bench/results.jsonl and bench/summary.md. It writes nothing inside the course's folder.
# Variables: PYTHON (default python3), SITE (where the wheels go, default $TMPDIR/audioldm2-faster-site), TOTAL,
# NOTEBOOKS_S, PARALLEL, ONLY (notebook prefixes, e.g. "00 05": those alone), DEADLINE (the benchmark's, at most
# what is left), AUDIOLDM2_COMPILE_CACHE (the compile cache the notebooks and the bench share; default beside OUT),
# AUDIOLDM2_MODEL (the benchmark's checkpoint, default full-size).
set -uo pipefail
usage="usage: bash scripts/gpu.sh WHEELS OUT   (WHEELS from scripts/offline.py gather; OUT outside this folder)"
WHEELS=${1:?$usage}
OUT=${2:?$usage}
START=$SECONDS
PY=${PYTHON:-python3}
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac  # the script leaves this folder
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SITE=${SITE:-${TMPDIR:-/tmp}/audioldm2-faster-site}
TOTAL=${TOTAL:-540}
NOTEBOOKS_S=${NOTEBOOKS_S:-180}
PARALLEL=${PARALLEL:-3}
parent=$(cd "$(dirname "$OUT")" 2>/dev/null && pwd) || { echo "error: $(dirname "$OUT") does not exist" >&2; exit 2; }
OUT="$parent/$(basename "$OUT")"
case "$OUT/" in
  "$ROOT"/*) echo "error: OUT ($OUT) is inside the course's folder: name a folder outside it." >&2; exit 2 ;;
esac
mkdir -p "$OUT" || exit 2
left() { echo $((TOTAL - (SECONDS - START))); }
say() { echo "[gpu.sh $((SECONDS - START)) s] $*"; }

if [ "$WHEELS" = "-" ]; then  # the course is installed already (a dry run: PYTHON=.venv/bin/python)
  echo "nothing installed: WHEELS is -" > "$OUT/install.txt"
else
  "$PY" "$ROOT/scripts/offline.py" install "$WHEELS" --target "$SITE" > "$OUT/install.txt" 2>&1 \
    || { echo "error: installing the wheels failed: $OUT/install.txt says why" >&2; tail -5 "$OUT/install.txt" >&2; exit 2; }
fi
say "$(tail -2 "$OUT/install.txt" | head -1)"
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
export AUDIOLDM2_COMPILE_CACHE=${AUDIOLDM2_COMPILE_CACHE:-$parent/audioldm2-compile-cache}
BENCH_MODEL=${AUDIOLDM2_MODEL:-full-size}
cd "$OUT" || exit 2  # nothing the run writes by a relative path lands in the course's folder
{ command -v nvidia-smi >/dev/null && nvidia-smi; grep -m1 "model name" /proc/cpuinfo; nproc; free -g
  "$PY" -m pip list --format=freeze; } > "$OUT/environment.txt" 2>&1

# The bench's checkpoint, built on the CPU while the notebooks use the GPU.
"$PY" -c "from helpers.loading import resolve_checkpoint; print(resolve_checkpoint('$BENCH_MODEL'))" \
  > "$OUT/checkpoint.txt" 2>&1 &
BUILD=$!

# 1. Every notebook, in the GPU check profile: PARALLEL runners side by side (tiny models share one GPU easily),
#    each with its share of the notebooks, its own run folder and a few CPU threads.
if [ "$NOTEBOOKS_S" -gt 0 ]; then
  cd "$ROOT" && notebooks=$(ls notebooks/[0-9][0-9]_*.ipynb | xargs -n1 basename | cut -c1-2) && cd "$OUT" || exit 2
  [ -n "${ONLY:-}" ] && notebooks=$ONLY
  say "notebooks $(echo $notebooks), GPU check profile (tiny checkpoint, smoke mode), $PARALLEL at a time, at most $NOTEBOOKS_S s"
  "$PY" -c "from helpers.loading import resolve_checkpoint; resolve_checkpoint('tiny')"  # once, before the runners
  runners=()
  for part in $(seq 1 "$PARALLEL"); do
    share=$(echo $notebooks | tr ' ' '\n' | awk -v n="$PARALLEL" -v k="$part" '(NR - 1) % n == k - 1' | xargs)
    [ -z "$share" ] && continue
    AUDIOLDM2_MODEL=tiny AUDIOLDM2_SMOKE=1 OMP_NUM_THREADS=$(( $(nproc) / PARALLEL > 0 ? $(nproc) / PARALLEL : 1 )) \
      timeout --signal=TERM --kill-after=20 "$NOTEBOOKS_S" \
      "$PY" -m helpers.run_course --out "$OUT/notebooks/part-$part" --cell-timeout 150 --only $share \
      > "$OUT/notebooks.part-$part.log" 2>&1 &
    runners+=($!)
  done
  for runner in "${runners[@]}"; do wait "$runner"; done
  cat "$OUT"/notebooks.part-*.log; mkdir -p "$OUT/notebooks" && mv "$OUT"/notebooks.part-*.log "$OUT/notebooks/"
  cat "$OUT"/notebooks/part-*/verdicts.txt 2>/dev/null | sort > "$OUT/notebooks.txt"
  [ -s "$OUT/notebooks.txt" ] || echo "no verdicts: the runners did not start (see notebooks.zip)" > "$OUT/notebooks.txt"
  "$PY" -m zipfile -c "$OUT/notebooks.zip" "$OUT/notebooks" && rm -rf "$OUT/notebooks"
  say "notebooks: $(grep -c ': done' "$OUT/notebooks.txt") of $(echo $notebooks | wc -w) done (a failure here never stops the bench)"
else
  echo "not run: NOTEBOOKS_S=0" > "$OUT/notebooks.txt"
fi
cat "$OUT/notebooks.txt"

# 2. The benchmark, in the time left (the checkpoint's build, if unfinished, is waited for outside its clock).
wait "$BUILD"; say "checkpoint: $(tail -1 "$OUT/checkpoint.txt")"
DEADLINE_LEFT=$(( $(left) - 20 ))  # 20 s kept for the benchmark's last summary and this script's exit
DEADLINE=${DEADLINE:-$DEADLINE_LEFT}
[ "$DEADLINE" -gt "$DEADLINE_LEFT" ] && DEADLINE=$DEADLINE_LEFT
if [ "$DEADLINE" -lt 10 ]; then
  say "no time left for the benchmark ($DEADLINE s)"; exit 1
fi
say "the benchmark, deadline $DEADLINE s"
# the benchmark ends itself by its deadline; timeout is only the last resort (SIGTERM: the results file stays valid)
AUDIOLDM2_MODEL=$BENCH_MODEL timeout --kill-after=15 $((DEADLINE + 10)) \
  "$PY" -m helpers.bench --deadline "$DEADLINE" --out "$OUT/bench"
code=$?
say "bench: exit $code; OUT holds $(find "$OUT" -type f | wc -l) files"
exit $code
