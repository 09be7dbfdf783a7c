#!/usr/bin/env python
"""Contact sheet: `synth --method nuclei` images beside real DSB2018 fluorescence images, for judging realism by eye.

Each row pair puts a real dsb2018-fluo image (``$CELLXFER_DATA/dsb2018-fluo``; a crop around its nuclei)
beside a rendered image of the same nucleus diameter and a matching style (``--set`` settings, printed on
the tile): small bright nuclei with mitotic figures, small crowded, medium, large crowded touching, rimmed
and textured, very large (1388x1040, ~94 px: shown at half scale, as is its rendering). A row shows the
defaults (every setting drawn per image); the last, two real images resized so their nuclei are ~14 px (as
``count`` resizes them for a counter of 8-20 px nuclei) beside images of ``--set diameter=8:20 --set
rescale=0.33:2``, the training set for such a counter. Real and rendered tiles are shown alike, stretched from
their 0.5 to 99.9 percentiles. Writes a grayscale PNG.

``--stats N`` also compares image statistics of every third dsb2018-fluo image with N rendered 8-bit
images (defaults): ``top`` (99.9th percentile / 255), ``saturated`` (share of pixels at the image
maximum), ``snr`` (median value at the nucleus centres over the high-pass noise SD of the pixels
below the median) and ``roughness`` (median over nuclei of the high-pass SD within 0.3 d of the
centre over the mean there); prints percentiles 5/25/50/75/95 and writes them as JSON beside the PNG.

Usage: ``python scripts/nuclei_sheet.py [--out docs/images/nuclei_sheet.png] [--seed 0] [--tile 192] [--stats 150]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from cellxfer.synth import nuclei
from cellxfer.synth.base import image_rng
from cellxfer.synth.nuclei_config import NucleiConfig

from benchlib import DSB, dsb_table  # noqa: E402  (the scripts' shared module: $CELLXFER_DATA or ../shared/data)
GAP, COLS = 4, 4
# (dsb2018-fluo image id prefix, show at this scale, NucleiConfig settings of the rendered twin)
STYLES = [
    ("094afe36", 1.0, dict(coverage=(0.05, 0.05), clustered=1.0, bodies=(0.08, 0.08), photons=(300.0, 1000.0))),
    ("c53326fe", 1.0, dict(coverage=(0.12, 0.12), clustered=0.0, bodies=(0.15, 0.15), saturation=1.0,
                           texture=(0.3, 0.3))),
    ("0ea22171", 1.0, dict(coverage=(0.45, 0.45), overlap=(0.3, 0.3), bodies=(0.03, 0.03), clustered=0.0,
                           blur=(1.0, 1.0), defocus_fraction=(0.1, 0.1), texture=(0.3, 0.3))),
    ("f6863b83", 1.0, dict(coverage=(0.2, 0.2), texture=(0.4, 0.4), nucleoli=1.0, clustered=0.0)),
    ("777f7c42", 1.0, dict(coverage=(0.8, 0.8), pressed=1.0, overlap=(0.4, 0.4), texture=(0.25, 0.25),
                           grain=(0.7, 0.7), rim=(0.1, 0.1), clustered=0.0, defocus_fraction=(0.0, 0.0))),
    ("9ebcfaf2", 1.0, dict(coverage=(0.4, 0.4), pressed=1.0, overlap=(0.25, 0.25), rim=(0.6, 0.6),
                           texture=(0.35, 0.35), grain=(0.6, 0.6), nucleoli=0.8)),
    ("c901794d", 0.5, dict(coverage=(0.08, 0.08), texture=(0.3, 0.3), grain=(0.8, 0.8), nucleoli=0.8,
                           saturation=1.0, saturated=(0.1, 0.1))),
    ("a102535b", 1.0, dict(coverage=(0.5, 0.5), overlap=(0.5, 0.5), defocus_fraction=(0.6, 0.6), blur=(2.0, 2.0),
                           background=(0.5, 0.5), illumination=(0.6, 0.6))),
]


# the last row: real images resized so their nuclei are ~14 px (as `count` resizes for a counter of 8-20 px
# nuclei) beside that counter's training images (`--set diameter=8:20 --set rescale=0.33:2`)
RESIZED = ["c901794d", "b1f23c4d"]
TRAINING = dict(diameter=(8.0, 20.0), rescale=(0.33, 2.0))


def display(image: np.ndarray) -> np.ndarray:
    """uint8 for display: the 0.5-99.9 percentiles stretched to 0..255."""
    lo, hi = np.percentile(image, [0.5, 99.9])
    return np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def shown(image: np.ndarray, scale: float, tile: int) -> np.ndarray:
    """``image`` at ``scale`` (area-averaged), a ``tile`` square from its top-left (padded if smaller)."""
    out = Image.fromarray(display(image))
    if scale != 1.0:
        out = out.resize((round(out.width * scale), round(out.height * scale)), Image.BOX)
    canvas = np.zeros((tile, tile), np.uint8)
    crop = np.asarray(out)[:tile, :tile]
    canvas[: crop.shape[0], : crop.shape[1]] = crop
    return canvas


def real(prefix: str, side: int) -> tuple[np.ndarray, float, str]:
    """A ``side`` square of a dsb2018-fluo image, centred on the median of its nuclei; its diameter."""
    path = next((DSB / "images").glob(f"{prefix}*.png"))
    image = np.asarray(Image.open(path))
    diam = next(r["diameter"] for r in dsb_table() if r["file"] == path.name)
    pts = np.loadtxt(DSB / "ground_truth" / f"{path.stem}.csv", delimiter=",", skiprows=1, ndmin=2)
    h, w = image.shape
    cx, cy = np.median(pts, axis=0)
    r0 = int(np.clip(cy - side / 2, 0, max(h - side, 0)))
    c0 = int(np.clip(cx - side / 2, 0, max(w - side, 0)))
    return image[r0 : r0 + side, c0 : c0 + side], diam, f"real {prefix} {w}x{h} d={diam:.0f}"


def label_of(settings: dict) -> str:
    keys = [k for k in settings if k in ("coverage", "pressed", "bodies", "rim", "saturation", "photons")]
    def fmt(v):
        return f"{v[0]:g}" if isinstance(v, tuple) else f"{v:g}"
    return " ".join(f"{k}={fmt(settings[k])}" for k in keys)


def tiles(seed: int, tile: int) -> list[tuple[np.ndarray, str]]:
    out = []
    for k, (prefix, scale, settings) in enumerate(STYLES):
        side = round(tile / scale)
        image, diam, text = real(prefix, side)
        out.append((shown(image, scale, tile), text))
        cfg = NucleiConfig(size=max(side, 64), diameter=(diam, diam), **settings)
        synth, cells, draw = nuclei.render_cells(cfg, None, image_rng(seed, k))
        out.append((shown(synth, scale, tile), f"nuclei d={diam:.0f} {draw.dtype} {label_of(settings)}"))
    for k in range(COLS):
        synth, cells, draw = nuclei.render_cells(NucleiConfig(size=tile), None, image_rng(seed, 100 + k))
        out.append((shown(synth, 1.0, tile), f"defaults: d={draw.d:.0f} n={len(cells)} {draw.dtype}"))
    for k, prefix in enumerate(RESIZED):  # what a counter of ~14 px nuclei sees, and its training images
        _, diam, _ = real(prefix, 16)
        image, diam, text = real(prefix, round(tile * diam / 14))
        out.append((shown(image, 14 / diam, tile), f"{text.split(' d=')[0]} resized to d=14"))
        synth, cells, draw = nuclei.render_cells(NucleiConfig(size=tile, **TRAINING), None, image_rng(seed, 200 + k))
        out.append((shown(synth, 1.0, tile), f"diameter=8:20 rescale=0.33:2 d={draw.d:.0f} f={draw.rescale:.2f}"))
    return out


def sheet(items: list[tuple[np.ndarray, str]], tile: int) -> Image.Image:
    rows = -(-len(items) // COLS)
    step = tile + GAP
    canvas = Image.new("L", (COLS * step - GAP, rows * step - GAP), 128)
    draw = ImageDraw.Draw(canvas)
    for k, (image, label) in enumerate(items):
        x, y = (k % COLS) * step, (k // COLS) * step
        canvas.paste(Image.fromarray(image), (x, y))
        width = min(int(draw.textlength(label)) + 4, tile)
        draw.rectangle((x, y, x + width, y + 11), fill=0)
        draw.text((x + 2, y), label, fill=255)
    return canvas


def image_stats(image: np.ndarray, points: np.ndarray, diameter: float) -> dict:
    """The ``--stats`` measures of one image (see the module docstring)."""
    im = image.astype(np.float64)
    median = float(np.median(im))
    noise = float((im - ndimage.gaussian_filter(im, 2.0))[im <= median].std())
    rows = np.clip(points[:, 1].astype(int), 0, im.shape[0] - 1)
    cols = np.clip(points[:, 0].astype(int), 0, im.shape[1] - 1)
    level = float(np.median(im[rows, cols])) if len(points) else np.nan
    detail = im - ndimage.gaussian_filter(im, max(diameter / 8, 1.5))
    yy, xx = np.mgrid[0 : im.shape[0], 0 : im.shape[1]] + 0.5
    rough = []
    for x, y in points[:30]:
        core = (xx - x) ** 2 + (yy - y) ** 2 <= max(0.3 * diameter, 2.0) ** 2
        if core.sum() > 3 and im[core].mean() > 0:
            rough.append(detail[core].std() / im[core].mean())
    return {"top": float(np.percentile(im, 99.9)) / 255, "saturated": float(np.mean(im == im.max())),
            "snr": (level - median) / max(noise, 0.5), "roughness": float(np.median(rough)) if rough else np.nan}


def compare_stats(n: int, seed: int) -> dict:
    """Percentiles of :func:`image_stats` over every third dsb2018-fluo image and ``n`` rendered 8-bit images."""
    real = []
    for r in dsb_table()[::3]:
        pts = np.loadtxt(DSB / "ground_truth" / f"{r['id']}.csv", delimiter=",", skiprows=1, ndmin=2)
        real.append(image_stats(np.asarray(Image.open(DSB / "images" / r["file"])), pts, r["diameter"]))
    cfg = NucleiConfig(dtype="uint8")
    rendered = []
    for i in range(n):
        image, cells, draw = nuclei.render_cells(cfg, None, image_rng(seed, 1000 + i))
        rendered.append(image_stats(image, cells.points, draw.d))
    out = {}
    for name, group in (("dsb2018-fluo", real), ("nuclei defaults, uint8", rendered)):
        out[name] = {k: np.nanpercentile([g[k] for g in group], [5, 25, 50, 75, 95]).round(4).tolist() for k in group[0]}
        out[name]["images"] = len(group)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/images/nuclei_sheet.png"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tile", type=int, default=192, help="tile side, px")
    ap.add_argument("--stats", type=int, default=0, help="also compare image statistics with this many rendered images")
    args = ap.parse_args()
    if not (DSB / "per_image.tsv").exists():
        raise SystemExit(f"{DSB}: dsb2018-fluo not found; set CELLXFER_DATA to the folder that holds it")
    image = sheet(tiles(args.seed, args.tile), args.tile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    if args.stats:
        table = compare_stats(args.stats, args.seed)
        print(f"{'percentiles 5/25/50/75/95':28} {'top':>34} {'saturated':>34} {'snr':>34} {'roughness':>34}")
        for name, row in table.items():
            print(f"{name:28} " + " ".join(f"{'/'.join(f'{v:.3g}' for v in row[k]):>34}" for k in ("top", "saturated", "snr", "roughness")))
        path = args.out.with_suffix(".json")
        path.write_text(json.dumps({"command": f"python scripts/nuclei_sheet.py --stats {args.stats} --seed {args.seed}",
                                    "percentiles": [5, 25, 50, 75, 95], **table}, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
