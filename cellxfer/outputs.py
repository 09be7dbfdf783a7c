"""Output folders of resumable dataset-writing stages (synth, stylize).

:func:`prepare_output` makes a folder ready for a run: an empty or new folder is used as is; a folder
holding a run of the same stage with the same identity (method, config, seed, ...) is resumed (its
finished samples are kept, stale temporaries removed); anything else is refused unless ``overwrite``,
which deletes only the dataset's own entries.

:func:`refuse_existing` guards single output files (CSV, JSON, PNG, checkpoints): an existing file is
never replaced without ``--overwrite``, and a file that is one of the command's inputs never at all.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cellxfer.errors import InputError


@dataclass(frozen=True)
class DatasetRunResult:
    """What a dataset-writing run did: ``counts`` per id of the whole output folder, how many samples
    it wrote now, skipped as already done, and failed (id -> one-line reason); seconds in all, and per
    written image after set-up (model loading) where the stage measures it."""

    out: Path
    counts: dict[str, int]
    written: int
    skipped: int
    failed: dict[str, str]
    seconds: float
    seconds_per_image: float | None = None


def prepare_output(out: Path, stage: str, identity: dict, overwrite: bool, defaults: dict | None = None) -> None:
    """Ready ``out`` for a ``stage`` run whose manifest will hold the keys of ``identity``. ``defaults``:
    the config class's defaults; a config field the earlier run's manifest lacks (added to cellxfer
    since) matches when this run leaves it at its default, which by contract keeps the old behaviour."""
    from cellxfer.atomic import remove_stale_temporaries
    from cellxfer.dataset import COUNTS, IMAGES, MANIFEST, MASKS, POINTS
    from cellxfer.manifest import read_manifest

    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; pick another --out")
    if not out.exists() or not any(out.iterdir()):
        return
    if overwrite:
        for name in (IMAGES, POINTS, MASKS):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (COUNTS, MANIFEST):
            (out / name).unlink(missing_ok=True)
        return
    previous = read_manifest(out)
    if previous is None or previous.get("stage") != stage:
        raise InputError(f"{out}: folder is not empty and holds no {stage} run; pass --overwrite to replace it or pick another --out")
    before = {k: previous.get(k) for k in identity}
    if defaults and isinstance(before.get("config"), dict):
        new = identity.get("config") or {}
        before["config"] = {**{k: v for k, v in defaults.items() if k in new and k not in before["config"]},
                            **before["config"]}
    if before != identity:
        old_config = before.get("config") or {}
        diff = [k for k in identity if k != "config" and before[k] != identity[k]]
        diff += [f"{k} {old_config.get(k)!r} -> {v!r}" for k, v in (identity.get("config") or {}).items() if old_config.get(k) != v]
        raise InputError(f"{out}: holds a {stage} run with other settings ({'; '.join(map(str, diff))}); "
                         f"pass --overwrite to replace it or pick another --out")
    remove_stale_temporaries(out)


def make_parent(path: Path) -> None:
    """Create the folder ``path`` goes in now, before any long work (loading weights, training), or
    raise :class:`InputError` naming what is in the way and the fix."""
    from cellxfer.errors import os_error_message

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(os_error_message(exc)) from None


def refuse_existing(path: Path | None, option: str, overwrite: bool, inputs=()) -> None:
    """Raise :class:`InputError` (one line naming ``path`` and the fix) when writing ``path`` would destroy
    something: always when it is one of ``inputs`` (the same file, by any name), and when it exists and
    ``overwrite`` is false. ``option`` is the flag that names the file (e.g. ``--csv``); None: no output."""
    if path is None:
        return
    path = Path(path)
    for item in inputs:
        if path.resolve() == Path(item).resolve() or (path.exists() and Path(item).exists() and path.samefile(item)):
            raise InputError(f"{path}: {option} names one of the inputs, which writing would destroy; choose another {option}")
    if path.is_dir():
        raise InputError(f"{path}: {option} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: exists; pass --overwrite to replace it or choose another {option}")
