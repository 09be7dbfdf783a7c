"""Looking at a cell dataset: summary statistics and a contact sheet PNG with centres marked."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cellxfer.dataset import CellDataset


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`summarize` found: image count, sizes and dtypes (comma-joined), the layout, and for a
    labelled dataset the count statistics, the ids whose ``counts.csv`` entry disagrees with their
    points table and the points tables without an image; ``damaged``: path -> why, for each image that does not decode (cut short, ...) and each
    points table that does not parse or has points outside its image (those are left out of the
    statistics); ``preview`` the contact sheet :func:`inspect_dataset` wrote, if any."""

    images: int
    layout: str
    sizes: str
    dtypes: str
    labelled: bool
    mean: float | None = None
    sd: float | None = None
    min: int | None = None
    max: int | None = None
    total: int | None = None
    counts_mismatch: tuple[str, ...] = ()
    damaged: dict = field(default_factory=dict)
    preview: Path | None = None
    unmatched_points: tuple[str, ...] = ()  # points tables without an image (:meth:`CellDataset.unmatched_points`)


def summarize(ds: CellDataset) -> DatasetSummary:
    """Image count, sizes, dtypes and (when labelled) count statistics of ``ds``. Every image is decoded
    whole (a header can be intact on a file cut short) and every points table checked against its image."""
    from cellxfer.errors import InputError

    sizes, dtypes, damaged, counts = set(), set(), {}, {}
    for id_ in ds.ids:
        try:
            img = ds.read_image(id_)
        except InputError as exc:
            damaged[str(ds.image_path(id_))] = str(exc).removeprefix(f"{ds.image_path(id_)}: ")
            continue
        sizes.add(f"{img.shape[1]}x{img.shape[0]}")
        dtypes.add(str(img.dtype))
        if ds.labelled:
            try:
                counts[id_] = len(ds.read_points(id_, img.shape))
            except InputError as exc:
                damaged[str(ds.points_path(id_))] = str(exc).removeprefix(f"{ds.points_path(id_)}: ")
    s = DatasetSummary(len(ds), ds.layout, ", ".join(sorted(sizes)), ", ".join(sorted(dtypes)), ds.labelled,
                       damaged=damaged, unmatched_points=tuple(p.name for p in ds.unmatched_points()))
    if not ds.labelled or not counts:
        return s
    c = np.array(list(counts.values()), dtype=float)
    stored = ds.stored_counts()
    mismatch = tuple(i for i in counts if stored.get(i) != counts[i]) if stored is not None else ()
    return replace(s, mean=float(c.mean()), sd=float(c.std(ddof=1)) if len(c) > 1 else 0.0, min=int(c.min()),
                   max=int(c.max()), total=int(c.sum()), counts_mismatch=mismatch)


def inspect_dataset(dataset: str | Path, channel: int | None = None, page: int | None = None,
                    preview: str | Path | None = None, tiles: int = 16, overwrite: bool = False) -> DatasetSummary:
    """``cellxfer inspect``: :func:`summarize` the dataset and, with ``preview``, write its contact sheet
    (an existing file is replaced only with ``overwrite``)."""
    from cellxfer.errors import InputError
    from cellxfer.outputs import refuse_existing

    refuse_existing(preview, "--preview", overwrite, inputs=[dataset])
    if preview is not None and Path(preview).suffix.lower() != ".png":  # PNG bytes under a .jpg/.tif name
        raise InputError(f"--preview {preview}: the contact sheet is a PNG; give a name ending in .png")
    ds = CellDataset(dataset, channel=channel, page=page)
    s = summarize(ds)
    if s.damaged and not s.sizes:  # not one image reads (e.g. all need --page): that is the whole input's fault
        path, why = next(iter(s.damaged.items()))
        raise InputError(f"{path}: {why}")
    if preview is None:
        return s
    contact_sheet(ds, preview, tiles=tiles, skip=s.damaged)
    return replace(s, preview=Path(preview))


def contact_sheet(ds: CellDataset, path: str | Path, tiles: int = 16, tile_px: int = 256, skip=()) -> None:
    """Write an RGB PNG grid of the first ``tiles`` images, each contrast-stretched to its 0.5-99.5
    percentiles and shrunk to ``tile_px``, with annotated centres as red dots; images whose image or
    points path is in ``skip`` (damaged) are left out."""
    from PIL import Image, ImageDraw

    from cellxfer.atomic import atomic_path

    ids = [i for i in ds.ids if str(ds.image_path(i)) not in skip
           and not (ds.labelled and str(ds.points_path(i)) in skip)][:tiles]
    cols = math.ceil(math.sqrt(len(ids)))
    rows = math.ceil(len(ids) / cols)
    sheet = Image.new("RGB", (cols * tile_px, rows * tile_px))
    draw = ImageDraw.Draw(sheet)
    for k, id_ in enumerate(ids):
        img = ds.read_image(id_).astype(np.float32)
        lo, hi = np.percentile(img, (0.5, 99.5))
        img8 = np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
        scale = tile_px / max(img8.shape)
        tile = Image.fromarray(img8).resize((max(1, round(img8.shape[1] * scale)), max(1, round(img8.shape[0] * scale))))
        x0, y0 = (k % cols) * tile_px, (k // cols) * tile_px
        sheet.paste(tile.convert("RGB"), (x0, y0))
        if ds.labelled:
            for x, y in ds.read_points(id_) * scale:
                draw.rectangle((x0 + x - 1, y0 + y - 1, x0 + x + 1, y0 + y + 1), fill=(255, 40, 40))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
