"""Turning ``count PATH...`` arguments into a list of image files (and a list of what was skipped)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from cellxfer.errors import InputError

GLOB_CHARS = set("*?[")


def expand_inputs(paths, recursive: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """``(image files, [(path, why skipped), ...])`` for files, folders (``recursive`` descends into
    subfolders; an OME-Zarr folder is one image, :func:`cellxfer.lazy.is_ome_zarr`) and glob patterns
    (``**`` allowed). Files are absolute, de-duplicated, in argument order
    and sorted within each folder/glob. Non-image files are skipped with a reason, never read; hidden
    files, cellxfer temporaries and cellxfer's own records in a folder (a run's ``manifest.json``, a CSV's
    ``<csv>.manifest.json``, ``<out>.lock``: :func:`cellxfer.manifest.is_run_metadata`) are ignored. A path that matches nothing is an :class:`InputError`."""
    from cellxfer.atomic import TMP_MARK
    from cellxfer.imageio import image_suffixes
    from cellxfer.lazy import is_ome_zarr
    from cellxfer.manifest import is_run_metadata

    suffixes = image_suffixes()
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[Path] = set()

    def take(p: Path, explicit: bool) -> None:
        broken = p.is_symlink() and not p.exists()  # named as the link: its row says what to reconnect
        p = p.absolute() if broken else p.resolve()
        if p in seen:
            return
        seen.add(p)
        if p.suffix.lower() in suffixes or is_ome_zarr(p):
            files.append(p)
        elif explicit or not (p.name.startswith(".") or p.name.endswith(TMP_MARK) or is_run_metadata(p.name)):
            skipped.append((p, f"not an image ({p.suffix or 'no suffix'}; cellxfer reads {', '.join(sorted(suffixes))})"))

    for arg in paths:
        arg = str(arg)
        p = Path(arg)
        if p.is_file() or is_ome_zarr(p):
            take(p, explicit=True)
        elif p.is_dir():
            entries = _walk(p, skipped) if recursive else sorted(p.iterdir())
            zarrs = [q for q in entries if is_ome_zarr(q)]  # an image: counted, its chunks not searched
            subdirs = 0
            for q in entries:
                if any(z in q.parents for z in zarrs):
                    continue
                if q.is_file() or q in zarrs or (q.is_symlink() and q.suffix.lower() in suffixes):
                    take(q, explicit=False)  # a broken link to an image: a failed row, not a silent gap
                elif q.is_dir() and not recursive:
                    subdirs += 1
                elif q.is_symlink() and not q.exists() and not q.name.startswith("."):
                    skipped.append((q.absolute(), f"a broken link (to {os.readlink(q)}); reconnect what it "
                                                  f"points to or remove it"))
            if subdirs:
                skipped.append((p.resolve(), f"{subdirs} subfolder(s) not searched; pass --recursive to count them"))
        elif GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(os.path.expanduser(arg), recursive=True))
            if not matches:
                raise InputError(f"{arg}: the pattern matches no file; check it (quote it so the shell does not expand it)")
            for m in matches:
                if Path(m).is_file():
                    take(Path(m), explicit=False)
        else:
            raise InputError(f"{arg}: no such file or folder; give image files, folders or a glob pattern")
    return files, skipped


def _walk(folder: Path, skipped: list) -> list[Path]:
    """Every entry below ``folder``, sorted, for ``--recursive``: symlinked subfolders are searched (plate
    folders of links to acquisition drives; ``Path.rglob`` skipped them without a word), each real folder
    once (a link back up is no loop), an OME-Zarr folder's chunks never; a subfolder that cannot be listed
    goes to ``skipped`` with why."""
    from cellxfer.lazy import is_ome_zarr

    entries: list[Path] = []
    seen: set[Path] = set()
    stack = [folder]
    while stack:
        d = stack.pop()
        if d.resolve() in seen:
            continue
        seen.add(d.resolve())
        try:
            children = list(d.iterdir())
        except OSError as exc:
            skipped.append((d.absolute(), f"cannot be listed ({exc.strerror or exc}); fix its permissions"))
            continue
        entries.extend(children)
        stack.extend(q for q in children if q.is_dir() and not is_ome_zarr(q))
    return sorted(entries)

