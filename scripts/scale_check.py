#!/usr/bin/env python
"""What the nucleus-diameter estimate (:func:`cellxfer.scale.estimate_diameter`) reads, and what it costs.

1. ``nuclei`` synthesizer images with one fixed diameter each (6-32 px), as rendered (texture, nucleoli)
   and with texture and nucleoli off: the median estimate / the nominal diameter.
2. Real IDCIA images: the estimate, and its ratio after resizing the image 2x and 0.5x (scale covariance).
3. Seconds per IDCIA image (one process, median).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/scale_check.py --images 12 --out runs/scale_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import IDCIA, REPO  # noqa: E402  (the scripts' shared module)


def synthetic_rows(per: int) -> list[dict]:
    from cellxfer.scale import estimate_diameter
    from cellxfer.synth.base import image_rng
    from cellxfer.synth.nuclei import render
    from cellxfer.synth.nuclei_config import NucleiConfig

    rows = []
    for plain in (False, True):
        for d in (6.0, 8.0, 12.0, 16.0, 24.0, 32.0):
            extra = {"texture": (0.0, 0.0), "nucleoli": 0.0} if plain else {}
            cfg = NucleiConfig(size=384, diameter=(d, d), **extra)
            est = [estimate_diameter(render(cfg, None, image_rng(1, i))[0]).diameter for i in range(per)]
            est = [e for e in est if e is not None]
            rows.append({"nominal": d, "plain": plain, "median_ratio": float(np.median(est)) / d if est else None})
    return rows


def real_rows(n: int) -> dict:
    import tifffile

    from cellxfer.scale import estimate_diameter, resize_to

    files = sorted((IDCIA / "images").glob("*.tiff"))[::8][:n]
    out, seconds = [], []
    for f in files:
        im = tifffile.imread(f)
        t0 = time.perf_counter()
        e = estimate_diameter(im).diameter
        seconds.append(time.perf_counter() - t0)
        ratios = [estimate_diameter(resize_to(im.astype(np.float32), k).image).diameter / e for k in (2.0, 0.5)]
        out.append({"image": f.stem, "diameter": e, "ratio_2x": ratios[0], "ratio_0.5x": ratios[1]})
    return {"images": out, "seconds_per_image_median": float(np.median(seconds))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--images", type=int, default=12, help="IDCIA images (every 8th)")
    ap.add_argument("--per", type=int, default=8, help="synthetic images per diameter")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "scale_check.json")
    args = ap.parse_args(argv)
    result = {"command": " ".join(sys.argv), "load_before": os.getloadavg(), "synthetic": synthetic_rows(args.per)}
    if IDCIA.is_dir():
        result["idcia"] = real_rows(args.images)
    result["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for r in result["synthetic"]:
        print(f"nuclei {'plain   ' if r['plain'] else 'textured'} {r['nominal']:4.0f} px: estimate / nominal {r['median_ratio']:.2f}")
    if "idcia" in result:
        im = result["idcia"]["images"]
        print(f"IDCIA ({len(im)} images): diameter {min(r['diameter'] for r in im):.1f}-{max(r['diameter'] for r in im):.1f} px; "
              f"resized 2x: {min(r['ratio_2x'] for r in im):.2f}-{max(r['ratio_2x'] for r in im):.2f}x; 0.5x: "
              f"{min(r['ratio_0.5x'] for r in im):.2f}-{max(r['ratio_0.5x'] for r in im):.2f}x; "
              f"{result['idcia']['seconds_per_image_median']:.3f} s per image (median), load {result['load_before'][0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
