"""Reproduce the LM-ADDA paper's experiments on the paired testbed (CPU-bounded), plus a real-data smoke test.

1. Render a phase-contrast -> DAPI source set (train) and, per shift, an unlabelled target set (adaptation)
   and a labelled target set (evaluation), all with different cell layouts (different seeds).
   Shifts: PC->BF, overexposure 1.5x / 2x / 3x, scaling 1.5x / 2x.
2. Train a source translator (pix2pix, narrow generator for the CPU; every size is an option).
3. Per shift: Pearson on the evaluation set with no adaptation, then with LM-ADDA at each layer of
   ``--layers`` (the last one, 16, is output-layer ADDA).
4. Real data: the source model on ``../shared/data/isl-condition-blue`` (phase z6 -> DAPI, 1024x1024,
   translated with 256 tiles, blended); Pearson of the whole field and of each 256 tile.

``--real`` runs the real-field experiment instead (:func:`real_main`): ``split-field``'s spatial split of
the registered phase/DAPI field (train = left strip, val = top right, test = bottom right, a generator
receptive field apart), a translator trained on the train region (``--source-z`` slice -> DAPI; or
``--model``), Pearson / MAE / SSIM per slice on val (and on test with ``--touch-test``), translate ->
count with the default counter (counts and localisation F1, predicted vs true DAPI), LM-ADDA from the
source slice to each ``--target-z`` slice per ``--adapt-variants``, and figures (phase | predicted |
true | error) in ``--figures``.

Writes JSON (``--json``) and prints a markdown table; ``--results-md`` appends it to docs/results.md.
Budget: see docs/results.md for the committed command and its wall time on 2 shared CPU cores (1 torch thread).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import ISL as _ISL, REPO, cellxfer_command  # noqa: E402  (the scripts' shared module)

ISL = _ISL / "images"

SHIFTS = {
    "pc->bf": dict(modality="bf"),
    "overexpose 1.5x": dict(overexpose=1.5),
    "overexpose 2x": dict(overexpose=2.0),
    "overexpose 3x": dict(overexpose=3.0),
    "scale 1.5x": dict(scale=1.5),
    "scale 2x": dict(scale=2.0),
}


def parse_args(argv=None) -> argparse.Namespace:
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
    ap.add_argument("--match", default="layer", choices=["layer", "skips"], help="adapt --match: layer L only, or also the skips")
    ap.add_argument("--num-downs", type=int, default=8)
    ap.add_argument("--size", type=int, default=256, help="Training crop side.")
    ap.add_argument("--json", type=Path, default=REPO / "docs" / "data" / "bench_adapt.json")
    ap.add_argument("--results-md", type=Path, default=None)
    real = ap.add_argument_group("real field (--real)")
    real.add_argument("--real", action="store_true", help="Run the real-field experiment (see module docs).")
    real.add_argument("--field", type=Path, default=ISL)
    real.add_argument("--source-z", type=int, default=6)
    real.add_argument("--target-z", default="0,12")
    real.add_argument("--test-side", type=int, default=480)
    real.add_argument("--model", type=Path, default=None, help="A trained translator instead of training one.")
    real.add_argument("--touch-test", action="store_true", help="Also evaluate the test region (once per final setting).")
    real.add_argument("--adapt-variants", default="", help="train:match pairs, e.g. upto:layer,upto:skips,layer:layer")
    real.add_argument("--match-radius", type=float, default=10.0, help="Localisation F1 radius in pixels.")
    real.add_argument("--figures", type=Path, default=REPO / "docs" / "images")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.real:
        return real_main(args)

    import torch

    from cellxfer.synth.paired import PairedConfig, write_pairs
    from cellxfer.translate.adapt import _load_inputs
    from cellxfer.translate.data import list_images, list_pairs
    from cellxfer.translator.model import load_translator
    from cellxfer.translate.train import TrainTranslateConfig, train_translator

    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    w = args.work
    layers = [int(x) for x in args.layers.split(",")]
    shifts = [s.strip() for s in args.shifts.split(",")]
    write_pairs(PairedConfig(marker=args.marker), args.n_train, w / "source_train", seed=args.seed, overwrite=not args.reuse_model)
    write_pairs(PairedConfig(marker=args.marker), args.n_eval, w / "source_eval", seed=args.seed + 1000, overwrite=not args.reuse_model)
    t = time.perf_counter()
    train_translator(TrainTranslateConfig(pairs=str(w / "source_train"), out=str(w / "source_model"), steps=args.train_steps,
                                          batch_size=args.train_batch, ngf=args.ngf, ndf=args.ndf, seed=args.seed,
                                          num_downs=args.num_downs, size=args.size, threads=args.threads),
                     overwrite=not args.reuse_model)
    train_s = time.perf_counter() - t
    g, meta = load_translator(w / "source_model")
    result = {"settings": _jsonable(vars(args)),
              "train_seconds": round(train_s, 1), "source_in_domain": _pearsons(g, meta, list_pairs(w / "source_eval")),
              "shifts": {}}
    print(f"source model: {train_s:.0f} s; in-domain Pearson {result['source_in_domain']['pearson']:.4f}", flush=True)
    src_arrays = _load_inputs(list_images(w / "source_train"), meta.input_norm, meta.size)
    for k, name in enumerate(shifts):
        result["shifts"][name] = shift_row(args, k, name, layers, g, meta, src_arrays)
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


def _pearsons(gen, meta, pairs) -> dict:
    """The summary (:func:`cellxfer.translate.infer.summarize`) of translator ``gen`` on ``pairs``."""
    from cellxfer.translate.infer import Translator, evaluate_pairs, summarize
    from cellxfer.translator.model import torch_runner

    return summarize(evaluate_pairs(Translator(torch_runner(gen), meta, "torch"), pairs))


def shift_row(args, k: int, name: str, layers: list[int], g, meta, src_arrays) -> dict:
    """Shift ``name`` (the ``k``-th): adapt and eval pairs rendered so, the source translator adapted at each of
    ``layers``, and each one's Pearson on the eval pairs (``none``: not adapted)."""
    from cellxfer.synth.paired import PairedConfig, write_pairs
    from cellxfer.translate.adapt import AdaptConfig, _load_inputs, adapt_layer
    from cellxfer.translate.data import list_images, list_pairs
    from cellxfer.translator.model import MODEL_FILE, load_translator

    w = args.work
    cfg = PairedConfig(marker=args.marker, **SHIFTS[name])
    adapt_dir, eval_dir = w / f"shift{k}_adapt", w / f"shift{k}_eval"
    write_pairs(cfg, args.n_adapt, adapt_dir, seed=args.seed + 1 + 10 * k, overwrite=True)
    write_pairs(cfg, args.n_eval, eval_dir, seed=args.seed + 2 + 10 * k, overwrite=True)
    eval_pairs = list_pairs(eval_dir)
    tgt_arrays = _load_inputs(list_images(adapt_dir), meta.input_norm, meta.size)
    row = {"none": _pearsons(g, meta, eval_pairs)["pearson"]}
    for L in layers:
        acfg = AdaptConfig(model=str(w / "source_model"), source=str(w / "source_train"), target=str(adapt_dir),
                           out=str(w / f"shift{k}_layer{L:02d}"), layer=L, steps=args.adapt_steps,
                           batch_size=args.adapt_batch, lr=args.adapt_lr, lr_d=args.adapt_lr, ndf=args.ndf,
                           train=args.train, match=args.match, seed=args.seed, threads=args.threads)
        adapt_layer(acfg, g=g, meta=meta, source_arrays=src_arrays, target_arrays=tgt_arrays)
        ga, ma = load_translator(Path(acfg.out) / MODEL_FILE)
        row[str(L)] = _pearsons(ga, ma, eval_pairs)["pearson"]
    inter = {L: v for L, v in row.items() if L not in ("none", str(meta.n_layers))}
    best_inter = max(inter, key=inter.get) if inter else None
    print(name, json.dumps({k2: round(v, 4) for k2, v in row.items()}), flush=True)
    return {"pearson": row, "best_intermediate_layer": best_inter,
            "intermediate_beats_output": bool(best_inter and str(meta.n_layers) in row
                                              and inter[best_inter] > row[str(meta.n_layers)])}


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
            f"(lr {s['adapt_lr']:g}, trained blocks: {'1..L' if s['train'] == 'upto' else 'L only'}"
            f"{', skip tensors matched too' if s.get('match') == 'skips' else ''}); "
            f"total {result['seconds']:.0f} s.\n\n" + "\n".join(lines) + "\n\n" + real_line)


