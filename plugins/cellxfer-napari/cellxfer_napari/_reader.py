"""The napari reader: a ``cellxfer count`` output as layers.

- a counts CSV (``cellxfer count -o counts.csv``): for each image counted OK, the image, its cells (the
  ``--points`` file of that run: CSV or GeoJSON) and, where the run wrote one, the ``--density-map``;
  what the run was asked for comes from the manifest written beside the CSV (``counts.csv.manifest.json``),
  and each image is opened at the plane its row says it was counted from (the ``plane`` column);
- a points file on its own (``x,y`` CSV, or the GeoJSON of ``--points-format geojson``): its cells.

A whole slide (an image cellxfer reads by region, :func:`cellxfer.lazy.open_image`) opens as a two-level
image: full resolution read by region as napari asks for it, and a strided preview of at most 4096 pixels
a side for the zoomed-out view; nothing holds the whole slide.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from cellxfer_napari._coords import block_transform, to_napari

#: how cells are drawn (reader and widget alike)
POINTS_STYLE = {"symbol": "ring", "face_color": "yellow", "size": 10}


def get_reader(path):
    """napari's reader hook: a function reading ``path`` into layers, or None when it is not a cellxfer
    output (another reader gets it)."""
    if isinstance(path, (list, tuple)):
        return None if len(path) != 1 else get_reader(path[0])
    kind = _kind(Path(path))
    return {"counts": read_counts_output, "points": read_points_file}.get(kind)


def _kind(path: Path) -> str | None:
    if path.suffix.lower() == ".geojson":
        return "points"
    if path.suffix.lower() != ".csv" or not path.is_file():
        return None
    from cellxfer.dataset import read_table_text
    from cellxfer.errors import InputError

    try:  # as cellxfer reads a table: Excel's UTF-8 with its mark, UTF-16, ImageJ's Windows-1252
        head = read_table_text(path).partition("\n")[0].strip()
    except (InputError, OSError):
        return None
    if head.startswith("file,count,"):
        return "counts"
    return "points" if head.replace(" ", "").lower() == "x,y" else None


def read_points(path: str | Path) -> np.ndarray:
    """cellxfer ``(x, y)`` points (N, 2) of a points CSV or of a GeoJSON of Point features."""
    path = Path(path)
    if path.suffix.lower() == ".geojson":
        data = json.loads(path.read_text())
        xy = [f["geometry"]["coordinates"][:2] for f in data.get("features", [])
              if (f.get("geometry") or {}).get("type") == "Point"]
        return np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    from cellxfer.dataset import parse_points, read_table_text

    return parse_points(read_table_text(path), path)


def points_layer(xy: np.ndarray, name: str, points_file: Path | None = None, **extra) -> tuple:
    """napari layer data of cellxfer points ``xy``; ``points_file``: where they were read from (the
    widget saves edits back there)."""
    meta = {"cellxfer": {"points_file": str(points_file) if points_file else None}}
    return to_napari(xy), {"name": name, "metadata": meta, **POINTS_STYLE, **extra}, "points"


def read_points_file(path) -> list[tuple]:
    path = Path(path)
    xy = read_points(path)
    return [points_layer(xy, f"{path.stem} cells ({len(xy)})", path)]


def read_counts_output(path) -> list[tuple]:
    """Layers of every image counted OK in the counts CSV ``path`` (see module docs); only the first
    image's layers are visible."""
    from cellxfer.count.table import read_counts

    path = Path(path)
    rows = read_counts(path)
    manifest = _run_manifest(path)
    config, then = manifest.get("config", {}), manifest.get("csv_folder")
    plane = _planes(path, config)
    points_files = _points_files(config, [Path(r.file) for r in rows], path.parent, then)
    density = _density_map(config, rows, path.parent, then)
    layers = []
    for row in rows:
        named = Path(row.file)  # as the run named it (the points files' names come from these)
        file = _resolve(row.file, path.parent, then)
        if row.status != "ok" or not file.exists():  # a file, or an OME-Zarr folder
            warnings.warn(f"{file}: not shown ({'missing' if row.status == 'ok' else 'failed: ' + row.error})")
            continue
        visible = not layers
        image = image_layer(file, plane(row), visible)
        layers.append(image)
        pts = points_files.get(named)
        if pts is not None and pts.is_file():
            xy = read_points(pts)
            layers.append(points_layer(xy, f"{file.stem} cells ({len(xy)}; count {row.count:.1f})", pts,
                                       visible=visible))
        if density is not None and density[0] == named:
            full = image[0][0] if isinstance(image[0], list) else image[0]
            layers.append(density_layer(density[1], full.shape, visible))
    return layers


