#!/usr/bin/env python
"""Where a slide's memory goes: count one slide in this process, sampling VmRSS every 20 ms and marking
the planning stages (engine load, diameter estimate, normalisation levels, plan), then print the stage
marks with the RSS at each, a per-second timeline of the peak RSS, and the run's peak.

    OMP_NUM_THREADS=2 python scripts/slide_rss_timeline.py /tmp/cellxfer-bench-slide/slide-24000-*.tif [KEY=VALUE ...]

KEY=VALUE pairs are passed to :class:`cellxfer.count.job.CountConfig` (integers as integers), e.g.
``batch_size=16``. Linux only (reads /proc/self/status). The slides are those of ``bench_slide.py``.
"""

from __future__ import annotations

import functools
import json
import resource
import sys
import threading
import time
from pathlib import Path


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str]) -> None:
    t0 = time.perf_counter()
    samples, events, stop = [], [], threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append((time.perf_counter() - t0, rss_mb()))
            time.sleep(0.02)

    threading.Thread(target=sampler, daemon=True).start()
    import cellxfer.count.parts as parts
    import cellxfer.counter.model as cm
    import cellxfer.engines.base as eb
    import cellxfer.scale as scale
    from cellxfer.count.job import CountConfig, run_count

    def mark(owner, name, label):
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def wrapper(*a, **kw):
            events.append((time.perf_counter() - t0, label + " start", rss_mb()))
            try:
                return fn(*a, **kw)
            finally:
                events.append((time.perf_counter() - t0, label + " end", rss_mb()))

        setattr(owner, name, wrapper)

    mark(cm.Normalization, "levels", "levels")
    mark(scale.DiameterPolicy, "scale", "diameter")
    mark(parts, "plan_image", "plan")
    mark(eb, "load_runner", "load_runner")
    extra = dict(a.split("=", 1) for a in argv[1:])
    config = CountConfig(paths=(argv[0],), out=Path("/tmp/slide_rss_timeline.csv"), overwrite=True,
                         **{k: int(v) if v.isdigit() else v for k, v in extra.items()})
    res = run_count(config)
    stop.set()
    print(json.dumps({"count": list(res.counts.values())[0] if res.counts else None, "count_s": res.seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "t_peak_s": max(samples, key=lambda s: s[1])[0]}))
    for t, label, mb in events:
        print(f"{t:8.2f} s  {label:18s} {mb:7.0f} MB")
    per_s: dict[int, float] = {}
    for t, mb in samples:
        per_s[int(t)] = max(per_s.get(int(t), 0.0), mb)
    print("peak RSS per second (s:MB): " + " ".join(f"{k}:{v:.0f}" for k, v in sorted(per_s.items())))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
