"""The settings of the paired translator testbed (``synth-pairs``, :mod:`cellxfer.synth.paired`).

numpy-free, so the command takes its option defaults from here without slowing ``cellxfer --help``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellxfer.bounds import OutOfRange, check_fields, ranged


@dataclass(frozen=True)
class PairedConfig:
    """Paired testbed parameters (see module docs)."""

    size: int = ranged(256, ge=16, le=8192, multiple_of=1)
    modality: str = ranged("pc", choices=("pc", "bf"))
    marker: str = ranged("dapi", choices=("dapi", "cd29"))
    cells: tuple[int, int] = ranged((12, 30), ge=0, le=100_000, multiple_of=1, pair=True, equal_ok=True)
    cell_size: float = ranged(30.0, gt=2, le=4096)  # and at most size
    overexpose: float = ranged(1.0, gt=0, le=1000)
    scale: float = ranged(1.0, ge=1, le=64)  # zoom in

    def __post_init__(self):
        check_fields(self)
        if self.cell_size > self.size:
            raise OutOfRange(f"--cell-size {self.cell_size:g}: larger than the image (--size {self.size}); "
                             f"give a cell size below the image side")
