#!/usr/bin/env python
"""Find point annotations that do not belong to their image, without any model.

For every labelled image of a dataset (IDCIA layout or cell dataset), the share of its annotated points
that sit on signal: the 5x5 neighbourhood maximum of the raw image above its median plus ``K`` times the
span from the median to the 99.5th percentile (relative to the image, so dim and bright fields alike). A correct table of nucleus centres scores close to 1
(median 0.99 on the IDCIA 95, 0.88-1.00 for 90 of its 94 tables: docs/data/check_annotations.json); a table that belongs to another image scores low on its own image and, if
that image is in the set, high on it. Prints the lowest-scoring tables with the best-matching other image
and writes the whole table as JSON. This is the evidence behind ``cellxfer.train.data.KNOWN_MISANNOTATED``.

    .venv/bin/python scripts/check_annotations.py --out docs/data/check_annotations.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchlib import IDCIA, SIGNAL_K as K, on_signal_mask, share_on_signal  # noqa: E402  (the scripts' shared module)


def main(argv=None) -> int:
    from cellxfer.dataset import CellDataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--data", type=Path, default=IDCIA)
    ap.add_argument("--out", type=Path, default=None, help="JSON with every image's scores")
    ap.add_argument("--show", type=int, default=8, help="how many of the lowest-scoring tables to print")
    args = ap.parse_args(argv)
    ds = CellDataset(args.data)
    masks, points = {}, {}
    for id_ in ds.ids:
        s = ds[id_]
        masks[id_] = on_signal_mask(s.image)
        if len(s.points):
            points[id_] = np.asarray(s.points, dtype=np.float64)
    rows = []
    for id_, pts in points.items():
        other = max(((share_on_signal(masks[o], pts), o) for o in masks if o != id_), default=(0.0, None))
        rows.append({"image": id_, "points": len(pts), "on_own": round(share_on_signal(masks[id_], pts), 3),
                     "best_other": other[1], "on_best_other": round(other[0], 3)})
    rows.sort(key=lambda r: r["on_own"])
    print(f"{args.data}: {len(rows)} annotated images; median share of points on signal {np.median([r['on_own'] for r in rows]):.2f}")
    print(f"{'on own':>7} {'points':>6}  image  (best other image: share)")
    for r in rows[:args.show]:
        print(f"{r['on_own']:7.2f} {r['points']:6d}  {r['image']}  ({r['best_other']}: {r['on_best_other']:.2f})")
    if args.out:
        args.out.write_text(json.dumps({"data": str(args.data), "k": K, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
