"""Run manifests: what produced an output folder (stage, config, seed, versions, inputs with hashes)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cellxfer

#: Distributions whose versions every manifest records (when installed).
RECORDED = ("numpy", "tifffile", "pillow", "torch", "torchvision", "timm", "onnx", "onnxruntime", "diffusers", "transformers")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "cellxfer": cellxfer.__version__}
    for name in RECORDED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_run_metadata(name: str) -> bool:
    """Files that describe a folder's making rather than its content: manifests (rewritten with new times
    when a finished run is rerun), lock files and a counts CSV's journal of rows not yet in it
    (:func:`cellxfer.count.table.journal_of`). Not inputs: not hashed, not listed by ``count FOLDER``."""
    return name == "manifest.json" or name.endswith((".manifest.json", ".lock", ".journal"))


#: what every run folder owns (:class:`cellxfer.runs.RunFolder`) besides the entries its manifest lists under ``own``
RUN_RECORDS = ("manifest.json", "state.pt", "history.csv")


def owning_run(path: str | os.PathLike, runs: dict | None = None) -> tuple[Path, dict] | None:
    """``(run folder, its manifest)`` when ``path`` is one of a run's own entries, else None. The run is the
    nearest folder above ``path`` (resolved: symlinks followed) holding a ``manifest.json``; it owns the top-level
    entries its manifest lists under ``own`` (what it writes, and ``--overwrite`` deletes: checkpoints, logs,
    images/, ...) and :data:`RUN_RECORDS`, whether they exist yet or not. Other files in the folder (an
    evaluation's CSV put beside a run) are nobody's; an unreadable manifest owns :data:`RUN_RECORDS` only.
    ``runs``: a dict the caller keeps across many paths (the outputs of one command), so each folder's run is
    looked up, and its manifest read, once."""
    real = Path(path).resolve()
    runs = {} if runs is None else runs
    if real.parent not in runs:
        runs[real.parent] = _nearest_run(real.parent)
    run = runs[real.parent]
    if run is None:
        return None
    folder, record, own = run
    return (folder, record) if real.relative_to(folder).parts[0] in own else None


def _nearest_run(start: Path) -> tuple[Path, dict, frozenset] | None:
    """``(folder, its manifest, the entries it owns)`` of the nearest folder at or above ``start`` (resolved) holding
    a ``manifest.json`` (see :func:`owning_run`), else None."""
    import json

    for folder in (start, *start.parents):
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            continue
        try:
            record = json.loads(manifest.read_text())
        except (OSError, ValueError):
            record = {}
        record = record if isinstance(record, dict) else {}
        own = record.get("own")
        return folder, record, frozenset([*RUN_RECORDS, *(own if isinstance(own, list) else [])])
    return None


def sidecar_manifest(output: str | os.PathLike) -> Path:
    """The manifest written beside a single-file output (a counts CSV, an ensemble): ``<output>.manifest.json``."""
    output = Path(output)
    return output.with_name(output.name + ".manifest.json")


def hash_input(path: str | os.PathLike, files=None) -> dict:
    """``{"path", "sha256", "files"}`` for a file or a folder (hash over sorted relative names + contents of
    its data files; manifests and lock files are left out, so rerunning the stage that made a folder,
    which rewrites its manifest, does not make the folder a changed input). ``files``: hash only these files
    of the folder (a target folder's images, whose labels must not be read)."""
    path = Path(path)
    if files is None and path.is_file():
        return {"path": str(path.resolve()), "sha256": sha256_file(path), "files": 1}
    if files is None:
        files = (q for q in path.rglob("*") if q.is_file() and not is_run_metadata(q.name))
    h = hashlib.sha256()
    n = 0
    for p in sorted(Path(q) for q in files):
        h.update(str(p.relative_to(path) if p.is_relative_to(path) else p.name).encode() + b"\0" + sha256_file(p).encode())
        n += 1
    return {"path": str(path.resolve()), "sha256": h.hexdigest(), "files": n}


def config_dict(config) -> dict:
    """A dataclass config as plain JSON-able data (tuples become lists, paths strings)."""
    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def build_manifest(stage: str, config: dict, seed: int | None, inputs=(), **extra) -> dict:
    """The manifest dict a stage writes next to its output."""
    return {
        "stage": stage,
        "config": config,
        "seed": seed,
        "inputs": [p if isinstance(p, dict) else hash_input(p) for p in inputs],  # dicts: hashed already
        "versions": package_versions(),
        "command": sys.argv,
        "platform": platform.platform(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The ``manifest.json`` of ``folder``, or None when it has none."""
    import json

    from cellxfer.errors import InputError

    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); delete it or rerun the stage that wrote it") from None
