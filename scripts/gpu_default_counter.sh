#!/usr/bin/env bash
# Default-counter candidates trained on one GPU (the session's lent H200), all three side by side, only on
# images cellxfer renders (scripts/train_default_counter.py, IDCIA absent there so nothing real is read).
# Usage: OUT=dir bash scripts/gpu_default_counter.sh [N_SYNTHETIC] [EPOCHS] [LIMIT_S]
# Writes OUT/<variant>.tar (best/last weights, history, manifest, log) and OUT/gpu-tests.log.
set -u
N=${1:-8000}; EPOCHS=${2:-40}; LIMIT=${3:-450}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
PY=${PYTHON:-python3}
W=${WORK:-/tmp/gpu-dc}
mkdir -p "$W" "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu-tests.log"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" | tee -a "$OUT/gpu-tests.log"
variant() {  # name, extra args
  local name=$1; shift
  timeout "$LIMIT" $PY scripts/train_default_counter.py --device "${DEVICE:-cuda}" --workers 5 --n-synthetic "$N" \
    --epochs "$EPOCHS" --work "$W/$name" --out "$W/$name/model.safetensors" --idcia /nonexistent "$@" \
    >"$W/$name/log" 2>&1
  echo "exit $?" >>"$W/$name/log"
}
for v in A B C; do mkdir -p "$W/$v"; done
variant A &
variant B --base 12 &
variant C --epochs $((EPOCHS * 2)) --n-synthetic $((N / 2)) &
timeout 120 $PY -m pytest -q -m gpu tests -p no:cacheprovider >>"$OUT/gpu-tests.log" 2>&1
wait
for v in A B C; do
  (cd "$W/$v" && tar cf "$OUT/$v.tar" log model.safetensors run/best.safetensors run/last.safetensors \
     run/history.csv run/manifest.json default_counter_eval.json 2>/dev/null)
  tail -3 "$W/$v/log"
done
