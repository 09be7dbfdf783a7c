"""Stress Ctrl-C of a run with worker processes: start ``cellxfer synth --workers W`` (or ``--scheduler local:N``,
a Dask LocalCluster), send SIGINT to its whole process group (what a terminal's Ctrl-C does) at a random moment, and tally how each try ended.

A try is **clean** when the run exits 130 within ``--timeout`` seconds and prints exactly its one
``interrupted: ...`` line (no traceback, no second line). Anything else is counted by kind: a **hang** (still
running after ``--timeout``; the group is then killed), another exit code, or extra stderr (the first sample of
each kind is kept). ``--load K`` keeps K busy processes running beside it, as a loaded CI machine would;
``--before TREE`` alternates tries with another checkout's cellxfer (``benchlib.tree_env``) so both versions see
the same machine. Writes a table and ``--out`` JSON.

    .venv/bin/python scripts/stress_interrupt.py --tries 100 --load 1 --before /tmp/old-checkout
    .venv/bin/python scripts/stress_interrupt.py --tries 30 --scheduler local:2 --out docs/data/s10/stress_interrupt_dask.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, tree_env

INTERRUPTED = "interrupted: finished images are in --out"


def _busy() -> None:  # one CPU-bound process of --load
    while True:
        pass


def one_try(env: dict, out: Path, how: list[str], timeout: float, rng: random.Random) -> tuple[str, str]:
    """``(outcome, stderr)`` of one interrupted ``synth HOW`` run (``HOW``: ``--workers W`` or ``--scheduler
    ADDRESS``): SIGINT once ``need`` images exist (1, 5 or 20, so the pool is starting, busy or in full swing)
    plus 0-50 ms."""
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen([sys.executable, "-m", "cellxfer", "synth", "--n", "5000", "--size", "64",
                             *how, "--out", str(out)], cwd=out.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    need, deadline = rng.choice([1, 5, 20]), time.monotonic() + timeout
    while not (out / "images").is_dir() or len(os.listdir(out / "images")) < need:
        if proc.poll() is not None or time.monotonic() > deadline:
            return f"exit {proc.returncode} before SIGINT", proc.communicate()[1]
        time.sleep(0.01)
    time.sleep(rng.random() * 0.05)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return "hang", proc.communicate()[1]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if proc.returncode != 130:
        return f"exit {proc.returncode}", err
    return ("clean" if len(lines) == 1 and lines[0].startswith(INTERRUPTED) else "extra stderr"), err


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tries", type=int, default=100, help="tries per version")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scheduler", default=None, help="run under a Dask scheduler instead (e.g. local:2; the dask extra)")
    p.add_argument("--load", type=int, default=1, help="busy processes running beside the tries")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a try may take after SIGINT")
    p.add_argument("--before", type=Path, default=None, help="a checkout of an earlier cellxfer, tried in turn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "data" / "stress_interrupt.json")
    args = p.parse_args()
    versions = {"after": tree_env(REPO)}
    if args.before:
        versions = {"before": tree_env(args.before.resolve()), **versions}
    hogs = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for h in hogs:
        h.start()
    how = ["--scheduler", args.scheduler] if args.scheduler else ["--workers", str(args.workers)]
    rng, tally, samples = random.Random(args.seed), {v: {} for v in versions}, {v: {} for v in versions}
    try:
        with tempfile.TemporaryDirectory(prefix="cellxfer-stress-") as tmp:
            for i in range(args.tries):
                for name, env in versions.items():
                    outcome, err = one_try(env, Path(tmp) / "syn", how, args.timeout, rng)
                    tally[name][outcome] = tally[name].get(outcome, 0) + 1
                    if outcome != "clean":
                        samples[name].setdefault(outcome, err[-3000:])
                        print(f"try {i} {name}: {outcome}", flush=True)
    finally:
        for h in hogs:
            h.terminate()
    kinds = sorted({o for t in tally.values() for o in t})
    print("| version | tries | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    for name, t in tally.items():
        print(f"| {name} | {args.tries} | " + " | ".join(str(t.get(k, 0)) for k in kinds) + " |")
    print(f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs, {args.load} busy process(es) beside)")
    args.out.write_text(json.dumps({"what": f"Ctrl-C of cellxfer synth {' '.join(how)} at random moments",
                                    "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"),
                                    "tries": args.tries, "how": how, "load": args.load,
                                    "tally": tally, "samples": samples}, indent=2) + "\n")


if __name__ == "__main__":
    main()
