#!/usr/bin/env python
"""The core install (``pip install cellxfer``) against the full one (``cellxfer[all]``), from the built wheel.

Builds the wheel (``python -m build --wheel``), installs it into fresh venvs and measures, per install: the
install's wall time (pip with this machine's package sources and cache as they are), its size on disk (the whole
venv, files counted once), whether torch is there; then, on the core install: a cold first ``cellxfer count``
of one image (a new process and an empty ``CELLXFER_CACHE`` each run, medians) and the whole IDCIA 95 count
(``--engine auto``, which picks ONNX Runtime on the CPU). The machine's load average is recorded before and after:
the project's machine is shared, so times move with what else runs.

    python scripts/bench_install.py                 # both installs: table on stdout, JSON (--json)
    python scripts/bench_install.py --check         # CI (.ci/run): the core install only; exits 1 unless it
                                                    # counts a few images, holds no torch, and a train command
                                                    # says which extra it needs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import IDCIA, REPO

HEAVY = ("torch", "torchvision", "timm", "onnx", "diffusers", "transformers")
FALLBACK_IMAGE = REPO / "scripts" / "demo_data" / "examplehuman_d0_crop.png"


def run(cmd, env=None, cwd=None, check=True) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if check and proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds, proc


def clean_env(**extra) -> dict:
    """The environment without this checkout on the path (the venv's own cellxfer must run)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def tree_bytes(path: Path) -> int:
    seen, total = set(), 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def build_wheel(work: Path) -> tuple[Path, float]:
    seconds, _ = run([sys.executable, "-m", "build", "--wheel", "--outdir", work / "dist", REPO])
    return next((work / "dist").glob("cellxfer-*.whl")), seconds


def install(work: Path, name: str, requirement: str) -> dict:
    venv = work / name
    t_venv, _ = run([sys.executable, "-m", "venv", venv])
    base = tree_bytes(venv)  # an empty venv (pip, setuptools)
    t_pip, _ = run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", requirement], env=clean_env())
    probe = "import importlib.util, json; print(json.dumps([m for m in %r if importlib.util.find_spec(m)]))" % (HEAVY,)
    present = json.loads(run([venv / "bin" / "python", "-c", probe], env=clean_env(), cwd=work)[1].stdout)
    size = tree_bytes(venv)
    return {"venv": str(venv), "install_s": round(t_venv + t_pip, 1), "size_mb": round(size / 1e6, 1),
            "added_mb": round((size - base) / 1e6, 1), "heavy_modules_present": present}


def count(venv: Path, inputs, out: Path, cache: Path) -> tuple[float, float, list[dict]]:
    """``(wall s, CPU s of the process, CSV rows)`` of one ``cellxfer count`` in ``venv``."""
    import csv
    import resource

    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, _ = run([venv / "bin" / "cellxfer", "count", *inputs, "--out", out],
                     env=clean_env(CELLXFER_CACHE=str(cache)), cwd=out.parent)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    with open(out, newline="") as f:
        return seconds, cpu, list(csv.DictReader(f))


def first_counts(installs: dict, image: Path, work: Path, repeats: int) -> None:
    """Cold first counts (each a new process with an empty cache and a new CSV), the installs in turn so that
    they share the machine's load; adds ``first_count_s`` (wall) and ``first_count_cpu_s`` to each."""
    for r in range(repeats):
        for name, info in installs.items():
            cache = work / f"cache-first-{name}-{r}"
            seconds, cpu, rows = count(Path(info["venv"]), [image], work / f"first-{name}-{r}.csv", cache)
            assert rows[0]["status"] == "ok" and float(rows[0]["count"]) > 0, rows
            assert not (cache / "onnx").exists(), "the first count exported the default counter"
            info.setdefault("first_count_s", []).append(round(seconds, 2))
            info.setdefault("first_count_cpu_s", []).append(round(cpu, 2))
    for info in installs.values():
        info["first_count_median_s"] = statistics.median(info["first_count_s"])
        info["first_count_cpu_median_s"] = statistics.median(info["first_count_cpu_s"])


def check_core(venv: Path, work: Path) -> dict:
    """What CI holds the core install to; raises SystemExit with the reason."""
    info = {}
    _, helped = run([venv / "bin" / "cellxfer", "--help"], env=clean_env(COLUMNS="200"), cwd=work)
    for name in ("count", "translate", "train-count", "learn-style", "export", "adapt"):
        if f" {name} " not in helped.stdout:
            sys.exit(f"core install: `cellxfer --help` does not list {name}")
    _, refused = run([venv / "bin" / "cellxfer", "train-count", "--regime", "synthetic", "--synthetic", work,
                      "--out", work / "run"], env=clean_env(), cwd=work, check=False)
    lines = refused.stderr.strip().splitlines()
    if refused.returncode != 2 or len(lines) != 1 or "pip install 'cellxfer[train]'" not in lines[0]:
        sys.exit(f"core install: train-count without torch gave exit {refused.returncode}: {refused.stderr[-2000:]}")
    info["missing_extra_line"] = lines[0]
    images = sorted((IDCIA / "images").glob("*.tif*"))[:3] if (IDCIA / "images").is_dir() else [FALLBACK_IMAGE]
    _, _, rows = count(venv, images, work / "check.csv", work / "cache-check")
    if len(rows) != len(images) or any(r["status"] != "ok" or float(r["count"]) <= 0 for r in rows):
        sys.exit(f"core install: counting {len(images)} images gave {rows}")
    info["counted"] = {Path(r["file"]).name: float(r["count"]) for r in rows}
    return info


def table(result: dict) -> str:
    rows = ["| install | venv on disk (added to an empty venv) | install time | torch | cold first count, 1 image | "
            "IDCIA 95 count |", "|---|---|---|---|---|---|"]
    for name in ("core", "full"):
        r = result.get(name)
        if r is None:
            continue
        first = (f"{r['first_count_median_s']} s wall, {r['first_count_cpu_median_s']} s CPU (medians of "
                 f"{len(r['first_count_s'])})" if "first_count_s" in r else "")
        idcia = (f"{r['idcia_median_s']} s wall, {r['idcia_cpu_median_s']} s CPU (medians of {len(r['idcia_s'])})"
                 if r.get("idcia_s") else "")
        rows.append(f"| {name} (`{r['requirement']}`) | {r['size_mb']:.0f} MB ({r['added_mb']:.0f} MB) | {r['install_s']} s | "
                    f"{'yes' if 'torch' in r['heavy_modules_present'] else 'no'} | {first} | {idcia} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="CI: the core install only, checked (see the docstring)")
    p.add_argument("--repeats", type=int, default=5, help="cold first counts per install")
    p.add_argument("--idcia-repeats", type=int, default=3, help="whole IDCIA 95 counts on the core install")
    p.add_argument("--image", type=Path, default=None, help="the first count's image (default: an IDCIA image)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--json", type=Path, default=REPO / "docs" / "data" / "bench_install.json")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="cellxfer-install-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _main(args, work.resolve())
    finally:
        if not (args.keep or args.work):
            shutil.rmtree(work, ignore_errors=True)


def _main(args, work: Path) -> int:
    load_before = os.getloadavg()
    wheel, build_s = build_wheel(work)
    print(f"built {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB) in {build_s:.1f} s")
    core = {"requirement": "cellxfer", **install(work, "core", str(wheel))}
    print(f"core: {core['size_mb']:.0f} MB in {core['install_s']} s; heavy modules present: {core['heavy_modules_present']}")
    if core["heavy_modules_present"]:
        sys.exit(f"core install holds {core['heavy_modules_present']}")
    core.update(check_core(Path(core["venv"]), work))
    if args.check:
        print(f"core install ok: counted {core['counted']}; {core['missing_extra_line']}")
        return 0
    image = args.image or sorted((IDCIA / "images").glob("*.tif*"))[0]
    full = {"requirement": "cellxfer[all]", **install(work, "full", f"{wheel}[all]")}
    print(f"full: {full['size_mb']:.0f} MB in {full['install_s']} s")
    core["first_count_image"] = str(image)
    first_counts({"core": core, "full": full}, image, work, args.repeats)
    core["idcia_s"], core["idcia_cpu_s"] = [], []
    for r in range(args.idcia_repeats):
        seconds, cpu, rows = count(Path(core["venv"]), [IDCIA / "images"], work / f"idcia-{r}.csv", work / f"cache-idcia-{r}")
        assert len(rows) == 95 and all(row["status"] == "ok" for row in rows), len(rows)
        core["idcia_s"].append(round(seconds, 1))
        core["idcia_cpu_s"].append(round(cpu, 1))
    core["idcia_median_s"] = statistics.median(core["idcia_s"])
    core["idcia_cpu_median_s"] = statistics.median(core["idcia_cpu_s"])
    result = {"command": " ".join(["python", *sys.argv]), "wheel": wheel.name, "build_s": round(build_s, 1),
              "cpus": os.cpu_count(), "load_before": [round(v, 2) for v in load_before],
              "load_after": [round(v, 2) for v in os.getloadavg()], "core": core, "full": full,
              "pip_sources": "this machine's pip configuration (a local wheel mirror, PyPI) and its pip cache"}
    for r in (core, full):
        r.pop("venv")
    print(table(result))
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores, shared)")
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
