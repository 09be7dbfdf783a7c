"""Spatial train / validation / test split of one registered field (``split-field``).

A single field (e.g. the in-silico-labelling phase/DAPI set: 13 phase z-slices and one DAPI image,
1024 x 1024) can only be used for honest training and testing if the parts are disjoint *and* far
enough apart that no prediction on the test part could have been computed from training pixels and no
training target covers a test cell: :class:`SpatialSplit` holds rectangles per part and refuses any
two rectangles of different parts that come closer than ``margin`` pixels (Chebyshev gap: rectangles
grown by ``margin`` must not intersect).

The margin that matters is the generator's receptive field, :func:`receptive_field`: an output pixel
of the pix2pix UNet with ``num_downs`` 4x4 / stride-2 down and up blocks depends on the input within
``receptive_field(num_downs)`` pixels (side of the square window; 126 for 5 down blocks, 1022 for 8),
exactly as autograd finds in eval mode with batch norm (tests/test_regions.py). Instance norm mixes the
whole tile, so there the receptive field is the tile.

:func:`corner_split` is the layout used for the real field: train = a full-height left strip, then a
margin column, then validation = top-right block and test = bottom-right block, with a margin row
between them. :func:`write_split_pairs` writes each part as an ordinary pairs folder
(``<out>/<part>/source/<id>_<k>.tif`` + ``target/``), so every translator command reads it as is.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellxfer.errors import InputError


@dataclass(frozen=True)
class Rect:
    """Half-open pixel rectangle ``[y0, y1) x [x0, x1)``."""

    y0: int
    x0: int
    y1: int
    x1: int

    def __post_init__(self):
        if not (0 <= self.y0 < self.y1 and 0 <= self.x0 < self.x1):
            raise ValueError(f"empty or negative rectangle {self}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def gap(self, other: "Rect") -> int:
        """Chebyshev gap in pixels: the number of pixel rows/columns strictly between the two
        rectangles along the axis where they are farthest apart (0 when they touch or overlap)."""
        gy = max(other.y0 - self.y1, self.y0 - other.y1, 0)
        gx = max(other.x0 - self.x1, self.x0 - other.x1, 0)
        return max(gy, gx)

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0 : self.y1, self.x0 : self.x1]


@dataclass(frozen=True)
class SpatialSplit:
    """Named parts of an image of ``shape``, each a tuple of :class:`Rect`.

    Invariant (checked on construction): every rectangle lies inside ``shape``, and any two
    rectangles of *different* parts are at least ``margin`` pixels apart (:meth:`Rect.gap`)."""

    shape: tuple[int, int]
    margin: int
    parts: dict[str, tuple[Rect, ...]]

    def __post_init__(self):
        h, w = self.shape
        for name, rects in self.parts.items():
            for r in rects:
                if r.y1 > h or r.x1 > w:
                    raise ValueError(f"part {name!r}: {r} lies outside the {w}x{h} image")
        names = list(self.parts)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                for ra in self.parts[a]:
                    for rb in self.parts[b]:
                        if ra.gap(rb) < self.margin:
                            raise ValueError(f"parts {a!r} and {b!r} are {ra.gap(rb)} px apart ({ra}, {rb}); "
                                             f"the margin is {self.margin}")

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "margin": self.margin,
                "parts": {k: [[r.y0, r.x0, r.y1, r.x1] for r in v] for k, v in self.parts.items()}}


def receptive_field(num_downs: int) -> int:
    """Side (pixels) of the input window an output pixel of the UNet depends on (eval mode, batch norm).

    Interval arithmetic along the deepest path (skip paths are shallower, so contained): back through
    each 4x4 / stride-2 / pad-1 transposed conv, output ``o`` reads inputs ``ceil((o-2)/2)..floor((o+1)/2)``;
    back through each 4x4 / stride-2 / pad-1 conv, output ``o`` reads ``2o-1..2o+2``."""
    a = b = 0
    for _ in range(num_downs):
        a, b = math.ceil((a - 2) / 2), math.floor((b + 1) / 2)
    for _ in range(num_downs):
        a, b = 2 * a - 1, 2 * b + 2
    return b - a + 1


def corner_split(shape: tuple[int, int], margin: int, test_side: int) -> SpatialSplit:
    """Train = left strip ``x < W - test_side - margin`` (full height); validation = top-right block
    ``y < H - test_side - margin``; test = bottom-right ``test_side`` square (see module docs)."""
    h, w = shape
    xs = w - test_side
    if test_side < 1 or margin < 0 or xs - margin < 1 or h - test_side - margin < 1:
        raise InputError(f"split-field: a {test_side} px test square with a {margin} px margin does not fit a {w}x{h} image; "
                         f"lower --test-side or --margin")
    return SpatialSplit((h, w), margin, {
        "train": (Rect(0, 0, h, xs - margin),),
        "val": (Rect(0, xs, h - test_side - margin, w),),
        "test": (Rect(h - test_side, xs, h, w),),
    })


def write_split_pairs(split: SpatialSplit, sources: list[str | os.PathLike], target: str | os.PathLike | None,
                      out: str | os.PathLike, name: str = "field") -> dict:
    """Crop ``sources`` (one or more registered input images, e.g. z-slices) and ``target`` by every
    part into ``out/<part>/source/<name>_<k>.tif`` and ``target/<name>_<k>.tif`` (``k`` = rectangle
    index); with several sources, ``out/<source stem>/<part>/...``. Writes ``out/split.json``. Every input is read and checked before anything is written (a refused run writes nothing).
    Returns ``{part: [folders]}``."""
    return _write_crops(split, read_field(split, sources, target), sources, target, Path(out), name)


def read_field(split: SpatialSplit, sources: list[str | os.PathLike], target: str | os.PathLike | None) -> dict:
    """``{path: image}`` of ``sources`` and ``target`` (last; None when there is none), each read and
    checked to have the split's geometry."""
    from cellxfer.imageio import read_image

    images = {Path(src): read_image(src) for src in sources}
    images[target] = read_image(target) if target is not None else None
    for path, img in images.items():
        if img is not None and img.shape != split.shape:
            raise InputError(f"{path}: {img.shape[1]}x{img.shape[0]} is not the split's {split.shape[1]}x{split.shape[0]}; "
                             f"give registered images of one geometry")
    return images


