#!/usr/bin/env python
"""Does ``cellxfer count`` scale to folders of many images (a 384-well plate: ~14,000; a screen: 100,000)?

Writes folders of N small images (64x64 uint16 TIFFs, nuclei-like blobs; ``--sizes``, made once under ``--work``),
then for each N runs, in a fresh process each and in turn with ``--before``'s checkout (before, after, before, ...):

- ``count DIR --out counts.csv`` (a first run): wall seconds, ms per image, the images/s the summary prints
  (counting only, start-up left out), peak RSS (the process's max resident set) and the bytes it wrote (``wchar`` of
  ``/proc/self/io``: the CSV, its journal, the manifest, the output on the terminal);
- the same command again (everything done: a resume's cost), wall seconds;
- ``--overlay-sizes``: ``count DIR --overlay OUT`` on the first M images of the folder, wall seconds (the check that
  no output replaces an input looked at every input for every output);
- ``--dask-sizes``: ``count DIR --scheduler local:2`` on each of these folders (made too), wall seconds and peak RSS
  (the LocalCluster's scheduler runs in the command's process; every image was submitted at once).

Medians over ``--repeats``; the load average before each run is kept with it; with ``--before``, the ratio
before/after of each pair of runs made in turn (``benchlib.in_turn_ratios``) and their median. Prints a markdown
table and writes ``--out`` (JSON).

    git -C /work/main worktree add --detach /tmp/cellxfer-before-scale main   # the checkout measured as "before"
    .venv/bin/python scripts/bench_many.py --sizes 1000,5000,20000 --overlay-sizes 250,500,1000 \\
        --before /tmp/cellxfer-before-scale --out docs/data/bench_many.json
    .venv/bin/python scripts/bench_many.py --sizes "" --overlay-sizes "" --dask-sizes 2000,5000 \
        --before /tmp/cellxfer-before-scale --out docs/data/bench_many_dask.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, in_turn_ratios, tree_env

#: the child: runs ``cellxfer ARGS`` and at exit writes its /proc/self/io to the file named first
DRIVER = ("import atexit, runpy, sys\n"
          "io_file = sys.argv.pop(1)\n"
          "def _io():\n"
          "    with open('/proc/self/io') as f, open(io_file, 'w') as out: out.write(f.read())\n"
          "atexit.register(_io)\n"
          "sys.argv = ['cellxfer', *sys.argv[1:]]\n"
          "runpy.run_module('cellxfer', run_name='__main__')\n")


def make_images(folder: Path, n: int, side: int = 64) -> Path:
    """``n`` 64x64 uint16 TIFFs named as a plate's (row, well, field, channel), 8 patterns of 1-8 blobs."""
    import numpy as np
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    if len(os.listdir(folder)) == n:
        return folder
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    patterns = []
    for k in range(8):
        im = rng.normal(200, 10, (side, side))
        for _ in range(k + 1):
            cy, cx = rng.uniform(8, side - 8, 2)
            im += 3000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0 ** 2))
        patterns.append(np.clip(im, 0, 65535).astype(np.uint16))
    for i in range(n):
        tifffile.imwrite(folder / f"p{i // 3456:02d}_w{(i // 36) % 96:03d}_f{(i // 4) % 9}_c{i % 4}.tif", patterns[i % 8])
    return folder


def run_once(tree: Path, args: list, work: Path) -> dict:
    """One ``cellxfer ARGS`` of checkout ``tree`` in a fresh process: wall s, peak RSS MB, MB written, the summary's
    images/s and the load average before it."""
    io_file = work / "io.txt"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(io_file), *map(str, args)], cwd=work, env=tree_env(tree),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"cellxfer {' '.join(map(str, args))} failed:\n{out[-3000:]}")
    wchar = int(re.search(r"wchar: (\d+)", io_file.read_text()).group(1))
    rate = re.search(r"([\d.]+) images/s", out)
    return {"wall_s": round(wall, 3), "rss_mb": round(usage.ru_maxrss / 1024, 1), "written_mb": round(wchar / 2**20, 2),
            "images_per_s": float(rate.group(1)) if rate else None, "load": round(load, 2)}


