#!/usr/bin/env bash
# On a lent GPU (no network; wheels carried in .whl/): the course's GPU command (notebook 08 on the full-size
# random checkpoint, --results-dir), then results/nvidia-h200-2026-11-26-run2/probe_beyond_blog.py with the time left.
PY=${PY:-python3}
START=$(date +%s); DEADLINE=$((START + ${BUDGET_S:-585}))
left() { echo $((DEADLINE - $(date +%s))); }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 AUDIOLDM2_MODEL=${AUDIOLDM2_MODEL:-full-size} MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
exec > >(tee -a $OUT/log.txt) 2>&1
if [ ! -f /tmp/site/.done ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && touch /tmp/site/.done || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD
echo "install done at +$(( $(date +%s) - START )) s"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; nproc;
  $PY -c "import sys, torch, diffusers, transformers, accelerate, numpy; print(sys.version); [print(m.__name__, m.__version__) for m in (torch, diffusers, transformers, accelerate, numpy)]; print('cuda', torch.version.cuda, torch.cuda.get_device_name(0))"; } > $OUT/env.txt 2>&1
cat $OUT/env.txt
$PY -c "from helpers.checkpoints import cached_checkpoint; print(cached_checkpoint('full-size', 'base'))" || exit 1
echo "checkpoint ready at +$(( $(date +%s) - START )) s, $(left) s left"
if [ -z "$SKIP_COURSE" ]; then
  mkdir -p /tmp/runs $OUT/results
  timeout $(( $(left) - 110 )) $PY -m helpers.run_course --only 08 --out /tmp/runs/08 --results-dir $OUT/results
  echo "08 ended (rc $?) at +$(( $(date +%s) - START )) s, $(left) s left"
  (cd /tmp/runs && tar czf $OUT/run-08.tgz --exclude='*.wav' 08)
fi
PROBE_S=$(( $(left) - 10 )) timeout $(( $(left) - 5 )) $PY results/nvidia-h200-2026-11-26-run2/probe_beyond_blog.py
echo "probe ended (rc $?) at +$(( $(date +%s) - START )) s"
ls -la $OUT $OUT/results
