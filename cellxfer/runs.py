"""Run folders: the one place a command that writes a run or a dataset decides what a rerun does.

Policy (docs/reruns.md, "Reruns and --overwrite", says the same to users):

* a new or empty ``--out`` starts a run;
* ``--out`` holding a run of the same stage whose *identity* (the config fields that shape the result,
  the seed, the method) and *inputs* (content hashes) are unchanged is **continued**: finished
  samples, epochs or steps are kept, stale temporaries removed. Same seed, same output, so continuing
  gives what a run from scratch would have given;
* anything else in ``--out`` (another stage, other settings, changed inputs, no manifest) is refused
  with one line naming what differs, unless ``overwrite``, which deletes the run's own entries only
  (``own``) and starts again; foreign files in the folder are never touched;
* one writer per folder: a second process on the same ``--out`` is refused (:class:`cellxfer.lock.OutputLock`
  on ``<out>.lock``, dropped by the kernel when the holder dies).

Inside the folder: ``manifest.json`` (written first with ``"complete": false``, identity and input hashes
in it, so a stopped run is recognised), ``state.pt`` (resume state, loaded with ``weights_only=True``:
tensors and plain data only), ``history.csv``, and for trainers ``best``/``last`` checkpoints.
Under torchrun only the main process locks, deletes and writes (``main=False`` on the others).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

from cellxfer.errors import InputError

from cellxfer.manifest import RUN_RECORDS

MANIFEST, STATE, HISTORY = RUN_RECORDS


class RunFolder:
    """The output folder of one run of ``stage`` (see module docs).

    ``identity``: what must match to continue (``config`` a dict, ``seed`` and any other JSON values);
    manifests record every key of it. ``mutable``: config fields that may change on a rerun (``epochs``,
    ``steps``, ``device``, ...). ``defaults``: the config class's defaults, so a field added to cellxfer
    after the earlier run matches when left at its default. ``inputs``: files or folders the run reads,
    hashed once here (also for the manifest); an item ``(folder, files)`` hashes only those files of the folder
    (unlabelled target images: their labels must not be read). ``protect``: more inputs, never to be written over
    but not hashed (weights of many GB). ``own``: the entries ``overwrite`` deletes.
    """

    def __init__(self, out, stage: str, identity: dict, *, own: Iterable[str] = (), inputs: Sequence = (),
                 overwrite: bool = False, mutable: Iterable[str] = (), defaults: dict | None = None,
                 main: bool = True, protect: Sequence = ()):
        self.out, self.stage, self.identity = Path(out), stage, identity
        self.own = (*own, MANIFEST, STATE, HISTORY)
        self._hashed = [(Path(p), None) if isinstance(p, (str, os.PathLike)) else (Path(p[0]), list(p[1])) for p in inputs]
        self.input_paths = [p for p, _ in self._hashed]
        self.protect = [*self.input_paths, *(Path(p) for p in protect)]
        self.overwrite, self.mutable, self.defaults, self.main = overwrite, set(mutable), defaults or {}, main
        self.resumed = False
        self.previous: dict | None = None
        self.inputs: list[dict] = []
        self._lock = None

    # -- opening ------------------------------------------------------------------------------------
    def open(self) -> "RunFolder":
        """Check, lock and ready the folder; ``resumed`` tells whether an earlier run is continued."""
        from cellxfer.atomic import remove_stale_temporaries
        from cellxfer.lock import OutputLock
        from cellxfer.manifest import hash_input

        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"{self.out}: exists and is not a folder; pick another --out")
        self._refuse_aliases()
        if self.main:
            self._lock = OutputLock(self.out, f"cellxfer {self.stage}", "wait for it or pick another --out").acquire()
        try:
            self.inputs = [hash_input(p, files) for p, files in self._hashed]
            if self.out.is_dir() and any(self.out.iterdir()):
                if self.overwrite:
                    if self.main:
                        self._clear()
                else:
                    self._check_same()
                    self.resumed = True
                    if self.main:
                        remove_stale_temporaries(self.out)
        except BaseException:
            self.close()
            raise
        return self

    def _refuse_aliases(self) -> None:
        """``--out`` may not be an input, hold an input file directly or any input where the run writes (its
        ``own`` entries, which ``--overwrite`` deletes), or be a file an input folder is read from
        (:mod:`cellxfer.outputs`). An input folder beside the run's files (``-o work`` with ``work/data``) is fine."""
        from cellxfer.outputs import aliased

        out = self.out.resolve()
        existing = [p for p in self.protect if p.exists()]
        hit = aliased(self.out, existing)  # the inputs indexed once (translate protects every input image)
        if hit is not None:
            raise InputError(f"{self.out}: --out is one of the inputs ({hit}); pick another folder")
        own = {out / name for name in self.own}
        for p in existing:
            real = p.resolve()
            if (real.parent == out and real.is_file()) or real in own or not own.isdisjoint(real.parents):
                raise InputError(f"{self.out}: --out holds the input {p} where this run writes its results; "
                                 f"pick another folder")

    def _clear(self) -> None:
        for name in self.own:
            p = self.out / name
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def _refuse(self, why: str) -> InputError:
        return InputError(f"{self.out}: {why}; pass --overwrite to replace it or pick another --out")

    def _check_same(self) -> None:
        from cellxfer.manifest import read_manifest

        previous = read_manifest(self.out)
        if previous is None or previous.get("stage") != self.stage:
            raise self._refuse(f"folder is not empty and holds no {self.stage} run")
        diff = self.differences(previous)
        if diff:
            raise self._refuse(f"holds a {self.stage} run with other settings ({'; '.join(diff)})")
        self.previous = previous

    def differences(self, previous: dict) -> list[str]:
        """What differs between this run and the run ``previous`` (its manifest), one item per field."""
        diff = []
        for key, value in self.identity.items():
            old = previous.get(key)
            if key == "config" and isinstance(old, dict):
                old = {**{k: v for k, v in self.defaults.items() if k in value}, **old}
                diff += [f"{k} {old.get(k)!r} -> {v!r}" for k, v in value.items()
                         if k not in self.mutable and old.get(k) != v]
            elif old != value:
                diff.append(f"{key} {old!r} -> {value!r}")
        before = [i.get("sha256") for i in previous.get("inputs", [])]
        if "inputs" in previous and before != [i["sha256"] for i in self.inputs]:
            changed = [i["path"] for k, i in enumerate(self.inputs) if k >= len(before) or before[k] != i["sha256"]]
            diff.append(f"inputs changed since: {', '.join(changed) or 'fewer inputs'}")
        return diff

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "RunFolder":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- contents -----------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.out / name

    def manifest(self, **extra) -> dict:
        """The run's manifest: stage, identity (config, seed, ...), the input hashes taken at open, versions, and
        ``own``: the entries the run writes, which no other command's output may replace
        (:func:`cellxfer.manifest.owning_run`)."""
        from cellxfer.manifest import build_manifest

        rest = {k: v for k, v in self.identity.items() if k not in ("config", "seed")}
        return build_manifest(self.stage, self.identity.get("config", {}), self.identity.get("seed"),
                              inputs=self.inputs, own=list(self.own), **rest, **extra)

    def write_manifest(self, manifest: dict | None = None, **extra) -> dict:
        """Write ``manifest.json`` (``manifest`` or a new one with ``extra``) atomically; main process only."""
        from cellxfer.atomic import write_json

        manifest = {**(manifest or self.manifest()), **extra}
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / MANIFEST, manifest)
        return manifest

    def load_state(self, name: str = STATE) -> dict | None:
        """The resume state of a continued run (tensors and plain data only), or None."""
        import torch

        p = self.out / name
        if not (self.resumed and p.is_file()):
            return None
        try:
            return torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign state file
            raise self._refuse(f"{name} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None

    def save_state(self, state: dict, name: str = STATE) -> None:
        """Write the resume state atomically (main process only)."""
        import torch

        from cellxfer.atomic import atomic_path

        if self.main:
            with atomic_path(self.out / name) as tmp:
                torch.save(state, str(tmp))

    def drop_state(self, name: str = STATE) -> None:
        if self.main:
            (self.out / name).unlink(missing_ok=True)

    def write_history(self, rows: list[dict[str, Any]], columns: Sequence[str], name: str = HISTORY) -> None:
        """Write ``history.csv`` (one row per epoch/step; floats to 6 significant digits, None empty)."""
        from cellxfer.atomic import write_text

        if not self.main:
            return
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow(["" if row.get(c) is None else f"{row[c]:.6g}" if isinstance(row[c], float) else row[c]
                        for c in columns])
        write_text(self.out / name, buf.getvalue())