def measure(versions: dict, folders: dict, overlay_sizes: list, repeats: int, work: Path) -> dict:
    """``{version: {case: [run, ...]}}``; each case's runs of the versions made in turn."""
    runs: dict = {v: {} for v in versions}
    if not folders:
        return runs
    for n, folder in folders.items():
        for _ in range(repeats):
            for name, tree in versions.items():
                csv = work / f"{name}-{n}.csv"
                for p in (csv, csv.with_name(csv.name + ".manifest.json"), csv.with_name(csv.name + ".journal")):
                    p.unlink(missing_ok=True)
                first = run_once(tree, ["count", folder, "--out", csv], work)
                again = run_once(tree, ["count", folder, "--out", csv], work)
                runs[name].setdefault(f"count {n}", []).append(first)
                runs[name].setdefault(f"rerun {n}", []).append(again)
                print(f"{name} n={n}: {first} / rerun {again}", flush=True)
    biggest = folders[max(folders)]
    for m in overlay_sizes:
        for _ in range(repeats):
            for name, tree in versions.items():
                overlays = work / f"ov-{name}-{m}"
                csv = work / f"ov-{name}-{m}.csv"
                subprocess.run(["rm", "-rf", str(overlays), str(csv), f"{csv}.manifest.json", f"{csv}.journal"], check=True)
                files = sorted(biggest.iterdir())[:m]
                run = run_once(tree, ["count", *files, "--overlay", overlays, "--out", csv], work)
                runs[name].setdefault(f"overlay {m}", []).append(run)
                print(f"{name} overlay m={m}: {run}", flush=True)
    return runs


def measure_dask(versions: dict, folders: dict, repeats: int, work: Path, runs: dict) -> None:
    """``count DIR --scheduler local:2`` per folder and version, in turn, into ``runs`` (case ``dask N``)."""
    for n, folder in folders.items():
        for _ in range(repeats):
            for name, tree in versions.items():
                csv = work / f"dask-{name}-{n}.csv"
                subprocess.run(["rm", "-f", str(csv), f"{csv}.manifest.json", f"{csv}.journal"], check=True)
                run = run_once(tree, ["count", folder, "--scheduler", "local:2", "--out", csv], work)
                runs[name].setdefault(f"dask {n}", []).append(run)
                print(f"{name} dask n={n}: {run}", flush=True)


def summarise(runs: dict) -> dict:
    """Medians per version and case, and (two versions) the in-turn ratios before/after of the wall seconds."""
    med = {v: {case: {k: statistics.median(r[k] for r in rs) if rs[0][k] is not None else None for k in rs[0]}
               for case, rs in cases.items()} for v, cases in runs.items()}
    ratios = {}
    if "before" in runs:
        for case in runs["after"]:
            ratios[case] = in_turn_ratios([r["wall_s"] for r in runs["before"][case]],
                                          [r["wall_s"] for r in runs["after"][case]])
    return {"medians": med, "ratios_before_over_after": ratios}


def table(summary: dict) -> str:
    rows = ["| case | version | wall s | ms / image | images/s (counting) | peak RSS MB | MB written | load |",
            "|---|---|---|---|---|---|---|---|"]
    for version, cases in summary["medians"].items():
        for case, m in cases.items():
            n = int(case.split()[-1])
            rate = "-" if not m["images_per_s"] else f"{m['images_per_s']:.1f}"
            rows.append(f"| {case} | {version} | {m['wall_s']:.2f} | {1e3 * m['wall_s'] / n:.2f} | {rate} | "
                        f"{m['rss_mb']:.0f} | {m['written_mb']:.2f} | {m['load']:.2f} |")
    if summary["ratios_before_over_after"]:
        rows += ["", "| case | before / after, wall (median of pairs) | pairs |", "|---|---|---|"]
        rows += [f"| {case} | {r['median']:.2f} | {r['pairs']} |" for case, r in summary["ratios_before_over_after"].items()]
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,5000,20000", help="images per folder, comma-separated")
    p.add_argument("--overlay-sizes", default="250,500,1000", help="images counted with --overlay ('' for none)")
    p.add_argument("--dask-sizes", default="", help="images counted with --scheduler local:2 (the dask extra)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--before", type=Path, default=None, help="a checkout of an earlier cellxfer, run in turn")
    p.add_argument("--work", type=Path, default=None, help="where the images and outputs go [a temporary folder]")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "data" / "bench_many.json")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    overlay_sizes = [int(s) for s in args.overlay_sizes.split(",") if s]
    dask_sizes = [int(s) for s in args.dask_sizes.split(",") if s]
    versions = {"after": REPO}
    if args.before:
        versions = {"before": args.before.resolve(), **versions}
    with tempfile.TemporaryDirectory(prefix="cellxfer-many-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        folders = {n: make_images(work / f"images-{n}", n) for n in sizes}
        runs = measure(versions, folders, overlay_sizes, args.repeats, work)
        measure_dask(versions, {n: make_images(work / f"images-{n}", n) for n in dask_sizes}, args.repeats, work, runs)
    summary = summarise(runs)
    print(table(summary))
    print(f"load average now {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"what": "cellxfer count on folders of N small images (64x64 uint16 TIFFs)",
                                    "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"),
                                    "cpus": os.cpu_count(), "versions": {k: str(v) for k, v in versions.items()},
                                    **summary, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
