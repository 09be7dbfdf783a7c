#!/usr/bin/env python
"""Benchmark `cellxfer synth` (Syn-HC, 256x256, the paper's settings) against per-cell loop baselines.

Rows:
- ``cellxfer render``: the shipped renderer, in-process, one core (per-image ms, median of repeats);
- ``nuclei render``: the ``nuclei`` synthesizer (defaults, 256x256), in-process, one core, measured in
  the same run; ``x_synhc_per_pixel`` is its time per pixel over Syn-HC's;
- ``loop, bbox masks``: a per-cell loop of the same algorithm that rasterises each candidate ellipse
  in its bounding box and tests it against the occupancy map, one candidate at a time;
- ``loop, full-image masks``: the straightforward per-cell loop that evaluates each candidate ellipse
  over the whole image (the way research code often does);
- ``cellxfer synth --n N`` as a command: wall time including interpreter start-up, file writing and
  the process pool, and the peak resident memory of the process tree.

Prints a table and writes JSON (``--json``). Usage: ``python scripts/bench_synth.py [--n 1000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cellxfer.synth import nuclei, synhc
from cellxfer.synth.base import image_rng
from cellxfer.synth.config import SynHCConfig
from cellxfer.synth.nuclei_config import NucleiConfig


def loop_render(cfg: SynHCConfig, rng: np.random.Generator, full_image: bool) -> tuple[np.ndarray, int]:
    """Syn-HC with one Python iteration per candidate cell (same algorithm and parameters)."""
    size = cfg.size
    lo, hi = cfg.semi_axis_range()
    image = rng.uniform(*cfg.background) + cfg.noise * rng.standard_normal((size, size))
    occupied = np.zeros((size, size), bool)
    target = int(min(max(round(rng.normal(cfg.count_mean, cfg.count_std)), 0), cfg.max_cells))
    centres = rng.uniform(0, size, (int(rng.integers(cfg.clusters[0], cfg.clusters[1] + 1)), 2))
    if full_image:
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
    placed = tried = 0
    while placed < target and tried < 50 * target + 100:
        tried += 1
        x, y = centres[rng.integers(len(centres))] + rng.normal(0, cfg.spread * size, 2)
        if not (0 <= x < size and 0 <= y < size):
            continue
        a, b = rng.integers(lo, hi, 2)
        t = rng.uniform(0, 2 * math.pi)
        if full_image:
            dx, dy, win = xx - x, yy - y, (slice(None), slice(None))
        else:
            r0, r1 = max(int(y) - hi, 0), min(int(y) + hi + 1, size)
            c0, c1 = max(int(x) - hi, 0), min(int(x) + hi + 1, size)
            gy, gx = np.mgrid[r0:r1, c0:c1] + 0.5
            dx, dy, win = gx - x, gy - y, (slice(r0, r1), slice(c0, c1))
        u = dx * math.cos(t) + dy * math.sin(t)
        v = dy * math.cos(t) - dx * math.sin(t)
        mask = u * u / (a * a) + v * v / (b * b) <= 1
        if np.count_nonzero(mask & occupied[win]) > cfg.overlap * np.count_nonzero(mask):
            continue
        occupied[win] |= mask
        image[win][mask] = rng.uniform(*cfg.intensity)
        placed += 1
    image = image * rng.uniform(*cfg.contrast) + rng.uniform(*cfg.brightness)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), placed


def per_image_ms(fn, n: int, repeats: int) -> tuple[float, float]:
    """Median over ``repeats`` of the mean per-image ms over ``n`` images; and mean cells per image."""
    times, cells = [], []
    for rep in range(repeats):
        t = time.perf_counter()
        cells += [fn(image_rng(rep, i)) for i in range(n)]
        times.append((time.perf_counter() - t) / n * 1000)
    return statistics.median(times), float(np.mean(cells))


def command_run(n: int, workers: int) -> tuple[float, float]:
    """(wall s, peak RSS MiB of the process tree) of ``cellxfer synth --n n`` into a fresh folder."""
    out = Path(tempfile.mkdtemp()) / "synth"
    cmd = [str(Path(sys.executable).with_name("cellxfer")), "synth", "--n", str(n), "--out", str(out)]
    if workers:
        cmd += ["--workers", str(workers)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t
    shutil.rmtree(out.parent)
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="images for the command rows")
    ap.add_argument("--sample", type=int, default=60, help="images per repeat for the in-process rows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path("docs/data/bench_synth.json"))
    args = ap.parse_args()
    cfg = SynHCConfig()
    rows = []
    fast_ms, fast_cells = per_image_ms(lambda rng: len(synhc.render(cfg, None, rng)[1]), args.sample, args.repeats)
    rows.append({"row": "cellxfer render (1 core)", "ms_per_image": fast_ms, "images_per_s": 1000 / fast_ms, "cells": fast_cells})
    ncfg = NucleiConfig()
    nuclei.poisson_table()  # built once per process (~0.1 s), not per image
    nuc_ms, nuc_cells = per_image_ms(lambda rng: len(nuclei.render(ncfg, None, rng)[1]), args.sample, args.repeats)
    per_pixel = (nuc_ms / ncfg.size**2) / (fast_ms / cfg.size**2)
    rows.append({"row": "nuclei render (1 core)", "ms_per_image": nuc_ms, "images_per_s": 1000 / nuc_ms,
                 "cells": nuc_cells, "x_synhc_per_pixel": per_pixel})
    for name, full in (("loop, bbox masks (1 core)", False), ("loop, full-image masks (1 core)", True)):
        n = args.sample if not full else max(args.sample // 6, 5)
        ms, cells = per_image_ms(lambda rng: loop_render(cfg, rng, full)[1], n, args.repeats)
        rows.append({"row": name, "ms_per_image": ms, "images_per_s": 1000 / ms, "cells": cells, "speedup_of_cellxfer": ms / fast_ms})
    for workers in (0, 1):
        walls, rss = [], 0.0
        for _ in range(args.repeats):
            wall, peak = command_run(args.n, workers)
            walls.append(wall)
            rss = max(rss, peak)
        wall = statistics.median(walls)
        label = f"`cellxfer synth --n {args.n}`" + (" (default workers)" if workers == 0 else " --workers 1")
        rows.append({"row": label, "wall_s": wall, "ms_per_image": wall / args.n * 1000, "images_per_s": args.n / wall, "peak_rss_mib": rss})

    print(f"{'row':45} {'ms/img':>8} {'img/s':>8} {'cells':>7} {'x cellxfer':>10} {'wall s':>7} {'peak MiB':>8}")
    for r in rows:
        print(f"{r['row']:45} {r['ms_per_image']:8.2f} {r['images_per_s']:8.1f} {r.get('cells', float('nan')):7.1f} "
              f"{r.get('speedup_of_cellxfer', r.get('x_synhc_per_pixel', float('nan'))):10.1f} {r.get('wall_s', float('nan')):7.2f} {r.get('peak_rss_mib', float('nan')):8.0f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"config": vars(cfg) | {}, "nuclei_config": vars(ncfg), "n": args.n, "repeats": args.repeats, "rows": rows,
                                     "machine": {"platform": platform.platform(), "cpus": len(__import__("os").sched_getaffinity(0))}},
                                    indent=2, default=str) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
