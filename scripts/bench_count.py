#!/usr/bin/env python
"""Benchmark ``cellxfer count`` engines on the IDCIA 95 (600x800 real images) with one model.

Every available engine (torch and onnx on the CPU; on a GPU also torch-cuda, onnx-cuda and trt) counts
the 95 images through the real batched, pipelined job (:func:`cellxfer.count.job.count_batched`), each
run in a fresh process so peak memory (max RSS; GPU: torch's max allocated) is its own. Reports medians
over ``--repeats``: images/s and ms per image of the counting loop (model loaded, files read on the
decode pool), start-up (import + model load, ONNX export cached), the max absolute per-image count
difference from torch on the same device class, and the ratio of images/s to torch (measured in this run).
It also times the whole CLI command (``cellxfer count FOLDER --engine onnx``, start-up included).

``--before TREE`` also runs every worker and the CLI command with the cellxfer of another checkout (same model,
or ``--before-model``'s: the model that version shipped, when the model's metadata changed; ``PYTHONPATH=TREE``; its ``count_batched`` must take the same arguments), in turn with this one (before, after,
before, ...), and prints each pair's ratio of the CLI command's seconds and of onnx's images/s.

``--command-only`` times just the whole command, as a user runs it (``cellxfer count FOLDER --engine onnx``,
``--diameter auto`` by default), ``--repeats`` times per version in turn: its wall seconds, its CPU seconds (user +
system, which load from other processes inflates far less than the wall), the images/s its summary prints and
that rate over StarDist's quoted 2.2 images/s, with the load average before each run (``--wait-idle S``: each run
waits up to S seconds for a second with 90% of the CPUs idle, on a machine shared with other jobs, and records
the idle share it found); then one exact count per
version (the worker, with the command's diameter policy and points): with ``--before``, whether every count,
point, density map and diameter is the same to the last bit; and a profile of each version: the CPU of each
step of counting an image (decode, diameter estimate + resize, levels, tiles, ONNX Runtime, merge), one thread.

    .venv/bin/python scripts/bench_count.py                          # the shipped default counter
    .venv/bin/python scripts/bench_count.py --arch efficientnet_b0   # a random EfficientNet-B0 counter
    .venv/bin/python scripts/bench_count.py --command-only --repeats 5 --before /tmp/before --out docs/X.json

Writes ``--out`` (JSON) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import IDCIA as _IDCIA, REPO, in_turn_ratios, tree_env, wait_idle  # noqa: E402  (the scripts' shared module)

IDCIA = _IDCIA / "images"
CANDIDATES = (("torch", "cpu"), ("onnx", "cpu"), ("torch", "cuda"), ("onnx", "cuda"), ("trt", "cuda"))
STARDIST_QUOTED = 2.2  # images/s, the figure the issues quote for StarDist on these images; not measured here


def worker(args) -> None:
    """One engine, one run, in this process: print a JSON line."""
    import resource

    t0 = time.perf_counter()
    import cellxfer
    from cellxfer.inputs import expand_inputs
    from cellxfer.count.job import count_batched
    from cellxfer.engines.base import load_runner

    runner = load_runner(args.model, args.engine, device=args.device, batch_size=args.batch_size)
    files, _ = expand_inputs([args.data])
    files = files[: args.limit] if args.limit else files
    startup = time.perf_counter() - t0
    meta = runner.meta
    if meta.output == "density":  # warm up on the tile size the job sends, not the training window
        from cellxfer.density.stitch import tile_of

        side = tile_of(meta)
    else:
        side = meta.window
    runner(np.zeros((1, meta.in_chans, side, side), np.float32))
    policy = None
    if args.diameter != "off":
        from cellxfer.scale import DiameterPolicy

        policy = DiameterPolicy.parse(args.diameter, meta.diameter)
    exact = hashlib.sha256()
    t1 = time.perf_counter()
    counts = {}
    for f, plan, res, _ in count_batched(files, runner, batch_size=args.batch_size, workers=args.workers,
                                         policy=policy, points=args.exact):
        if isinstance(res, BaseException):
            raise res
        counts[f.name] = res.count
        if args.exact:  # every number the command could write, to the last bit
            scaled = plan.scaled
            for a in (res.points, res.region_counts, None if res.density_map is None else res.density_map.counts,
                      None if scaled is None else np.array([scaled.sy, scaled.sx, scaled.diameter or np.nan])):
                exact.update(b"-" if a is None else np.ascontiguousarray(a, dtype=np.float64).tobytes())
    run_s = time.perf_counter() - t1
    gpu_mb = None
    if args.device == "cuda":
        import torch

        gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if args.engine == "torch" else None
    print("RESULT " + json.dumps({"engine": runner.engine, "label": runner.label, "startup_s": startup, "run_s": run_s,
                                  "tree": str(Path(cellxfer.__file__).resolve().parents[1]),
                                  "n": len(counts), "counts": counts, "gpu_peak_mb": gpu_mb,
                                  "exact_sha256": exact.hexdigest() if args.exact else None,
                                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _levels(norm, scaled, image):
    """``norm.levels`` as ``plan_image`` calls it (the image as given for the grey step, the scale estimate for
    the lift); a ``--before`` tree's ``levels`` may take fewer of them: the most it takes."""
    import inspect

    given = (scaled.image, image if scaled.resized else None, scaled.estimate)
    return norm.levels(*given[:len(inspect.signature(norm.levels).parameters)])


