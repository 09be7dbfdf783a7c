#!/usr/bin/env python
"""Density counter vs the classical LoG baseline on held-out real IDCIA images (issue 7).

``--train-on-val`` retrains a recipe chosen on the validation images on training + validation
images and reports its last weights (cosine schedule, no selection). ``--seeds 0 1 2`` trains the
recipe once per seed and adds an ``ensemble`` row (``cellxfer ensemble`` of the seeds' models); runs of
single seeds can train side by side first (one process per seed, same ``--work``): the ensemble
command then finds them trained. ``--val-only`` reports on the validation images and never reads the
test images: the mode for choosing a recipe.

Split: exactly the split of ``scripts/bench_sim2real.py`` (imported from there, the one place it is
defined): the 94 annotated IDCIA images, seed 2025, 19 test / 15 validation / 60 training. Nothing is
trained or tuned on the test images; the LoG fits its sigma and threshold on the training images, the
density network picks its best checkpoint on the validation images.

Rows: ``log`` (fitted on the regime's labelled training images) and ``density`` for each regime asked.
Each density run trains ``--epochs`` epochs on a cosine learning-rate schedule, validating every
``--val-every`` epochs; an interrupted run resumes exactly when the same command is run again.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_density.py --work runs/density --regimes supervised

On shared, oversubscribed cores one torch thread trains about 5x faster than two (measured).

Writes ``WORK/results-<rows>.json`` and ``.md`` (``<rows>`` names the regimes and stylizers asked, so
runs sharing a work folder keep their own files); prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchlib import IDCIA, REPO, make_split, synhc  # noqa: F401  (the scripts' shared module)
from cellxfer.evaluate.split import SPLIT_SEED
from cellxfer.train.sampler import REGIMES

DATA_SEED = 0  # Syn-HC generation and stylizers: the same data for every training seed


def slug(stylizer: str) -> str:
    """``fda:beta=0.1`` -> ``fda-beta0.1``: for folder and file names."""
    return stylizer.replace(":", "-").replace("=", "").replace(";", "-")


def tag(regime: str, stylizer: str) -> str:
    return regime if regime == "supervised" or stylizer == "none" else f"{regime}-{slug(stylizer)}"


def syn_sets(work: Path, args, stylizer: str) -> tuple[Path, Path]:
    """Syn-HC training and validation sets, stylized toward the IDCIA *training* images (never val/test)."""
    sets = (work / f"synhc-{args.synthetic_n}", work / f"synhc-val-{args.synthetic_val_n}")
    if stylizer == "none":
        return sets
    from cellxfer.options import make_config
    from cellxfer.plugins import get_registry
    from cellxfer.stylize.base import run_stylize

    name, _, opts = stylizer.partition(":")
    st = get_registry().get("cellxfer_stylizers", name)
    cfg = make_config(st.config_cls, dict(kv.split("=", 1) for kv in opts.split(";") if kv), f"stylizer '{name}'")
    style = sorted((work / "idcia-train" / "images").iterdir())
    out = []
    for src in sets:
        dest = src.with_name(f"{src.name}-{slug(stylizer)}")
        if src.is_dir():
            res = run_stylize(st, cfg, src, style, dest, seed=args.seed)
            if res.failed:
                raise SystemExit(f"stylize {stylizer}: {len(res.failed)} images failed")
        out.append(dest)
    return out[0], out[1]


def density_config(regime: str, work: Path, args, stylizer: str = "none", seed: int | None = None):
    from cellxfer.train.counter import TrainConfig

    seed = args.seeds[0] if seed is None else seed
    syn, syn_val = syn_sets(work, args, stylizer) if regime != "supervised" else (None, None)
    return TrainConfig(
        regime=regime, out=work / f"unet-{tag(regime, stylizer)}{'-trainval' if args.train_on_val else ''}{f'-seed{seed}' if seed else ''}",
        real=None if regime == "synthetic" else work / ("idcia-trainval" if args.train_on_val else "idcia-train"),
        synthetic=syn, val=syn_val if regime == "synthetic" else None if args.train_on_val else work / "idcia-val",
        arch="density", epochs=args.synthetic_epochs if regime == "synthetic" else args.epochs,
        pre_epochs=args.synthetic_epochs if regime == "finetune" else None, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule, ema=args.ema,
        crop=args.crop, sigma=args.sigma, count_weight=args.count_weight, norm_high=args.norm_high,
        val_every=args.val_every, seed=seed, resume=True, pretrained=args.pretrained,
        extra={"arch_options": {"base": args.base, "stem": args.stem, "norm": args.norm, "positive": args.positive}})


def train(regime: str, work: Path, args, stylizer: str = "none", seed: int | None = None) -> Path:
    """One training run (resumed exactly if interrupted: rerun the same command)."""
    from cellxfer.train.counter import train_counter

    return train_counter(density_config(regime, work, args, stylizer, seed), on_epoch=lambda r: print(
        f"  density {regime} epoch {r.epoch} loss {r.loss:.4f} val MAE "
        f"{'-' if r.val_mae is None else f'{r.val_mae:.2f}'} ({r.seconds:.1f} s)", flush=True)).out


def checkpoint(part: str) -> str:
    """Best-on-validation weights for test rows; last weights for validation rows (a checkpoint picked on
    the validation images would flatter them)."""
    return "last.safetensors" if part == "val" else "best.safetensors"


def evaluate_row(name: str, regime: str, run: Path, work: Path, part: str = "test", model: Path | None = None,
                 members: list[Path] = ()) -> dict:
    """Metrics of ``model`` (default: the run's :func:`checkpoint`) on the split's ``part`` images; an
    ensemble row (``members``: their run folders) reports the members' summed training time."""
    from cellxfer.evaluate.run import EvaluateConfig, evaluate

    manifests = [json.loads((r / "manifest.json").read_text()) for r in (members or [run])]
    model = model or run / checkpoint(part)
    res = evaluate(EvaluateConfig(model=model, data=work / f"idcia-{part}", out_csv=run / f"{part}-predictions-{model.stem}.csv", engine="torch", overwrite=True))
    result = manifests[0]["result"]
    return {"model": name, "regime": regime, "run": str(run), "epochs": result["epochs"], "evaluated_on": part,
            "train_seconds": sum(m["result"]["train_seconds"] for m in manifests), "best": result["best"],
            "seeds": [m["config"]["seed"] for m in manifests],
            "test": res.metrics.as_dict(), "localisation": res.localisation,
            "eval_seconds_per_image": round(res.seconds / res.metrics.n, 3),
            "fitted": {k: v for k, v in (manifests[0].get("fitted") or {}).items() if k != "grid"} or None}


def ensemble_row(regime: str, runs: list[Path], work: Path, part: str) -> dict:
    """``cellxfer ensemble`` of the runs' :func:`checkpoint`, evaluated like a single model."""
    from cellxfer.counter.ensemble import EnsembleConfig, make_ensemble

    seeds = "-".join(str(json.loads((r / "manifest.json").read_text())["config"]["seed"]) for r in runs)
    out = make_ensemble(EnsembleConfig(models=tuple(r / checkpoint(part) for r in runs),
                                       out=work / f"ensemble-{runs[0].name}-seeds{seeds}-{part}.safetensors"))
    return evaluate_row(f"density ensemble of {len(runs)}", regime, runs[0], work, part, model=out, members=runs)


def fit_log(regime: str, work: Path, args, stylizer: str = "none") -> Path:
    from cellxfer.train.counter import TrainConfig, train_counter

    syn = syn_sets(work, args, stylizer)[0] if regime != "supervised" else None
    cfg = TrainConfig(regime=regime, out=work / f"log-{tag(regime, stylizer)}", real=None if regime == "synthetic" else work / "idcia-train",
                      synthetic=None if regime == "supervised" else syn,
                      val=None if regime == "synthetic" else work / "idcia-val", arch="log", crop=256, overwrite=True)
    return train_counter(cfg).out


def table(rows: list[dict]) -> str:
    part = rows[0].get("evaluated_on", "test") if rows else "test"
    lines = [f"| model | regime | stylizer | seeds | epochs | train time | {part} MAE | {part} RMSE | ACP (5%) | F1 @ 5 px | precision | recall | s / image (torch) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, loc = r["test"], r["localisation"] or {}
        f = lambda k: f"{loc[k]:.3f}" if k in loc else "-"  # noqa: E731
        lines.append(f"| {r['model']} | {r['regime']} | {r.get('stylizer', 'none')} | {' '.join(map(str, r.get('seeds', [])))} | {r['epochs']} | {r['train_seconds'] / 60:.1f} min | {t['mae']:.2f} | "
                     f"{t['rmse']:.2f} | {100 * t['acp']:.0f}% | {f('f1')} | {f('precision')} | {f('recall')} | "
                     f"{r['eval_seconds_per_image']:.2f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/density"))
    ap.add_argument("--regimes", nargs="+", choices=REGIMES, default=["supervised"])
    ap.add_argument("--log-regimes", nargs="*", choices=("supervised", "synthetic"), default=["supervised"])
    ap.add_argument("--no-density", action="store_true", help="only the LoG rows")
    ap.add_argument("--stylizers", nargs="+", default=["none"],
                    help="Syn-HC as is (none) and/or stylized toward the IDCIA training images, e.g. histogram fda:beta=0.1 "
                         "(rows of the regimes that use synthetic data)")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--synthetic-epochs", type=int, default=100,
                    help="epochs over the Syn-HC set: regime synthetic, and the first phase of finetune")
    ap.add_argument("--val-every", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-schedule", default="cosine", choices=("cosine", "constant"))
    ap.add_argument("--ema", type=float, default=0.0, help="weight moving-average decay (0 = off)")
    ap.add_argument("--norm", default="batch", choices=("group", "batch", "none"), help="UNet normalisation layers")
    ap.add_argument("--norm-high", type=float, default=99.5, help="intensity normalisation high percentile")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--sigma", type=float, default=3.0)
    ap.add_argument("--count-weight", type=float, default=0.0, help="weight of the crop-count loss (train-count --count-weight)")
    ap.add_argument("--base", type=int, default=8, help="UNet channels at full resolution")
    ap.add_argument("--stem", type=int, default=2, help="UNet input pooling factor (density upsampled back)")
    ap.add_argument("--positive", action="store_true", help="UNet output through a ReLU (density never negative)")
    ap.add_argument("--pretrained", type=Path, help="start from these weights (e.g. an earlier run's last.safetensors)")
    ap.add_argument("--synthetic-n", type=int, default=256)
    ap.add_argument("--synthetic-val-n", type=int, default=32)
    ap.add_argument("--train-on-val", action="store_true",
                    help="train the real-data regimes on training + validation images (75) and keep the last "
                         "weights: for a recipe already chosen on the validation images; test images stay unseen")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="training seed(s) of the density runs; several add an ensemble row")
    ap.add_argument("--json", type=Path, default=None, help="also write the results JSON here")
    ap.add_argument("--val-only", action="store_true",
                    help="report on the validation images, never read the test images (for choosing a recipe)")
    args = ap.parse_args(argv)
    args.seed = DATA_SEED
    if args.val_only and args.train_on_val:
        ap.error("--val-only with --train-on-val would report on training images")
    return args


