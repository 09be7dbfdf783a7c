#!/usr/bin/env python
"""Sim2Real benchmark: the structure of the InST-Microscopy paper's Table 2 on this machine.

One row per regime (supervised, synthetic, finetune, dual, dacs), synthetic data = Syn-HC from
``cellxfer synth``, real data = the IDCIA 95 in ``../shared/data/idcia-dapi-95`` (read in place: the
split folders hold symlinks, nothing is copied).

Split (documented, deterministic): the 94 annotated images (the README's unannotated image is excluded)
sorted by name and permuted with ``numpy.random.default_rng(SPLIT_SEED)``; the first 19 form the *test*
split (reported MAE/RMSE/ACP; never seen in training or model selection), the next 15 the *validation*
split (picks the ``best`` checkpoint), the remaining 60 the *training* split. The split is written to
``WORK/split.json``. The pure Sim2Real regime ``synthetic`` uses no real label at all: its ``best`` is
picked on a held-out Syn-HC validation set instead of the real one.

Budgets: ``--budget quick`` (60 optimizer steps in all: minutes on 2 idle CPU cores, under 30 min on shared
ones), ``--budget medium`` (about 5x quick) and ``--budget full`` (the paper's settings: 50 epochs, 1,000
Syn-HC images, batch 16; finetune 50 synthetic + 50 real epochs). Any field can be overridden (``--epochs``, ``--synthetic-n``,
``--pre-epochs``, ``--max-steps-per-epoch``).

    .venv/bin/python scripts/bench_sim2real.py --budget quick
    .venv/bin/python scripts/bench_sim2real.py --budget full --regimes supervised dacs

Writes ``WORK/results.json`` and ``WORK/results.md`` (the markdown table); prints the table.

``--density "RECIPE"`` adds a density-counter row beside each ``--arch`` row: the same regime, split and
Syn-HC images, trained with ``scripts/bench_density.py``'s recipe (RECIPE: its options, e.g.
``"--epochs 800 --ema 0.999 --count-weight 0.01"``; ``""`` for its defaults). That script alone gives the
LoG baseline, stylizer and seed-ensemble rows; ``docs/results.md`` shows them side by side.

    .venv/bin/python scripts/bench_sim2real.py --budget quick --regimes supervised synthetic --density "--epochs 100"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchlib import IDCIA, REPO, make_split, synhc  # noqa: F401  (the scripts' shared module)
from cellxfer.evaluate.split import N_TEST, N_VAL, SPLIT_SEED  # noqa: F401  (the one definition)
from cellxfer.train.sampler import REGIMES


@dataclass
class Budget:
    epochs: int            # real epochs (synthetic epochs for regime synthetic)
    pre_epochs: int        # finetune: synthetic epochs first
    synthetic_n: int       # Syn-HC training images
    synthetic_val_n: int   # Syn-HC validation images (regime synthetic only)
    max_steps_per_epoch: int | None
    val_every: int
    synthetic_epochs: int  # epochs of regime synthetic


BUDGETS = {
    # 60 optimizer steps in all (batch 16): ~5 min of training on 2 idle cores at ~3 s a step, about 25 min
    # when the cores are shared; validation only after the last epoch.
    "quick": Budget(epochs=2, pre_epochs=1, synthetic_n=64, synthetic_val_n=32, max_steps_per_epoch=None,
                    val_every=2, synthetic_epochs=2),
    "medium": Budget(epochs=10, pre_epochs=5, synthetic_n=256, synthetic_val_n=32, max_steps_per_epoch=None,
                     val_every=2, synthetic_epochs=6),
    "full": Budget(epochs=50, pre_epochs=50, synthetic_n=1000, synthetic_val_n=100, max_steps_per_epoch=None,
                   val_every=1, synthetic_epochs=50),
}


def run_regime(regime: str, work: Path, budget: Budget, args) -> dict:
    from cellxfer.evaluate.run import EvaluateConfig, evaluate
    from cellxfer.train.counter import TrainConfig, train_counter

    syn = work / f"synhc-{budget.synthetic_n}"
    cfg = TrainConfig(
        regime=regime, out=work / "runs" / regime,
        real=None if regime == "synthetic" else work / "idcia-train",
        synthetic=None if regime == "supervised" else syn,
        val=work / f"synhc-val-{budget.synthetic_val_n}" if regime == "synthetic" else work / "idcia-val",
        arch=args.arch, pretrained=args.pretrained,
        epochs=budget.synthetic_epochs if regime == "synthetic" else budget.epochs,
        pre_epochs=budget.pre_epochs, max_steps_per_epoch=budget.max_steps_per_epoch,
        val_every=budget.val_every, seed=args.seed, resume=(work / "runs" / regime / "state.pt").is_file(),
    )
    t0 = time.perf_counter()
    run = train_counter(cfg, on_epoch=lambda r: print(
        f"  {regime} epoch {r.epoch} [{r.phase}] loss {r.loss:.1f} val MAE "
        f"{'-' if r.val_mae is None else f'{r.val_mae:.2f}'} ({r.seconds:.0f} s)", flush=True)).out
    wall = time.perf_counter() - t0
    manifest = json.loads((run / "manifest.json").read_text())
    res = evaluate(EvaluateConfig(model=run / "best.safetensors", data=work / "idcia-test",
                                  out_csv=work / "runs" / regime / "test-predictions.csv", engine="torch", overwrite=True))
    m = res.metrics
    steps = sum(h["steps"] for h in json_history(run))
    return {
        "regime": regime, "epochs": cfg.total_epochs(), "steps": steps,
        "train_seconds": manifest["result"]["train_seconds"], "wall_seconds": round(wall, 1),
        "best_epoch": manifest["result"]["best"]["epoch"], "best_val_mae": manifest["result"]["best"]["val_mae"],
        "test": m.as_dict(), "eval_seconds_per_image": round(res.seconds / m.n, 3),
    }


def density_row(regime: str, work: Path, budget: Budget, recipe: str) -> dict:
    """The density counter in ``regime`` (``scripts/bench_density.py`` run on the same work folder, with the
    arch rows' Syn-HC sets), as a row of this table."""
    import shlex

    out = work / f"density-{regime}.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "bench_density.py"), *shlex.split(recipe), "--work", str(work),
                    "--regimes", regime, "--log-regimes", "--synthetic-n", str(budget.synthetic_n),
                    "--synthetic-val-n", str(budget.synthetic_val_n), "--json", str(out)], check=True)
    r = json.loads(out.read_text())["rows"][0]
    run = Path(r["run"])
    return {"model": "density", "regime": regime, "epochs": r["epochs"], "steps": sum(h["steps"] for h in json_history(run)),
            "train_seconds": r["train_seconds"], "best_epoch": r["best"]["epoch"], "best_val_mae": r["best"]["val_mae"],
            "test": r["test"], "localisation": r["localisation"], "eval_seconds_per_image": r["eval_seconds_per_image"],
            "recipe": recipe}


