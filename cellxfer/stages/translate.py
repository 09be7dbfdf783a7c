"""Built-in plugin: the translator commands (``synth-pairs``, ``split-field``, ``train-translate``, ``adapt``,
``evaluate-translator``, ``translate``; ``export`` exports translators too). Library code: :mod:`cellxfer.translate`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cellxfer.commands import CommandSpec, Output, Role
from cellxfer.errors import ExitCode
from cellxfer.hookspecs import hookimpl
from cellxfer.options import (bounded_option, config_option, deprecated_flag, device_option, engine_option, input_norm_option, out_option,
                              overwrite_option, seed_option, threads_option)

_TINY_TRANSLATOR = ["--size", "32", "--ngf", "4", "--ndf", "4", "--num-downs", "5", "--batch-size", "1"]
SYNTH_PAIRS = CommandSpec(
    "synth-pairs", interrupted="finished pairs are in --out; rerun the same command to make the rest",
    writes=Output.FOLDER, argv=lambda x: ["synth-pairs", "--n", "1", "--size", "32", "--cell-size", "8", "-o", x.out],
)
TRAIN_TRANSLATE = CommandSpec(
    "train-translate", interrupted="the checkpoint saved every --checkpoint-every steps is in --out; rerun the same "
    "command to resume from it",
    reads={Role.PAIRS: ExitCode.BAD_INPUT}, writes=Output.FOLDER,
    argv=lambda x: ["train-translate", "--pairs", x.pairs, "-o", x.out, "--steps", "1", *_TINY_TRANSLATOR], extra="train",
)
ADAPT = CommandSpec(
    "adapt", interrupted="finished layers are in --out; rerun the same command to keep them and adapt the rest "
    "(a layer stopped part-way starts again)",
    reads={Role.TRANSLATOR: ExitCode.BAD_INPUT, Role.IMAGES: ExitCode.BAD_INPUT}, writes=Output.FOLDER,
    argv=lambda x: ["adapt", "-m", x.translator, "--source", x.images, "--target", x.images, "-o", x.out,
                    "--layer", "1", "--steps", "1", "--batch-size", "1", "--ndf", "4", "--d-layers", "1", "--holdout", "0"],
    extra="train",
)
EVALUATE_TRANSLATOR = CommandSpec(
    "evaluate-translator", interrupted="nothing was written (--csv appears only when complete); rerun the same command",
    reads={Role.TRANSLATOR: ExitCode.BAD_INPUT, Role.PAIRS: ExitCode.BAD_INPUT}, writes=Output.FILE, out_suffix=".csv",
    argv=lambda x: ["evaluate-translator", "-m", x.translator, "--pairs", x.pairs, "--csv", x.out],
)
TRANSLATE = CommandSpec(
    "translate", interrupted="finished images are in --out; rerun the same command to translate the rest "
    "(finished ones are skipped)",
    reads={Role.IMAGES: ExitCode.SOME_INPUTS_FAILED, Role.TRANSLATOR: ExitCode.BAD_INPUT}, writes=Output.FOLDER,
    argv=lambda x: ["translate", x.images, "-m", x.translator, "-o", x.out],
)

SPLIT_FIELD = CommandSpec(
    "split-field", interrupted="crops written so far are in --out; rerun the same command to write them all again",
    reads={Role.IMAGES: ExitCode.BAD_INPUT}, writes=Output.FOLDER,
    argv=lambda x: ["split-field", x.images, "-o", x.out, "--test-side", "4", "--margin", "1"],
)


@hookimpl
def cellxfer_commands():
    return [SYNTH_PAIRS, SPLIT_FIELD, TRAIN_TRANSLATE, ADAPT, EVALUATE_TRANSLATOR, TRANSLATE]


def _pair(text: str, name: str) -> tuple[float, float]:
    from cellxfer.errors import InputError

    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"--{name} {text!r}: expected LOW:HIGH percentiles, e.g. 0.5:99.5") from None
    return lo, hi


def _layers(text: str) -> list[int]:
    """The layers of ``--sweep``: at least one, each once (each is adapted into its own ``layer_LL/``)."""
    from cellxfer.errors import InputError

    example = "expected comma-separated layer numbers, e.g. 1,3,5,7,9,11,13,15,16"
    try:
        layers = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--sweep {text!r}: {example}") from None
    if not layers:
        raise InputError(f"--sweep {text!r}: names no layer; {example}")
    twice = sorted({L for L in layers if layers.count(L) > 1})
    if twice:
        raise InputError(f"--sweep {text!r}: layer {', '.join(map(str, twice))} given more than once; give each layer once")
    return layers


def _loss(value, digits: int) -> str:
    """A loss as the summary line shows it: ``-`` where there is none (no discriminator with ``--lambda-gan 0``)."""
    import math

    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


@hookimpl
def cellxfer_register_commands(app: typer.Typer):
    for register in (_synth_pairs, _split_field, _train_translate, _adapt, _evaluate_translator, _translate):
        register(app)


def _low_high(config_cls: type, name: str) -> str:
    """A ``(low, high)`` percentile default of ``config_cls`` as the option writes it, ``LOW:HIGH``."""
    low, high = config_cls.__dataclass_fields__[name].default
    return f"{low:g}:{high:g}"


def _synth_pairs(app: typer.Typer) -> None:
    from cellxfer.synth.paired_config import PairedConfig as P  # numpy-free: the defaults below are its

    @app.command("synth-pairs")
    def synth_pairs(
        n: int = bounded_option(100, "--n", help="Number of pairs.", ge=1, le=10**7, multiple_of=1),
        out: Path = out_option("Paired folder to write (source/, target/, points/)."),
        modality: str = config_option(P, "modality", "Input: pc (phase contrast) or bf (bright field)."),
        marker: str = config_option(P, "marker", "Target: dapi (nuclei) or cd29 (perinuclear halo)."),
        overexpose: float = config_option(P, "overexpose", "Overexposure factor of the input (clipped at full scale)."),
        scale: float = config_option(P, "scale", "Zoom factor of input and target (>= 1)."),
        size: int = config_option(P, "size", "Image side in pixels."),
        cell_size: float = config_option(P, "cell_size", "Mean cell diameter in pixels."),
        seed: int = seed_option("Random seed (same seed = same cells in every modality and shift)."),
        overwrite: bool = overwrite_option(),
    ):
        """Render the paired translator testbed (uint16 input + fluorescence, exact ground truth)."""
        from cellxfer.console import out as console
        from cellxfer.errors import InputError
        from cellxfer.progress import progress
        from cellxfer.synth.paired import PairedConfig, write_pairs

        try:
            cfg = PairedConfig(size=size, modality=modality, marker=marker, cell_size=cell_size, overexpose=overexpose, scale=scale)
        except ValueError as exc:
            raise InputError(f"synth-pairs: {exc}") from None
        with progress("synth-pairs", total=n, unit="pair") as bar:
            r = write_pairs(cfg, n, out, seed=seed, overwrite=overwrite, on_progress=bar.advance)
        console.print(f"{r.out}: {n} pairs ({r.written} written, {r.skipped} already done); {r.seconds:.2f} s")


def _split_field(app: typer.Typer) -> None:
    from cellxfer.translate.config import SplitFieldConfig as S  # numpy-free: the defaults and ranges below are its

    @app.command("split-field")
    def split_field(
        sources: list[Path] = typer.Argument(..., help="Registered input images of one field (e.g. phase z-slices), or folders of them."),
        target: Optional[Path] = typer.Option(None, "--target", help="The registered fluorescence image (e.g. DAPI)."),
        out: Path = out_option("Folder for <part>/source + target pairs (per source stem when several)."),
        test_side: int = config_option(S, "test_side", "Side of the bottom-right test square in pixels."),
        num_downs: int = config_option(S, "num_downs", "Generator down blocks: the margin is its receptive field."),
        margin: Optional[int] = config_option(S, "margin", "Margin in pixels between parts [default: the receptive field of --num-downs]."),
        overwrite: bool = overwrite_option(),
    ):
        """Split one registered field into train / val / test pairs folders, a receptive field apart."""
        from cellxfer.console import out as console
        from cellxfer.translate.regions import split_field as run

        c = S(test_side=test_side, num_downs=num_downs, margin=margin)
        r = run(sources, target, out, test_side=c.test_side, num_downs=c.num_downs, margin=c.margin, overwrite=overwrite)
        for part, rects in r.split.parts.items():
            console.print(f"{part}: " + ", ".join(f"y {q.y0}:{q.y1} x {q.x0}:{q.x1}" for q in rects) + f" -> {r.folders[part][0]}"
                          + (f" (+{len(r.folders[part]) - 1} more)" if len(r.folders[part]) > 1 else ""))
        console.print(f"{out}: margin {r.margin} px between parts; layout in {out / 'split.json'}")


def _train_translate(app: typer.Typer) -> None:
    from cellxfer.translate.config import TrainTranslateConfig as T  # numpy-free: the defaults below are its

    @app.command("train-translate")
    def train_translate(
        pairs: Path = typer.Option(..., "--pairs", help="Paired folder: source/<id>.tif + target/<id>.tif."),
        out: Path = out_option("Run folder (translator.safetensors, checkpoint.pt, log.csv, manifest); a rerun continues it."),
        steps: int = config_option(T, "steps", "Training steps (batches)."),
        batch_size: int = config_option(T, "batch_size", "Crops per step (pix2pix: 1)."),
        size: int = config_option(T, "size", "Crop side; a multiple of 2**num-downs."),
        ngf: int = config_option(T, "ngf", "Generator width (pix2pix: 64)."),
        ndf: int = config_option(T, "ndf", "Discriminator width (pix2pix: 64)."),
        num_downs: int = config_option(T, "num_downs", "UNet down blocks (8 = unet_256, 16 layers)."),
        d_layers: int = config_option(T, "d_layers", "PatchGAN strided layers (3 = 70x70)."),
        norm: str = config_option(T, "norm", "batch or instance."),
        dropout: bool = config_option(T, "dropout", "Dropout in the inner up blocks (training only).", "--dropout/--no-dropout"),
        lr: float = config_option(T, "lr", "Adam learning rate."),
        beta1: float = config_option(T, "beta1", "Adam beta1."),
        lambda_l1: float = config_option(T, "lambda_l1", "L1 weight."),
        lambda_gan: float = config_option(T, "lambda_gan", "GAN weight (pix2pix: 1); 0 = pure L1 regression, no discriminator."),
        gan_mode: str = config_option(T, "gan_mode", "vanilla (BCE) or lsgan."),
        augment: str = config_option(T, "augment", "flip (pix2pix: random horizontal flips) or dihedral (the 8 rotations/reflections; microscopy has no up)."),
        input_norm: str = input_norm_option("Input percentiles mapped to [-1, 1].", _low_high(T, "input_norm")),
        target_norm: str = typer.Option(_low_high(T, "target_norm"), help="Target percentiles mapped to [-1, 1]."),
        checkpoint_every: int = config_option(T, "checkpoint_every", "Steps between resumable checkpoints."),
        val_pairs: Optional[Path] = typer.Option(None, "--val-pairs", help="Validation pairs, scored every --val-every steps (val.csv); the translator is the best step's (mean Pearson)."),
        val_every: int = config_option(T, "val_every", "Steps between validation scores (with --val-pairs)."),
        seed: int = seed_option(),
        threads: Optional[int] = threads_option(),
        device: str = device_option("auto (cuda when there is one), cpu, cuda, cuda:1, ... (under torchrun: cuda = nccl)."),
        overwrite: bool = overwrite_option(),
        fresh: bool = deprecated_flag("--fresh", "use --overwrite"),
    ):
        """Train a pix2pix translator (transmitted light -> fluorescence) on paired images."""
        from cellxfer.console import out as console
        from cellxfer.progress import progress
        from cellxfer.translate.train import TrainTranslateConfig, train_translator

        cfg = TrainTranslateConfig(pairs=str(pairs), out=str(out), steps=steps, batch_size=batch_size, size=size, ngf=ngf,
                                   ndf=ndf, num_downs=num_downs, d_layers=d_layers, norm=norm, dropout=dropout, lr=lr,
                                   beta1=beta1, lambda_l1=lambda_l1, lambda_gan=lambda_gan, gan_mode=gan_mode, augment=augment,
                                   input_norm=_pair(input_norm, "input-norm"), target_norm=_pair(target_norm, "target-norm"),
                                   checkpoint_every=checkpoint_every, val_pairs=str(val_pairs) if val_pairs else None,
                                   val_every=val_every, seed=seed, threads=threads or 0, device=device)
        with progress("train-translate", total=steps, unit="step", fields="L1 {task.fields[loss_g_l1]:.4f}") as bar:
            bar.update(loss_g_l1=float("nan"))
            r = train_translator(cfg, on_step=bar.advance, overwrite=overwrite or fresh)
        console.print(f"{out}: {r.steps} steps, L1 {_loss(r.loss_g_l1, 4)}, "
                      f"D {_loss(r.loss_d, 3)}; {r.seconds:.1f} s -> {out / 'translator.safetensors'}"
                      + (f" (step {r.selected[0]}, val Pearson {r.selected[1]:.4f})" if r.selected else ""))


def _adapt(app: typer.Typer) -> None:
    from cellxfer.translate.config import AdaptConfig as A  # numpy-free: the defaults below are its

    @app.command("adapt")
    def adapt(
        model: Path = typer.Option(..., "--model", "-m", help="Source translator (run folder or .safetensors)."),
        source: Path = typer.Option(..., "--source", help="Source-domain input images (folder, or a pairs folder: its source/)."),
        target: Path = typer.Option(..., "--target", help="Target-domain images, unpaired (folder, or a pairs folder)."),
        out: Path = out_option("Run folder for the adapted translator."),
        layer: int = config_option(A, "layer", "Layer to match: 1 to 2 x the translator's --num-downs, the last its "
                                               "output (plain ADDA): 16 for the default 8 down blocks."),
        sweep: Optional[str] = typer.Option(None, help="Comma-separated layers to try, e.g. 1,3,5,7,9,11,13,15,16 "
                                                       "(a translator of 8 down blocks)."),
        steps: int = config_option(A, "steps", "Adaptation steps per layer."),
        batch_size: int = config_option(A, "batch_size", "Source and target crops per step."),
        size: Optional[int] = config_option(A, "size", "Crop side [default: the translator's training size].", default=None),
        lr: float = config_option(A, "lr", "Adam learning rate of the adapted blocks."),
        lr_d: float = config_option(A, "lr_d", "Adam learning rate of the discriminator."),
        ndf: int = config_option(A, "ndf", "Discriminator width."),
        d_layers: int = config_option(A, "d_layers", "Discriminator strided layers (reduced for small feature maps)."),
        gan_mode: str = config_option(A, "gan_mode", "vanilla (BCE) or lsgan."),
        holdout: float = config_option(A, "holdout", "Share of labelled target pairs held out to pick the best layer."),
        eval_pairs: Optional[Path] = typer.Option(None, help="Labelled target pairs to evaluate on (instead of a holdout)."),
        train: str = config_option(A, "train", "upto: train blocks 1..L (the paper); layer: block L only (UNet skips stay the source's)."),
        match: str = config_option(A, "match", "layer: match layer L only (the paper); skips: also match every skip tensor the frozen rest reads (needs --train upto)."),
        seed: int = seed_option(),
        threads: Optional[int] = threads_option(),
        device: str = device_option("auto (cuda when there is one), cpu, cuda, cuda:1, ... (under torchrun: cuda = nccl)."),
        overwrite: bool = overwrite_option(),
    ):
        """LM-ADDA: adapt a translator to a new microscope setting without paired or labelled data."""
        from cellxfer.console import out as console
        from cellxfer.progress import progress
        from cellxfer.translate.adapt import AdaptConfig, adapt as adapt_one, run_sweep

        cfg = AdaptConfig(model=str(model), source=str(source), target=str(target), out=str(out), layer=layer, steps=steps,
                          batch_size=batch_size, size=size or 0, lr=lr, lr_d=lr_d, ndf=ndf, d_layers=d_layers, gan_mode=gan_mode,
                          holdout=holdout, eval_pairs=str(eval_pairs) if eval_pairs else None, train=train, match=match,
                          seed=seed, threads=threads or 0, device=device)
        if sweep:
            layers = _layers(sweep)
            with progress("adapt sweep", total=steps * len(layers), unit="step") as bar:
                r = run_sweep(cfg, layers, on_event=console.print, on_step=bar.advance, overwrite=overwrite)
            if r.best_layer is None:
                console.print(f"{out}: no labelled target pairs, nothing picked; each layer's translator is in {out}/layer_LL/")
            else:
                console.print(f"{out}: best layer {r.best_layer} -> {out / 'translator.safetensors'} (table: {out / 'sweep.csv'})")
            return
        with progress("adapt", total=steps, unit="step") as bar:
            s = adapt_one(cfg, on_step=bar.advance, overwrite=overwrite)
        console.print(f"{out}: layer {layer}, D loss {s.loss_d_first:.3f} -> {s.loss_d_last:.3f}, "
                      f"G loss {s.loss_g_first:.3f} -> {s.loss_g_last:.3f}; {s.seconds:.1f} s")
        if (h := s.held_out) is not None:
            console.print(f"held-out target pairs ({h.pairs}): Pearson {h.pearson:.4f}, MAE {h.mae:.4f}, SSIM {h.ssim:.4f}")


def _evaluate_translator(app: typer.Typer) -> None:
    from cellxfer.translate.config import TranslateConfig as T  # numpy-free: the ranges below are its

    @app.command("evaluate-translator")
    def evaluate_translator(
        model: Path = typer.Option(..., "--model", "-m", help="Translator (run folder or .safetensors)."),
        pairs: Path = typer.Option(..., "--pairs", help="Paired folder with true fluorescence in target/."),
        engine: str = engine_option("auto (resolved as in `count`), torch (the reference), onnx or trt: measure the translator as you ship it."),
        tile: Optional[int] = config_option(T, "tile", "Tile side [default: the training size]."),
        csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write per-image metrics here."),
        overwrite: bool = overwrite_option("Replace the --csv file when it exists."),
    ):
        """Pearson (the paper's metric), MAE and SSIM of predicted vs true fluorescence, per image and mean."""
        from cellxfer.console import out as console
        from cellxfer.outputs import refuse_existing
        from cellxfer.progress import progress
        from cellxfer.translate.infer import defined, evaluate_translator as run

        refuse_existing(csv_out, "--csv", overwrite, inputs=[model, pairs])
        with progress("evaluate", total=None, unit="img") as bar:
            r = run(model, pairs, engine, tile=tile or None, csv=csv_out, on_progress=bar.advance, log=console.print)
        for row in r.rows:
            console.print(f"{row['id']}: Pearson {row['pearson']:.4f}  MAE {row['mae']:.4f}  SSIM {row['ssim']:.4f}")
        m, n = r.mean, defined(r.rows)
        left = {k: len(r.rows) - v for k, v in n.items() if v != len(r.rows)}
        note = "; ".join(f"{k} over {n[k]}: undefined for {v} (a constant image)" for k, v in left.items())
        console.print(f"mean over {len(r.rows)} images: Pearson {m['pearson']:.4f}  MAE {m['mae']:.4f}  SSIM {m['ssim']:.4f}"
                      + (f" ({note})" if note else ""))


def _translate(app: typer.Typer) -> None:
    from cellxfer.translate.config import TranslateConfig as T  # numpy-free: the defaults and ranges below are its

    @app.command("translate")
    def translate(
        paths: list[Path] = typer.Argument(..., help="Images or folders of images."),
        model: Path = typer.Option(..., "--model", "-m", help="Translator (run folder or .safetensors)."),
        out: Path = out_option("Output folder (<stem>.tif per input)."),
        engine: str = engine_option("auto (trt, onnx on CUDA, onnx on CPU, torch), torch, onnx (exported once, parity-checked, cached) or trt."),
        tile: Optional[int] = config_option(T, "tile", "Tile side [default: the training size]."),
        overlap: Optional[int] = config_option(T, "overlap", "Tile overlap in pixels, blended; at most half the tile [default: 32, or half the tile when less]."),
        dtype: str = config_option(T, "dtype", "uint16, uint8 or float32 output."),
        overwrite: bool = overwrite_option("Redo outputs that exist."),
    ):
        """Translate transmitted-light images of any size to fluorescence (sliding window, seamless)."""
        from cellxfer.console import out as console
        from cellxfer.errors import SomeInputsFailed
        from cellxfer.progress import progress
        from cellxfer.translate.infer import translate_images

        c = T(tile=tile, overlap=overlap, dtype=dtype)
        with progress("translate", total=None, unit="img") as bar:
            r = translate_images(model, paths, out, engine, log=console.print, dtype=c.dtype, tile=c.tile,
                                 overlap=c.overlap, overwrite=overwrite, on_progress=bar.advance)
        console.print(f"{out}: {r.files} images ({r.written} written, {r.skipped} already done, "
                      f"{len(r.failed)} failed) with {r.engine}")
        if r.failed:
            raise SomeInputsFailed(r.failed, r.files, "fix them and rerun the same command (finished images are skipped)")