def prepare(work: Path, args) -> dict:
    """The split's folders under ``work`` (``idcia-trainval`` included, for ``--train-on-val``); returns the split."""
    work.mkdir(parents=True, exist_ok=True)
    return make_split(work)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not IDCIA.is_dir():
        print(f"error: {IDCIA}: real IDCIA data not found (set CELLXFER_DATA to the folder holding idcia-dapi-95)", file=sys.stderr)
        return 2
    work = args.work
    split = prepare(work, args)
    print(f"split: train {len(split['train'])}, val {len(split['val'])}, test {len(split['test'])} (seed {SPLIT_SEED})")
    needs_syn = any(r != "supervised" for r in args.regimes if not args.no_density) or "synthetic" in args.log_regimes
    if needs_syn and not (work / f"synhc-{args.synthetic_n}").is_dir():
        synhc(work / f"synhc-{args.synthetic_n}", args.synthetic_n, seed=args.seed)
    if ("synthetic" in args.regimes and not args.no_density or args.stylizers != ["none"]) \
            and not (work / f"synhc-val-{args.synthetic_val_n}").is_dir():
        synhc(work / f"synhc-val-{args.synthetic_val_n}", args.synthetic_val_n, seed=args.seed + 10_000)
    rows = []
    def runs(regimes):
        return [(r, s) for r in regimes for s in (["none"] if r == "supervised" else args.stylizers)]

    part = "val" if args.val_only else "test"
    for regime, stylizer in runs(args.log_regimes):
        print(f"== log {regime} {stylizer}", flush=True)
        rows.append(evaluate_row("log", regime, fit_log(regime, work, args, stylizer), work, part) | {"stylizer": stylizer})
        print(table(rows[-1:]), flush=True)
    if not args.no_density:
        for regime, stylizer in runs(args.regimes):
            print(f"== density {regime} {stylizer}", flush=True)
            trained = [train(regime, work, args, stylizer, seed) for seed in args.seeds]
            for run in trained:
                rows.append(evaluate_row("density", regime, run, work, part) | {"stylizer": stylizer})
                print(table(rows[-1:]), flush=True)
            if len(trained) > 1:
                rows.append(ensemble_row(regime, trained, work, part) | {"stylizer": stylizer})
                print(table(rows[-1:]), flush=True)
    import torch

    md = table(rows)
    result = {"command": " ".join(sys.argv), "split_seed": SPLIT_SEED,
              "split": {k: len(v) for k, v in split.items() if isinstance(v, list)}, "settings": vars(args) | {"work": str(work)},
              "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}, "rows": rows}
    rows_tag = "-".join([f"log{r}" for r in args.log_regimes] + ([] if args.no_density else args.regimes)
                        + [slug(s) for s in args.stylizers] + ([f"seeds{'-'.join(map(str, args.seeds))}"] if args.seeds != [0] else [])
                        + (["val"] if args.val_only else []))
    out_json, out_md = work / f"results-{rows_tag}.json", work / f"results-{rows_tag}.md"
    out_json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    out_md.write_text(md)
    print(md)
    print(f"wrote {out_json} and {out_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