# -- the real field: isl-condition-blue, phase z-slices -> DAPI ---------------------------------------------------


def real_main(args) -> int:
    """Real-pair training, translate -> count and LM-ADDA across defocus on the registered field (see ``--real``).
    Validation-region numbers always; the test region only with ``--touch-test`` (once per final setting)."""
    import torch

    from cellxfer.translate.data import list_pairs
    from cellxfer.translate.infer import evaluate_pairs, load, summarize
    from cellxfer.translate.regions import corner_split, receptive_field, write_split_pairs

    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    w, field = args.work, args.field
    zs = [args.source_z] + [int(z) for z in args.target_z.split(",") if z.strip()]
    split = corner_split((1024, 1024), receptive_field(args.num_downs), args.test_side)
    write_split_pairs(split, [field / f"phase_z{z}.png" for z in zs], field / "maxproj_DAPI_CONFOCAL.png", w / "field")
    parts = ["val"] + (["test"] if args.touch_test else [])
    report = parts[-1]  # the part figures, counts and the table show
    pairs = {(z, p): list_pairs(w / "field" / f"phase_z{z}" / p) for z in zs for p in parts}
    model, train_s = real_model(args, w / "field" / f"phase_z{args.source_z}" / "train")
    tr = load(model, "torch")
    result = {"settings": _jsonable(vars(args)), "split": split.to_dict(), "parts": parts, "model": str(model),
              "train_seconds": train_s, "no_adaptation": {p: {} for p in parts}, "figures": []}
    for z in zs:
        for p in parts:
            result["no_adaptation"][p][f"z{z}"] = summarize(evaluate_pairs(tr, pairs[(z, p)]))
            print(f"z{z} {p}, no adaptation:", json.dumps(result["no_adaptation"][p][f"z{z}"]), flush=True)
    src = args.source_z
    result["figures"].append(real_figure([(f"z{src}", tr)], pairs[(src, report)][0], args.figures / f"real_{report}_z{src}.png"))
    t = time.perf_counter()
    result["count"] = translate_and_count(model, w / "field" / f"phase_z{src}" / report, w / f"count_{report}",
                                          args.match_radius, args.threads)
    result["count"]["seconds"] = round(time.perf_counter() - t, 1)
    print("translate -> count:", json.dumps(result["count"]), flush=True)
    if args.adapt_variants:
        result["adaptation"] = real_adaptation(args, model, zs, pairs, parts, result)
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(real_markdown(result))
    return 0