def _run_manifest(csv: Path) -> dict:
    from cellxfer.manifest import sidecar_manifest

    manifest = sidecar_manifest(csv)
    try:
        return json.loads(manifest.read_text()) if manifest.is_file() else {}
    except (OSError, ValueError):
        warnings.warn(f"{manifest}: unreadable; the images are shown without their points")
        return {}


def _resolve(value, base: Path, then: str | None = None) -> Path | None:
    """A path the run wrote or was given: as it is if it exists; else, when the CSV's folder then (``then``, the
    manifest's ``csv_folder``) is known, where it lies now relative to the CSV's folder ``base`` (the project moved
    or was copied whole); else, relative, beside the CSV."""
    if not value:
        return None
    p = Path(value)
    if p.exists():
        return p
    if p.is_absolute() and then is not None:
        moved = base / os.path.relpath(p, then)
        if moved.exists():
            return moved
    return p if p.is_absolute() else base / p


def _points_files(config: dict, files: list[Path], base: Path, then: str | None = None) -> dict:
    """``{image: points file}`` named as ``count --points`` names them."""
    from cellxfer.count.overlay import output_names
    from cellxfer.count.points_format import FORMATS

    folder = _resolve(config.get("points"), base, then)
    if folder is None:
        return {}
    return output_names(files, folder, FORMATS[config.get("points_format", "csv")].suffix)


def _density_map(config: dict, rows, base: Path, then: str | None = None) -> tuple[Path, Path] | None:
    """``(image as the CSV names it, map file)`` of the run's ``--density-map`` (it maps the run's one image)."""
    dmap = _resolve(config.get("density_map"), base, then)
    if dmap is None or not dmap.is_file():
        return None
    paths = config.get("paths") or []
    ok = [Path(r.file) for r in rows if r.status == "ok"]
    if len(paths) == 1 and Path(paths[0]) in ok:
        return Path(paths[0]), dmap
    return (ok[0], dmap) if len(ok) == 1 else None


def _planes(csv: Path, config: dict):
    """``plane(row)``: the :class:`cellxfer.imageio.Plane` a row of the counts CSV ``csv`` was counted from, its
    ``plane`` cell; in a CSV written before that column, the options of the run the manifest ``config`` records
    (the last run's, which earlier rows may not share)."""
    from cellxfer.dataset import read_table_text
    from cellxfer.imageio import Plane

    if "plane" in read_table_text(csv).partition("\n")[0].strip().split(","):
        return lambda row: Plane.parse(row.plane)
    old = Plane(page=config.get("page"), channel=config.get("channel"), level=config.get("level") or 0)
    return lambda row: old


def image_layer(file: Path, plane=None, visible: bool = True) -> tuple:
    """napari layer data of an image as ``count`` read it at ``plane`` (a :class:`cellxfer.imageio.Plane`;
    None: with no option); a slide read by region as a two-level multiscale image (see module docs)."""
    from cellxfer.imageio import Plane
    from cellxfer.lazy import is_lazy, open_image, strided_sample

    plane = plane or Plane()
    image = open_image(file, channel=plane.channel, page=plane.page, level=plane.level)
    kwargs = {"name": file.stem, "visible": visible, "metadata": {"cellxfer": {"file": str(file)}}}
    if not is_lazy(image):
        return image, kwargs, "image"
    step = max(2, -(-max(image.shape) // 4096))
    preview = strided_sample(image, step)
    lo, hi = np.percentile(preview, (0.5, 99.8))
    return [image, preview], {**kwargs, "multiscale": True, "contrast_limits": (float(lo), float(max(hi, lo + 1)))}, "image"


def density_layer(path: Path, image_shape: tuple, visible: bool = True) -> tuple:
    """napari layer data of a ``count --density-map`` of an image of ``image_shape``: a .tif places each
    block exactly (its description gives the block in original pixels); a .png only has the picture,
    stretched over the image (to within a block at the right and bottom edges)."""
    import tifffile

    from cellxfer.imageio import read_image

    name = f"{path.stem} density"
    style = {"name": name, "colormap": "magma", "blending": "additive", "opacity": 0.6, "visible": visible}
    if path.suffix.lower() in (".tif", ".tiff"):
        with tifffile.TiffFile(path) as tf:
            counts = tf.asarray()
            desc = json.loads(tf.pages[0].description or "{}")
        block = desc.get("block_original_px") or [desc.get("block", 1)] * 2
        return counts, {**style, **block_transform(block)}, "image"
    picture = read_image(path)
    block = [image_shape[0] / picture.shape[0], image_shape[1] / picture.shape[1]]
    return picture, {**style, **block_transform(block)}, "image"
