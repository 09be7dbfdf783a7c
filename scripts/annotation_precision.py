#!/usr/bin/env python
"""How precisely annotators clicked nucleus centres, and what localisation F1 that allows, without any model.

For every annotated point of a dataset (IDCIA layout), the centre of the nucleus under it is found from the
raw image in two independent ways:

* ``meanshift``: the intensity centroid (background-subtracted, Gaussian-smoothed sigma 1.5) of a disk of
  radius 6 px around the point, moved to that centroid and recomputed, 5 times;
* ``halfmax``: the centroid of the connected region above half-maximum (between the window's 10th
  percentile and the brightest pixel within 3 px of the point) that contains that brightest pixel, in a
  41 x 41 window.

It prints the mean signed offset (centre - point, x and y: a coordinate-convention shift would show there),
the distribution of the distance from each annotated point to its nucleus centre (all points,
and isolated ones: no other annotation within 15 px), and the localisation F1 (``cellxfer.density.match``,
one-to-one within R px) that an *oracle* detector would score: one that finds every annotated nucleus,
exactly once, at its centre. That is the ceiling of any counter that puts its points on nucleus centres,
whatever it was trained on. Writes the table as JSON.

    .venv/bin/python scripts/annotation_precision.py --out docs/data/annotation_precision.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchlib import IDCIA  # noqa: E402  (the scripts' shared module)

RADII = (3, 5, 7, 10)


def meanshift_centres(image: np.ndarray, points: np.ndarray, r: int = 6, steps: int = 5) -> np.ndarray:
    """(N, 2) x, y: each point moved ``steps`` times to the intensity centroid of the disk of radius ``r``
    around it (smoothed image minus the disk's minimum); points whose disk leaves the image stay put."""
    from scipy.ndimage import gaussian_filter

    im = gaussian_filter(np.asarray(image, dtype=np.float64), 1.5)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = xx ** 2 + yy ** 2 <= r * r
    out = np.array(points, dtype=np.float64).reshape(-1, 2)
    for p in out:
        for _ in range(steps):
            cx, cy = int(np.floor(p[0])), int(np.floor(p[1]))
            if cy - r < 0 or cx - r < 0 or cy + r + 1 > im.shape[0] or cx + r + 1 > im.shape[1]:
                break
            w = im[cy - r:cy + r + 1, cx - r:cx + r + 1]
            w = np.where(disk, w - w[disk].min(), 0.0)
            if w.sum() <= 0:
                break
            p[:] = (w * (xx + cx + 0.5)).sum() / w.sum(), (w * (yy + cy + 0.5)).sum() / w.sum()
    return out


def halfmax_centres(image: np.ndarray, points: np.ndarray, half: int = 20) -> np.ndarray:
    """(N, 2) x, y: centroid of the half-maximum region that holds the brightest pixel within 3 px of each
    point (in a ``2 half + 1`` window); points too near the border stay put."""
    from scipy.ndimage import center_of_mass, gaussian_filter, label

    im = gaussian_filter(np.asarray(image, dtype=np.float64), 1.0)
    out = np.array(points, dtype=np.float64).reshape(-1, 2)
    for p in out:
        cx, cy = int(np.floor(p[0])), int(np.floor(p[1]))
        if cy - half < 0 or cx - half < 0 or cy + half + 1 > im.shape[0] or cx + half + 1 > im.shape[1]:
            continue
        w = im[cy - half:cy + half + 1, cx - half:cx + half + 1]
        near = w[half - 3:half + 4, half - 3:half + 4]
        iy, ix = np.unravel_index(int(np.argmax(near)), near.shape)
        iy, ix = iy + half - 3, ix + half - 3
        low = float(np.percentile(w, 10))
        lab, _ = label(w > (low + w[iy, ix]) / 2)
        if lab[iy, ix] == 0:
            continue
        y, x = center_of_mass(lab == lab[iy, ix])
        p[:] = x + cx - half + 0.5, y + cy - half + 0.5
    return out


def measure(ds, ids, centres) -> dict:
    """Distance quantiles (all / isolated points) and the oracle detector's F1 by radius."""
    from scipy.spatial.distance import cdist

    from cellxfer.density.match import match_points

    dist, iso, offs, match = [], [], [], {r: None for r in RADII}
    for id_ in ids:
        s = ds[id_]
        t = np.asarray(s.points, dtype=np.float64).reshape(-1, 2)
        c = centres(np.asarray(s.image).squeeze(), t)
        d = np.hypot(*(c - t).T)
        offs.append(c - t)
        dd = cdist(t, t)
        np.fill_diagonal(dd, np.inf)
        dist.append(d)
        iso.append(d[dd.min(axis=1) > 15] if len(t) > 1 else d)
        for r in RADII:
            m = match_points(c, t, r)
            match[r] = m if match[r] is None else match[r] + m
    dist, iso, offs = np.concatenate(dist), np.concatenate(iso), np.concatenate(offs)
    q = (25, 50, 75, 90)
    return {"points": int(len(dist)), "distance_quantiles_px": dict(zip(map(str, q), np.percentile(dist, q).round(2).tolist())),
            "share_farther_than_5px": round(float((dist > 5).mean()), 3),
            "mean_offset_xy_px": offs.mean(axis=0).round(3).tolist(),  # centre - point: a convention shift shows here
            "isolated_points": int(len(iso)),
            "isolated_distance_quantiles_px": dict(zip(map(str, q), np.percentile(iso, q).round(2).tolist())),
            "oracle_f1": {str(r): round(m.f1, 3) for r, m in match.items()}}


def main(argv=None) -> int:
    from cellxfer.train.data import labelled_ids

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--data", type=Path, default=IDCIA)
    ap.add_argument("--out", type=Path, default=None, help="JSON with the table")
    args = ap.parse_args(argv)
    ds, ids = labelled_ids(args.data, (), role="evaluation")
    res = {name: measure(ds, ids, fn) for name, fn in (("meanshift", meanshift_centres), ("halfmax", halfmax_centres))}
    print(f"{args.data}: {len(ids)} annotated images")
    print(f"{'centre':>10} {'points':>7} {'mean dx,dy':>12} {'median px':>9} {'75th px':>8} {'> 5 px':>7}  oracle F1 @ "
          + " / ".join(f"{r} px" for r in RADII))
    for name, r in res.items():
        q = r["distance_quantiles_px"]
        dx, dy = r["mean_offset_xy_px"]
        print(f"{name:>10} {r['points']:7d} {dx:+6.2f},{dy:+5.2f} {q['50']:9.2f} {q['75']:8.2f} {r['share_farther_than_5px']:7.3f}  "
              + " / ".join(f"{r['oracle_f1'][str(k)]:.3f}" for k in RADII))
    if args.out:
        args.out.write_text(json.dumps({"data": str(args.data), "radii": list(RADII), "centres": res}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
