#!/usr/bin/env bash
# The GPU checks of a session with a lent GPU machine (CI never has one): the @pytest.mark.gpu tests and
# scripts/bench_ddp.py with nccl. Usage: OUT=dir bash scripts/gpu_checks.sh   (writes OUT/*.log, OUT/*.json)
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
PY=${PYTHON:-python3}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.log"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.log"
timeout 120 $PY -m pytest -q -m gpu tests -p no:cacheprovider -rs >"$OUT/gpu-tests.log" 2>&1
tail -8 "$OUT/gpu-tests.log"
timeout 150 $PY scripts/bench_ddp.py --backend nccl --out /tmp/ddp-nccl >"$OUT/bench_ddp_nccl.log" 2>&1
tail -12 "$OUT/bench_ddp_nccl.log"
cp /tmp/ddp-nccl/bench_ddp.json "$OUT/bench_ddp_nccl.json" 2>/dev/null || true
