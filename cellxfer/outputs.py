"""Single output files and the result of dataset-writing stages.

Run folders (identity check, resume, ``--overwrite``, lock) are :class:`cellxfer.runs.RunFolder`.

One mechanism keeps outputs from destroying inputs, for every command: :func:`aliased` says which input
writing a path would replace (resolved: symlinks followed, hard links by inode; for an input folder, the
files it is read from), :func:`refuse_aliases` refuses that with one line whatever ``--overwrite`` says,
:func:`refuse_records` refuses a user-named output over another run's records (its manifest, logs,
checkpoints: what its folder owns) likewise, :func:`refuse_existing` guards single output files (CSV, JSON, PNG,
checkpoints): an existing file is never replaced without ``--overwrite``, and :func:`refuse_collisions` refuses two inputs written to one
output name. Run folders (:class:`cellxfer.runs.RunFolder`) use :func:`aliased` for their inputs too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

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


def make_parent(path: Path) -> None:
    """Create the folder ``path`` goes in now, before any long work (loading weights, training), or
    raise :class:`InputError` naming what is in the way and the fix."""
    from cellxfer.errors import os_error_message

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(os_error_message(exc)) from None


#: files at the top of an input *folder* that belong to it (besides images and everything in its
#: subfolders): what a dataset or pairs folder is read from
FOLDER_FILES = ("counts.csv", "manifest.json", "split.json")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _folder_owns(folder: Path, path: Path) -> bool:
    """``path`` (resolved, existing) is one of the files an input folder is read from: anything in its
    subfolders (images/, points/, source/, ...), and at its top :data:`FOLDER_FILES` and, unless it is a
    dataset or pairs folder (images/ or source/ in it), its images; so a run may still put its own CSV or
    preview beside a dataset's folders."""
    from cellxfer.imageio import image_suffixes

    if path.parent != folder or path.name in FOLDER_FILES:
        return True
    layout = (folder / "images").is_dir() or (folder / "source").is_dir()
    return not layout and path.suffix.lower() in image_suffixes()


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """``a`` and ``b`` are one file or folder by any name: resolved alike (symlinks followed) or, both
    existing, the same inode (hard links)."""
    a, b = Path(a).resolve(), Path(b).resolve()
    return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))


class _Inputs:
    """The inputs of a command, resolved and looked up once, so that checking each of many outputs (``count
    --overlay`` and ``--points``: one per image of a plate) against them costs one lookup, not one ``resolve``
    per input: a whole-plate run spent hours (20,000 outputs x 20,000 inputs) before its first image."""

    def __init__(self, inputs: Iterable):
        import stat

        self.by_name: dict[Path, Path] = {}  # resolved path -> the input as given
        self.by_inode: dict[tuple[int, int], Path] = {}  # (device, inode) of an existing input -> the input
        self.folders: list[tuple[Path, Path]] = []  # (resolved, as given) of the input folders
        for item in inputs:
            if item is None:
                continue
            item = Path(item)
            real = item.resolve()
            self.by_name.setdefault(real, item)
            try:
                st = os.stat(real)
            except OSError:
                continue
            self.by_inode.setdefault((st.st_dev, st.st_ino), item)
            if stat.S_ISDIR(st.st_mode):
                self.folders.append((real, item))

    def replaced_by(self, path: str | os.PathLike) -> Path | None:
        """:func:`aliased` of ``path`` against these inputs."""
        import stat

        real = Path(path).resolve()
        if real in self.by_name:
            return self.by_name[real]
        try:
            st = os.stat(real)
        except OSError:  # not there: only an input of the same name is replaced
            return None
        if (st.st_dev, st.st_ino) in self.by_inode:
            return self.by_inode[(st.st_dev, st.st_ino)]
        if stat.S_ISREG(st.st_mode):
            for folder, item in self.folders:
                if _inside(real, folder) and _folder_owns(folder, real):
                    return item
        return None


