#!/usr/bin/env bash
# One GPU check of the suite, in one prepared script (a lent GPU's time is short):
#   1. the GPU path end to end through `reproduce run` at the smoke scale: bf16 AMP, channels_last,
#      cuDNN benchmark, DDP strategy (one process), loader workers; then a second run with torch.compile;
#      each writes a record (AP from COCO evaluation) that is copied to $OUT;
#   2. benchmarks/train_speed.py at 640 px, batch 8, bf16 AMP, channels_last: the suite's Lightning path
#      against torchvision's stock RetinaNet R50-FPN in a plain loop (and SpineNet-49 in both paths),
#      images/s, peak CUDA memory, counted FLOPs and MFU (reports/benchmarks/train_speed_gpu.json);
#   3. the R50 pair with its batches held in memory (train_speed_gpu_in_memory.json: the step without data
#      loading, to tell a loader-bound step from a model-bound one);
#   4. the R50 pair again with torch.compile (train_speed_gpu_compile.json; the first compilation alone
#      takes minutes, a warm inductor cache seconds).
# Every step has its own time limit, so a slow step leaves the others' results; after each step all
# logs and records so far are packed into $OUT/gpu_check.tgz (few files come back from a lent machine).
# Usage (STEPS picks steps, default all, in this order; LIMIT_<STEP> overrides a step's seconds):
#   OUT=/some/dir bash benchmarks/gpu_check.sh
#   OUT=/some/dir STEPS="speed_compile" LIMIT_SPEED_COMPILE=400 bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-reports/gpu_check}
W=$(mktemp -d)/gpu_check
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" WANDB_MODE=disabled
PY=${PY:-python3}
STEPS=${STEPS:-run_eager run_compile speed_eager speed_memory speed_compile}
step() {  # step NAME SECONDS CMD...: run with a limit, log to $W/NAME.log, print rc and wall time
  local name=$1 limit=$2; shift 2
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  local var="LIMIT_${name^^}"
  limit=${!var:-$limit}
  local t0=$SECONDS
  timeout "$limit" "$@" > "$W/$name.log" 2>&1
  local rc=$?
  echo "== $name rc=$rc wall=$((SECONDS - t0))s"
  tail -n 25 "$W/$name.log"
  pack
}
fresh_results() {  # the GPU results this script wrote (the committed ones are older than its env.log)
  find reports/benchmarks -name 'train_speed_gpu*.json' -newer "$W/env.log" 2>/dev/null
}
pack() {
  for d in /tmp/gpu_runs /tmp/gpu_runs_compile; do
    for r in "$d"/baseline_detectors/*/seed0/record.json; do
      [ -f "$r" ] && cp "$r" "$W/record_$(basename "$d")_$(basename "$(dirname "$(dirname "$r")")").json"
    done
  done
  fresh_results | xargs -r cp -t "$W/"
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
step run_eager 100 $PY -m reproduce.cli run baseline_detectors --scale smoke --seeds 1 --jobs 1 \
  --runs-root /tmp/gpu_runs "${GPU_SET[@]}" --no-tables
step run_compile 150 $PY -m reproduce.cli run baseline_detectors --scale smoke --seeds 1 --jobs 1 \
  --variant retinanet --runs-root /tmp/gpu_runs_compile "${GPU_SET[@]}" --set trainer.compile=true --no-tables

SPEED=(--size 640 --batch 8 --precision bf16-mixed --workers 8 --threads 8 --channels-last --steps 20 --warmup 5
       --train-images 64)
step speed_eager 160 $PY benchmarks/train_speed.py "${SPEED[@]}"
step speed_memory 70 $PY benchmarks/train_speed.py "${SPEED[@]}" --pairs r50 --in-memory 8
step speed_compile 110 $PY benchmarks/train_speed.py "${SPEED[@]}" --pairs r50 --compile
pack; fresh_results | xargs -r cp -t "$OUT/"
tar tzf "$OUT/gpu_check.tgz"
ls "$W"/record_*.json > /dev/null 2>&1 && $PY benchmarks/gpu_path_check.py "$W"/record_*.json > /dev/null \
  && cp reports/benchmarks/gpu_path_check.json "$W/" && cp reports/benchmarks/gpu_path_check.json "$OUT/" && pack
