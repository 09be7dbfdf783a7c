#!/usr/bin/env python
"""Train the counter shipped with cellxfer (``cellxfer/models/default_counter.safetensors``).

Redistributable by construction: trained only on images that cellxfer renders itself (regime
``synthetic`` of :func:`cellxfer.train.counter.train_counter`); no real pixel or label goes into it.
The shipped model (this script's defaults): a density UNet (stem 2, ReLU output, crop-count loss 0.01,
normalised values clipped at 3) trained for 40 epochs on 2,000 ``nuclei`` images (``--synth-set``:
diameters 6-16 px, defocused nuclei in up to half of the nuclei and drawn as negatives, the convention
of annotators who mark in-focus nuclei only); ``best`` is chosen on 100 held-out synthetic images.
Its nucleus diameter is measured on its training images by the current estimator when it is written
(:func:`ship`), so ``count --diameter auto`` rescales other magnifications to it. ``--arch log`` fits
the classical LoG detector on the same images instead. Afterwards the model is evaluated on the IDCIA 95
(``../shared/data/idcia-dapi-95``, the image without annotations excluded; research use only, never
trained on) and the MAE/RMSE/F1 are printed and written to ``WORK/default_counter_eval.json``, with the
MAE on the 19 test images of the benchmarks' split too.

    .venv/bin/python scripts/train_default_counter.py                  # the shipped model's settings
    .venv/bin/python scripts/train_default_counter.py --epochs 2 --n-synthetic 32 --out /tmp/m.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchlib import CC0_DAPI, IDCIA, REPO  # noqa: E402  (the scripts' shared module)
NUCLEI_SET = ("diameter=6:16", "label_defocused=false", "defocus_fraction=0:0.5")
UNANNOTATED = "220909_GFP-AHPC_D_MAP2ab_F4_DAPI_ND1_20x"  # see the data README: header, no rows


def ship(best: Path, synthetic: Path, out: Path, zoom: tuple[float, float] | None = None) -> float | None:
    """Write ``best`` to ``out`` with its nucleus diameter measured again on its synthetic training
    images by the current :func:`cellxfer.scale.estimate_diameter` (what ``count --diameter auto``
    compares images with; a run resumed after the estimator changed would otherwise keep an old value)."""
    from dataclasses import replace

    from cellxfer.counter.model import load_counter, save_counter
    from cellxfer.train.counter import domain_scale
    from cellxfer.train.data import load_domain

    model, meta = load_counter(best)
    scale = domain_scale(load_domain(synthetic, meta.normalization, "synthetic", ()), zoom)
    save_counter(out, model, replace(meta, **scale))
    return scale["diameter"]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "cellxfer" / "models" / "default_counter.safetensors")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "default-counter")
    ap.add_argument("--style", nargs="*", type=Path, default=[],
                    help=f"redistributable real images to histogram-match the synthetic images to, e.g. {CC0_DAPI.name} "
                         f"(the CC0 DAPI image of CellProfiler's ExampleHuman); default: as rendered")
    ap.add_argument("--arch", default="density", choices=("density", "log"),
                    help="density UNet, or the classical LoG detector fitted (sigma, threshold) on the same images")
    ap.add_argument("--method", default="nuclei", help="synthesizer: nuclei (realistic, randomised) or synhc (the paper's)")
    ap.add_argument("--synth-set", action="append", default=None, metavar="KEY=VALUE",
                    help="synthesizer parameter (like `cellxfer synth --set`), repeatable "
                         f"[default for nuclei: {' '.join(NUCLEI_SET)}]")
    ap.add_argument("--n-synthetic", type=int, default=2000)
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sigma", type=float, default=3.0)
    ap.add_argument("--base", type=int, default=8)
    ap.add_argument("--stem", type=int, default=2)
    ap.add_argument("--norm", default="batch", choices=("batch", "group", "none"), help="UNet normalisation layers")
    ap.add_argument("--count-weight", type=float, default=0.01, help="crop-count loss weight (train-count --count-weight)")
    ap.add_argument("--positive", action=argparse.BooleanOptionalAction, default=True, help="UNet output through a ReLU (density never negative)")
    ap.add_argument("--norm-min-snr", type=float, default=None, help="train-count --norm-min-snr (divisor floor in noise SDs)")
    ap.add_argument("--norm-clip", type=float, default=3.0, help="train-count --norm-clip (normalised values clipped above)")
    ap.add_argument("--zoom", type=lambda t: tuple(float(v) for v in t.split(":")), default=None, metavar="LOW:HIGH",
                    help="scale randomisation of the training crops (train-count --zoom)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device for training: cpu, cuda, cuda:1 (train-count --device)")
    ap.add_argument("--workers", type=int, default=0, help="processes rendering the synthetic sets (synth --workers)")
    ap.add_argument("--idcia", type=Path, default=IDCIA)
    args = ap.parse_args(argv)
    if args.synth_set is None:
        args.synth_set = list(NUCLEI_SET) if args.method == "nuclei" else []
    return args


def render_sets(args) -> tuple[Path, Path, list[Path]]:
    """The synthetic training and validation sets (rendered, optionally histogram-matched to --style)."""
    from cellxfer.options import make_config, parse_sets
    from cellxfer.plugins import get_registry
    from cellxfer.synth.base import run_synth

    reg = get_registry()
    synth = reg.get("cellxfer_synthesizers", args.method)
    synth_config = make_config(synth.config_cls, parse_sets(args.synth_set), f"synthesizer '{args.method}'")
    syn, val = args.work / "synthetic", args.work / "synthetic-val"
    run_synth(synth, synth_config, args.n_synthetic, syn, seed=args.seed, workers=args.workers)
    run_synth(synth, synth_config, args.n_val, val, seed=args.seed + 1000, workers=args.workers)
    style = [p for p in args.style if p.is_file() or p.is_dir()]
    if args.style and not style:
        raise SystemExit(f"error: style images not found: {', '.join(map(str, args.style))}; pass --style FILES, or --style alone for none")
    if not style:
        return syn, val, style
    from cellxfer.stylize.base import run_stylize
    from cellxfer.stylize.config import HistogramConfig

    hist = reg.get("cellxfer_stylizers", "histogram")
    for name in ("synthetic", "synthetic-val"):
        res = run_stylize(hist, HistogramConfig(), args.work / name, style, args.work / f"{name}-histogram", seed=args.seed)
        if res.failed:
            raise SystemExit(f"histogram matching failed for {len(res.failed)} images")
    return args.work / "synthetic-histogram", args.work / "synthetic-val-histogram", style


def train(args, syn: Path, val: Path) -> Path:
    """Train (or resume, or refit for --arch log) on the synthetic sets; returns the run folder."""
    from cellxfer.train.counter import TrainConfig, train_counter

    config = TrainConfig(regime="synthetic", out=args.work / ("run" if args.arch == "density" else f"run-{args.arch}"),
                         synthetic=syn, val=val, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
                         crop=args.crop, lr=args.lr, lr_schedule="cosine", sigma=args.sigma, count_weight=args.count_weight,
                         norm_clip=args.norm_clip, norm_min_snr=args.norm_min_snr, zoom=args.zoom, val_every=max(1, args.epochs // 10), seed=args.seed, resume=True, device=args.device,
                         extra={"arch_options": {"base": args.base, "stem": args.stem, "norm": args.norm, "positive": args.positive}})

    def on_epoch(r):
        if r.val_mae is not None:
            print(f"epoch {r.epoch}: {r.steps} steps, loss {r.loss:.4f}, synthetic val MAE {r.val_mae:.2f}, {r.seconds:.1f} s",
                  flush=True)

    return train_counter(config, on_epoch=on_epoch).out


def score_on_idcia(args) -> dict:
    """MAE/RMSE/F1 of ``args.out`` on the annotated IDCIA 95 (never trained or fitted on), and the MAE on
    the test images of the benchmarks' split (:mod:`cellxfer.evaluate.split`)."""
    from cellxfer.evaluate.run import EvaluateConfig, evaluate
    from cellxfer.evaluate.split import split_ids

    test = set(split_ids(args.idcia)["test"])
    ev = evaluate(EvaluateConfig(model=args.out, data=args.idcia, exclude=(UNANNOTATED,),
                                 out_csv=args.work / "idcia95-predictions.csv", engine="torch", overwrite=True))
    err = [abs(p - t) for id_, t, p in ev.rows if id_ in test]
    out = {"idcia95": {"images": len(ev.rows), **ev.metrics.as_dict(), "localisation": ev.localisation},
           "idcia_test19_mae": sum(err) / len(err)}
    m = out["idcia95"]
    print(f"IDCIA 95 ({m['images']} annotated real images, never used for training): MAE {m['mae']:.2f}, "
          f"RMSE {m['rmse']:.2f}, F1 {ev.localisation['f1']:.3f}; on the 19 test images of the benchmarks' split: "
          f"MAE {out['idcia_test19_mae']:.2f}")
    return out


