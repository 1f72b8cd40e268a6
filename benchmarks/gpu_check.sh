#!/usr/bin/env bash
# One GPU check of the suite, in one prepared script (a lent GPU's time is short):
#   1. the GPU path end to end through `reproduce run` at the smoke scale: bf16 AMP, channels_last,
#      cuDNN benchmark, DDP strategy (one process), loader workers; then a second run with torch.compile;
#      each writes a record (AP from COCO evaluation) that is copied to $OUT;
#   2. benchmarks/train_speed.py at 640 px, batch 8, bf16 AMP, channels_last: the suite's Lightning path
#      against torchvision's stock RetinaNet R50-FPN in a plain loop (and SpineNet-49 in both paths),
#      images/s, peak CUDA memory, counted FLOPs and MFU (reports/benchmarks/train_speed_gpu.json);
#   3. the R50 pair again with torch.compile (train_speed_gpu_compile.json).
# Every step has its own time limit, so a slow step leaves the others' results; after each step all
# logs and records so far are packed into $OUT/gpu_check.tgz (few files come back from a lent machine).
# Usage:
#   OUT=/some/dir bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-reports/gpu_check}
W=$(mktemp -d)/gpu_check
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" WANDB_MODE=disabled
PY=${PY:-python3}
step() {  # step NAME SECONDS CMD...: run with a limit, log to $W/NAME.log, print rc and wall time
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$W/$name.log" 2>&1
  local rc=$?
  echo "== $name rc=$rc wall=$((SECONDS - t0))s"
  tail -n 25 "$W/$name.log"
  pack
}
pack() {
  for d in /tmp/gpu_runs /tmp/gpu_runs_compile; do
    for r in "$d"/baseline_detectors/*/seed0/record.json; do
      [ -f "$r" ] && cp "$r" "$W/record_$(basename "$d")_$(basename "$(dirname "$(dirname "$r")")").json"
    done
  done
  cp reports/benchmarks/train_speed_gpu*.json "$W/" 2>/dev/null
  tar czf "$OUT/gpu_check.tgz" -C "$(dirname "$W")" gpu_check
}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, torchvision, pytorch_lightning as pl, timm, torchmetrics; print('torch', torch.__version__,
'torchvision', torchvision.__version__, 'lightning', pl.__version__, 'timm', timm.__version__, 'torchmetrics',
torchmetrics.__version__, 'cuda', torch.cuda.is_available())"
} > "$W/env.log" 2>&1
cat "$W/env.log"

GPU_SET=(--set trainer.accelerator=gpu --set trainer.strategy=ddp --set trainer.precision=bf16-mixed
         --set trainer.channels_last=true --set trainer.benchmark=true --set data.num_workers=4
         --set logger.wandb=false)
step run_eager "${LIMIT_RUN:-120}" $PY -m reproduce.cli run baseline_detectors --scale smoke --seeds 1 --jobs 1 \
  --runs-root /tmp/gpu_runs "${GPU_SET[@]}" --no-tables
step run_compile "${LIMIT_RUN:-120}" $PY -m reproduce.cli run baseline_detectors --scale smoke --seeds 1 --jobs 1 \
  --variant retinanet --runs-root /tmp/gpu_runs_compile "${GPU_SET[@]}" --set trainer.compile=true --no-tables

SPEED=(--size 640 --batch 8 --precision bf16-mixed --workers 8 --threads 8 --channels-last --steps 20 --warmup 5
       --train-images 64)
step speed_eager "${LIMIT_SPEED:-200}" $PY benchmarks/train_speed.py "${SPEED[@]}"
step speed_compile "${LIMIT_COMPILE:-130}" $PY benchmarks/train_speed.py "${SPEED[@]}" --pairs r50 --compile
cp reports/benchmarks/train_speed_gpu*.json "$OUT/" 2>/dev/null
tar tzf "$OUT/gpu_check.tgz"
$PY benchmarks/gpu_path_check.py "$W"/record_*.json > /dev/null && cp reports/benchmarks/gpu_path_check.json "$W/" \
  "$OUT/" && pack
