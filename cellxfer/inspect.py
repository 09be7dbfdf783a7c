"""Looking at a cell dataset: summary statistics and a contact sheet PNG with centres marked."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cellxfer.dataset import CellDataset


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`summarize` found: image count, sizes and dtypes (comma-joined), the layout, and for a
    labelled dataset the count statistics and the ids whose ``counts.csv`` entry disagrees with their
    points table; ``preview`` the contact sheet :func:`inspect_dataset` wrote, if any."""

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
    preview: Path | None = None


def summarize(ds: CellDataset) -> DatasetSummary:
    """Image count, sizes, dtypes and (when labelled) count statistics of ``ds``."""
    import tifffile

    sizes, dtypes = set(), set()
    for id_ in ds.ids:
        path = ds.image_path(id_)
        try:
            with tifffile.TiffFile(path) as tif:
                shape, dtype = tif.series[0].shape, tif.series[0].dtype
            if len(shape) != 2:
                raise ValueError("not 2-D")
            sizes.add(f"{shape[1]}x{shape[0]}")
            dtypes.add(str(dtype))
        except Exception:  # noqa: BLE001 - PNG, multi-plane or unreadable: the full reader decides
            img = ds.read_image(id_)
            sizes.add(f"{img.shape[1]}x{img.shape[0]}")
            dtypes.add(str(img.dtype))
    s = DatasetSummary(len(ds), ds.layout, ", ".join(sorted(sizes)), ", ".join(sorted(dtypes)), ds.labelled)
    if not ds.labelled:
        return s
    counts = ds.counts()
    c = np.array(list(counts.values()), dtype=float)
    stored = ds.stored_counts()
    mismatch = tuple(i for i in ds.ids if stored.get(i) != counts[i]) if stored is not None else ()
    return replace(s, mean=float(c.mean()), sd=float(c.std(ddof=1)) if len(c) > 1 else 0.0, min=int(c.min()),
                   max=int(c.max()), total=int(c.sum()), counts_mismatch=mismatch)


def inspect_dataset(dataset: str | Path, channel: int | None = None, page: int | None = None,
                    preview: str | Path | None = None, tiles: int = 16, overwrite: bool = False) -> DatasetSummary:
    """``cellxfer inspect``: :func:`summarize` the dataset and, with ``preview``, write its contact sheet
    (an existing file is replaced only with ``overwrite``)."""
    from cellxfer.outputs import refuse_existing

    refuse_existing(preview, "--preview", overwrite, inputs=[dataset])
    ds = CellDataset(dataset, channel=channel, page=page)
    s = summarize(ds)
    if preview is None:
        return s
    contact_sheet(ds, preview, tiles=tiles)
    return replace(s, preview=Path(preview))


def contact_sheet(ds: CellDataset, path: str | Path, tiles: int = 16, tile_px: int = 256) -> None:
    """Write an RGB PNG grid of the first ``tiles`` images, each contrast-stretched to its 0.5-99.5
    percentiles and shrunk to ``tile_px``, with annotated centres as red dots."""
    from PIL import Image, ImageDraw

    from cellxfer.atomic import atomic_path

    ids = ds.ids[:tiles]
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
