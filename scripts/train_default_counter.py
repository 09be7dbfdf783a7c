#!/usr/bin/env python
"""Train the counter shipped with cellxfer (``cellxfer/models/default_counter.safetensors``).

A density UNet (stem 2, ReLU output, crop-count loss 0.01, normalised values clipped at 3) that sees
nuclei of ``--scale-to`` pixels (as measured by :func:`cellxfer.scale.estimate_diameter`): every training
image, synthetic or real, is resized so that its estimated nucleus diameter lands at a log-uniform draw
in that range, the same estimate ``count --diameter auto`` resizes the user's images with, so the model
knows exactly the sizes ``count`` brings images to. ``--regime`` picks the data, as in ``train-count``:

- ``synthetic``: ``--n-synthetic`` images of cellxfer's own ``nuclei`` synthesizer only (``--synth-set``);
- ``supervised``: the training part of ``--real`` (dsb2018-fluo: many labs and microscopes; split by
  :func:`cellxfer.evaluate.split.stratified_split_ids`, 60/20/20 per image-size group);
- ``dacs``: both, each real crop CutMixed with a synthetic one half the time (the paper's DACS).

Checkpoints are chosen on the validation part of ``--real``, resized as ``count`` would resize it; the
test part is never read here. The run's settings, data provenance and scores are written to
``WORK/default_counter_eval.json`` (the IDCIA 95, research use only, is scored if present, never trained on).

    .venv/bin/python scripts/train_default_counter.py --regime dacs --work runs/dc-dacs
    .venv/bin/python scripts/train_default_counter.py --regime synthetic --epochs 2 --n-synthetic 32 --out /tmp/m.safetensors

The shipped model (issue 25, chosen on dsb2018-fluo's validation part against this script's synthetic,
supervised and dacs runs: ``docs/benchmarks/accuracy.md``) keeps the weights of the previous default (40 epochs on
2,000 ``nuclei`` images of 6-16 px, defocused nuclei unlabelled; trained at commit a70c752) with its nucleus size
measured again by the current estimator on 64 images of that recipe rendered by that commit's synthesizer::

    git worktree add --detach ../old a70c752
    PYTHONPATH=../old .venv/bin/python -m cellxfer synth --method nuclei --n 64 --set diameter=6:16 \
        --set label_defocused=false --set defocus_fraction=0:0.5 --out runs/old-synth64
    git show a70c752:cellxfer/models/default_counter.safetensors > runs/old-default.safetensors
    .venv/bin/python scripts/train_default_counter.py --remeasure runs/old-default.safetensors --training-set runs/old-synth64 \
        --count-at 13 --count-blobs 0.0015:0.25:1 --norm-min-levels 16 --norm-max-top MAX_TOP
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchlib import CC0_DAPI, DATA, IDCIA, REPO  # noqa: E402  (the scripts' shared module)
NUCLEI_SET = ("diameter=7:28", "label_defocused=false", "defocus_fraction=0:0.5")
DSB = DATA / "dsb2018-fluo"
UNANNOTATED = "220909_GFP-AHPC_D_MAP2ab_F4_DAPI_ND1_20x"  # see the data README: header, no rows
COUNT_AT_HOW = ("chosen on validation images (dsb2018-fluo's validation part by size group, and the IDCIA 90): "
                "docs/benchmarks/accuracy-log.md, 'One counting size' and 'The estimate less its blur rim'")

NORM_HOW = {  # how each normalisation field the shipped counter sets was chosen (extra["<field>_choice"])
    "min_levels": "chosen on dsb2018-fluo's validation part and the IDCIA 90, whole and resized 0.5x / 2x: "
                  "docs/benchmarks/accuracy-log.md, 'Dim sparse fields'",
    "max_top": "chosen on dsb2018-fluo's validation part and the IDCIA 90, whole, resized 0.5x / 2x, blurred and "
               "halved to float: docs/benchmarks/accuracy-log.md, 'Sparse fields in any encoding'",
    "lift": "chosen on dsb2018-fluo's validation part and the IDCIA 90, as they are and with a tenth of the nuclei 5x "
            "brighter, confirmed on the training part: docs/benchmarks/accuracy-log.md, 'Fields of mixed brightness lifted'",
}
BLOBS_HOW = ("chosen on dsb2018-fluo's training and validation parts by size group and the IDCIA 90, among blob "
             "rules and the map's sum: docs/benchmarks/accuracy-log.md, 'Counting the map's blobs'")


def ship(best: Path, training: Path, out: Path, count_at: float | None = None, blobs: str | None = None,
         norm: dict | None = None) -> dict:
    """Write ``best`` to ``out`` with its nucleus size measured again on its (rescaled) training images by
    the current :func:`cellxfer.scale.estimate_diameter` (what ``count --diameter auto`` compares images with;
    a run resumed after the estimator changed would otherwise keep an old value). ``count_at``: the diameter
    it counts at (``CounterMeta.diameter``) when chosen on validation images instead of the training median;
    both are recorded in ``extra["diameter_choice"]``. ``blobs``: the blob rule it counts by
    (``LEVEL:LO:HI``, :class:`cellxfer.density.blobs.BlobRule`; None: the map's sum), recorded with how it
    was chosen in ``extra["blobs_choice"]``. ``norm``: fields of the normalisation chosen on validation images
    (``Normalization.min_levels``, ``max_top``, ``lift``: :data:`NORM_HOW`), each recorded with how it was chosen in
    ``extra["<field>_choice"]``."""
    from dataclasses import replace

    from cellxfer.counter.model import load_counter, save_counter
    from cellxfer.train.counter import domain_scale
    from cellxfer.train.data import load_domain

    model, meta = load_counter(best)
    scale = domain_scale(load_domain(training, meta.normalization, "training", ()))
    extra = {k: v for k, v in meta.extra.items() if not k.endswith("_choice")}  # this call's choices replace them
    if count_at is not None:
        extra["diameter_choice"] = {"training_median": scale["diameter"], "counts_at": count_at, "how": COUNT_AT_HOW}
        scale = scale | {"diameter": count_at}
    rule = None
    if blobs is not None:
        from cellxfer.density.blobs import BlobRule

        rule = BlobRule.parse(blobs)
        extra["blobs_choice"] = {"rule": blobs, "how": BLOBS_HOW}
    extra |= {f"{k}_choice": {k: v, "how": NORM_HOW[k]} for k, v in (norm or {}).items()}
    normalization = replace(meta.normalization, **(norm or {}))
    save_counter(out, model, replace(meta, **scale, blobs=rule, normalization=normalization, extra=extra))
    return scale


def norm_choices(args) -> dict:
    """The normalisation fields given on the command line (``--norm-min-levels``, ``--norm-max-top``, ``--norm-lift``)."""
    given = (("min_levels", args.norm_min_levels), ("max_top", args.norm_max_top), ("lift", args.norm_lift))
    return {k: v for k, v in given if v is not None}


def _range(text: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in text.split(":"))
    return lo, hi


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "cellxfer" / "models" / "default_counter.safetensors")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "default-counter")
    ap.add_argument("--regime", default="dacs", choices=("synthetic", "supervised", "dacs"))
    ap.add_argument("--real", type=Path, default=DSB, help="labelled real images from many microscopes (dsb2018-fluo)")
    ap.add_argument("--scale-to", type=_range, default=(10.0, 18.0), metavar="LO:HI",
                    help="estimated nucleus diameters (px) every training image is resized into")
    ap.add_argument("--style", nargs="*", type=Path, default=[],
                    help=f"redistributable real images to histogram-match the synthetic images to, e.g. {CC0_DAPI.name}")
    ap.add_argument("--method", default="nuclei", help="synthesizer: nuclei (realistic, randomised) or synhc (the paper's)")
    ap.add_argument("--synth-set", action="append", default=None, metavar="KEY=VALUE",
                    help=f"synthesizer parameter (like `cellxfer synth --set`), repeatable [default for nuclei: {' '.join(NUCLEI_SET)}]")
    ap.add_argument("--n-synthetic", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=None, help="default: about --steps optimizer steps")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--val-every", type=int, default=None, help="epochs between validations (default: about 15 in the run)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sigma", type=float, default=3.0)
    ap.add_argument("--base", type=int, default=8)
    ap.add_argument("--stem", type=int, default=2)
    ap.add_argument("--norm", default="batch", choices=("batch", "group", "none"), help="UNet normalisation layers")
    ap.add_argument("--count-weight", type=float, default=0.01, help="crop-count loss weight (train-count --count-weight)")
    ap.add_argument("--norm-clip", type=float, default=3.0, help="train-count --norm-clip (normalised values clipped above)")
    ap.add_argument("--photometric", type=float, default=0.0,
                    help="train-count --photometric: strength of the crops' gain, gamma, blur and noise (0 = off)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device for training: cpu, cuda, cuda:1 (train-count --device)")
    ap.add_argument("--workers", type=int, default=0, help="processes rendering the synthetic sets (synth --workers)")
    ap.add_argument("--init", type=Path, default=None, metavar="MODEL",
                    help="start from this counter's weights (fine-tune; its architecture options are used) instead of at random")
    ap.add_argument("--idcia", type=Path, default=IDCIA)
    ap.add_argument("--remeasure", type=Path, default=None, metavar="MODEL",
                    help="train nothing: write MODEL to --out with its nucleus size measured again by the current "
                         "estimator on --training-set (a counter trained before the estimator changed)")
    ap.add_argument("--training-set", type=Path, default=None, help="with --remeasure: images of the model's training recipe")
    ap.add_argument("--count-at", type=float, default=None, metavar="PX",
                    help="the diameter the shipped counter counts at, chosen on validation images (default: its training median)")
    ap.add_argument("--norm-min-levels", type=float, default=None, metavar="K",
                    help="the shipped counter's normalisation floor in grey-level steps (Normalization.min_levels), "
                         "chosen on validation images (default: none)")
    ap.add_argument("--norm-max-top", type=float, default=None, metavar="V",
                    help="the shipped counter's bound on the normalised 99.9th percentile (Normalization.max_top), "
                         "chosen on validation images (default: none)")
    ap.add_argument("--norm-lift", type=float, default=None, metavar="POWER",
                    help="the shipped counter's lift of mid-tones in fields of mixed brightness (Normalization.lift), "
                         "chosen on validation images (default: none)")
    ap.add_argument("--count-blobs", default=None, metavar="LEVEL:LO:HI",
                    help="the blob rule the shipped counter reads its map by (cellxfer.density.blobs.BlobRule), "
                         "chosen on validation images (default: none, the map's sum)")
    args = ap.parse_args(argv)
    if args.count_blobs is not None:
        from cellxfer.density.blobs import BlobRule

        try:
            BlobRule.parse(args.count_blobs)
        except ValueError as exc:
            ap.error(f"--count-blobs: {exc}")
    args.arch = {"base": args.base, "stem": args.stem, "norm": args.norm, "positive": True}
    if args.init is not None:  # fine-tune: the architecture is the given counter's (recorded as such, not the defaults)
        from cellxfer.counter.model import load_counter

        args.arch = dict(load_counter(args.init)[1].arch_options)
        args.base, args.stem, args.norm = (args.arch.get(k, getattr(args, k)) for k in ("base", "stem", "norm"))
    if args.synth_set is None:
        args.synth_set = list(NUCLEI_SET) if args.method == "nuclei" else []
    return args


def rescale_set(src: Path, ids: list[str], out: Path, scale_to: tuple[float, float], seed: int, draw: bool) -> Path:
    """A cell dataset ``out`` of ``src``'s images ``ids`` resized so that each one's estimated nucleus diameter
    lands in ``scale_to``: at a seeded log-uniform draw (``draw``, training) or, as ``count`` does, at one size,
    the range's geometric middle (the median of the draws, which the shipped counter records as the size it
    counts at: validation). Points move with their image. Resumable."""
    import numpy as np

    from cellxfer.atomic import write_json
    from cellxfer.dataset import CellDataset, CellDatasetWriter
    from cellxfer.scale import estimate_diameter, resize_to

    ds, writer = CellDataset(src), CellDatasetWriter(out, masks=False)
    lo, hi = scale_to
    for k, id_ in enumerate(ids):
        if writer.is_done(id_):
            continue
        sample = ds[id_]
        d = estimate_diameter(sample.image).diameter
        if draw:
            target = float(np.exp(np.random.default_rng([seed, k]).uniform(np.log(lo), np.log(hi))))
        else:
            target = float(np.sqrt(lo * hi))
        scaled = resize_to(sample.image, target / d, d) if d else None
        image = sample.image if scaled is None else scaled.image
        points = sample.points if scaled is None else sample.points / np.array([scaled.sx, scaled.sy])
        writer.write(id_, image, np.minimum(points, np.array(image.shape[::-1]) - 1e-6))
    writer.finalize({"stage": "rescale", "source": str(src), "ids": len(ids), "scale_to": list(scale_to),
                     "draw": "log-uniform per image" if draw else "the range's geometric middle (as count)", "seed": seed})
    write_json(out / "ids.json", sorted(ids))
    return out


def real_sets(args) -> dict:
    """The training and validation parts of ``--real`` rescaled into ``--scale-to`` (the test part is not read)."""
    from cellxfer.evaluate.split import stratified_split_ids

    split = stratified_split_ids(args.real)
    return {"train": rescale_set(args.real, split["train"], args.work / "real-train", args.scale_to, args.seed, True),
            "val": rescale_set(args.real, split["val"], args.work / "real-val", args.scale_to, args.seed, False),
            "split": {k: len(split[k]) for k in ("train", "val", "test")}}


def synthetic_set(args) -> Path:
    """The synthetic training set: rendered (optionally histogram-matched to --style), then rescaled."""
    from cellxfer.options import make_config, parse_sets
    from cellxfer.plugins import get_registry
    from cellxfer.synth.base import run_synth

    reg = get_registry()
    synth = reg.get("cellxfer_synthesizers", args.method)
    synth_config = make_config(synth.config_cls, parse_sets(args.synth_set), f"synthesizer '{args.method}'")
    syn = args.work / "synthetic"
    run_synth(synth, synth_config, args.n_synthetic, syn, seed=args.seed, workers=args.workers)
    style = [p for p in args.style if p.is_file() or p.is_dir()]
    if args.style and not style:
        raise SystemExit(f"error: style images not found: {', '.join(map(str, args.style))}")
    if style:
        from cellxfer.stylize.base import run_stylize
        from cellxfer.stylize.config import HistogramConfig

        res = run_stylize(reg.get("cellxfer_stylizers", "histogram"), HistogramConfig(), syn, style,
                          args.work / "synthetic-histogram", seed=args.seed)
        if res.failed:
            raise SystemExit(f"histogram matching failed for {len(res.failed)} images")
        syn = args.work / "synthetic-histogram"
    from cellxfer.dataset import CellDataset

    return rescale_set(syn, CellDataset(syn).ids, args.work / "synthetic-rescaled", args.scale_to, args.seed + 1, True)


def train(args, real: Path | None, syn: Path | None, val: Path) -> Path:
    """Train (or resume) on the rescaled sets; returns the run folder."""
    from cellxfer.dataset import CellDataset
    from cellxfer.train.counter import TrainConfig, train_counter

    per_epoch = max(1, len(CellDataset(real if real else syn).ids) // args.batch_size)
    epochs = args.epochs or max(1, round(args.steps / per_epoch))
    config = TrainConfig(regime=args.regime, out=args.work / f"run-{args.regime}", real=real, synthetic=syn, val=val, arch="density",
                         epochs=epochs, batch_size=args.batch_size, crop=args.crop, lr=args.lr, lr_schedule="cosine",
                         sigma=args.sigma, count_weight=args.count_weight, norm_clip=args.norm_clip, ema=0.999, photometric=args.photometric,
                         val_every=args.val_every or max(1, epochs // 15), seed=args.seed, resume=True, device=args.device,
                         pretrained=args.init, init_head_bias=args.init is None, extra={"arch_options": args.arch})

    def on_epoch(r):
        if r.val_mae is not None:
            print(f"epoch {r.epoch}: {r.steps} steps, loss {r.loss:.4f}, val MAE {r.val_mae:.2f}, {r.seconds:.1f} s", flush=True)

    return train_counter(config, on_epoch=on_epoch).out


def score_on_idcia(args) -> dict:
    """MAE/RMSE/F1 of ``args.out`` on the annotated IDCIA 95 (never trained or fitted on)."""
    from cellxfer.evaluate.run import EvaluateConfig, evaluate

    ev = evaluate(EvaluateConfig(model=args.out, data=args.idcia, exclude=(UNANNOTATED,),
                                 out_csv=args.work / "idcia95-predictions.csv", engine="torch", overwrite=True))
    m = {"images": len(ev.rows), **ev.metrics.as_dict(), "localisation": ev.localisation}
    print(f"IDCIA 95 ({m['images']} annotated real images, never used for training): MAE {m['mae']:.2f}, "
          f"RMSE {m['rmse']:.2f}, F1 {ev.localisation['f1']:.3f}")
    return {"idcia95": m}


def main(argv=None) -> int:
    from cellxfer.atomic import write_json

    args = parse_args(argv)
    if args.remeasure is not None:
        if args.training_set is None:
            raise SystemExit("error: --remeasure needs --training-set (images of the model's training recipe)")
        scale = ship(args.remeasure, args.training_set, args.out, args.count_at, args.count_blobs, norm_choices(args))
        print(f"{args.out}: {args.remeasure}'s weights, nucleus diameter {scale['diameter']} px, range {scale['diameter_range']}")
        return 0
    t0 = time.perf_counter()
    if not args.real.is_dir():  # every regime chooses its checkpoints on --real's validation part
        raise SystemExit(f"error: {args.real}: the validation images are chosen on come from --real; give it")
    real = real_sets(args)
    syn = synthetic_set(args) if args.regime != "supervised" else None
    print(f"data ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    run = train(args, real["train"] if args.regime != "synthetic" else None, syn, real["val"])
    scale = ship(run / "best.safetensors", real["train"] if args.regime != "synthetic" else syn, args.out, args.count_at,
                 args.count_blobs, norm_choices(args))
    print(f"default counter: {args.out} ({args.out.stat().st_size / 2**10:.0f} KiB), from {run / 'best.safetensors'}; "
          f"nucleus diameter {scale['diameter']} px, range {scale['diameter_range']}")
    keys = ("regime", "scale_to", "method", "synth_set", "n_synthetic", "epochs", "steps", "batch_size", "crop", "lr",
            "sigma", "base", "stem", "norm", "count_weight", "norm_clip", "photometric", "seed", "device", "init")
    result = {"model": str(args.out), "arch": "density",
              "train": {k: str(v) if isinstance(v := getattr(args, k), Path) else v for k in keys} | {"real": str(args.real) if args.regime != "synthetic" else None,
                                                              "real_split": real["split"], "val": str(real["val"])},
              "provenance": ("dsb2018-fluo stage1_train (CC0 as stated; Caicedo et al. 2019) training part"
                             if args.regime != "synthetic" else "cellxfer-rendered images only")
                            + ("" if args.regime == "supervised" else f" + {args.n_synthetic} {args.method} images"),
              "train_seconds": json.loads((run / "manifest.json").read_text())["result"]["train_seconds"],
              "command": " ".join(sys.argv)}
    if args.idcia.is_dir():
        result |= score_on_idcia(args)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(args.work / "default_counter_eval.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