def _write_crops(split: SpatialSplit, images: dict, sources, target, out: Path, name: str) -> dict:
    from cellxfer.atomic import write_json
    from cellxfer.imageio import write_tiff
    from cellxfer.translate.data import SOURCE, TARGET

    t = images.pop(target)
    folders: dict[str, list[str]] = {}
    for src, s in images.items():
        base = out / src.stem if len(sources) > 1 else out
        for part, rects in split.parts.items():
            for k, r in enumerate(rects):
                write_tiff(base / part / SOURCE / f"{name}_{k}.tif", np.ascontiguousarray(r.crop(s)))
                if t is not None:
                    write_tiff(base / part / TARGET / f"{name}_{k}.tif", np.ascontiguousarray(r.crop(t)))
            folders.setdefault(part, []).append(str(base / part))
    write_json(out / "split.json", {**split.to_dict(), "sources": [str(s) for s in sources],
                                    "target": str(target) if target is not None else None, "folders": folders})
    return folders


@dataclass(frozen=True)
class SplitFieldResult:
    """What :func:`split_field` wrote: the split (rectangles per part), the margin used, and the pairs
    folders per part (one per source when several)."""

    split: SpatialSplit
    margin: int
    folders: dict


def source_files(sources: list[str | os.PathLike], target: str | os.PathLike | None) -> list[Path]:
    """The input images of ``sources`` (files, or folders of them), each once, without the ``target``: a
    folder that also holds the target gives its other images; a source that is the target (by any name)
    is refused, as it would be split as its own input."""
    from cellxfer.outputs import same_file
    from cellxfer.translate.data import list_images

    files: list[Path] = []
    for p in map(Path, sources):
        is_target = target is not None and same_file(p, Path(target))
        if is_target and not p.is_dir():
            raise InputError(f"{p}: is the --target itself; give the field's input images (e.g. phase z-slices) as "
                             f"sources and the fluorescence image only as --target")
        for f in list_images(p) if p.is_dir() else [p]:
            if not (target is not None and same_file(f, Path(target))) and not any(same_file(f, g) for g in files):
                files.append(f)
    if not files:
        raise InputError(f"{', '.join(map(str, sources))}: no images but the --target; give the field's registered "
                         f"input images")
    return files


def split_field(sources: list[str | os.PathLike], target: str | os.PathLike | None, out: str | os.PathLike,
                test_side: int = 480, num_downs: int = 5, margin: int | None = None,
                overwrite: bool = False) -> SplitFieldResult:
    """Split one registered field (``sources``: images or folders of them, plus the fluorescence
    ``target``) into train / val / test pairs folders in ``out`` (:func:`corner_split` with ``margin``,
    default the receptive field of ``num_downs``; :func:`write_split_pairs`). ``out`` is a run folder
    (:class:`cellxfer.runs.RunFolder`): the same split of the same images is written again, anything
    else in ``out`` refused unless ``overwrite``; a manifest records settings and input hashes."""
    from cellxfer.imageio import read_image
    from cellxfer.outputs import refuse_collisions
    from cellxfer.runs import RunFolder

    files = source_files(sources, target)
    m = receptive_field(num_downs) if margin is None else margin
    split = corner_split(read_image(files[0]).shape, m, test_side)
    parts = [f.stem for f in files] if len(files) > 1 else list(split.parts)
    if len(files) > 1:
        refuse_collisions({f: Path(out) / f.stem for f in files}, "--out")
    inputs = [*files, *([target] if target is not None else [])]
    with RunFolder(out, "split-field", {"config": {"test_side": test_side, "margin": m}, "seed": None},
                   own=(*parts, "split.json"), inputs=inputs, overwrite=overwrite) as run:
        images = read_field(split, files, target)  # checked before anything is written
        manifest = run.write_manifest(run.manifest(split=split.to_dict()), complete=False)
        folders = _write_crops(split, images, files, target, Path(out), "field")
        run.write_manifest(manifest, complete=True)
    return SplitFieldResult(split, m, folders)

