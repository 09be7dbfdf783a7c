#!/usr/bin/env python
"""What the nucleus-diameter estimate (:func:`cellxfer.scale.estimate_diameter`) reads, and what it costs.

1. ``nuclei`` synthesizer images with one fixed diameter each (6-32 px), as rendered (texture, nucleoli)
   and with texture and nucleoli off: the median estimate / the nominal diameter.
2. Real IDCIA images: the estimate, and its ratio after resizing the image 2x and 0.5x (scale covariance).
3. Seconds per IDCIA image (one process, median).
4. ``--dsb PART``: dsb2018-fluo (many microscopes) against its true median nucleus diameters
   (``per_image.tsv``), per image-size group of the part (``trainval``: the training + validation parts the
   estimator was chosen on; ``test``; ``all``) of :func:`cellxfer.evaluate.split.stratified_split_ids`: the share
   within 25% and the median ratio. ``--split FILE`` reads the split's ids from a JSON written by an earlier run
   (so an older checkout, put first on ``PYTHONPATH``, is measured on the same images: its estimator side by side).
   ``--resize``: the estimate of each image resized 0.5x and 2x over its own; ``--shading``: of each image unevenly
   lit (a gradient of half and of the whole of its range, a vignette, haze: ``benchlib.SHADINGS``) over its own.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/scale_check.py --images 12 --out runs/scale_check.json
    OMP_NUM_THREADS=1 .venv/bin/python scripts/scale_check.py --dsb trainval --images 0 --per 0 --out docs/scale_dsb_trainval.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import DSB, IDCIA, REPO, SHADINGS, dsb_table  # noqa: E402  (the scripts' shared module)


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


def dsb_rows(part: str, split_file: Path | None, resize: bool = False, shading: bool = False) -> dict:
    """The estimate against dsb2018-fluo's true median diameters, per image-size group (module docs, 4); with
    ``resize``, also the estimate of each image resized 0.5x and 2x over its own (scale covariance: the share
    of images within 5% of 0.5 and of 2); with ``shading``, the estimate of each image unevenly lit over its own
    (``benchlib.SHADINGS``: the share within 10%)."""
    from PIL import Image

    from cellxfer.scale import estimate_diameter, resize_to

    if split_file is not None:
        split = json.loads(split_file.read_text())
    else:
        from cellxfer.evaluate.split import stratified_split_ids

        split = stratified_split_ids(DSB)
    ids = set({"trainval": split["train"] + split["val"], "test": split["test"],
               "all": split["train"] + split["val"] + split["test"]}[part])
    groups: dict[str, list[tuple]] = {}
    per = []
    for r in dsb_table():
        if r["id"] not in ids:
            continue
        im = np.asarray(Image.open(DSB / "images" / r["file"]))
        d = estimate_diameter(im).diameter
        row = {"id": r["id"], "true": r["diameter"], "estimate": d}
        if resize:
            for k in (0.5, 2.0):
                e = estimate_diameter(resize_to(im.astype(np.float32), k).image).diameter
                row[f"ratio_{k:g}x"] = float("nan") if d is None or e is None else e / d / k
        for name, fn in SHADINGS.items() if shading else ():
            e = estimate_diameter(fn(im)).diameter
            row[f"ratio_{name}"] = (1.0 if d is None and e is None else float("nan") if d is None or e is None
                                    else e / d)  # no estimate either way: the same reading
        groups.setdefault(f"{r['width']}x{r['height']}", []).append(row)
        per.append(row)
    table = {}
    for key, rows in sorted(groups.items(), key=lambda kv: -len(kv[1])) + [("all", per)]:
        v = np.array([float("nan") if x["estimate"] is None else x["estimate"] / x["true"] for x in rows])
        table[key] = {"images": len(v), "within_25": float(np.mean(np.abs(v - 1) <= 0.25)),
                      "median_ratio": float(np.nanmedian(v)) if np.isfinite(v).any() else None,
                      "no_estimate": int(np.isnan(v).sum())}
        if resize:  # the estimate of the resized image over k times the image's: 1 is covariant
            for k in ("0.5x", "2x"):
                c = np.array([x[f"ratio_{k}"] for x in rows])
                table[key][f"resized_{k}_within_5"] = float(np.mean(np.abs(c - 1) <= 0.05))
        for name in SHADINGS if shading else ():  # nan (an estimate one way only) counts as outside
            c = np.array([x[f"ratio_{name}"] for x in rows])
            table[key][f"{name}_within_10"] = float(np.mean(np.abs(c - 1) <= 0.10))
    return {"part": part, "split": {k: split[k] for k in ("train", "val", "test")}, "groups": table, "images": per}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--images", type=int, default=12, help="IDCIA images (every 8th)")
    ap.add_argument("--per", type=int, default=8, help="synthetic images per diameter")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "scale_check.json")
    ap.add_argument("--dsb", choices=("trainval", "test", "all"), default=None, help="also measure dsb2018-fluo's part")
    ap.add_argument("--split", type=Path, default=None, help="with --dsb: the split ids from an earlier run's JSON")
    ap.add_argument("--resize", action="store_true", help="with --dsb: also estimate every image resized 0.5x and 2x")
    ap.add_argument("--shading", action="store_true", help="with --dsb: also estimate every image unevenly lit (SHADINGS)")
    args = ap.parse_args(argv)
    result = {"command": " ".join(sys.argv), "load_before": os.getloadavg(),
              "synthetic": synthetic_rows(args.per) if args.per else []}
    if IDCIA.is_dir() and args.images:
        result["idcia"] = real_rows(args.images)
    if args.dsb:
        result["dsb2018_fluo"] = dsb_rows(args.dsb, args.split, args.resize, args.shading)
        for key, g in result["dsb2018_fluo"]["groups"].items():
            cov = (f"; resized 0.5x / 2x: {100 * g['resized_0.5x_within_5']:.0f}% / {100 * g['resized_2x_within_5']:.0f}% "
                   f"read within 5% of half / twice" if args.resize else "")
            cov += "".join(f"; {name}: {100 * g[f'{name}_within_10']:.0f}% within 10%" for name in SHADINGS if args.shading)
            print(f"dsb2018-fluo {args.dsb} {key}: {g['images']} images, {100 * g['within_25']:.1f}% within 25% of the "
                  f"true median diameter, median ratio {g['median_ratio']}{cov}")
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
