"""cellxfer-blobs: a second synthesizer, out of tree, to show how a cellxfer plugin is written.

``blobs`` draws nuclei as isotropic Gaussian blobs at uniformly random positions (the look of the
Cell-200 style simulations), on a flat background with Gaussian noise. Centres are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellxfer.hookspecs import hookimpl
from cellxfer.synth.base import Synthesizer


@dataclass(frozen=True)
class BlobsConfig:
    """Parameters of ``blobs`` (pixels; ranges are (low, high) of a uniform draw)."""

    size: int = 256
    count_mean: float = 100.0
    count_std: float = 40.0
    max_cells: int = 600
    sigma: float = 3.0
    intensity: tuple[float, float] = (80.0, 200.0)
    background: float = 15.0
    noise: float = 4.0

    def __post_init__(self):
        if self.size < 8 or self.sigma <= 0:
            raise ValueError("size must be >= 8 and sigma > 0")


def render(cfg: BlobsConfig, context, rng):
    """uint8 (size, size) image and float64 (N, 2) centres (x, y)."""
    import numpy as np

    n = int(min(max(round(rng.normal(cfg.count_mean, cfg.count_std)), 0), cfg.max_cells))
    xy = np.floor(rng.uniform(0, cfg.size, (n, 2)) * 1000.0) / 1000.0
    level = rng.uniform(*cfg.intensity, n)
    r = int(np.ceil(3 * cfg.sigma))
    off = np.arange(-r, r + 1)
    img = np.zeros((cfg.size + 2 * r + 2, cfg.size + 2 * r + 2))
    for (x, y), a in zip(xy, level):
        c0, r0 = int(x), int(y)
        gx = np.exp(-((c0 + off + 0.5 - x) ** 2) / (2 * cfg.sigma**2))
        gy = np.exp(-((r0 + off + 0.5 - y) ** 2) / (2 * cfg.sigma**2))
        img[r0 + 1 : r0 + 2 * r + 2, c0 + 1 : c0 + 2 * r + 2] += a * np.outer(gy, gx)
    img = img[r + 1 : r + 1 + cfg.size, r + 1 : r + 1 + cfg.size]
    img += cfg.background + cfg.noise * rng.standard_normal(img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), xy


BLOBS = Synthesizer(
    name="blobs",
    description="Gaussian-blob nuclei, uniformly scattered (example plugin)",
    config_cls=BlobsConfig,
    render=render,
)


@hookimpl
def cellxfer_synthesizers():
    return [BLOBS]