def _jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def real_model(args, train_pairs: Path) -> tuple[Path, float | None]:
    """The source translator: ``--model`` as given, else trained (resumably) on the train region."""
    from cellxfer.translate.train import TrainTranslateConfig, train_translator

    if args.model:
        return args.model, None
    out = args.work / "source_model"
    t = time.perf_counter()
    train_translator(TrainTranslateConfig(pairs=str(train_pairs), out=str(out), steps=args.train_steps, batch_size=args.train_batch,
                                          size=args.size, ngf=args.ngf, ndf=args.ndf, num_downs=args.num_downs, seed=args.seed,
                                          threads=args.threads))
    return out, round(time.perf_counter() - t, 1)


def translate_and_count(model: Path, pairs: Path, work: Path, radius: float, threads: int) -> dict:
    """``cellxfer translate`` the phase images of ``pairs``, then ``cellxfer count`` (the shipped default
    counter, default settings) the predictions and the true DAPI; counts, and the localisation F1 of the
    predicted-DAPI cells against the true-DAPI cells (one-to-one within ``radius`` px)."""
    import subprocess

    from cellxfer.dataset import parse_points
    from cellxfer.density.match import match_points

    def cli(*a):
        subprocess.run(cellxfer_command() + [*map(str, a)], check=True, cwd=REPO,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": str(threads)}, stdout=subprocess.DEVNULL)

    cli("translate", pairs / "source", "-m", model, "-o", work / "pred", "--overwrite")
    rows = {}
    for name, folder in (("predicted", work / "pred"), ("true", pairs / "target")):
        cli("count", folder, "--out", work / f"{name}.csv", "--points", work / f"points_{name}", "--overwrite",
            "--threads", threads)
        rows[name] = {r["file"]: r for r in csv.DictReader(open(work / f"{name}.csv"))}
    out = {"images": [], "radius": radius}
    for (pf, p), (tf, t) in zip(sorted(rows["predicted"].items()), sorted(rows["true"].items())):
        pp = parse_points((work / "points_predicted" / f"{Path(pf).stem}.csv").read_text(), pf)
        tp = parse_points((work / "points_true" / f"{Path(tf).stem}.csv").read_text(), tf)
        m = match_points(pp, tp, radius)
        out["images"].append({"id": Path(pf).stem, "count_predicted": float(p["count"]), "count_true": float(t["count"]),
                              "diameter_predicted": p["diameter"], "diameter_true": t["diameter"],
                              "points_predicted": len(pp), "points_true": len(tp), "f1": m.f1,
                              "precision": m.precision, "recall": m.recall})
    cp = sum(r["count_predicted"] for r in out["images"])
    ct = sum(r["count_true"] for r in out["images"])
    out.update(count_predicted=cp, count_true=ct, relative_error=(cp - ct) / ct if ct else float("nan"),
               f1=float(np.mean([r["f1"] for r in out["images"]])))
    return out


def real_adaptation(args, model: Path, zs: list[int], pairs: dict, parts: list[str], result: dict) -> dict:
    """Per target slice and variant (``train:match``), LM-ADDA at each of ``--layers`` from the source
    slice's train-region phase to the target slice's train-region phase (unpaired: its DAPI is never
    read); Pearson per part. The best intermediate layer is picked on the validation part."""
    from cellxfer.translate.adapt import AdaptConfig, _load_inputs, adapt_layer
    from cellxfer.translate.data import list_images
    from cellxfer.translate.infer import Translator, evaluate_pairs, summarize
    from cellxfer.translator.model import torch_runner
    from cellxfer.translator.model import MODEL_FILE, load_translator

    g, meta = load_translator(model)
    layers = [int(x) for x in args.layers.split(",")]
    src_dir = args.work / "field" / f"phase_z{zs[0]}" / "train" / "source"
    src = _load_inputs(list_images(src_dir), meta.input_norm, meta.size)
    out = {}
    for z in zs[1:]:
        tgt_dir = args.work / "field" / f"phase_z{z}" / "train" / "source"
        tgt = _load_inputs(list_images(tgt_dir), meta.input_norm, meta.size)
        rows = {}
        for variant in args.adapt_variants.split(","):
            train, match = variant.split(":")
            per_layer = {}
            for L in layers:
                acfg = AdaptConfig(model=str(model), source=str(src_dir), target=str(tgt_dir), layer=L,
                                   out=str(args.work / f"adapt_z{z}_{train}_{match}_L{L:02d}"), steps=args.adapt_steps,
                                   batch_size=args.adapt_batch, lr=args.adapt_lr, lr_d=args.adapt_lr, ndf=args.ndf,
                                   train=train, match=match, seed=args.seed, threads=args.threads)
                s = adapt_layer(acfg, g=g, meta=meta, source_arrays=src, target_arrays=tgt)
                ga, ma = load_translator(Path(acfg.out) / MODEL_FILE)
                tra = Translator(torch_runner(ga), ma, "torch")
                per_layer[str(L)] = {p: summarize(evaluate_pairs(tra, pairs[(z, p)]))["pearson"] for p in parts} | {"seconds": s.seconds}
                print(f"z{z} {variant} L{L}:", json.dumps(per_layer[str(L)]), flush=True)
            inter = {L: v for L, v in per_layer.items() if L != str(meta.n_layers)}
            best = max(inter, key=lambda L: inter[L]["val"]) if inter else None
            rows[variant] = {"layers": per_layer, "best_intermediate_layer_on_val": best}
        out[f"z{z}"] = rows
        result["figures"].append(real_adaptation_figure(args, z, rows, parts[-1], pairs, meta.n_layers))
    return out


def real_adaptation_figure(args, z: int, rows: dict, part: str, pairs: dict, n_layers: int) -> str:
    """One figure per target slice: no adaptation, output-layer ADDA and the best intermediate layer (of
    the first variant, picked on val)."""
    from cellxfer.translate.infer import load

    variant = next(iter(rows))
    train, match = variant.split(":")
    best = rows[variant]["best_intermediate_layer_on_val"]
    models = [(f"z{z} none", load(args.work / "source_model" if not args.model else args.model, "torch"))]
    for L, label in ((n_layers, "ADDA"), (best, "best intermediate")):
        if L is not None and str(L) in rows[variant]["layers"]:
            models.append((f"z{z} L{L} {label}", load(args.work / f"adapt_z{z}_{train}_{match}_L{int(L):02d}", "torch")))
    return real_figure(models, pairs[(z, part)][0], args.figures / f"real_{part}_z{z}_adapt.png")


def real_figure(models: list, pair, path: Path) -> str:
    """PNG rows ``phase | predicted DAPI | true DAPI | error`` (one row per ``(label, translator)``);
    intensities as the metrics see them (prediction (y+1)/2, truth by its 0.5/99.5 percentiles); the
    error panel is red where the prediction is too bright and blue where too dark."""
    from PIL import Image, ImageDraw

    from cellxfer.translate.data import normalize, read_pair, to_unit

    phase, truth = read_pair(pair)
    rows = []
    for label, tr in models:
        pred = to_unit(tr.translate(phase))
        t = to_unit(normalize(truth, tr.meta.target_norm, clip=True))
        gray = [to_unit(normalize(phase, (0.5, 99.5), clip=True)), pred, t]
        panels = [np.repeat((g[..., None] * 255).astype(np.uint8), 3, 2) for g in gray]
        err = pred - t
        panels.append(np.stack([np.clip(err, 0, 1), np.zeros_like(err), np.clip(-err, 0, 1)], -1).__mul__(255).astype(np.uint8))
        sep = np.full((phase.shape[0], 4, 3), 255, np.uint8)
        row = Image.fromarray(np.concatenate([x for p in panels for x in (p, sep)][:-1], 1))
        ImageDraw.Draw(row).text((4, 4), f"{label}: phase | predicted | true DAPI | error", fill=(255, 255, 0))
        rows.append(np.asarray(row))
    img = Image.fromarray(np.concatenate(rows, 0))
    img = img.resize((img.width // 2, img.height // 2), Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return str(path)


def real_markdown(result: dict) -> str:
    """The real-field tables: translation metrics per slice and part, translate -> count, LM-ADDA Pearson."""
    parts = result["parts"]
    lines = ["| slice | " + " | ".join(f"{p} Pearson | {p} MAE | {p} SSIM" for p in parts) + " |",
             "|---|" + "---|" * (3 * len(parts))]
    for z in result["no_adaptation"][parts[0]]:
        lines.append(f"| {z} | " + " | ".join(" | ".join(f"{result['no_adaptation'][p][z][k]:.3f}" for k in ("pearson", "mae", "ssim"))
                                                for p in parts) + " |")
    c = result["count"]
    lines += ["", f"Translate -> count ({parts[-1]} region, default counter): {c['count_predicted']:.1f} cells on predicted DAPI vs "
                  f"{c['count_true']:.1f} on true DAPI ({100 * c['relative_error']:+.1f}%), localisation F1 {c['f1']:.3f} "
                  f"(radius {c['radius']:g} px)."]
    header = False
    for z, rows in result.get("adaptation", {}).items():
        for variant, r in rows.items():
            if not header:
                header = True
                lines += ["", "| target | variant (train:match) | " + " | ".join(f"L{L}" for L in r["layers"]) + " | best intermediate (val) |",
                          "|---|---|" + "---|" * (len(r["layers"]) + 1)]
            cells = " | ".join("/".join(f"{v[p]:.3f}" for p in parts) for v in r["layers"].values())
            lines.append(f"| {z} | {variant} | {cells} | L{r['best_intermediate_layer_on_val']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
