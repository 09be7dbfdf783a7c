"""Built-in plugin: ``cellxfer adapt-count`` (unsupervised adaptation of a density counter, see
:mod:`cellxfer.train.adapt`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cellxfer.commands import CommandSpec, Output, Role
from cellxfer.errors import ExitCode
from cellxfer.hookspecs import hookimpl
from cellxfer.options import config_option, deprecated_flag, deprecated_option, device_option, out_option, overwrite_option, seed_option

ADAPT_COUNT = CommandSpec(
    "adapt-count", interrupted="every finished epoch is saved in --out; rerun the same command to go on", extra="train",
    reads={Role.IMAGES: ExitCode.BAD_INPUT, Role.MODEL: ExitCode.BAD_INPUT}, writes=Output.FOLDER,
    argv=lambda x: ["adapt-count", "--model", x.model, "--unlabeled", x.images, "--out", x.out, "--epochs", "1",
                    "--batch-size", "2", "--max-steps-per-epoch", "1"],
)


@hookimpl
def cellxfer_commands():
    return [ADAPT_COUNT]


@hookimpl
def cellxfer_register_commands(app: typer.Typer):
    from cellxfer.train.config import TrainConfig as C  # numpy-free; the defaults adapt-count shares with train-count

    @app.command("adapt-count")
    def adapt_count(
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Density counter to adapt (.safetensors from train-count) [default: the shipped counter]."),
        unlabeled: Path = typer.Option(..., "--unlabeled", "-u", help="Target images without labels: a folder, a cell dataset (its labels are never read) or one image."),
        out: Path = out_option("Run folder (best/last checkpoints, state, history, manifest)."),
        synthetic: Optional[Path] = config_option(C, "synthetic", "Labelled synthetic images kept in the loop (supervised half of each batch, CutMixed into target crops)."),
        val: Optional[Path] = config_option(C, "val", "Labelled validation images (not the target's): whole-image MAE picks `best`; without it `best` is the last epoch."),
        epochs: int = config_option(C, "epochs", default=7, help="Epochs; one epoch passes over the target images once: ceil(images / (batch/2)) steps, at least one. Measured best: about 60 steps (docs/results.md)."),
        batch_size: int = config_option(C, "batch_size", "Batch size (half synthetic, half target when --synthetic is given: then even, at least 2)."),
        lr: float = config_option(C, "lr", default=1e-5, help="Adam learning rate (peak of the schedule); larger rates drifted within a few epochs."),
        lr_schedule: str = config_option(C, "lr_schedule", "constant or cosine."),
        weight_decay: float = config_option(C, "weight_decay", "Adam weight decay."),
        ema: float = config_option(C, "ema", default=0.99, help="Decay of the teacher, the exponential moving average of the student's weights (per step); the --ema of train-count."),
        teacher_ema: Optional[float] = deprecated_option("--teacher-ema", "use --ema"),
        pseudo_peak: float = config_option(C, "pseudo_peak", default=0.5, help="Keep the teacher's density only within 3 sigma of pixels reaching this x the peak height of one cell's kernel (0 = all)."),
        photometric: float = config_option(C, "photometric", default=1.0, help="Strength of the student's intensity augmentation: gain, gamma, blur, noise (0 = off)."),
        mix_prob: float = config_option(C, "mix_prob", "Probability of CutMixing a target crop with a synthetic one."),
        cutmix_alpha: float = config_option(C, "cutmix_alpha", "Beta(alpha, alpha) of the CutMix box size."),
        count_weight: float = config_option(C, "count_weight", default=0.01, help="Weight of the crop-count loss added to the pixel loss."),
        edge_prob: float = config_option(C, "edge_prob", "Share of crops cut short and zero-padded like border windows."),
        diameter: Optional[str] = typer.Option(None, "--diameter", help="Nucleus diameter of the target images: auto, PIXELS or off, as in `count` [default: auto when the model records one]."),
        max_steps_per_epoch: Optional[int] = config_option(C, "max_steps_per_epoch", "Cap optimizer steps per epoch (quick runs)."),
        val_every: int = config_option(C, "val_every", "Validate every N epochs (and after the last)."),
        seed: int = seed_option(),
        device: str = device_option(),
        resume: bool = deprecated_flag("--resume", "a rerun with the same settings continues by itself"),
        overwrite: bool = overwrite_option(),
    ):
        """Adapt a density counter to unlabelled target images (mean teacher, pseudo-density, DACS with synthetic labels)."""
        from cellxfer.engines.base import default_model
        from cellxfer.stages.train_count import train_with_progress
        from cellxfer.train.adapt import adapt_config

        config = adapt_config(
            model or default_model(), unlabeled, out, synthetic=synthetic, val=val, epochs=epochs, batch_size=batch_size, lr=lr,
            lr_schedule=lr_schedule, weight_decay=weight_decay, ema=ema if teacher_ema is None else teacher_ema, pseudo_peak=pseudo_peak,
            photometric=photometric, mix_prob=mix_prob, cutmix_alpha=cutmix_alpha, count_weight=count_weight,
            edge_prob=edge_prob, diameter=diameter, max_steps_per_epoch=max_steps_per_epoch, val_every=val_every,
            seed=seed, device=device, resume=resume, overwrite=overwrite)
        train_with_progress(config, "adapt-count")