def steps_worker(args) -> None:
    """``--command-only``'s profile: the CPU of each step of counting an image as the command does (decode, the
    diameter policy, levels, tiles, ONNX Runtime, merge), one image after another in this process (ONNX Runtime
    on one thread), median per image over 3 passes; print a JSON line."""
    from cellxfer.count.parts import plan_image
    from cellxfer.engines.base import load_runner
    from cellxfer.inputs import expand_inputs
    from cellxfer.lazy import open_image
    from cellxfer.scale import DiameterPolicy

    runner = load_runner(args.model, "onnx", device="cpu", threads=1)
    meta = runner.meta
    policy = DiameterPolicy.parse(None, meta.diameter)
    files, _ = expand_inputs([args.data])
    passes = []
    for _ in range(3):
        spent: dict = {}
        clock = time.process_time()  # the whole process: an estimate may run on a thread of its own

        def step(name):
            nonlocal clock
            now = time.process_time()
            spent[name] = spent.get(name, 0.0) + now - clock
            clock = now

        for f in files:
            image = np.asarray(open_image(f))
            step("decode")
            scaled = policy.scale(image, meta)
            step("diameter estimate + resize")
            levels = _levels(meta.normalization, scaled, image)
            step("normalisation levels")
            plan = plan_image(scaled.image, meta, None, levels=levels)
            merger = plan.merger(False)
            for i in range(len(plan.parts)):
                batch = plan.batch(i)
                step("plan, normalise and cut the tiles")
                outs = [np.asarray(runner(batch[j:j + args.batch_size])) for j in range(0, len(batch), args.batch_size)]
                step("ONNX Runtime")
                merger.add(i, outs)
            merger.result()
            step("merge")
        passes.append(spent)
    ms = {k: 1e3 * statistics.median(p[k] for p in passes) / len(files) for k in passes[0]}
    print("RESULT " + json.dumps({**ms, "total": sum(ms.values())}))


def run_worker(args, engine: str, device: str, tree: Path | None = None, exact: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--_worker", "--engine", engine, "--device", device, "--model", str(args.model),
           "--data", str(args.data), "--batch-size", str(args.batch_size), "--workers", str(args.workers),
           "--limit", str(args.limit), "--diameter", "auto" if exact else "off"] + (["--exact"] if exact else [])
    return _child(cmd, f"{engine}/{device}", tree, check_tree=True)


