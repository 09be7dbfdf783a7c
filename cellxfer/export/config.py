"""The typed settings of ``cellxfer export`` (numpy-free, so the command takes its defaults and ranges
from here at start-up). The export itself is :func:`cellxfer.export.counter.export_model`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cellxfer.bounds import BATCH, SEED, OutOfRange, check_fields, ranged


@dataclass(frozen=True)
class ExportConfig:
    """``cellxfer export``: ``format`` onnx | trt; ``out`` the .onnx (trt: the ONNX it builds from,
    the engine goes to the cache unless ``engine_out``)."""

    model: Path
    out: Path | None  # export_model: None = counter.onnx, or beside a translator
    format: str = ranged("onnx", choices=("onnx", "trt"))
    opset: int = ranged(17, ge=13, le=23, multiple_of=1)  # the opsets torch's exporter writes and ONNX Runtime reads for these networks
    check_images: tuple[Path, ...] = ()
    n_random: int = ranged(8, ge=1, le=10_000, multiple_of=1)
    atol: float = ranged(1e-3, gt=0, le=1)
    rtol: float = ranged(1e-3, gt=0, le=1)
    fp16: bool = True
    opt_batch: int = ranged(24, **BATCH)  # = count's default --batch-size, so count reuses the cached engine
    max_batch: int = ranged(64, **BATCH)
    engine_out: Path | None = None
    seed: int = ranged(0, **SEED)
    overwrite: bool = False  # export_model: replace ``out`` when it exists

    def __post_init__(self):
        check_fields(self)
        if self.opt_batch > self.max_batch:
            raise OutOfRange(f"--opt-batch {self.opt_batch}: must be at most --max-batch ({self.max_batch})")
