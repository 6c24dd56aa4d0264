#!/usr/bin/env bash
# The course's GPU command on a lent machine: full-size random checkpoint, 08 (the ladder), then 04 and 05 if time is left.
PY=${PY:-python3}
START=$(date +%s); DEADLINE=$((START + ${BUDGET_S:-540}))
left() { echo $((DEADLINE - $(date +%s))); }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 AUDIOLDM2_MODEL=${AUDIOLDM2_MODEL:-full-size} MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
exec > >(tee $OUT/log.txt) 2>&1
[ -n "$LOCAL" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
echo "install done at +$(( $(date +%s) - START )) s"
{ nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; nproc; free -g;
  $PY -c "import sys, torch, diffusers, transformers, accelerate, huggingface_hub, numpy, nbclient, ipykernel, librosa; print(sys.version); [print(m.__name__, m.__version__) for m in (torch, diffusers, transformers, accelerate, huggingface_hub, numpy, nbclient, ipykernel, librosa)]; print('cuda', torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"; } > $OUT/env.txt 2>&1
cat $OUT/env.txt
$PY -c "
import time; t=time.perf_counter()
from helpers.checkpoints import cached_checkpoint
print('full-size checkpoint at', cached_checkpoint('full-size', 'base'), f'built in {time.perf_counter()-t:.0f} s')" || exit 1
echo "checkpoint ready at +$(( $(date +%s) - START )) s, $(left) s left"
mkdir -p /tmp/runs
timeout $(( $(left) - 15 )) $PY -m helpers.run_course --only 08 --out /tmp/runs/08
echo "08 ended (rc $?) at +$(( $(date +%s) - START )) s, $(left) s left"
if [ "$(left)" -gt 200 ]; then
  timeout $(( $(left) - 15 )) $PY -m helpers.run_course --only 04 05 --out /tmp/runs/0405
  echo "04 05 ended (rc $?) at +$(( $(date +%s) - START )) s, $(left) s left"
fi
cd /tmp/runs && for d in *; do tar czf $OUT/run-$d.tgz --exclude='*.wav' $d; done; ls -la $OUT
sleep 2