def aliased(path: str | os.PathLike, inputs: Iterable) -> Path | None:
    """The input that writing ``path`` would replace, else None. Paths are compared resolved (symlinks
    followed) and by inode (hard links): an input *file* is replaced by writing it under any name; an
    input *folder* by writing over an existing file it is read from (:func:`_folder_owns`), or by writing
    the folder itself."""
    return _Inputs(inputs).replaced_by(path)


def refuse_aliases(outputs: Iterable[tuple[str, "Path | None"]], inputs: Iterable) -> None:
    """Raise :class:`InputError` (one line) when any ``(option, path)`` of ``outputs`` would replace an
    input (:func:`aliased`), whatever ``--overwrite`` says; also when two outputs are the same file. The
    inputs are resolved once (:class:`_Inputs`): linear in outputs + inputs."""
    index = _Inputs(inputs)
    seen: dict[Path, str] = {}
    for option, path in outputs:
        if path is None:
            continue
        hit = index.replaced_by(path)
        if hit is not None:
            same = "" if Path(hit) == Path(path) else f" ({hit})"
            raise InputError(f"{path}: {option} names one of the inputs{same}, which writing would destroy; "
                             f"choose another {option}")
        real = Path(path).resolve()
        if real in seen:
            raise InputError(f"{path}: {option} and {seen[real]} name the same file; choose another {option}")
        seen[real] = option


def refuse_records(outputs: Iterable[tuple[str, "Path | None"]]) -> None:
    """Raise :class:`InputError` (one line) when any ``(option, path)`` the user named as an output would write
    over a record of another run, whatever ``--overwrite`` says: a manifest, lock file or counts CSV journal
    (:func:`cellxfer.manifest.is_run_metadata`), or an entry a run folder owns, existing or not
    (:func:`cellxfer.manifest.owning_run`: its checkpoints, logs, resume state, images/, ...). A command's own
    records (a count CSV's sidecar manifest, a run's files) are written by it, never through this check."""
    from cellxfer.manifest import is_run_metadata, owning_run

    runs: dict = {}  # each folder's run looked up once: count --overlay/--points names one output per image
    for option, path in outputs:
        if path is None:
            continue
        owner = owning_run(path, runs)
        if owner is not None:
            what = f"a file of the {owner[1].get('stage') or 'cellxfer'} run in {owner[0]}"
        elif is_run_metadata(Path(path).name):
            what = "a cellxfer record (a manifest, lock file or counts CSV journal)"
        else:
            continue
        raise InputError(f"{path}: {option} names {what}, which writing would destroy (even with --overwrite); "
                         f"choose another {option}")


def refuse_existing(path: Path | None, option: str, overwrite: bool, inputs=()) -> None:
    """Raise :class:`InputError` (one line naming ``path`` and the fix) when writing ``path`` would destroy
    something: always when it would replace one of ``inputs`` (:func:`aliased`: the same file by any
    name, or a file an input folder is read from) or a run's record (:func:`refuse_records`), and when it
    exists and ``overwrite`` is false. ``option`` is the flag that names the file (e.g. ``--csv``); None: no output."""
    if path is None:
        return
    path = Path(path)
    refuse_aliases([(option, path)], inputs)
    refuse_records([(option, path)])
    if path.is_dir():
        raise InputError(f"{path}: {option} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: exists; pass --overwrite to replace it or choose another {option}")


def refuse_collisions(names: Mapping, option: str) -> None:
    """``names``: input -> the output it is written to. Raise :class:`InputError` when two inputs would be
    written to the same output (``a.tif`` and ``a.png`` -> ``a.tif``): the second would be taken for done
    or replace the first."""
    seen: dict[Path, object] = {}
    for item, out in names.items():
        real = Path(out).resolve()
        if real in seen:
            raise InputError(f"{seen[real]} and {item}: both would be written to {out}; give them in separate runs "
                             f"(different {option}) or rename one")
        seen[real] = item
