"""Built-in plugin: ``cellxfer train-count`` and ``cellxfer evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cellxfer.commands import CommandSpec, Output, Role
from cellxfer.errors import ExitCode
from cellxfer.hookspecs import hookimpl
from cellxfer.options import (config_option, deprecated_flag, deprecated_option, device_option, engine_option,
                              input_norm_option, out_option, overwrite_option, seed_option)

TRAIN_COUNT = CommandSpec(
    "train-count", interrupted="every finished epoch is saved in --out; rerun the same command to go on", extra="train",
    reads={Role.DATASET: ExitCode.BAD_INPUT}, writes=Output.FOLDER,
    argv=lambda x: ["train-count", "--regime", "supervised", "--real", x.dataset, "--out", x.out, "--arch", "density",
                    "--arch-option", "base=4", "--epochs", "1", "--crop", "32", "--batch-size", "2",
                    "--max-steps-per-epoch", "1"],
)
EVALUATE = CommandSpec(
    "evaluate", interrupted="nothing was written (--csv and --json appear only when complete); rerun the same command",
    reads={Role.DATASET: ExitCode.BAD_INPUT, Role.MODEL: ExitCode.BAD_INPUT}, writes=Output.FILE, out_suffix=".csv",
    argv=lambda x: ["evaluate", "-m", x.model, "-d", x.dataset, "--csv", x.out],
)


@hookimpl
def cellxfer_commands():
    return [TRAIN_COUNT, EVALUATE]

REGIME_HELP = ("supervised (real only), synthetic (synthetic only: pure Sim2Real), finetune (synthetic, then "
               "all layers on real), dual (each batch half real, half synthetic), dacs (DACS + CutMix)")


def _fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


@hookimpl
def cellxfer_register_commands(app: typer.Typer):
    for register in (_train_count, _evaluate):
        register(app)


def _train_count(app: typer.Typer) -> None:
    from cellxfer.train.config import TrainConfig as C  # numpy-free: every default below is the config's

    d = C()

    @app.command("train-count")
    def train_count(
        regime: str = config_option(C, "regime", REGIME_HELP, "--regime", default=...),
        out: Path = out_option("Run folder (best/last checkpoints, state, history, manifest)."),
        real: Optional[Path] = config_option(C, "real", "Labelled real images: cell dataset or IDCIA layout."),
        synthetic: Optional[Path] = config_option(C, "synthetic", "Labelled synthetic images (e.g. from `cellxfer synth`)."),
        val: Optional[Path] = config_option(C, "val", "Labelled validation images (whole-image MAE picks `best`)."),
        arch: str = config_option(C, "arch", "Counter architecture: a registered one or any timm name."),
        pretrained: Optional[Path] = config_option(C, "pretrained", "Local weights (.safetensors/.pth) to start from; nothing is downloaded."),
        epochs: int = config_option(C, "epochs", "Epochs (real epochs for finetune/dual/dacs; --arch log is fitted once instead)."),
        pre_epochs: Optional[int] = config_option(C, "pre_epochs", "finetune: synthetic epochs first [default: --epochs]."),
        batch_size: int = config_option(C, "batch_size", "Batch size (dual: half real, half synthetic; dacs: half synthetic, half mixed; both even, at least 2)."),
        lr: float = config_option(C, "lr", "Adam learning rate (peak of the schedule)."),
        lr_schedule: str = config_option(C, "lr_schedule", "constant (the paper's) or cosine (decays to 0 over the run)."),
        weight_decay: float = config_option(C, "weight_decay", "Adam weight decay."),
        ema: float = config_option(C, "ema", "Validate and save an exponential moving average of the weights with this decay (0 = off, e.g. 0.999)."),
        crop: int = config_option(C, "crop", "Training crop side = evaluation window, pixels."),
        flips: bool = config_option(C, "flips", "Random horizontal flips.", "--flips/--no-flips"),
        rotations: bool = config_option(C, "rotations", "Random 90-degree rotations.", "--rotations/--no-rotations"),
        cutmix_alpha: float = config_option(C, "cutmix_alpha", "dacs: Beta(alpha, alpha) of the CutMix box size."),
        mix_prob: float = config_option(C, "mix_prob", "dacs: probability of mixing a pair."),
        arch_option: list[str] = typer.Option([], "--arch-option", help="Architecture option KEY=VALUE (repeatable), e.g. base=16 for --arch density."),
        sigma: float = config_option(C, "sigma", "Density architectures (--arch density): sigma of the Gaussian target kernels, pixels."),
        count_weight: float = config_option(C, "count_weight", "Density architectures: weight of the crop-count loss (squared error of each crop's density sum, in cells) added to the pixel loss."),
        edge_prob: float = config_option(C, "edge_prob", "Share of crops cut short and zero-padded like border windows of evaluation."),
        zoom: Optional[str] = typer.Option(None, help="Scale randomisation LOW:HIGH, e.g. 0.5:2: each crop resized by a log-uniform factor in the range (nuclei LOW..HIGH times their size); the recorded diameter range widens to match."),
        input_norm: str = input_norm_option("Input normalisation percentiles LOW:HIGH (stored with the model).", f"{d.norm_low:g}:{d.norm_high:g}"),
        norm_min_snr: Optional[float] = config_option(C, "norm_min_snr", "Divide by at least this many noise SDs (stored with the model; e.g. 8 keeps pure noise and empty fields faint instead of scaling them to full contrast)."),
        norm_min_levels: Optional[float] = config_option(C, "norm_min_levels", "Divide by at least this many grey-level steps of the image as given (stored with the model; e.g. 16 keeps a dim 8-bit background of a few levels faint)."),
        norm_max_top: Optional[float] = config_option(C, "norm_max_top", "Divide by at least the image's 99.9th percentile over this (stored with the model; e.g. 2 keeps the background of a sparse field faint in any encoding, blurred or enlarged)."),
        norm_lift: Optional[float] = config_option(C, "norm_lift", "Where the scale estimate finds nuclei far dimmer than the brightest (mixed brightness), raise normalised mid-tones to this power when counting (stored with the model; training crops are never lifted; e.g. 0.5 brings a nucleus at a quarter of the bright ones' level to about a half)."),
        norm_clip: Optional[float] = config_option(C, "norm_clip", "Clip normalised values above this (stored with the model; e.g. 3 keeps nuclei of sparse fields, normalised to tens, in range)."),
        max_steps_per_epoch: Optional[int] = config_option(C, "max_steps_per_epoch", "Cap optimizer steps per epoch (quick runs)."),
        val_every: int = config_option(C, "val_every", "Validate every N epochs (and after the last)."),
        exclude: list[str] = config_option(C, "exclude", "Image id to leave out (repeatable); the known unannotated IDCIA image always is."),
        seed: int = seed_option(),
        device: str = device_option(),
        resume: bool = deprecated_flag("--resume", "a rerun with the same settings continues by itself"),
        overwrite: bool = overwrite_option(),
        norm_low: Optional[float] = deprecated_option("--norm-low", "use --input-norm LOW:HIGH"),
        norm_high: Optional[float] = deprecated_option("--norm-high", "use --input-norm LOW:HIGH"),
    ):
        """Train a cell counter (EfficientNet-B0 by default) in one of the paper's regimes."""
        from cellxfer.options import parse_value

        low, high = parse_value(tuple[float, float], input_norm, "input_norm")
        config = C(
            regime=regime, out=out, real=real, synthetic=synthetic, val=val, arch=arch, pretrained=pretrained,
            epochs=epochs, pre_epochs=pre_epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, ema=ema, weight_decay=weight_decay,
            crop=crop, flips=flips, rotations=rotations, cutmix_alpha=cutmix_alpha, mix_prob=mix_prob, edge_prob=edge_prob, sigma=sigma, count_weight=count_weight,
            norm_low=low if norm_low is None else norm_low, norm_high=high if norm_high is None else norm_high, norm_clip=norm_clip, norm_min_snr=norm_min_snr, norm_min_levels=norm_min_levels, norm_max_top=norm_max_top, norm_lift=norm_lift, max_steps_per_epoch=max_steps_per_epoch, val_every=val_every,
            exclude=tuple(exclude), seed=seed, device=device, resume=resume, overwrite=overwrite,
            zoom=parse_value(Optional[tuple[float, float]], zoom, "zoom") if zoom else None,
            extra={"arch_options": arch_options(arch, arch_option)} if arch_option else {},
        )
        train_with_progress(config, f"train-count {regime}")


