#!/usr/bin/env python
"""Does synthetic data transfer to real nuclei? Rows of synthesizer x stylizer x regime x labelled real
images, and the invariance table of a counter (issue 12).

Real data: the IDCIA 95 in ``../shared/data/idcia-dapi-95`` with the benchmarks' fixed split
(:mod:`cellxfer.evaluate.split`: 19 test / 15 validation / 60 training images, seed 2025). Every row is
the density UNet recipe of ``docs/results.md`` (``--arch density``, stem 2, ReLU output, crop-count loss
0.01, crop 128, sigma 3, normalised values clipped at 3, Adam lr 1e-3 on a cosine schedule, EMA 0.999) trained for about ``--steps``
optimizer steps whatever the number of images. Checkpoints are picked on the validation images (rows
with real labels) or on held-out synthetic images (``synthetic`` rows, which use no real label at all);
the test images are only evaluated. Stylizers (``histogram``, ``fda``) map synthetic images toward the
unlabelled pixels of the *training* images.

A row is ``REGIME[:SYNTH[:STYLIZER]][@N]``: ``synthetic:nuclei:histogram``, ``supervised@5``,
``finetune:nuclei@15`` (the weights of the matching ``synthetic`` row, then N real images),
``dacs:synhc:fda@60`` (DACS + CutMix of N real images with the synthetic set, from scratch). ``--grid``
adds every synthesizer x stylizer x (synthetic, finetune@60, dacs@60); ``--few-label 5 15 60`` adds
supervised / finetune / dacs rows with nuclei images for each N. Runs resume when the command is rerun.

    .venv/bin/python scripts/bench_transfer.py --work runs/transfer --few-label 5 15 60
    .venv/bin/python scripts/bench_transfer.py --work runs/transfer --invariance cellxfer/models/default_counter.safetensors

``--invariance MODEL`` counts the IDCIA 94 annotated images as they are and transformed (resized 0.5x,
2x, 3x; gain x0.25 and x4; an offset; gamma 0.7 and 1.5; uint16 encoding; uneven illumination: a gradient, a
vignette, out-of-focus haze), pure-noise images, and cells
reported within 4 px of the border with no annotated centre within 10 px. Counts use the model's
default ``--diameter`` policy, exactly as ``cellxfer count`` does.

``--multi-source MODEL [MODEL ...]`` is the many-microscope table (issue 25): each model counts, exactly as
``cellxfer count`` does (default ``--diameter auto``), the ``--part`` (val or test) of dsb2018-fluo
(:func:`cellxfer.evaluate.split.stratified_split_ids`), grouped by image size (which tracks the microscope),
and the IDCIA 90; per group: mean absolute % error per image, total counted / true, localisation F1 at half
the true median diameter (IDCIA: 7 px), the scale estimate's median error against dsb2018-fluo's
``per_image.tsv`` and the share within 25%; and how well the ``qc`` flag finds bad counts (the share of
images off by more than 25% that are flagged, and of those within 10%). ``--resize`` adds the per-image
change of the count when every image is resized 0.5x and 2x, ``--shading`` when it is unevenly lit (a gradient
of half and of the whole of its range, a vignette, haze: ``benchlib.SHADINGS``), ``--variants NAME...`` changed so by
any of :data:`VARIANTS` (``"blur 2 px"``, ``"float 0.5x"``: continuous values, no grey-level steps; ``"bright tenth
x5"``: a tenth of the annotated nuclei made 5x brighter, ``benchlib.brighten_some``); each variant's cell gives the
share of images whose count stays within 10% and the variant's own mean abs % error per image. Writes a plot
beside the JSON.

    .venv/bin/python scripts/bench_transfer.py --work runs/transfer --multi-source cellxfer/models/default_counter.safetensors --part val --resize

Writes ``WORK/transfer-<name>.json`` and ``.md`` (``--name``, default from the rows asked) and prints
the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import DSB, IDCIA, REPO, SHADINGS, brighten_some, dsb_table, on_signal, on_signal_mask  # noqa: E402  (the scripts' shared module)
SYNTHS = ("synhc", "nuclei")
STYLIZERS = ("none", "histogram", "fda")
NUCLEI_SET = ("diameter=6:16",)  # the nuclei synthesizer at IDCIA-like scale (scale is left to --diameter)


# -- rows ------------------------------------------------------------------------------------------------
def parse_row(text: str) -> dict:
    spec, _, n = text.partition("@")
    regime, synth, stylizer = (spec.split(":") + ["", ""])[:3]
    row = {"regime": regime, "synth": synth or ("nuclei" if regime != "supervised" else ""),
           "stylizer": stylizer or ("none" if regime != "supervised" else ""), "n": int(n) if n else None}
    if regime not in ("synthetic", "supervised", "finetune", "dacs"):
        raise SystemExit(f"row {text!r}: regime must be synthetic, supervised, finetune or dacs")
    if regime != "synthetic" and row["n"] is None:
        row["n"] = 60
    return row


def row_name(row: dict) -> str:
    parts = [row["regime"]] + ([row["synth"], row["stylizer"]] if row["regime"] != "supervised" else [])
    return ":".join(parts) + (f"@{row['n']}" if row["n"] is not None else "")


def slug(text: str) -> str:
    return text.replace(":", "-").replace("@", "-n")


def synthetic_sets(work: Path, synth: str, stylizer: str, args) -> tuple[Path, Path]:
    """Training and validation sets of ``synth`` (rendered once), stylized toward the training images."""
    from cellxfer.options import make_config, parse_sets
    from cellxfer.plugins import get_registry
    from cellxfer.stylize.base import run_stylize
    from cellxfer.synth.base import run_synth

    reg = get_registry()
    s = reg.get("cellxfer_synthesizers", synth)
    cfg = make_config(s.config_cls, parse_sets(list(NUCLEI_SET) if synth == "nuclei" else []), synth)
    sets = (work / f"{synth}-{args.synthetic_n}", work / f"{synth}-val-{args.synthetic_val_n}")
    run_synth(s, cfg, args.synthetic_n, sets[0], seed=0)
    run_synth(s, cfg, args.synthetic_val_n, sets[1], seed=1000)
    if stylizer == "none":
        return sets
    st = reg.get("cellxfer_stylizers", stylizer)
    style = sorted((work / "idcia-train" / "images").iterdir())
    out = []
    for src in sets:
        dest = src.with_name(f"{src.name}-{stylizer}")
        res = run_stylize(st, make_config(st.config_cls, {}, stylizer), src, style, dest, seed=0)
        if res.failed:
            raise SystemExit(f"stylize {stylizer}: {len(res.failed)} images failed")
        out.append(dest)
    return out[0], out[1]


def config_for(row: dict, work: Path, args):
    """The :class:`TrainConfig` of a row (the recipe in the module docs)."""
    from cellxfer.evaluate.split import subset
    from cellxfer.train.counter import TrainConfig

    regime, n = row["regime"], row["n"]
    syn, syn_val = synthetic_sets(work, row["synth"], row["stylizer"], args) if row["synth"] else (None, None)
    real = subset(work, "train", n) if n is not None else None
    pretrained = None
    if regime == "finetune":
        pretrained = train_row(parse_row(f"synthetic:{row['synth']}:{row['stylizer']}"), work, args) / "best.safetensors"
    n_imgs = args.synthetic_n if regime == "synthetic" else n
    per_epoch = -(-n_imgs // (args.batch_size // 2 if regime == "dacs" else args.batch_size))
    epochs = max(1, round(args.steps / per_epoch))
    return TrainConfig(
        regime="supervised" if regime == "finetune" else regime, out=work / f"run-{slug(row_name(row))}-s{args.seed}",
        real=real, synthetic=syn if regime in ("synthetic", "dacs") else None,
        val=syn_val if regime == "synthetic" else work / "idcia-val", arch="density", pretrained=pretrained,
        epochs=epochs, batch_size=args.batch_size, lr=1e-3, lr_schedule="cosine", ema=0.999, crop=128, sigma=3.0,
        count_weight=0.01, norm_clip=3.0, val_every=max(1, epochs // 20), seed=args.seed, resume=True,
        extra={"arch_options": {"stem": 2, "positive": True}})


def train_row(row: dict, work: Path, args) -> Path:
    """Train the row's run, or continue or reuse it by the run folder's one rule (:class:`cellxfer.runs.RunFolder`:
    the same settings, inputs and left-out images; anything else is refused, naming the difference)."""
    from cellxfer.train.counter import train_counter

    cfg = config_for(row, work, args)
    print(f"training {row_name(row)} -> {cfg.out} ({cfg.epochs} epochs; a finished run with the same settings is reused)",
          flush=True)
    return train_counter(cfg).out


def evaluate_row(row: dict, work: Path, args) -> dict:
    from cellxfer.evaluate.run import EvaluateConfig, evaluate

    run = train_row(row, work, args)
    res = evaluate(EvaluateConfig(model=run / "best.safetensors", data=work / f"idcia-{args.part}",
                                  out_csv=run / f"{args.part}-predictions.csv", engine="torch", overwrite=True))
    manifest = json.loads((run / "manifest.json").read_text())
    return {"row": row_name(row), **row, "evaluated_on": args.part, "seed": args.seed, "metrics": res.metrics.as_dict(),
            "localisation": res.localisation, "train_seconds": manifest["result"]["train_seconds"],
            "epochs": manifest["result"]["epochs"], "run": str(run)}


def rows_table(rows: list[dict]) -> str:
    part = rows[0]["evaluated_on"] if rows else "test"
    out = [f"| row | regime | synthesizer | stylizer | real labels | {part} MAE | RMSE | F1 @ 5 px | train min |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, loc = r["metrics"], r["localisation"] or {}
        out.append(f"| {r['row']} | {r['regime']} | {r['synth'] or '-'} | {r['stylizer'] or '-'} | {r['n'] or 0} | "
                   f"{m['mae']:.2f} | {m['rmse']:.2f} | {loc.get('f1', float('nan')):.3f} | {r['train_seconds'] / 60:.1f} |")
    return "\n".join(out) + "\n"


# -- invariance ------------------------------------------------------------------------------------------
def _resize(f: float):
    def go(img):
        from cellxfer.scale import resize_to

        out = resize_to(img.astype(np.float32), f).image
        return np.clip(np.rint(out), 0, np.iinfo(img.dtype).max).astype(img.dtype) if img.dtype.kind == "u" else out
    return go


def _image_only(fn):
    """A change of the image alone as a :data:`VARIANTS` entry (which also get its nuclei and their diameter)."""
    return lambda im, points, diameter: fn(im)


#: named changes of an image, ``fn(image, points, diameter)``: ``points`` its annotated centres, ``diameter``
#: their true median diameter (dsb2018-fluo) or :data:`DIAMETER` (IDCIA, no diameter truth)
VARIANTS = {
    **{name: _image_only(fn) for name, fn in {
        "resize 0.5x": _resize(0.5), "resize 2x": _resize(2.0), "resize 3x": _resize(3.0),
        "gain x0.25": lambda im: im.astype(np.float32) * 0.25, "gain x4": lambda im: im.astype(np.float32) * 4.0,
        "offset +100": lambda im: im.astype(np.float32) + 100.0,
        "gamma 0.7": lambda im: (im.astype(np.float32) / max(float(im.max()), 1.0)) ** 0.7 * float(im.max()),
        "gamma 1.5": lambda im: (im.astype(np.float32) / max(float(im.max()), 1.0)) ** 1.5 * float(im.max()),
        "uint16 (x257)": lambda im: im.astype(np.uint16) * 257,
        **SHADINGS,
        "blur 2 px": lambda im: _smooth(im, 2.0), "float 0.5x": lambda im: _resize(0.5)(im.astype(np.float32)),
    }.items()},
    "bright tenth x5": brighten_some(0.1, 5.0),
}
DIAMETER = 14.0  # px: the nucleus diameter taken for images without diameter truth (IDCIA's is about 14)
RESIZES = ("resize 0.5x", "resize 2x")  # --resize


def _smooth(img, sigma: float):
    """A defocused (or smoothed in processing) copy as float32: continuous values, no grey-level steps."""
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(img.astype(np.float32), sigma)


def _counter(model: Path):
    """``count(image, points=False) -> (Counted, ScaleInfo)`` exactly as ``cellxfer count`` (torch engine, default
    --diameter): the count and how the image was rescaled (``RULES.judge(count, info, map)`` gives its qc column)."""
    from cellxfer.count.parts import count_plan, plan_image
    from cellxfer.count.qc import ScaleInfo
    from cellxfer.counter.model import load_counter, torch_runner
    from cellxfer.scale import DiameterPolicy

    net, meta = load_counter(model)
    runner, policy = torch_runner(net), DiameterPolicy.parse(None, meta.diameter)

    def count(image, points=False):
        plan = plan_image(image, meta, policy)
        return count_plan(runner, plan, 16, points=points), ScaleInfo.of(plan.scaled)
    return count


# -- many sources -----------------------------------------------------------------------------------------
def source_groups(part: str, idcia: Path) -> list[tuple[str, Path, list[str], dict]]:
    """``(name, root, ids, true diameters by id)`` per image-size group of dsb2018-fluo's ``part`` (groups of
    fewer than 5 images pooled as ``other``), then the IDCIA 90 (no diameter truth: {})."""
    from cellxfer.evaluate.split import stratified_split_ids
    from cellxfer.train.data import labelled_ids

    groups = []
    if DSB.is_dir():
        split = stratified_split_ids(DSB)
        truth = {r["id"]: r["diameter"] for r in dsb_table()}
        by: dict[str, list[str]] = {}
        for id_ in split[part]:
            by.setdefault(split["groups"][id_], []).append(id_)
        small = sorted(i for k, v in by.items() if len(v) < 5 for i in v)
        for key in sorted((k for k, v in by.items() if len(v) >= 5), key=lambda k: -len(by[k])):
            groups.append((f"dsb2018-fluo {key}", DSB, sorted(by[key]), truth))
        if small:
            groups.append(("dsb2018-fluo other sizes", DSB, small, truth))
    if idcia.is_dir():
        groups.append(("IDCIA 90", idcia, labelled_ids(idcia, role="multi-source")[1], {}))
    return groups


def _rule_counts(dmap, rules: tuple[str, ...]) -> dict:
    """The count each rule (``sum``, or a :class:`cellxfer.density.blobs.BlobRule` as ``LEVEL:LO:HI``) reads
    from one density map."""
    from cellxfer.density.blobs import BlobRule

    out = {}
    for text in rules:
        got = None if text == "sum" else BlobRule.parse(text).count(dmap)
        out[text] = float(dmap.counts.sum()) if got is None else got
    return out


def score_group(count, root: Path, ids: list[str], truth: dict, variants: tuple[str, ...] = (),
                rules: tuple[str, ...] = ()) -> dict:
    """Per-image results of one group (see :func:`multi_source`); ``variants``: also the count of each image
    changed so (:data:`VARIANTS`); ``rules``: also the count each of these counting rules reads from the image's
    map (:func:`_rule_counts`)."""
    from cellxfer.count.qc import RULES
    from cellxfer.dataset import CellDataset
    from cellxfer.density.match import match_points

    def judged(image, points=False):  # the count, its scale, its share of partial blobs and its qc column
        res, info = count(image, points=points)
        qc, partial = RULES.judge(res.count, info, res.density_map)
        return res, info, partial, qc

    ds, per = CellDataset(root), []
    for id_ in ids:
        s = ds[id_]
        res, info, partial, qc = judged(s.image, points=True)
        c, pts = res.count, res.points
        est = info.estimate
        d_true = truth.get(id_)
        m = match_points(np.asarray(pts).reshape(-1, 2), s.points, radius=(d_true or DIAMETER) / 2)
        row = {"id": id_, "true": int(len(s.points)), "pred": float(c), "qc": qc, "tp": m.tp, "n_pred": m.n_pred,
               "diameter_true": d_true, "diameter_est": None if est is None else est.diameter,
               "estimate": None if est is None else {k: getattr(est, k) for k in ("spread", "clumped", "nuclei", "saturated", "dim")},
               "clipped": info.clipped, "partial": partial}
        if rules:
            row["rules"] = _rule_counts(res.density_map, rules)
        if variants:
            got = {v: judged(VARIANTS[v](s.image, s.points, d_true or DIAMETER)) for v in variants}
            row["variants"] = {v: float(g[0].count) for v, g in got.items()}
            row["variants_qc"] = {v: g[3] for v, g in got.items()}
        per.append(row)
    return summarise(per)


def count_errors(true, pred) -> dict:
    """Mean and median abs % error per image, counted / true over all, mean abs error."""
    t, p = np.asarray(true, float), np.asarray(pred, float)
    err = np.abs(p - t) / np.maximum(t, 1.0)
    return {"mape": float(err.mean()), "median_ape": float(np.median(err)),
            "total_ratio": float(p.sum() / max(t.sum(), 1)), "mae": float(np.mean(np.abs(p - t)))}


def summarise(per: list[dict]) -> dict:
    t = np.array([r["true"] for r in per], float)
    tp, n_pred = sum(r["tp"] for r in per), sum(r["n_pred"] for r in per)
    prec, rec = tp / max(n_pred, 1), tp / max(t.sum(), 1)
    out = {"images": len(per), "true_total": float(t.sum()), **count_errors(t, [r["pred"] for r in per]),
           "f1": float(2 * prec * rec / max(prec + rec, 1e-9)),
           "flagged": float(np.mean([r["qc"] != "ok" for r in per])), "per_image": per}
    ratios = [r["diameter_est"] / r["diameter_true"] for r in per if r["diameter_true"] and r["diameter_est"]]
    if any(r["diameter_true"] for r in per):
        n = sum(1 for r in per if r["diameter_true"])
        out["scale_median_error"] = float(np.median(np.abs(np.log(ratios)))) if ratios else None
        out["scale_within_25"] = float(sum(abs(x - 1) <= 0.25 for x in ratios) / n)
    for v in per[0].get("variants", {}) if per else ():  # the change of each image's count, over at least 10
        ch = np.array([abs(r["variants"][v] - r["pred"]) / max(r["pred"], 10.0) for r in per])
        out.setdefault("variants", {})[v] = {"median_change": float(np.median(ch)), "within_10": float(np.mean(ch <= 0.10)),
                                             **count_errors(t, [r["variants"][v] for r in per])}
    return out


def _hit_rates(per: list[dict], flag: np.ndarray) -> dict:
    """Of the images off by more than 25% (bad) and within 10% (good), the share ``flag`` marks."""
    err = np.array([abs(r["pred"] - r["true"]) / max(r["true"], 1) for r in per])
    bad, good = err > 0.25, err <= 0.10
    return {"bad": int(bad.sum()), "good": int(good.sum()),
            "bad_flagged": float(flag[bad].mean()) if bad.any() else None,
            "good_flagged": float(flag[good].mean()) if good.any() else None}


def qc_rates(groups: dict) -> dict:
    """How well the flag finds bad counts over every image of the table, and over every image changed by each
    variant counted (``variants``)."""
    per = [r for g in groups.values() for r in g["per_image"]]
    flag = np.array([r["qc"] != "ok" for r in per])
    out = {"images": len(per), **_hit_rates(per, flag), "flagged": float(flag.mean())}
    for v in per[0].get("variants_qc", {}) if per else ():  # the same of every image changed so
        changed = [{"pred": r["variants"][v], "true": r["true"]} for r in per]
        vflag = np.array([r["variants_qc"][v] != "ok" for r in per])
        out.setdefault("variants", {})[v] = {"images": len(per), **_hit_rates(changed, vflag), "flagged": float(vflag.mean())}
    return out


def qc_sweep(groups: dict) -> list[dict]:
    """Hit rates of the flag for a grid of :class:`cellxfer.count.qc.QCRules` thresholds, recomputed from each
    image's stored measurement (how the shipped thresholds were chosen, on the validation part)."""
    import itertools

    from cellxfer.count.qc import QCRules, ScaleInfo
    from cellxfer.scale import Estimate

    per = [r for g in groups.values() for r in g["per_image"]]
    infos = [ScaleInfo(r["diameter_est"], 1.0, Estimate(r["diameter_est"], 0, **(r["estimate"] or {})), r.get("clipped", False))
             for r in per]
    out = []
    for spread, clumped, fewer, more, partial in itertools.product(
            (1.6, 2.0, 2.5), (0.6, 0.75, 1.01), (0.7, 0.75, 0.8, 0.85, 0.9), (1.6, 2.0, 2.5), (0.12, 0.15, 0.17, 0.2, 0.25, 9.0)):
        rules = QCRules(spread=spread, clumped=clumped, fewer=fewer, more=more, partial=partial)
        flag = np.array([rules.label(r["pred"], i, r.get("partial")) != "ok" for r, i in zip(per, infos)])
        rates = _hit_rates(per, flag)
        out.append({"spread": spread, "clumped": clumped, "fewer": fewer, "more": more, "partial": partial,
                    "bad_flagged": rates["bad_flagged"], "good_flagged": rates["good_flagged"]})
    return out