def _child(cmd: list, what: str, tree: Path | None, check_tree: bool = False) -> dict:
    """Run this script's worker ``cmd`` with the cellxfer of ``tree``; its RESULT line as a dict."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=tree_env(tree or REPO), cwd=tempfile.gettempdir())
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"{what} failed: {r.stderr.strip().splitlines()[-1:]}")
    res = json.loads(line[7:])
    if check_tree and Path(res["tree"]) != (tree or REPO).resolve():
        raise RuntimeError(f"the worker imported the cellxfer of {res['tree']}, not of {tree or REPO}")
    return res


def cli_run(args, tree: Path | None = None) -> dict:
    """The whole ``cellxfer count`` command once: wall and CPU (user + system) seconds, the images/s its summary
    prints, the load average before it, and its CSV's rows (file -> the columns a count decides)."""
    import csv
    import re
    import resource

    with tempfile.TemporaryDirectory() as tmp:
        idle = wait_idle(0.9, args.wait_idle) if args.wait_idle else None
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "cellxfer", "count", str(args.data), "--engine", "onnx", "--model",
                            str(args.model), "--out", str(Path(tmp) / "c.csv"), "--batch-size", str(args.batch_size)],
                           capture_output=True, text=True, env=tree_env(tree or REPO), cwd=tmp)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise RuntimeError(f"cellxfer count failed: {r.stderr.strip()}")
        with open(Path(tmp) / "c.csv") as f:
            rows = {Path(row["file"]).name: [row[k] for k in ("count", "diameter", "scale", "qc", "status")]
                    for row in csv.DictReader(f)}
    rate = re.search(r"([0-9.]+) images/s", r.stdout + r.stderr)
    return {"wall_s": wall, "cpu_s": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
            "images_per_s": float(rate.group(1)) if rate else None, "load_before": load, "idle_before": idle,
            "rows": rows}


def cli_wall(args, tree: Path | None = None) -> float:
    return cli_run(args, tree)["wall_s"]


def make_model(arch: str, path: Path) -> Path:
    import torch

    from cellxfer.counter.model import CounterMeta, build_counter, save_counter

    torch.manual_seed(0)
    meta = CounterMeta(arch=arch)
    return save_counter(path, build_counter(meta), meta)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="counter checkpoint [default: the shipped counter]")
    ap.add_argument("--arch", default=None, help="benchmark a randomly initialised counter of this architecture instead")
    ap.add_argument("--data", type=Path, default=IDCIA)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=24)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="count only the first N images (0 = all)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench_count.json")
    ap.add_argument("--engine", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--before", type=Path, default=None, help="a checkout of an earlier cellxfer to run in turn with this one")
    ap.add_argument("--before-model", type=Path, default=None,
                    help="with --before: the model that version counts with (default: --model), e.g. the one it shipped")
    ap.add_argument("--command-only", action="store_true",
                    help="time only the whole `cellxfer count` command (wall, CPU, its images/s), then check exactness")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each command run, wait up to S seconds for a second with >= 90%% of the CPUs idle "
                         "(a machine shared with other jobs); the idle share is recorded")
    ap.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_steps", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--diameter", default="off", help=argparse.SUPPRESS)  # the worker's --diameter policy
    ap.add_argument("--exact", action="store_true", help=argparse.SUPPRESS)  # the worker hashes every number
    args = ap.parse_args(argv)
    if args._worker or args._steps:
        (worker if args._worker else steps_worker)(args)
        return 0

    if not args.data.is_dir():
        print(f"{args.data}: IDCIA images not found")
        return 2
    args.data = args.data.resolve()  # the children run elsewhere (`python -m` puts its folder first on the path)
    os.environ.setdefault("CELLXFER_CACHE", str(REPO / "runs" / "cache"))
    if args.arch:
        args.model = make_model(args.arch, REPO / "runs" / f"bench-{args.arch}.safetensors")
    elif args.model is None:
        from cellxfer.engines.base import default_model

        args.model = default_model()
    args.model = args.model.resolve()
    from cellxfer.engines.base import engines, load_runner

    known = engines()
    load_runner(args.model, "onnx")  # export the ONNX into the cache once, outside the timings
    todo = [(e, d) for e, d in CANDIDATES if e in known and known[e].available(d) is None]
    versions = ([("before", args.before.resolve())] if args.before else []) + [("after", REPO)]
    if args.command_only:
        return command_only(args, versions)
    runs = {(v, k): [] for v, _ in versions for k in todo}
    walls = {v: [] for v, _ in versions}
    for rep in range(args.repeats):  # interleaved, so machine noise hits every engine and version alike
        for v, tree in versions:
            for key in todo:
                res = run_worker(_args_of(args, v), *key, tree)
                runs[(v, key)].append(res)
                print(f"repeat {rep + 1}: {v:<6} {res['label']:<16} {res['n'] / res['run_s']:6.2f} images/s", flush=True)
            if ("onnx", "cpu") in todo:
                walls[v].append(cli_wall(_args_of(args, v), tree))
    report = {v: _version_report({k: runs[(v, k)] for k in todo}, walls[v]) for v, _ in versions}
    from cellxfer.counter.model import read_meta

    meta = read_meta(args.model) if args.model.suffix == ".safetensors" else None
    info = (f"model {args.model.name} ({meta.arch if meta else '?'}, window {meta.window if meta else '?'}), "
            f"batch {args.batch_size} windows, {args.repeats} repeats (medians), {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    table = "\n\n".join(f"{v}{f' ({tree})' if args.before else ''}:\n\n{report[v]['table']}" for v, tree in versions)
    pairs = _pairs(runs, walls) if args.before else {}
    print("\n" + info + "\n\n" + table + "".join(f"\n{k}: {v}" for k, v in pairs.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, **report["after"], "command": " ".join(sys.argv),
                                    **({"before": {"tree": str(args.before), **report["before"]}, "pairs": pairs}
                                       if args.before else {})}, indent=1))
    return 0


