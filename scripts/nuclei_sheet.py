#!/usr/bin/env python
"""Contact sheet: `synth --method nuclei` images beside real nuclei crops, for judging realism by eye.

Renders ``--n`` nuclei images (seed ``--seed``, 256x256) and puts them beside 256x256 crops of real DAPI
images (IDCIA, CellProfiler ExampleHuman); each tile is percentile-normalised (0.5-99.5%) for display
and labelled (synthetic tiles: typical diameter d, cell count and bit depth). Writes a grayscale PNG.

Usage: ``python scripts/nuclei_sheet.py [--out docs/nuclei_sheet.png] [--n 8] [--seed 0]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cellxfer.synth import nuclei
from cellxfer.synth.base import image_rng
from cellxfer.synth.nuclei_config import NucleiConfig

from benchlib import DATA  # noqa: E402  (the scripts' shared module: $CELLXFER_DATA or ../shared/data)
TILE, GAP, COLS = 256, 6, 4


def display(image: np.ndarray) -> np.ndarray:
    """uint8 for display: the 0.5-99.5 percentiles stretched to 0..255."""
    lo, hi = np.percentile(image, [0.5, 99.5])
    return np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def real_crops() -> list[tuple[np.ndarray, str]]:
    """256x256 crops of real images: two IDCIA DAPI, two CellProfiler ExampleHuman (where present)."""
    import tifffile

    picks = [
        (sorted((DATA / "idcia-dapi-95" / "images").glob("*.tiff"))[:2], (200, 300), "IDCIA"),
        ([DATA / "cellprofiler-examplehuman" / "AS_09125_050116030001_D03f00d0.tif"] * 2, None, "ExampleHuman"),
    ]
    crops = []
    for paths, at, name in picks:
        for j, path in enumerate(paths):
            if not path.exists():
                continue
            img = tifffile.imread(path)
            img = img if img.ndim == 2 else img[..., 0]
            r, c = at if at else ((0, 0), (img.shape[0] - TILE, img.shape[1] - TILE))[j]
            crops.append((img[r : r + TILE, c : c + TILE], f"real: {name}"))
    return crops


def synthetic(n: int, seed: int) -> list[tuple[np.ndarray, str]]:
    cfg = NucleiConfig(size=TILE)
    out = []
    for i in range(n):
        image, cells, draw = nuclei.render_cells(cfg, None, image_rng(seed, i))
        out.append((image, f"nuclei d={draw.d:.0f} n={len(cells)} {draw.dtype}"))
    return out


def sheet(tiles: list[tuple[np.ndarray, str]]) -> Image.Image:
    rows = -(-len(tiles) // COLS)
    step = TILE + GAP
    canvas = Image.new("L", (COLS * step - GAP, rows * step - GAP), 128)
    draw = ImageDraw.Draw(canvas)
    for k, (image, label) in enumerate(tiles):
        x, y = (k % COLS) * step, (k // COLS) * step
        canvas.paste(Image.fromarray(display(image)), (x, y))
        draw.rectangle((x, y, x + 6 * len(label) + 4, y + 12), fill=0)
        draw.text((x + 2, y + 1), label, fill=255)
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/nuclei_sheet.png"))
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    image = sheet(synthetic(args.n, args.seed) + real_crops())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
