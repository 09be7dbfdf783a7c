#!/usr/bin/env python
"""Benchmark data-parallel training: ``torchrun -m cellxfer train-count`` with 1 and 2 processes.

The script writes a small labelled set itself (``OUT/data``: bright 3x3 spots on noise, 64 images of
192x192), so it needs nothing outside the repository. Each row launches the real command under
``python -m torch.distributed.run --standalone --nproc-per-node N`` with the same seed and global batch
(strong scaling: N processes split the batch), no validation, ``--epochs E --max-steps-per-epoch S``.
steps/s is the median over epochs 2..E of (steps / epoch seconds) from the run's history.csv, so
process start, data loading and the first (warm-up) epoch are left out; samples/s = steps/s x batch.

CPU (``--backend gloo``, default): each process runs ``--threads`` torch threads (default 1: a second
process adds a core; ``--threads 0`` gives each process ``cores // N``, so every row uses the same cores,
which on a loaded machine mostly measures OpenMP threads waiting for each other). GPU (``--backend nccl``): ``--device cuda``, process r on ``cuda:r``; a row needing more GPUs
than are visible is reported as skipped. Prints a table and writes ``OUT/bench_ddp.json``; the machine's
load average before and after is recorded (on a shared machine, timings are noisy).

Usage: ``python scripts/bench_ddp.py --out DIR [--backend gloo|nccl] [--procs 1,2]`` (< 2 minutes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_data(root: Path, n: int = 64, size: int = 192, seed: int = 0) -> Path:
    """A labelled cell dataset of ``n`` noisy images with 0-80 bright spots each (once per ``root``)."""
    from cellxfer.dataset import CellDatasetWriter

    if (root / "manifest.json").is_file():
        return root
    rng = np.random.default_rng(seed)
    w = CellDatasetWriter(root)
    for i in range(n):
        pts = rng.uniform(3, size - 3, (int(rng.integers(0, 81)), 2))
        img = rng.normal(10, 3, (size, size))
        for x, y in pts:
            img[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] += 120
        w.write(f"b{i:03d}", np.clip(img, 0, 255).astype(np.uint8), pts)
    w.finalize({"stage": "bench_ddp", "seed": seed})
    return root


def run_one(args, data: Path, procs: int, out: Path) -> dict:
    """One torchrun launch of train-count; its per-epoch steps/s."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // procs)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": str(threads)}
    run = out / f"run_{args.backend}_{procs}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
           "-m", "cellxfer", "train-count", "--regime", "supervised", "--real", str(data), "--out", str(run),
           "--overwrite", "--arch", args.arch, "--crop", str(args.crop), "--batch-size", str(args.batch_size),
           "--epochs", str(args.epochs), "--max-steps-per-epoch", str(args.steps), "--seed", "0",
           "--device", "cuda" if args.backend == "nccl" else "cpu"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{procs} process(es) failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = list(csv.DictReader((run / "history.csv").read_text().splitlines()))
    rates = [int(r["steps"]) / float(r["seconds"]) for r in rows[1:]]
    manifest = json.loads((run / "manifest.json").read_text())
    median = statistics.median(rates)
    return {"processes": procs, "backend": args.backend, "threads_per_process": threads,
            "steps_per_s": round(median, 3), "samples_per_s": round(median * args.batch_size, 2),
            "epoch_steps_per_s": [round(r, 3) for r in rates], "final_loss": float(rows[-1]["loss"]),
            "manifest_distributed": manifest.get("distributed"), "wall_s_with_startup": round(wall, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="Folder for the data, runs and bench_ddp.json.")
    ap.add_argument("--backend", choices=("gloo", "nccl"), default="gloo", help="gloo (CPU) or nccl (--device cuda).")
    ap.add_argument("--procs", default="1,2", help="Process counts to run, comma-separated.")
    ap.add_argument("--arch", default="density", help="Counter architecture (default: the density UNet).")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16, help="Global batch, split across processes.")
    ap.add_argument("--epochs", type=int, default=4, help="Epochs per run; the first is warm-up.")
    ap.add_argument("--steps", type=int, default=5, help="Optimizer steps per epoch.")
    ap.add_argument("--threads", type=int, default=1, help="Torch threads per process (0 = cores // processes).")
    args = ap.parse_args(argv)
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    data = write_data(args.out / "data")
    gpus = torch.cuda.device_count() if args.backend == "nccl" else 0
    load_before = os.getloadavg()
    rows = []
    for procs in (int(p) for p in args.procs.split(",")):
        if args.backend == "nccl" and procs > gpus:
            rows.append({"processes": procs, "backend": "nccl", "skipped": f"needs {procs} GPUs, {gpus} visible"})
            continue
        rows.append(run_one(args, data, procs, args.out))
    base = next((r["steps_per_s"] for r in rows if r.get("processes") == 1 and "steps_per_s" in r), None)
    for r in rows:
        if base and "steps_per_s" in r:
            r["speedup_vs_1"] = round(r["steps_per_s"] / base, 2)
    result = {"command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
              "workload": {"arch": args.arch, "crop": args.crop, "global_batch": args.batch_size, "epochs": args.epochs,
                           "steps_per_epoch": args.steps, "images": 64, "image_size": 192},
              "machine": {"cpu_count": os.cpu_count(), "gpus": gpus, "platform": platform.platform(),
                          "torch": torch.__version__, "load_avg_before": [round(v, 2) for v in load_before],
                          "load_avg_after": [round(v, 2) for v in os.getloadavg()],
                          "gpu": torch.cuda.get_device_name(0) if gpus else None},
              "rows": rows}
    (args.out / "bench_ddp.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"train-count {args.arch}, crop {args.crop}, global batch {args.batch_size}, backend {args.backend}; "
          f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    print(f"{'processes':>9}  {'threads/proc':>12}  {'steps/s':>8}  {'samples/s':>9}  {'speed-up':>8}  per-epoch steps/s")
    for r in rows:
        if "skipped" in r:
            print(f"{r['processes']:>9}  skipped: {r['skipped']}")
            continue
        print(f"{r['processes']:>9}  {r['threads_per_process']:>12}  {r['steps_per_s']:>8.3f}  {r['samples_per_s']:>9.2f}  "
              f"{r.get('speedup_vs_1', float('nan')):>8.2f}  {r['epoch_steps_per_s']}")
    print(f"JSON: {args.out / 'bench_ddp.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
