"""Reproduce the LM-ADDA paper's experiments on the paired testbed (CPU-bounded), plus a real-data smoke test.

1. Render a phase-contrast -> DAPI source set (train) and, per shift, an unlabelled target set (adaptation)
   and a labelled target set (evaluation), all with different cell layouts (different seeds).
   Shifts: PC->BF, overexposure 1.5x / 2x / 3x, scaling 1.5x / 2x.
2. Train a source translator (pix2pix, narrow generator for the CPU; every size is an option).
3. Per shift: Pearson on the evaluation set with no adaptation, then with LM-ADDA at each layer of
   ``--layers`` (the last one, 16, is output-layer ADDA).
4. Real data: the source model on ``../shared/data/isl-condition-blue`` (phase z6 -> DAPI, 1024x1024,
   translated with 256 tiles, blended); Pearson of the whole field and of each 256 tile.

Writes JSON (``--json``) and prints a markdown table; ``--results-md`` appends it to docs/results.md.
Budget: see docs/results.md for the committed command and its wall time on 2 shared CPU cores (1 torch thread).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import ISL as _ISL, REPO  # noqa: E402  (the scripts' shared module)

ISL = _ISL / "images"

SHIFTS = {
    "pc->bf": dict(modality="bf"),
    "overexpose 1.5x": dict(overexpose=1.5),
    "overexpose 2x": dict(overexpose=2.0),
    "overexpose 3x": dict(overexpose=3.0),
    "scale 1.5x": dict(scale=1.5),
    "scale 2x": dict(scale=2.0),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_adapt"))
    ap.add_argument("--marker", default="dapi", choices=["dapi", "cd29"])
    ap.add_argument("--n-train", type=int, default=32)
    ap.add_argument("--n-adapt", type=int, default=24)
    ap.add_argument("--n-eval", type=int, default=8)
    ap.add_argument("--ngf", type=int, default=8)
    ap.add_argument("--ndf", type=int, default=16)
    ap.add_argument("--train-steps", type=int, default=400)
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--adapt-steps", type=int, default=40)
    ap.add_argument("--adapt-batch", type=int, default=2)
    ap.add_argument("--adapt-lr", type=float, default=2e-4)
    ap.add_argument("--train", default="upto", choices=["upto", "layer"], help="adapt --train: blocks 1..L or block L only")
    ap.add_argument("--layers", default="1,3,5,7,9,11,13,15,16")
    ap.add_argument("--shifts", default=",".join(SHIFTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse-model", action="store_true",
                    help="Continue/reuse the source model in --work (its checkpoint, same settings) instead of retraining.")
    ap.add_argument("--json", type=Path, default=REPO / "docs" / "bench_adapt.json")
    ap.add_argument("--results-md", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from cellxfer.synth.paired import PairedConfig, write_pairs
    from cellxfer.translate.adapt import AdaptConfig, _load_inputs, adapt_layer
    from cellxfer.translate.data import list_images, list_pairs
    from cellxfer.translate.infer import Translator, evaluate_pairs, summarize, torch_runner
    from cellxfer.translate.model import MODEL_FILE, load_translator
    from cellxfer.translate.train import TrainTranslateConfig, train_translator

    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    w = args.work
    layers = [int(x) for x in args.layers.split(",")]
    shifts = [s.strip() for s in args.shifts.split(",")]
    base = dict(marker=args.marker)
    write_pairs(PairedConfig(**base), args.n_train, w / "source_train", seed=args.seed, overwrite=not args.reuse_model)
    write_pairs(PairedConfig(**base), args.n_eval, w / "source_eval", seed=args.seed + 1000, overwrite=not args.reuse_model)
    t = time.perf_counter()
    train_translator(TrainTranslateConfig(pairs=str(w / "source_train"), out=str(w / "source_model"), steps=args.train_steps,
                                          batch_size=args.train_batch, ngf=args.ngf, ndf=args.ndf, seed=args.seed,
                                          threads=args.threads), resume=args.reuse_model)
    train_s = time.perf_counter() - t
    g, meta = load_translator(w / "source_model")

    def ev(gen, m, pairs):
        return summarize(evaluate_pairs(Translator(torch_runner(gen), m, "torch"), pairs))

    result = {"settings": vars(args) | {"json": str(args.json), "work": str(w), "results_md": str(args.results_md)},
              "train_seconds": round(train_s, 1), "source_in_domain": ev(g, meta, list_pairs(w / "source_eval")), "shifts": {}}
    print(f"source model: {train_s:.0f} s; in-domain Pearson {result['source_in_domain']['pearson']:.4f}", flush=True)
    src_arrays = _load_inputs(list_images(w / "source_train"), meta.input_norm, meta.size)
    for k, name in enumerate(shifts):
        cfg = PairedConfig(**base, **SHIFTS[name])
        adapt_dir, eval_dir = w / f"shift{k}_adapt", w / f"shift{k}_eval"
        write_pairs(cfg, args.n_adapt, adapt_dir, seed=args.seed + 1 + 10 * k, overwrite=True)
        write_pairs(cfg, args.n_eval, eval_dir, seed=args.seed + 2 + 10 * k, overwrite=True)
        eval_pairs = list_pairs(eval_dir)
        tgt_arrays = _load_inputs(list_images(adapt_dir), meta.input_norm, meta.size)
        row = {"none": ev(g, meta, eval_pairs)["pearson"]}
        for L in layers:
            acfg = AdaptConfig(model=str(w / "source_model"), source=str(w / "source_train"), target=str(adapt_dir),
                               out=str(w / f"shift{k}_layer{L:02d}"), layer=L, steps=args.adapt_steps,
                               batch_size=args.adapt_batch, lr=args.adapt_lr, lr_d=args.adapt_lr, ndf=args.ndf,
                               train=args.train, seed=args.seed, threads=args.threads)
            adapt_layer(acfg, g=g, meta=meta, source_arrays=src_arrays, target_arrays=tgt_arrays)
            ga, ma = load_translator(Path(acfg.out) / MODEL_FILE)
            row[str(L)] = ev(ga, ma, eval_pairs)["pearson"]
        inter = {L: v for L, v in row.items() if L not in ("none", str(meta.n_layers))}
        best_inter = max(inter, key=inter.get) if inter else None
        result["shifts"][name] = {"pearson": row, "best_intermediate_layer": best_inter,
                                  "intermediate_beats_output": bool(best_inter and str(meta.n_layers) in row
                                                                    and inter[best_inter] > row[str(meta.n_layers)])}
        print(name, json.dumps({k2: round(v, 4) for k2, v in row.items()}), flush=True)
    result["real_isl"] = real_smoke(w / "source_model")
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    table = markdown(result, layers, meta.n_layers)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.results_md:
        with open(args.results_md, "a") as f:
            f.write("\n" + table + "\n")
    return 0


def real_smoke(model) -> dict:
    """Pearson of the source translator on the real phase-contrast z6 -> DAPI field (tiles of 256)."""
    if not ISL.is_dir():
        return {"skipped": f"{ISL} not found"}
    from cellxfer.imageio import read_image
    from cellxfer.translate.data import to_unit
    from cellxfer.translate.infer import load
    from cellxfer.translate.metrics import pearson

    tr = load(model, "torch")
    phase = read_image(ISL / "phase_z6.png")
    dapi = read_image(ISL / "maxproj_DAPI_CONFOCAL.png")
    pred = to_unit(tr.translate(phase))
    tiles = [pearson(pred[y:y + 256, x:x + 256], dapi[y:y + 256, x:x + 256])
             for y in range(0, phase.shape[0] - 255, 256) for x in range(0, phase.shape[1] - 255, 256)]
    return {"field_pearson": pearson(pred, dapi), "tile_pearson_mean": float(np.nanmean(tiles)),
            "tile_pearson_min": float(np.nanmin(tiles)), "tile_pearson_max": float(np.nanmax(tiles)), "tiles": len(tiles)}


def markdown(result: dict, layers: list[int], n_layers: int) -> str:
    s = result["settings"]
    cols = ["none"] + [str(L) for L in layers]
    head = "| shift | no adaptation | " + " | ".join(f"L{L}" + (" (ADDA)" if L == n_layers else "") for L in layers) + " | best intermediate | beats output? |"
    lines = [head, "|" + "---|" * (len(cols) + 3)]
    for name, r in result["shifts"].items():
        p = r["pearson"]
        lines.append(f"| {name} | " + " | ".join(f"{p[c]:.3f}" for c in cols) +
                     f" | L{r['best_intermediate_layer']} | {'yes' if r['intermediate_beats_output'] else 'no'} |")
    real = result.get("real_isl", {})
    real_line = (f"Real data (isl-condition-blue, phase z6 -> DAPI, 1024x1024, source model trained on the testbed only): "
                 f"field Pearson {real['field_pearson']:.3f}; 256-tile Pearson mean {real['tile_pearson_mean']:.3f} "
                 f"(min {real['tile_pearson_min']:.3f}, max {real['tile_pearson_max']:.3f}, {real['tiles']} tiles)."
                 if "field_pearson" in real else f"Real data: {real.get('skipped')}")
    return ("Pearson (predicted vs true " + s["marker"].upper() + f" pixels, mean over {s['n_eval']} held-out testbed images) "
            f"after LM-ADDA at layer L; source model in-domain Pearson {result['source_in_domain']['pearson']:.3f}; "
            f"ngf {s['ngf']}, {s['train_steps']} training steps, {s['adapt_steps']} adaptation steps per layer "
            f"(lr {s['adapt_lr']:g}, trained blocks: {'1..L' if s['train'] == 'upto' else 'L only'}); "
            f"total {result['seconds']:.0f} s.\n\n" + "\n".join(lines) + "\n\n" + real_line)


if __name__ == "__main__":
    sys.exit(main())
