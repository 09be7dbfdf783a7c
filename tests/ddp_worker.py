"""The train-translate, adapt and learn-style runs of tests/test_distributed.py, for one torchrun launch
(``torchrun --nproc-per-node 2 tests/ddp_worker.py ROOT``) and for the 1-process references: one process
start pays the torch/diffusers import once for all three trainers."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path


def translate_config(root: Path, out: str):
    """Instance norm, no dropout: a translator whose step does not depend on how the batch is split."""
    from cellxfer.translate.train import TrainTranslateConfig

    return TrainTranslateConfig(pairs=str(root / "pairs"), out=str(root / out), steps=4, batch_size=3, size=32, ngf=4,
                                ndf=4, num_downs=5, norm="instance", dropout=False, checkpoint_every=2, seed=5, threads=1)


def adapt_config(root: Path, out: str):
    from cellxfer.translate.adapt import AdaptConfig

    return AdaptConfig(model=str(root / "t_one"), source=str(root / "pairs"), target=str(root / "bf"), out=str(root / out),
                       layer=10, steps=4, batch_size=4, ndf=8, seed=5, threads=1)


def learn(root: Path, out: str):
    """A 3-step style token of the tiny SD models in ``root/tiny`` (mapper dropout off)."""
    from cellxfer.stylize.config import LearnStyleConfig
    from cellxfer.stylize.learn import learn_style

    cfg = LearnStyleConfig(model=str(root / "tiny" / "sd"), clip=str(root / "tiny" / "clip"), steps=3, batch_size=3, size=64,
                           save_every=2, device="cpu", dropout=0.0)
    return learn_style([root / "style"], cfg, root / out, seed=3)


def main(argv: list[str]) -> int:
    from cellxfer.translate.adapt import adapt_layer
    from cellxfer.translate.train import train_translator

    root = Path(argv[0])
    train_translator(translate_config(root, "t_two"))
    train_translator(replace(translate_config(root, "t_resume"), steps=6))  # a 1-process checkpoint, continued
    adapt_layer(adapt_config(root, "a_two"))
    learn(root, "s_two")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
