"""The settings of the paired translator testbed (``synth-pairs``, :mod:`cellxfer.synth.paired`).

numpy-free, so the command takes its option defaults from here without slowing ``cellxfer --help``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PairedConfig:
    """Paired testbed parameters (see module docs)."""

    size: int = 256
    modality: str = "pc"  # pc | bf
    marker: str = "dapi"  # dapi | cd29
    cells: tuple[int, int] = (12, 30)
    cell_size: float = 30.0
    overexpose: float = 1.0
    scale: float = 1.0

    def __post_init__(self):
        if self.modality not in ("pc", "bf"):
            raise ValueError(f"modality {self.modality!r}: expected pc or bf")
        if self.marker not in ("dapi", "cd29"):
            raise ValueError(f"marker {self.marker!r}: expected dapi or cd29")
        if self.size < 16 or self.cell_size <= 2:
            raise ValueError("size must be >= 16 and cell_size > 2")
        if not 0 <= self.cells[0] <= self.cells[1]:
            raise ValueError(f"cells {self.cells}: expected 0 <= low <= high")
        if self.overexpose <= 0 or self.scale < 1:
            raise ValueError("overexpose must be > 0 and scale >= 1 (zoom in)")
