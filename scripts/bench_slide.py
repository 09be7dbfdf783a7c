#!/usr/bin/env python
"""Benchmark counting one large slide: time, megapixels/s and peak RSS against the slide's size.

A slide of side N is an IDCIA DAPI image (800 x 600, 8-bit, read from ../shared/data, never copied)
repeated to N x N pixels, scaled to uint16 (x 256) and written as an uncompressed tiled TIFF (256-pixel
tiles) under ``--workdir`` (default /tmp; written tile by tile, so the benchmark itself never holds a
slide). Each count runs ``run_count`` with the shipped default counter (or ``--model``; ``--engine auto``, default
``--diameter``) in a fresh child process; peak RSS is that child's own (``os.wait4``), ``wall_s`` its
wall-clock from start to exit (imports and model load included), ``count_s`` the job's own seconds and
``cpu_s`` the child's user + system CPU seconds (less sensitive than wall time to other jobs on the CPU).

``--before TREE`` also counts each slide with the cellxfer package of another checkout (e.g. the
commit before slides streamed: ``git worktree add --detach /tmp/cellxfer-before f2d48bc``), in the same
run and on the same files, so the table compares both.

    .venv/bin/python scripts/bench_slide.py --sides 4000 8000 12000 16000 --before /tmp/cellxfer-before
    .venv/bin/python scripts/bench_slide.py --profile     # 4k, 8k, 16k, 32k and where the time goes

Prints a markdown table (medians over ``--repeats``; with ``--before`` the two versions run in turn,
before then after, ``--repeats`` times, and the before/after ratio of each pair and their median are printed)
and writes ``--out`` (JSON, with the machine's load average before and after: other sessions may share the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import IDCIA, REPO, in_turn_ratios, tree_env  # noqa: E402  (the scripts' shared module)

TILE = 256

CHILD = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import cellxfer
from cellxfer.count.job import CountConfig, run_count
slide, out, tree, profile = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "1"
if Path(cellxfer.__file__).resolve().parents[1] != tree:
    raise SystemExit(f"imported {cellxfer.__file__}, not the cellxfer of {tree}")
spent = {}
if profile:
    exec(open(sys.argv[5]).read().split("# PROFILE" + "\n")[1].split("# END PROFILE")[0])
    _install()
model = {"model": sys.argv[6]} if sys.argv[6] else {}
res = run_count(CountConfig(paths=(slide,), out=out, overwrite=True, **model))
if res.failed:
    raise SystemExit(f"failed: {res.failed}")
if profile:
    _model_limit()
print("RESULT " + json.dumps({"count": list(res.counts.values())[0], "count_s": res.seconds,
                              "engine": ",".join(res.engines), "total_s": time.perf_counter() - t0,
                              "profile": spent}))
"""

# PROFILE
# (run inside the child with --profile: wraps the stages of counting one slide with timers; the seconds
# are summed over threads, so stages that overlap (decode threads ahead of the model) can sum to more
# than the wall time)
import threading as _threading  # noqa: E402


def _timed(owner, name, label):
    import functools

    fn = getattr(owner, name)
    lock = _threading.Lock()

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            with lock:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t

    setattr(owner, name, wrapper)


def _install():
    import cellxfer.count.parts as parts
    import cellxfer.counter.model as cm
    import cellxfer.density.infer as di
    import cellxfer.engines.base as eb
    import cellxfer.lazy as lazy
    import cellxfer.scale as scale

    for cls in (lazy._ZarrTiff, lazy._RawTiff):
        _timed(cls, "_read", "decode (tile reads)")
    _timed(cm.Normalization, "levels", "percentiles (levels)")
    _timed(scale.DiameterPolicy, "scale", "diameter estimate")
    _timed(parts.ImagePlan, "batch", "read+normalise+cut (incl. decode)")
    _timed(parts.DensityBands, "add", "stitch+sum+peaks (incl. peaks)")
    _timed(di.DensityPeaks, "candidates", "peaks (candidates)")
    load = eb.load_runner

    def load_runner(*a, **kw):
        runner = load(*a, **kw)
        run = runner.run

        def timed_run(batch):
            t = time.perf_counter()
            try:
                return run(batch)
            finally:
                spent["model"] = spent.get("model", 0.0) + time.perf_counter() - t
        runner.run = timed_run
        return runner

    eb.load_runner = load_runner
    plan_image = parts.plan_image

    def planned(*a, **kw):  # the tiles the slide was cut into
        plan = plan_image(*a, **kw)
        sides = (plan.splitter.tile, plan.splitter.cols)  # tiles are rows x columns
        _seen.update(tile=sides, inputs=len(plan.boxes) * sides[0] * sides[1], pixels=plan.shape[0] * plan.shape[1])
        return plan

    parts.plan_image = planned
    _seen["load"] = load  # the loader without the timers


