"""The typed options of ``cellxfer count`` (numpy-free, so the CLI takes its defaults from here at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CountConfig:
    """Options of ``cellxfer count``; see the command's help for each."""

    paths: tuple[str, ...]
    model: Path | None = None
    engine: str = "auto"
    device: str = "auto"
    out: Path = Path("counts.csv")
    recursive: bool = False
    channel: int | None = None
    page: int | None = None
    level: int = 0  # --level: pyramid level of a pyramidal TIFF / OME-Zarr (0 = full resolution)
    overwrite: bool = False
    overlay: Path | None = None
    points: Path | None = None  # folder for one points file per image (density models)
    points_format: str = "csv"  # --points-format: csv (x,y) or geojson (QuPath), cellxfer.count.points_format
    workers: int = 0
    batch_size: int = 24
    scheduler: str | None = None
    fp16: bool = True
    threads: int | None = None
    diameter: str | None = None  # --diameter: auto | off | PIXELS; None: auto if the model records a diameter
    density_map: Path | None = None  # --density-map OUT.tif|png: counts per block of the one image (density models)
