"""The cell dataset folder, one format everywhere (see docs/formats.md).

::

    DATASET/
      images/<id>.tif     2-D grayscale, uint8 or uint16 kept as is (PNG accepted on input)
      points/<id>.csv     one row per cell centre, header ``x,y``: float pixels, origin top-left, x = column
      masks/<id>.tif      optional: uint8 centre mask, 255 at the pixel holding each centre, else 0
      counts.csv          id,count
      manifest.json       stage, config, seed, package versions, inputs (with hashes)

Coordinates: pixel (row r, column c) covers ``c <= x < c + 1`` and ``r <= y < r + 1`` (ImageJ's
convention), so a point is inside an H x W image when ``0 <= x < W`` and ``0 <= y < H`` and its mask
pixel is ``(floor(y), floor(x))``.

The reader also accepts the IDCIA layout as-is: ``images/*.tiff`` + ``ground_truth/*.csv`` (ImageJ
measure tables with columns ``X,Y``) and ``counts.csv`` with ``image,count``.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from cellxfer.atomic import write_json, write_text
from cellxfer.errors import InputError

IMAGES, POINTS, MASKS = "images", "points", "masks"
COUNTS, MANIFEST = "counts.csv", "manifest.json"
IDCIA_POINTS = "ground_truth"


@dataclass
class CellSample:
    """One image with its cell centres. ``image``: 2-D array (H, W), stored dtype; ``points``:
    float64 array (N, 2) of (x, y)."""

    id: str
    image: np.ndarray
    points: np.ndarray
    image_path: Path

    @property
    def count(self) -> int:
        return len(self.points)


# --------------------------------------------------------------------------------------------------
# points tables
#: control bytes no text table holds (tab, newlines and form feed aside): a file with one is binary
_BINARY = bytes(set(range(32)) - {9, 10, 12, 13}) + b"\x7f"


def read_table_text(path: str | os.PathLike) -> str:
    """The text of a table the user gave (points, counts, predictions) as the tools that write them save
    it: UTF-8 with or without Excel's byte-order mark ("CSV UTF-8"), UTF-16 with its mark (Excel's
    "Unicode text"), else Windows-1252 (ImageJ on Windows writes a "µm" header so); only the ASCII numbers
    and column names matter. A binary file is an :class:`InputError` naming ``path`` and the fix."""
    import codecs

    data = Path(path).read_bytes()
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    try:
        return data.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError:
        pass
    head = data[:65536]
    if utf16 or len(head.translate(None, _BINARY)) < len(head):
        raise InputError(f"{path}: not a text table (it holds binary bytes); save it as CSV (comma-separated, UTF-8)")
    return data.decode("cp1252", errors="replace")


def parse_points(text: str, source: str | os.PathLike) -> np.ndarray:
    """Parse a points table: header with ``x`` and ``y`` columns (any case, ImageJ's ``X,Y`` too).

    Returns float64 (N, 2) of (x, y). Raises :class:`InputError` naming ``source`` on bad columns/values.
    """
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{source}: empty points table; it needs a header line 'x,y'")
    header = [c.strip().lower() for c in rows[0]]
    if "x" not in header or "y" not in header:
        raise InputError(f"{source}: points table needs columns 'x' and 'y' (found: {','.join(rows[0])}); fix its header line")
    ix, iy = header.index("x"), header.index("y")
    pts = np.empty((len(rows) - 1, 2), dtype=np.float64)
    for n, row in enumerate(rows[1:]):
        try:
            pts[n] = float(row[ix]), float(row[iy])
        except (ValueError, IndexError):
            raise InputError(f"{source}: line {n + 2} has no numeric x,y ({','.join(row)}); fix or delete that line") from None
    if not np.isfinite(pts).all():
        raise InputError(f"{source}: points table holds NaN or infinite coordinates; fix those lines")
    return pts


def format_points(points: np.ndarray) -> str:
    """The points table text; coordinates in shortest round-trip form, so reading it back gives the
    exact same floats (and the same mask pixels)."""
    rows = np.asarray(points, dtype=np.float64).reshape(-1, 2).tolist()
    return "x,y\n" + "".join(f"{x!r},{y!r}\n" for x, y in rows)


def check_points_inside(points: np.ndarray, shape: tuple[int, int], source) -> None:
    """Raise :class:`InputError` when a point lies outside an image of ``shape`` (H, W)."""
    if len(points) == 0:
        return
    h, w = shape
    bad = ~((points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        x, y = points[i]
        raise InputError(
            f"{source}: point {i + 1} (x={x:g}, y={y:g}) lies outside its {w}x{h} image; "
            f"fix the table (x is the column, y the row, origin top-left)"
        )


def points_damage(path: Path, shape: tuple[int, int] | None = None) -> tuple[np.ndarray | None, str | None]:
    """``(points, None)`` when the points table cellxfer wrote at ``path`` is whole, else ``(None, why)``:
    it must end with a newline (every table :func:`format_points` writes does; a cut one does not, unless
    cut at a line boundary, which the caller's other checks catch), parse, and (``shape``) lie inside."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc})"
    if not text.endswith("\n"):
        return None, "is cut short (no final newline)"
    try:
        points = parse_points(text, path)
        if shape is not None:
            check_points_inside(points, shape, path)
    except InputError as exc:
        return None, f"is damaged ({str(exc).removeprefix(f'{path}: ')})"
    return points, None


def centre_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 mask of ``shape``: 255 at ``(floor(y), floor(x))`` of every point, 0 elsewhere."""
    mask = np.zeros(shape, dtype=np.uint8)
    if len(points):
        p = np.floor(points).astype(np.intp)
        mask[p[:, 1], p[:, 0]] = 255
    return mask


# --------------------------------------------------------------------------------------------------
class CellDataset:
    """A cell dataset folder (cellxfer or IDCIA layout), read lazily.

    ``ids`` are the image file stems, sorted. ``len(ds)``, ``ds[i]`` / ``ds["id"]`` and iteration yield
    :class:`CellSample` with validated points. Images whose points table is missing raise
    :class:`InputError` when read, naming the file.
    """

    def __init__(self, root: str | os.PathLike, channel: int | None = None, page: int | None = None):
        from cellxfer.imageio import image_suffixes

        self.root = Path(root)
        self.channel, self.page = channel, page
        if not self.root.is_dir():
            raise InputError(f"{self.root}: no such folder; give a cell dataset folder (images/ + points/)")
        images = self.root / IMAGES
        if not images.is_dir():
            raise InputError(f"{self.root}: not a cell dataset: it has no images/ folder")
        if (self.root / POINTS).is_dir():
            self.layout, self.points_dir = "cellxfer", self.root / POINTS
        elif (self.root / IDCIA_POINTS).is_dir():
            self.layout, self.points_dir = "idcia", self.root / IDCIA_POINTS
        else:
            self.layout, self.points_dir = "unlabelled", None
        suffixes = image_suffixes()
        self._images: dict[str, Path] = {}
        for p in sorted(images.iterdir()):
            if p.suffix.lower() in suffixes and not p.name.startswith("."):
                if p.stem in self._images:  # one id, one points table: the other image was dropped unsaid
                    raise InputError(f"{self._images[p.stem]} and {p.name}: two images with the id '{p.stem}' (they "
                                     f"would share one points table); rename or remove one")
                self._images[p.stem] = p
        self.ids = sorted(self._images)
        if not self.ids:
            raise InputError(f"{images}: holds no images ({', '.join(sorted(suffixes))})")

    @property
    def labelled(self) -> bool:
        return self.points_dir is not None

    def unmatched_points(self) -> list[Path]:
        """The points tables (``*.csv`` of the points folder) whose image is not in ``images/``: their cells
        are in no statistic, training or evaluation (an image renamed, moved or never copied), so the
        commands that read a labelled set say so."""
        if self.points_dir is None or not self.points_dir.is_dir():
            return []
        return sorted(p for p in self.points_dir.iterdir()
                      if p.suffix.lower() == ".csv" and p.stem not in self._images and not p.name.startswith("."))

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[CellSample]:
        for i in self.ids:
            yield self[i]

    def __getitem__(self, key: int | str) -> CellSample:
        id_ = self.ids[key] if isinstance(key, int) else key
        image = self.read_image(id_)
        return CellSample(id_, image, self.read_points(id_, image.shape), self._images[id_])

    def image_path(self, id_: str) -> Path:
        try:
            return self._images[id_]
        except KeyError:
            raise InputError(f"{self.root}: no image with id '{id_}'") from None

    def points_path(self, id_: str) -> Path:
        if self.points_dir is None:
            raise InputError(f"{self.root}: dataset has no points/ folder; it is unlabelled")
        return self.points_dir / f"{id_}.csv"

    def read_image(self, id_: str) -> np.ndarray:
        from cellxfer.imageio import read_image

        return read_image(self.image_path(id_), channel=self.channel, page=self.page)

    def read_points(self, id_: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Points (N, 2) of (x, y); checked against ``shape`` (H, W) when given."""
        path = self.points_path(id_)
        if not path.is_file():
            raise InputError(f"{path}: missing points table for image {self.image_path(id_).name}; add it or remove the image")
        pts = parse_points(read_table_text(path), path)
        if shape is not None:
            check_points_inside(pts, shape, path)
        return pts

    def counts(self) -> dict[str, int]:
        """id -> number of annotated cells, from the points tables (the source of truth)."""
        return {i: len(self.read_points(i)) for i in self.ids}

    def stored_counts(self) -> dict[str, int] | None:
        """The ``counts.csv`` table as written (id -> count), or None when the folder has none."""
        path = self.root / COUNTS
        if not path.is_file():
            return None
        rows = list(csv.reader(read_table_text(path).splitlines()))
        if not rows or len(rows[0]) < 2:
            raise InputError(f"{path}: counts table needs a header 'id,count'")
        out = {}
        for n, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            try:
                out[Path(row[0]).stem if Path(row[0]).suffix.lower() in (".tif", ".tiff", ".png") else row[0]] = int(row[1])
            except (ValueError, IndexError):
                raise InputError(f"{path}: line {n} is not 'id,count' ({','.join(row)}); fix that line") from None
        return out

    def manifest(self) -> dict | None:
        from cellxfer.manifest import read_manifest

        return read_manifest(self.root)


class CellDatasetWriter:
    """Writes a cell dataset folder atomically, one sample at a time.

    A sample is finished when its image exists: points and mask are written first, the image last,
    each through a temporary file, so an interrupted run leaves only finished samples (plus temporaries
    that :func:`cellxfer.atomic.remove_stale_temporaries` clears).
    """

    def __init__(self, root: str | os.PathLike, masks: bool = True):
        self.root = Path(root)
        self.masks = masks
        for sub in (IMAGES, POINTS) + ((MASKS,) if masks else ()):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def image_path(self, id_: str) -> Path:
        return self.root / IMAGES / f"{id_}.tif"

    def is_done(self, id_: str) -> bool:
        """Whether sample ``id_`` is finished: its image is a non-empty file that decodes, and its points
        table (and mask) exist. A damaged image (truncated by a full disk, a copy or another program) is
        removed with a warning, so the resumed run writes the sample again instead of trusting it."""
        path = self.image_path(id_)
        if not path.is_file():
            return False
        why = self._damage(id_)
        if why is None:
            return True
        from cellxfer.console import warn

        warn(f"{path}: {why}; removed, this run writes it again")
        path.unlink(missing_ok=True)
        return False

    def _damage(self, id_: str) -> str | None:
        """What is wrong with finished-looking sample ``id_``, or None when nothing is: the image must
        decode; the points table must be whole (:func:`points_damage`) and inside the image; the mask must
        decode, have the image's shape and mark exactly the points' pixels (so a points table cut at a
        line boundary, which still parses, is caught: counts.csv said 112 cells for 225)."""
        from cellxfer.imageio import read_image

        path = self.image_path(id_)
        if path.stat().st_size == 0:
            return "empty file"
        for sub, suffix in ((POINTS, ".csv"),) + (((MASKS, ".tif"),) if self.masks else ()):
            if not (self.root / sub / f"{id_}{suffix}").is_file():
                return f"its {sub[:-1]} file {sub}/{id_}{suffix} is missing"
        try:
            image = read_image(path)
        except InputError as exc:
            return f"does not decode ({str(exc).removeprefix(f'{path}: ')})"
        points_file = self.root / POINTS / f"{id_}.csv"
        points, why = points_damage(points_file, image.shape)
        if why is not None:
            return f"its points table {POINTS}/{id_}.csv {why}"
        if self.masks:
            try:
                mask = read_image(self.root / MASKS / f"{id_}.tif")
            except InputError as exc:
                return f"its mask {MASKS}/{id_}.tif does not decode ({exc})"
            if mask.shape != image.shape or not np.array_equal(mask, centre_mask(points, image.shape)):
                return (f"its mask {MASKS}/{id_}.tif disagrees with its points table ({int(np.count_nonzero(mask))} "
                        f"marked pixels, {len(points)} points): one of them is cut short")
        return None

    def write(self, id_: str, image: np.ndarray, points: np.ndarray) -> None:
        from cellxfer.imageio import write_tiff

        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        check_points_inside(points, image.shape, f"{self.root}/{POINTS}/{id_}.csv")
        write_text(self.root / POINTS / f"{id_}.csv", format_points(points))
        if self.masks:
            write_tiff(self.root / MASKS / f"{id_}.tif", centre_mask(points, image.shape))
        write_tiff(self.image_path(id_), image)

    def finalize(self, manifest: dict) -> dict[str, int]:
        """Write ``counts.csv`` (from the points tables of all finished samples) and ``manifest.json``."""
        counts = {}
        for img in sorted((self.root / IMAGES).glob("*.tif")):
            pts = self.root / POINTS / f"{img.stem}.csv"
            counts[img.stem] = len(parse_points(pts.read_text(), pts))
        write_text(self.root / COUNTS, "id,count\n" + "".join(f"{k},{v}\n" for k, v in counts.items()))
        write_json(self.root / MANIFEST, manifest)
        return counts
