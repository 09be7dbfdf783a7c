#!/usr/bin/env python
"""Where a density counter puts its count: mass near annotated cells vs far from every one.

For each labelled image of ``--data`` (a cell dataset or IDCIA-layout folder), the model's stitched
density (as ``evaluate`` computes it) is split into the mass within ``--radius`` pixels of an annotated
centre ("near") and the rest ("far"), and the far mass again into its faint part (pixels below
``--faint`` per pixel) and the rest. A model that spreads a faint density over the background shows a
large faint-far mass: invisible to a pixel loss, but many cells once summed over a whole image.

    .venv/bin/python scripts/density_mass.py --model runs/r1/s1/unet-supervised/last.safetensors --data runs/r1/s0/idcia-val

Prints a markdown table and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def mass_split(density, points, radius: float, faint: float) -> dict:
    """``{"sum", "near", "far", "far_faint", "negative"}`` of a float (H, W) density and (N, 2) x, y points."""
    import numpy as np
    from scipy import ndimage as ndi

    mask = np.zeros(density.shape, bool)
    for x, y in np.asarray(points).reshape(-1, 2):
        mask[min(int(y), density.shape[0] - 1), min(int(x), density.shape[1] - 1)] = True
    far = ndi.distance_transform_edt(~mask) > radius if mask.any() else np.ones(density.shape, bool)
    d = density.astype(np.float64)
    return {"sum": d.sum(), "near": d[~far].sum(), "far": d[far].sum(),
            "far_faint": d[far & (np.abs(d) < faint)].sum(), "negative": d[d < 0].sum()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a density counter (.safetensors)")
    ap.add_argument("--data", type=Path, required=True, help="labelled images")
    ap.add_argument("--radius", type=float, default=12.0, help="'near' = within this many pixels of an annotated centre")
    ap.add_argument("--faint", type=float, default=0.002, help="'faint' = |density| below this, per pixel")
    ap.add_argument("--out", type=Path, default=Path("runs/density_mass.json"))
    args = ap.parse_args(argv)

    import torch

    from cellxfer.counter.model import load_counter
    from cellxfer.counter.model import torch_runner
    from cellxfer.count.parts import density_normalized
    from cellxfer.train.data import labelled_ids

    model, meta = load_counter(args.model)
    if meta.output != "density":
        print(f"error: {args.model}: not a density model (output {meta.output!r})", file=sys.stderr)
        return 2
    ds, ids = labelled_ids(args.data, (), role="evaluation")
    rows = []
    with torch.inference_mode():
        for id_ in ids:
            s = ds[id_]
            d = density_normalized(torch_runner(model), meta, meta.normalization.apply(s.image))
            rows.append({"image": id_, "true": s.count} | mass_split(d, s.points, args.radius, args.faint))
    lines = ["| image | true | predicted | near | far | far, faint | negative |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['true']} | {r['sum']:.1f} | {r['near']:.1f} | {r['far']:.1f} | "
                     f"{r['far_faint']:.1f} | {r['negative']:.1f} |")
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "model": str(args.model), "data": str(args.data),
                                    "radius": args.radius, "faint": args.faint, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
