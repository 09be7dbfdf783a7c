#!/usr/bin/env bash
# Translator trainers on a device (default cuda): train-translate, adapt, and train-translate under torchrun
# (nccl on cuda). Usage: DEVICE=cuda OUT=dir bash scripts/gpu_translators.sh   (writes OUT/translators.log)
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
PY=${PYTHON:-python3}; DEV=${DEVICE:-cuda}; W=${WORK:-/tmp/gpu-translators}
rm -rf "$W"; mkdir -p "$OUT" "$W"
TINY=(--size 64 --ngf 8 --ndf 8 --num-downs 6)
{
  set -x
  $PY -m cellxfer synth-pairs --n 8 --size 64 --cell-size 8 -o "$W/pairs" &&
  $PY -m cellxfer train-translate --pairs "$W/pairs" -o "$W/t" --steps 20 --batch-size 4 "${TINY[@]}" --device "$DEV" &&
  $PY -m cellxfer adapt -m "$W/t" --source "$W/pairs" --target "$W/pairs" -o "$W/a" --layer 3 --steps 10 --batch-size 2 \
      --ndf 8 --d-layers 1 --holdout 0 --device "$DEV" &&
  $PY -m torch.distributed.run --nproc-per-node 1 -m cellxfer train-translate --pairs "$W/pairs" -o "$W/t2" --steps 10 \
      --batch-size 2 "${TINY[@]}" --device "$DEV" &&
  $PY -c "import json,sys; [print(p, json.load(open(p)).get('distributed')) for p in sys.argv[1:]]" "$W/t/manifest.json" "$W/a/manifest.json" "$W/t2/manifest.json"
  echo "translators rc $?"
} >"$OUT/translators.log" 2>&1
tail -6 "$OUT/translators.log"
