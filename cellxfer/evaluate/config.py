"""The typed options of ``cellxfer evaluate`` (numpy-free, so the CLI takes its defaults from here at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cellxfer.bounds import BATCH, DEVICE, check_fields, ranged


@dataclass
class EvaluateConfig:
    model: Path
    data: Path
    out_csv: Optional[Path] = None    # --csv: the per-image table (image,true,predicted); None: none written
    exclude: tuple[str, ...] = ()
    batch_size: int = ranged(16, **BATCH)
    radius: float = ranged(5.0, gt=0, le=10000)              # density models: match radius (pixels) of the localisation score
    diameter: Optional[str] = None    # --diameter auto | off | PIXELS (cellxfer.scale); None: as `count`
    engine: str = "auto"              # --engine: auto, torch, onnx or trt, resolved as `count` does (load_runner)
    device: str = ranged("auto", **DEVICE)
    out_json: Optional[Path] = None   # --json: the metrics as JSON too
    overwrite: bool = False           # replace out_csv / out_json when they exist (checked before any work)

    def __post_init__(self):
        check_fields(self)