def _evaluate(app: typer.Typer) -> None:
    from cellxfer.evaluate.config import EvaluateConfig as E  # numpy-free: the defaults below are its

    @app.command("evaluate")
    def evaluate(
        model: Path = typer.Option(..., "--model", "-m", help="Counter checkpoint (.safetensors from train-count), or an exported .onnx (onnx, trt engines)."),
        data: Path = typer.Option(..., "--data", "-d", help="Labelled images: cell dataset or IDCIA layout."),
        engine: str = engine_option("auto (resolved as in `count`), torch (the reference), onnx or trt: measure the model as you ship it."),
        device: str = device_option("auto, cpu or cuda (torch/onnx engines)."),
        csv: Optional[Path] = typer.Option(None, "--csv", help="Write the per-image table (image,true,predicted) here [default: none]."),
        exclude: list[str] = typer.Option([], help="Image id to leave out (repeatable); the known unannotated IDCIA image always is."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON."),
        radius: float = config_option(E, "radius", "Density models: a predicted point matches a true one within this many pixels."),
        diameter: Optional[str] = typer.Option(None, "--diameter", help="Nucleus diameter of the images: auto, PIXELS or off, as in `count` [default: auto when the model records its training diameter, else off]."),
        overwrite: bool = overwrite_option("Replace the files --csv and --json name when they exist."),
    ):
        """Count full-size labelled images exactly as `count` does; print MAE, RMSE, ACP, MAE per density (and localisation F1)."""
        from cellxfer.console import out as console
        from cellxfer.evaluate.run import EvaluateConfig, evaluate as run_evaluate
        from cellxfer.progress import progress

        config = EvaluateConfig(model=model, data=data, out_csv=csv, exclude=tuple(exclude), radius=radius,
                                diameter=diameter, engine=engine, device=device, out_json=json_out, overwrite=overwrite)
        with progress("evaluate", total=None, unit="img") as bar:
            res = run_evaluate(config, on_image=lambda *a: bar.advance(1))
        m = res.metrics
        console.print(f"{data}: {m.n} images, engine {res.engine}, true mean {m.mean_true:.1f}, predicted mean {m.mean_pred:.1f}; "
                      f"{res.seconds / max(m.n, 1):.2f} s per image")
        console.print(f"MAE {m.mae:.2f}  RMSE {m.rmse:.2f}  ACP(5%) {100 * m.acp:.1f}%")
        console.print("MAE by true count: " + ", ".join(f"{k}: {_fmt(v['mae'])} (n={v['n']})" for k, v in m.bins.items()))
        if res.localisation is not None:
            loc = res.localisation
            console.print(f"localisation (match radius {loc['radius']:g} px): precision {loc['precision']:.3f}  "
                          f"recall {loc['recall']:.3f}  F1 {loc['f1']:.3f}")
        if res.csv is not None:
            console.print(f"per-image predictions: {res.csv}")


def train_with_progress(config, title: str) -> Path:
    """Run :func:`cellxfer.train.counter.train_counter` with a progress bar and one line per epoch;
    print where the checkpoints are. Shared by ``train-count`` and ``adapt-count``."""
    from cellxfer.console import err, out as console
    from cellxfer.progress import progress
    from cellxfer.train.counter import planned_epochs, train_counter

    state = {"loss": None, "val": None, "epoch": 0}
    epochs = planned_epochs(config)
    with progress(title, total=None, unit="step") as bar:
        def label() -> str:
            return (f"{config.regime} epoch {state['epoch'] + 1}/{epochs} loss {_fmt(state['loss'], '.1f')} "
                    f"val MAE {_fmt(state['val'])}")

        def on_start(done, total):
            bar.update(total=total, completed=done, description=label())

        def on_step(epoch, loss):
            state["epoch"], state["loss"] = epoch, loss
            bar.advance(1, description=label())

        def on_epoch(rec):
            state["val"] = rec.val_mae if rec.val_mae is not None else state["val"]
            err.print(f"epoch {rec.epoch}/{epochs} [{rec.phase}] {rec.steps} steps, "
                      f"loss {rec.loss:.2f}, val MAE {_fmt(rec.val_mae)} RMSE {_fmt(rec.val_rmse)}, {rec.seconds:.1f} s")

        result = train_counter(config, on_epoch=on_epoch, on_step=on_step, on_start=on_start)
    console.print(f"{result.out}: best.safetensors (epoch {result.best.get('epoch')}, val MAE {_fmt(result.best.get('val_mae'))}), "
                  f"last.safetensors; {result.train_seconds:.1f} s training")
    return result.out


def arch_options(arch: str, items: list[str]) -> dict:
    """``--arch-option KEY=VALUE`` items -> options of ``arch``, each parsed as the type of its default and
    checked against its range (the architecture's ``bounds``, :class:`cellxfer.bounds.Bound`)."""
    from cellxfer.bounds import OutOfRange
    from cellxfer.errors import InputError
    from cellxfer.options import parse_sets, parse_value
    from cellxfer.plugins import get_registry

    provider = get_registry().provided("cellxfer_counter_architectures").get(arch)
    known = dict(getattr(provider, "defaults", None) or {})
    bounds = dict(getattr(provider, "bounds", None) or {})
    out = {}
    for key, text in parse_sets(items).items():
        if key not in known:
            raise InputError(f"--arch-option {key}: not an option of --arch {arch} "
                             f"(its options: {', '.join(sorted(known)) or 'none'})")
        out[key] = parse_value(type(known[key]), text, f"arch-option {key}")
        why = bounds[key].problem(out[key]) if key in bounds else None
        if why:
            raise OutOfRange(f"--arch-option {key}={text}: {why}")
    return out