def json_history(run: Path) -> list[dict]:
    import csv

    return [{"steps": int(r["steps"])} for r in csv.DictReader((run / "history.csv").read_text().splitlines())]


def table(rows: list[dict]) -> str:
    lines = ["| model | regime | epochs | steps | train time | best val MAE | test MAE | test RMSE | ACP (5%) | MAE 0-50 | MAE 50-150 | MAE 150+ |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in rows:
        t = r["test"]
        lines.append(f"| {r.get('model', '-')} | {r['regime']} | {r['epochs']} | {r['steps']} | {r['train_seconds'] / 60:.1f} min | "
                     f"{f(r['best_val_mae'])} | {t['mae']:.2f} | {t['rmse']:.2f} | {100 * t['acp']:.0f}% | "
                     + " | ".join(f(t["bins"][b]["mae"]) for b in ("0-50", "50-150", "150+")) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="quick")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--pre-epochs", type=int)
    ap.add_argument("--synthetic-epochs", type=int)
    ap.add_argument("--synthetic-n", type=int)
    ap.add_argument("--max-steps-per-epoch", type=int)
    ap.add_argument("--regimes", nargs="+", choices=REGIMES, default=list(REGIMES))
    ap.add_argument("--arch", default="efficientnet_b0")
    ap.add_argument("--pretrained", type=Path, help="local weights file for --arch (nothing is downloaded)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--density", metavar="RECIPE", help="also train the density counter in each regime with these "
                    "scripts/bench_density.py options (\"\" for its defaults) and add its rows")
    ap.add_argument("--work", type=Path, help="work folder [default: runs/sim2real-BUDGET-ARCH]")
    args = ap.parse_args(argv)
    if not IDCIA.is_dir():
        print(f"error: {IDCIA}: real IDCIA data not found", file=sys.stderr)
        return 2
    b = BUDGETS[args.budget]
    for k in ("epochs", "pre_epochs", "synthetic_epochs", "synthetic_n", "max_steps_per_epoch"):
        if getattr(args, k) is not None:
            setattr(b, k, getattr(args, k))
    work = args.work or REPO / "runs" / f"sim2real-{args.budget}-{args.arch}{'-pretrained' if args.pretrained else ''}"
    work.mkdir(parents=True, exist_ok=True)
    split = make_split(work)
    print(f"split: train {len(split['train'])}, val {len(split['val'])}, test {len(split['test'])} (seed {SPLIT_SEED})")
    synth_seconds = {}
    if any(r != "supervised" for r in args.regimes):
        synth_seconds["train"] = round(synhc(work / f"synhc-{b.synthetic_n}", b.synthetic_n, seed=args.seed), 1)
    if "synthetic" in args.regimes:
        synth_seconds["val"] = round(synhc(work / f"synhc-val-{b.synthetic_val_n}", b.synthetic_val_n, seed=args.seed + 10_000), 1)
    rows = []
    t0 = time.perf_counter()
    for regime in args.regimes:
        print(f"== {regime}", flush=True)
        rows.append({"model": args.arch} | run_regime(regime, work, b, args))
        print(table(rows[-1:]), flush=True)
        if args.density is not None:
            rows.append(density_row(regime, work, b, args.density))
            print(table(rows[-1:]), flush=True)
        write_results(work, rows, args, b, split, synth_seconds, time.perf_counter() - t0)  # after every regime
    md = table(rows)
    print(md)
    print(f"wrote {work / 'results.json'} and {work / 'results.md'}")
    return 0


def write_results(work: Path, rows: list[dict], args, b: Budget, split: dict, synth_seconds: dict, seconds: float) -> None:
    import torch

    result = {"budget": args.budget, "settings": asdict(b), "arch": args.arch,
              "pretrained": str(args.pretrained) if args.pretrained else None, "seed": args.seed,
              "split": {k: len(v) for k, v in split.items() if isinstance(v, list)}, "split_seed": SPLIT_SEED,
              "synth_seconds": synth_seconds, "total_seconds": round(seconds, 1),
              "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform()},
              "command": " ".join(sys.argv), "rows": rows}
    (work / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (work / "results.md").write_text(table(rows))


if __name__ == "__main__":
    sys.exit(main())
