"""The typed options of ``cellxfer count`` (numpy-free, so the CLI takes its defaults from here at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cellxfer.bounds import BATCH, DEVICE, INDEX, THREADS, WORKERS, check_fields, ranged
from cellxfer.count.points_format import FORMATS


@dataclass(frozen=True)
class CountConfig:
    """Options of ``cellxfer count``; see the command's help for each."""

    paths: tuple[str, ...]
    model: Path | None = None
    engine: str = "auto"
    device: str = ranged("auto", **DEVICE)
    out: Path = Path("counts.csv")
    recursive: bool = False
    channel: int | None = ranged(None, **INDEX)
    page: int | None = ranged(None, **INDEX)
    level: int = ranged(0, **INDEX)  # --level: pyramid level of a pyramidal TIFF / OME-Zarr (0 = full resolution)
    overwrite: bool = False
    overlay: Path | None = None
    points: Path | None = None  # folder for one points file per image (density models)
    points_format: str = ranged("csv", choices=tuple(FORMATS))  # --points-format (cellxfer.count.points_format)
    workers: int = ranged(0, **WORKERS)
    batch_size: int = ranged(24, **BATCH)
    scheduler: str | None = None
    fp16: bool = True
    threads: int | None = ranged(None, **THREADS)
    diameter: str | None = None  # --diameter: auto | off | PIXELS; None: auto if the model records a diameter
    density_map: Path | None = None  # --density-map OUT.tif|png: counts per block of the one image (density models)

    def __post_init__(self):
        check_fields(self)