def main(argv=None) -> int:
    from cellxfer.atomic import write_json

    args = parse_args(argv)
    t0 = time.perf_counter()
    syn, val, style = render_sets(args)
    print(f"{args.method}: {args.n_synthetic} training and {args.n_val} validation images"
          f"{', histogram-matched to ' + ', '.join(p.name for p in style) if style else ''} ({time.perf_counter() - t0:.0f} s)")
    run = train(args, syn, val)
    best = run / "best.safetensors"
    diameter = ship(best, syn, args.out, args.zoom)
    print(f"default counter: {args.out} ({args.out.stat().st_size / 2**10:.0f} KiB), from {best}; "
          f"nucleus diameter {diameter} px")
    keys = ("method", "synth_set", "n_synthetic", "n_val", "epochs", "batch_size", "crop", "lr", "sigma", "base", "stem",
            "norm", "count_weight", "positive", "norm_clip", "norm_min_snr", "zoom", "seed", "device")
    result = {"model": str(args.out), "arch": args.arch, "style": [str(p) for p in style],
              "train": {k: getattr(args, k) for k in keys} | {"regime": "synthetic"},
              "train_seconds": json.loads((run / "manifest.json").read_text())["result"]["train_seconds"],
              "command": " ".join(sys.argv)}
    if args.idcia.is_dir():
        result |= score_on_idcia(args)
    else:
        print(f"IDCIA data not found at {args.idcia}: no real-image MAE")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(args.work / "default_counter_eval.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