_seen = {}


def _model_limit(repeats=5):
    """The model alone on the slide's tile side (random inputs, one tile a call, the median of ``repeats``
    calls): its megapixels of input per second, and what that allows per slide pixel (the tiles' overlap)."""
    import statistics as st

    import numpy as np

    runner = _seen["load"](sys.argv[6] or None, "auto")
    x = np.random.default_rng(0).random((1, runner.meta.in_chans, *_seen["tile"]), dtype=np.float32)
    runner.run(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        runner.run(x)
        times.append(time.perf_counter() - t)
    rate = x.size / runner.meta.in_chans / 1e6 / st.median(times)
    spent["model alone: MP/s of input"] = rate
    spent["model alone: MP/s of slide (limit)"] = rate * _seen["pixels"] / _seen["inputs"]
    spent["tile side"], spent["tile width"] = _seen["tile"]  # rows, columns

# END PROFILE


def make_slide(side: int, image: Path, workdir: Path, height: int | None = None) -> Path:
    """``workdir/slide-<side>.tif`` (``slide-<height>x<side>.tif``): ``image`` repeated to height x side (height
    None: side x side), uint16, tiled (made once)."""
    import numpy as np
    import tifffile

    height = height or side
    path = workdir / f"slide-{side if height == side else f'{height}x{side}'}-{image.stem[:40]}.tif"
    if path.is_file():
        return path
    src = tifffile.imread(image).astype(np.uint16) * 256
    h, w = src.shape

    def tiles():
        for y in range(0, height, TILE):
            for x in range(0, side, TILE):
                ys, xs = np.arange(y, y + TILE) % h, np.arange(x, x + TILE) % w
                yield src[np.ix_(ys, xs)]

    tmp = path.with_name(path.name + ".part")
    tifffile.imwrite(tmp, tiles(), shape=(height, side), dtype=np.uint16, tile=(TILE, TILE), photometric="minisblack")
    tmp.replace(path)
    return path


def run_child(tree: Path, slide: Path, workdir: Path, profile: bool = False, model: Path | None = None) -> dict:
    """Count ``slide`` with the cellxfer of ``tree`` in a child process; its peak RSS and wall time."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(slide), str(workdir / "counts.csv"), str(tree),
                             "1" if profile else "0", __file__, str(model or "")], env=tree_env(tree),
                            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{tree}: counting {slide} failed (exit {proc.returncode}):\n{err[-2000:]}")
    return {**json.loads(line[7:]), "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def affine_fit(rows: list) -> dict | None:
    """``count_s ~ fixed_s + s_per_mp * megapixels`` over the "after" rows (least squares on relative error,
    so small slides weigh as much as large ones) and each side's relative residual; None below two sides."""
    import numpy as np

    after = [r for r in rows if r["version"] == "after"]
    if len({r["megapixels"] for r in after}) < 2:
        return None
    mp, t = np.array([r["megapixels"] for r in after]), np.array([r["count_s"] for r in after])
    fixed, per = np.linalg.lstsq(np.stack([1 / t, mp / t], 1), np.ones(len(t)), rcond=None)[0]
    return {"fixed_s": float(fixed), "s_per_mp": float(per), "residuals": [float(v) for v in (fixed + per * mp - t) / t]}


def print_tables(rows: list) -> None:
    """The markdown tables of a run: one row per side and version, the in-turn ratios, the profile."""
    print("| side | version | MP | image MB | count | count s | MP/s | wall s | CPU s | peak RSS MB | RSS / image |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = r["side"] if r["height"] == r["side"] else f"{r['height']}x{r['side']}"
        print(f"| {name} | {r['version']} | {r['megapixels']:.0f} | {r['image_mb']:.0f} | {r['count']:.1f} | "
              f"{r['count_s']:.1f} | {r['mp_per_s']:.2f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['rss_over_image']:.2f} |")
    fit = affine_fit(rows)
    if fit:
        print(f"time affine in area (after): {fit['fixed_s']:.2f} s per slide + {fit['s_per_mp']:.4f} s per MP "
              f"({1 / fit['s_per_mp']:.1f} MP/s); residuals " + ", ".join(f"{v:+.1%}" for v in fit["residuals"]))
    for r in rows:
        if "speedup_pairs" in r:
            print(f"side {r['side']}: before / after seconds, pair by pair {r['speedup_pairs']}, median {r['speedup_median']:.2f}x")
    profiled = [r for r in rows if r.get("profile")]
    if profiled:
        limits = ("model alone: MP/s of input", "model alone: MP/s of slide (limit)", "tile side", "tile width")
        stages = sorted({k for r in profiled for k in r["profile"]} - set(limits))
        print("\nwhere the time goes (seconds summed over threads; a separate profiled run):\n")
        print("| stage | " + " | ".join(str(r["side"]) for r in profiled) + " |")
        print("|---|" + "---|" * len(profiled))
        for k in stages:
            print(f"| {k} | " + " | ".join(f"{r['profile'].get(k, 0.0):.1f}" for r in profiled) + " |")
        print("\nthe model alone on the slide's tile side (random inputs, one tile a call, median of 5 calls):\n")
        print("| | " + " | ".join(str(r["side"]) for r in profiled) + " |")
        print("|---|" + "---|" * len(profiled))
        for k in limits:
            print(f"| {k} | " + " | ".join(f"{r['profile'].get(k, 0.0):.1f}" for r in profiled) + " |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sides", type=int, nargs="+", default=[4000, 8000, 16000, 32000])
    p.add_argument("--profile", action="store_true",
                   help="one more run per side (after) with timers on decode, percentiles, diameter, model, peaks")
    p.add_argument("--image", default="220909_GFP-AHPC_A_GFAP_F10_DAPI_ND1_20x.tiff", help="IDCIA image to repeat")
    p.add_argument("--before", type=Path, help="a checkout of an earlier cellxfer to compare with")
    p.add_argument("--before-max-side", type=int, default=12000,
                   help="count larger slides with --before's code no more (it held ~14x the image)")
    p.add_argument("--height", type=int, default=None,
                   help="slides of HEIGHT x side instead of side x side (a wide strip: memory against the width)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--model", type=Path, default=None,
                   help="count with this checkpoint in both versions (default: each version's own default counter)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/cellxfer-bench-slide"))
    p.add_argument("--out", type=Path, default=REPO / "docs" / "data" / "bench_slide.json")
    args = p.parse_args(argv)
    args.model = args.model.resolve() if args.model else None  # the children run in --workdir
    args.workdir.mkdir(parents=True, exist_ok=True)
    trees = ([("before", args.before.resolve())] if args.before else []) + [("after", REPO)]
    load0 = os.getloadavg()
    rows = []
    for side in args.sides:
        height = args.height or side
        slide = make_slide(side, IDCIA / "images" / args.image, args.workdir, height)
        image_mb = height * side * 2 / 2**20
        versions = [(name, tree) for name, tree in trees if name == "after" or side <= args.before_max_side]
        runs_of = {name: [] for name, _ in versions}
        for _ in range(args.repeats):  # interleaved (before, after, before, ...): a drift of the machine hits both
            for name, tree in versions:
                runs_of[name].append(run_child(tree, slide, args.workdir, model=args.model))
        for name, tree in versions:
            runs = runs_of[name]
            med = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "count_s", "cpu_s", "peak_rss_mb")}
            rows.append({"side": side, "height": height, "version": name, "tree": str(tree), "megapixels": height * side / 1e6,
                         "image_mb": round(image_mb, 1), "count": runs[0]["count"], "engine": runs[0]["engine"],
                         **{k: round(v, 2) for k, v in med.items()},
                         "mp_per_s": round(height * side / 1e6 / med["count_s"], 2),
                         "rss_over_image": round(med["peak_rss_mb"] / image_mb, 2), "runs": runs})
            r = rows[-1]
            if name == "after" and "before" in runs_of:  # pair by pair: run i before against run i after
                ratios = in_turn_ratios([b["count_s"] for b in runs_of["before"]], [a["count_s"] for a in runs])
                r["speedup_pairs"], r["speedup_median"] = ratios["pairs"], ratios["median"]
            if args.profile and name == "after":
                r["profile"] = run_child(tree, slide, args.workdir, profile=True, model=args.model)["profile"]
            print(f"side {side} {name}: {r['count_s']:.1f} s, {r['peak_rss_mb']:.0f} MB peak RSS, count {r['count']:.1f}",
                  file=sys.stderr)
    report = {"what": "count one tiled uint16 slide (IDCIA image repeated), "
                      f"{args.model or 'default counter'}, --engine auto",
              "command": "scripts/bench_slide.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "image": args.image, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                               "loadavg_before": load0, "loadavg_after": os.getloadavg()},
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print_tables(rows)
    print(f"load average before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs, shared)")


if __name__ == "__main__":
    main()