def _args_of(args, version: str):
    """``args`` as version ``version`` runs them: ``--before-model`` for ``before``."""
    if version != "before" or args.before_model is None:
        return args
    return argparse.Namespace(**{**vars(args), "model": args.before_model.resolve()})


def command_only(args, versions: list) -> int:
    """``--command-only``: the whole command ``--repeats`` times per version in turn, then one exact count each."""
    runs = {v: [] for v, _ in versions}
    for rep in range(args.repeats):
        for v, tree in versions:
            r = cli_run(_args_of(args, v), tree)
            runs[v].append(r)
            idle = "" if r["idle_before"] is None else f", {r['idle_before']:.0%} idle the second before"
            print(f"repeat {rep + 1}: {v:<6} {r['wall_s']:5.2f} s wall, {r['cpu_s']:5.2f} s CPU, "
                  f"{r['images_per_s']} images/s (load {r['load_before']:.2f} before{idle})", flush=True)
    exact = {v: run_worker(_args_of(args, v), "onnx", "cpu", tree, exact=True) for v, tree in versions}
    steps = {v: _child([sys.executable, __file__, "--_steps", "--model", str(_args_of(args, v).model), "--data", str(args.data),
                        "--batch-size", str(args.batch_size)], "steps", tree) for v, tree in versions}
    report = {"info": f"IDCIA 95 ({args.data}), model {args.model.name}, `cellxfer count FOLDER --engine onnx` "
                      f"(--diameter auto), batch {args.batch_size}, {args.repeats} runs per version in turn, "
                      f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
              "command": " ".join(sys.argv), "stardist_quoted_images_per_s": STARDIST_QUOTED, "versions": {}}
    lines = ["| | whole command, s (median) | CPU s (median) | images/s (median, its summary) | x StarDist's 2.2 "
             "| load before (runs) | runs, s |", "|---|---|---|---|---|---|---|"]
    for v, tree in versions:
        rs = runs[v]
        med = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s", "images_per_s")}
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        report["versions"][v] = {"tree": str(tree), "commit": commit.stdout.strip() or None, **med, "x_stardist": med["images_per_s"] / STARDIST_QUOTED,
                                 "runs": [{k: r[k] for k in ("wall_s", "cpu_s", "images_per_s", "load_before",
                                                             "idle_before")}
                                          for r in rs],
                                 "exact_sha256": exact[v]["exact_sha256"], "counts": exact[v]["counts"],
                                 "steps_ms_per_image": steps[v]}
        loads = ", ".join(f"{r['load_before']:.1f}" + ("" if r["idle_before"] is None else f" ({r['idle_before']:.0%} idle)")
                          for r in rs)
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in rs)
        lines.append(f"| {v} | {med['wall_s']:.2f} | {med['cpu_s']:.2f} | {med['images_per_s']:.2f} | "
                     f"{med['images_per_s'] / STARDIST_QUOTED:.1f}x | {loads} | {walls} |")
    if args.before:
        b, a = runs["before"], runs["after"]
        report["pairs"] = {"wall before / after": in_turn_ratios([r["wall_s"] for r in b], [r["wall_s"] for r in a]),
                           "CPU before / after": in_turn_ratios([r["cpu_s"] for r in b], [r["cpu_s"] for r in a]),
                           "images/s after / before": in_turn_ratios([r["images_per_s"] for r in a],
                                                                     [r["images_per_s"] for r in b])}
        report["same_csv_rows"] = all(r["rows"] == b[0]["rows"] for r in b + a)
        report["same_to_the_bit"] = exact["before"]["exact_sha256"] == exact["after"]["exact_sha256"] and \
            exact["before"]["counts"] == exact["after"]["counts"]
    names = list(steps[versions[-1][0]])
    lines += ["", "CPU ms per image, step by step (one thread, median of 3 passes):", "",
              "| step | " + " | ".join(v for v, _ in versions) + " |", "|---|" + "---|" * len(versions)]
    lines += [f"| {k} | " + " | ".join(f"{steps[v].get(k, float('nan')):.1f}" for v, _ in versions) + " |" for k in names]
    report["table"] = "\n".join(lines)
    print("\n" + report["info"] + "\n\n" + report["table"] + "".join(
        f"\n{k}: {report[k]}" for k in ("pairs", "same_csv_rows", "same_to_the_bit") if k in report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


def _version_report(runs: dict, walls: list) -> dict:
    """Rows (medians per engine, ratios to torch measured in the same run), the CLI seconds and a markdown table."""
    rows = []
    for (engine, device), rs in runs.items():
        ref = runs.get(("torch", device)) or runs.get(("torch", "cpu"))
        ips = statistics.median(r["n"] / r["run_s"] for r in rs)
        ref_ips = statistics.median(r["n"] / r["run_s"] for r in ref) if ref else None
        diff = max(abs(rs[0]["counts"][k] - ref[0]["counts"][k]) for k in rs[0]["counts"]) if ref else None
        rows.append({"engine": rs[0]["label"], "images": rs[0]["n"], "images_per_s": ips, "ms_per_image": 1e3 / ips,
                     "startup_s": statistics.median(r["startup_s"] for r in rs),
                     "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
                     "gpu_peak_mb": rs[0]["gpu_peak_mb"], "speedup_vs_torch": ips / ref_ips if ref_ips else None,
                     "max_count_diff_vs_torch": diff})
    header = "| engine | images/s | ms/image | x torch | start-up s | peak RSS MiB | max count diff vs torch |"
    lines = [header, "|" + "---|" * 7]
    for r in rows:
        lines.append(f"| {r['engine']} | {r['images_per_s']:.2f} | {r['ms_per_image']:.0f} | "
                     f"{r['speedup_vs_torch']:.2f} | {r['startup_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['max_count_diff_vs_torch']:.4f} |")
    if walls:
        lines.append(f"\nWhole CLI command `cellxfer count <95 images> --engine onnx` (start-up included): "
                     f"median {statistics.median(walls):.1f} s over {len(walls)} runs ({', '.join(f'{w:.1f}' for w in walls)})")
    return {"rows": rows, "cli_wall_s": walls, "table": "\n".join(lines)}


def _pairs(runs: dict, walls: dict) -> dict:
    """Before/after ratios, pair by pair (run i of each), and their medians: the CLI command's seconds, onnx's images/s."""
    out = {}
    if walls["after"]:
        out["CLI seconds before / after"] = in_turn_ratios(walls["before"], walls["after"])
    key = ("onnx", "cpu")
    if ("after", key) in runs:
        rates = {v: [r["n"] / r["run_s"] for r in runs[(v, key)]] for v in ("before", "after")}
        out["onnx images/s after / before"] = in_turn_ratios(rates["after"], rates["before"])
    return out


if __name__ == "__main__":
    sys.exit(main())