def multi_source(models: list[Path], part: str, idcia: Path, variants: tuple[str, ...] = (),
                 rules: tuple[str, ...] = ()) -> dict:
    out = {"part": part, "models": {}}
    for model in models:
        count = _counter(model)
        groups = {name: score_group(count, root, ids, truth, variants, rules)
                  for name, root, ids, truth in source_groups(part, idcia)}
        out["models"][str(model)] = {"groups": groups, "qc": qc_rates(groups), "qc_sweep": qc_sweep(groups)}
        if rules:
            out["models"][str(model)]["rules"] = rule_scores(groups, rules)
    return out


def rule_scores(groups: dict, rules: tuple[str, ...]) -> dict:
    """Per counting rule and group: mean abs % error, total ratio and mean abs error of the counts the rule
    reads from the same maps (``--blob-rules``)."""
    out = {}
    for text in rules:
        out[text] = {}
        for name, g in groups.items():
            out[text][name] = count_errors([r["true"] for r in g["per_image"]], [r["rules"][text] for r in g["per_image"]])
    return out


def rules_table(ms: dict) -> str:
    """Mean abs % error / total ratio per counting rule and group (IDCIA also its mean abs error)."""
    out = []
    for model, r in ms["models"].items():
        if "rules" not in r:
            continue
        names = list(r["groups"])
        out += ["", f"Counting rules read from {Path(model).stem}'s maps (mean abs % error / total ratio; IDCIA: also MAE)", "",
                "| rule | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for text, per in r["rules"].items():
            cells = [f"{100 * per[n]['mape']:.1f}% / {per[n]['total_ratio']:.2f}"
                     + (f" / MAE {per[n]['mae']:.2f}" if n.startswith("IDCIA") else "") for n in names]
            out.append(f"| {text} | " + " | ".join(cells) + " |")
    return "\n".join(out) + ("\n" if out else "")


def multi_source_table(ms: dict) -> str:
    first = next(iter(next(iter(ms["models"].values()))["groups"].values()), {})
    names = list(first.get("variants", {}))
    out = [f"Part: {ms['part']}", "", "| model | source | images | mean abs % error | total ratio | F1 (half a diameter) | "
           "scale within 25% | flagged |" + "".join(f" {v}: within 10%, error |" for v in names), "|" + "---|" * (8 + len(names))]
    for model, r in ms["models"].items():
        for name, g in r["groups"].items():
            sc = f"{100 * g['scale_within_25']:.0f}%" if "scale_within_25" in g else "-"
            rs = "".join(f" {100 * g['variants'][v]['within_10']:.0f}%, {100 * g['variants'][v]['mape']:.1f}% |" for v in names)
            out.append(f"| {Path(model).stem} | {name} | {g['images']} | {100 * g['mape']:.1f}% | {g['total_ratio']:.2f} | "
                       f"{g['f1']:.3f} | {sc} | {100 * g['flagged']:.0f}% |{rs}")
    out += ["", "| model | images | off by > 25% | flagged of those | within 10% | flagged of those |", "|---|---|---|---|---|---|"]
    for model, r in ms["models"].items():
        q = r["qc"]
        pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
        for name, v in [(Path(model).stem, q)] + [(f"{Path(model).stem}, {k}", x) for k, x in q.get("variants", {}).items()]:
            out.append(f"| {name} | {v['images']} | {v['bad']} | {pct(v['bad_flagged'])} | {v['good']} | "
                       f"{pct(v['good_flagged'])} |")
    return "\n".join(out) + "\n"


def multi_source_plot(ms: dict, path: Path) -> Path:
    """Predicted against true count per image, one panel per model, one colour per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(ms["models"])
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4.6), squeeze=False)
    for ax, (model, r) in zip(axes[0], ms["models"].items()):
        top = 1.0
        for name, g in r["groups"].items():
            t = [x["true"] for x in g["per_image"]]
            p = [x["pred"] for x in g["per_image"]]
            top = max(top, max(t + p))
            ax.scatter(t, p, s=10, alpha=0.7, label=f"{name} ({100 * g['mape']:.0f}%)")
        ax.plot([0, top], [0, top], "k--", lw=0.8)
        ax.set(xlabel="true count", ylabel="counted", title=Path(model).stem, xscale="symlog", yscale="symlog")
        ax.legend(fontsize=7, title="source (mean abs % error)", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def border_false_positives(found: np.ndarray, truth: np.ndarray, shape, band: float = 4.0, clear: float = 10.0) -> np.ndarray:
    """(N, 2) found points within ``band`` px of the image border with no annotated centre within ``clear`` px."""
    h, w = shape
    near = (found[:, 0] < band) | (found[:, 1] < band) | (found[:, 0] > w - band) | (found[:, 1] > h - band)
    if not near.any() or not len(truth):
        return found[near]
    d = np.sqrt(((found[near][:, None, :] - truth[None, :, :]) ** 2).sum(-1)).min(axis=1)
    return found[near][d > clear]


def invariance(model: Path, data: Path, limit: int | None) -> dict:
    from cellxfer.train.data import labelled_ids

    count = _counter(model)
    ds, ids = labelled_ids(data, role="invariance")
    ids = ids[:limit] if limit else ids
    base, per = {}, {name: {} for name in VARIANTS}
    border, on_mask, n_border = 0, 0, 0
    for id_ in ids:
        s = ds[id_]
        res = count(s.image, points=True)[0]
        base[id_] = res.count
        if res.points is not None:
            unmarked = border_false_positives(res.points, s.points, s.image.shape)
            border += len(unmarked)
            on_mask += int(on_signal(on_signal_mask(s.image), unmarked).sum())
            n_border += 1
        for name, fn in VARIANTS.items():
            per[name][id_] = count(fn(s.image, s.points, DIAMETER))[0].count
    rng = np.random.default_rng(0)
    noise = [count(np.clip(rng.normal(10, 3, (600, 800)), 0, 255).astype(np.uint8))[0].count for _ in range(5)]
    noise += [count(rng.poisson(5.0, (600, 800)).astype(np.uint16))[0].count for _ in range(5)]
    b = np.array([base[i] for i in ids])
    table = {}
    for name in VARIANTS:
        v = np.array([per[name][i] for i in ids])
        rel = np.abs(v - b) / np.maximum(b, 10.0)
        table[name] = {"total_change": float(abs(v.sum() - b.sum()) / max(b.sum(), 1e-9)),
                       "median_image_change": float(np.median(rel)), "p90_image_change": float(np.quantile(rel, 0.9))}
    return {"model": str(model), "images": len(ids), "total_count": float(b.sum()), "variants": table,
            "noise_only_counts": noise, "border_false_positives": border, "border_on_signal": on_mask,
            "border_images": n_border}


def invariance_table(inv: dict) -> str:
    out = [f"{inv['images']} images, {inv['total_count']:.0f} cells counted in the originals",
           "", "| variant | change of the total count | median per-image change | 90th percentile |", "|---|---|---|---|"]
    for name, t in inv["variants"].items():
        out.append(f"| {name} | {100 * t['total_change']:.1f}% | {100 * t['median_image_change']:.1f}% | "
                   f"{100 * t['p90_image_change']:.1f}% |")
    out.append(f"\nPure-noise 600x800 images (5 Gaussian uint8, 5 Poisson uint16): counts "
               f"{', '.join(f'{c:.1f}' for c in inv['noise_only_counts'])}.")
    out.append(f"Cells reported within 4 px of the border with no annotated centre within 10 px: "
               f"{inv['border_false_positives']} over {inv['border_images']} images, {inv.get('border_on_signal', '?')} of them "
               f"on signal (a nucleus there the annotators did not mark: benchlib.on_signal_mask), the rest on background.")
    return "\n".join(out) + "\n"


# -- main ------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "transfer")
    ap.add_argument("--rows", nargs="*", default=[], help="rows REGIME[:SYNTH[:STYLIZER]][@N] (see above)")
    ap.add_argument("--grid", action="store_true", help="every synthesizer x stylizer x (synthetic, finetune@60, dacs@60)")
    ap.add_argument("--few-label", nargs="*", type=int, default=[], metavar="N")
    ap.add_argument("--invariance", type=Path, default=None, metavar="MODEL")
    ap.add_argument("--invariance-limit", type=int, default=None, help="first N images only")
    ap.add_argument("--part", default="test", choices=("test", "val", "train"),
                    help="val: choose recipes without reading test images; train (--multi-source only): dsb2018-fluo's training part")
    ap.add_argument("--blob-rules", nargs="*", default=[], metavar="RULE",
                    help="with --multi-source: also score these counting rules on the same maps: sum, or LEVEL:LO:HI "
                         "(cellxfer.density.blobs.BlobRule)")
    ap.add_argument("--multi-source", nargs="*", type=Path, default=[], metavar="MODEL",
                    help="count dsb2018-fluo's --part by source group and the IDCIA 90 with each MODEL")
    ap.add_argument("--resize", action="store_true", help="with --multi-source: also count every image resized 0.5x and 2x")
    ap.add_argument("--variants", nargs="*", default=[], metavar="NAME", choices=sorted(VARIANTS),
                    help="with --multi-source: also count every image changed so (VARIANTS' names)")
    ap.add_argument("--shading", action="store_true",
                    help="with --multi-source: also count every image unevenly lit (a gradient, a vignette, haze: SHADINGS)")
    ap.add_argument("--steps", type=int, default=1500, help="optimizer steps per row (epochs follow from the images)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--synthetic-n", type=int, default=2000)
    ap.add_argument("--synthetic-val-n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="result file name (default: from the rows asked)")
    ap.add_argument("--idcia", type=Path, default=IDCIA)
    args = ap.parse_args(argv)
    if args.part == "train" and (args.rows or args.grid or args.few_label or args.invariance):
        ap.error("--part train is for --multi-source only (the rows train on that part)")
    for text in args.blob_rules:
        if text != "sum":
            from cellxfer.density.blobs import BlobRule

            try:
                BlobRule.parse(text)
            except ValueError as exc:
                ap.error(f"--blob-rules: {exc}")
    return args


def all_rows(args) -> list[dict]:
    texts = list(args.rows)
    if args.grid:
        texts += [f"{r}:{s}:{st}{'' if r == 'synthetic' else '@60'}" for s in SYNTHS for st in STYLIZERS
                  for r in ("synthetic", "finetune", "dacs")]
    for n in args.few_label:
        texts += [f"supervised@{n}", f"finetune:nuclei@{n}", f"dacs:nuclei@{n}"]
    seen, rows = set(), []
    for t in texts:
        r = parse_row(t)
        if row_name(r) not in seen:
            seen.add(row_name(r))
            rows.append(r)
    return rows


def main(argv=None) -> int:
    from cellxfer.atomic import write_json, write_text
    from cellxfer.evaluate.split import materialize

    args = parse_args(argv)
    if not args.idcia.is_dir():
        print(f"error: {args.idcia}: real IDCIA data not found", file=sys.stderr)
        return 2
    rows = all_rows(args)
    if not rows and args.invariance is None and not args.multi_source:
        print("error: nothing to do; give --rows, --grid, --few-label, --invariance or --multi-source", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    split = materialize(args.idcia, args.work)
    result = {"command": " ".join(sys.argv), "split_seed": split["seed"], "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "load_before": os.getloadavg(), "rows": [], "invariance": None}
    text = ""
    if rows:
        result["rows"] = [evaluate_row(r, args.work, args) for r in rows]
        text += rows_table(result["rows"])
    if args.invariance is not None:
        result["invariance"] = invariance(args.invariance, args.idcia, args.invariance_limit)
        text += "\n" + invariance_table(result["invariance"])
    name = args.name or ("-".join(slug(row_name(r)) for r in rows)[:80]
                         or ("multi-source-" + args.part if args.multi_source else "invariance"))
    if args.multi_source:
        variants = (RESIZES if args.resize else ()) + (tuple(SHADINGS) if args.shading else ()) + tuple(args.variants)
        result["multi_source"] = multi_source(args.multi_source, args.part, args.idcia, variants, tuple(args.blob_rules))
        text += "\n" + multi_source_table(result["multi_source"]) + rules_table(result["multi_source"])
        multi_source_plot(result["multi_source"], args.work / f"transfer-{name}.png")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["load_after"] = os.getloadavg()
    write_json(args.work / f"transfer-{name}.json", result)
    write_text(args.work / f"transfer-{name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
