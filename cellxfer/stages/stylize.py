"""Built-in plugin: the fda, histogram and inst stylizers and the ``stylize`` / ``learn-style`` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cellxfer.commands import CommandSpec, Output, Role
from cellxfer.errors import ExitCode
from cellxfer.hookspecs import hookimpl, lazy
from cellxfer.options import (bounded_option, config_option, device_option, out_option, overwrite_option, precision_option,
                              scheduler_option, seed_option, set_option)
from cellxfer.stylize.config import FDAConfig, HistogramConfig, InSTConfig, LearnStyleConfig
from cellxfer.stylize.spec import Stylizer


FDA = Stylizer(
    name="fda",
    description="Fourier domain adaptation: low-frequency amplitude spectrum of a real image (--beta); weight-free",
    config_cls=FDAConfig,
    prepare=lazy("cellxfer.stylize.fda", "prepare"),
    stylize=lazy("cellxfer.stylize.fda", "stylize"),
)
HISTOGRAM = Stylizer(
    name="histogram",
    description="histogram matching to the real images' intensity distribution (--reference random|pooled); weight-free",
    config_cls=HistogramConfig,
    prepare=lazy("cellxfer.stylize.histogram", "prepare"),
    stylize=lazy("cellxfer.stylize.histogram", "stylize"),
)
INST = Stylizer(
    name="inst",
    description="InST diffusion style transfer (Stable Diffusion v1 + learned style token; needs local weights)",
    config_cls=InSTConfig,
    prepare=lazy("cellxfer.stylize.inst", "prepare"),
    stylize=lazy("cellxfer.stylize.inst", "stylize"),
    needs_weights=True,
    estimate=lazy("cellxfer.stylize.inst", "estimate"),
    extra="stylize",
)


STYLIZE = CommandSpec(
    "stylize", interrupted="finished images are in --out; rerun the same command to stylize the rest "
    "(finished ones are checked and kept)",
    reads={Role.DATASET: ExitCode.SOME_INPUTS_FAILED, Role.IMAGES: ExitCode.BAD_INPUT}, writes=Output.FOLDER,
    argv=lambda x: ["stylize", "-c", x.dataset, "-s", x.images, "-o", x.out],
)
LEARN_STYLE = CommandSpec(
    "learn-style", interrupted="the state saved every --save-every steps is in --out; rerun the same command "
    "to resume from it",
    reads={Role.IMAGES: ExitCode.BAD_INPUT, Role.MODEL: ExitCode.BAD_INPUT}, writes=Output.FOLDER, runs_offline=False,
    argv=lambda x: ["learn-style", "-s", x.images, "--model", x.model, "--clip", x.model, "-o", x.out, "--steps", "1"],
    extra="stylize",
)


@hookimpl
def cellxfer_commands():
    return [STYLIZE, LEARN_STYLE]


@hookimpl
def cellxfer_stylizers():
    return [FDA, HISTOGRAM, INST]


def _opt(help_: str, *names: str):
    return typer.Option(None, *names, help=help_, show_default=False)


@hookimpl
def cellxfer_register_commands(app: typer.Typer):
    for register in (_stylize, _learn_style):
        register(app)


def _stylize(app: typer.Typer) -> None:
    f, i = FDAConfig(), InSTConfig.__dataclass_fields__

    @app.command("stylize")
    def stylize(
        content: Path = typer.Option(..., "--content", "-c", help="Labelled cell dataset to stylize (e.g. synth output)."),
        style: list[Path] = typer.Option(..., "--style", "-s", help="Real style images: a folder or files (repeatable)."),
        out: Path = out_option("Output cell dataset folder."),
        method: str = typer.Option("fda", help="Stylizer (see `cellxfer plugins`): fda, histogram, inst, ..."),
        seed: int = seed_option(),
        overwrite: bool = overwrite_option(),
        scheduler: Optional[str] = scheduler_option("Dask scheduler ADDRESS (tcp://host:8786) or local:N (the dask extra): batches run there [default: this process]."),
        limit: Optional[int] = bounded_option(None, "--limit", help="Stylize only the first N content images.", show_default=False,
                                              ge=1, le=10**9, multiple_of=1),
        beta: Optional[float] = config_option(FDAConfig, "beta", f"fda: low-frequency window half-width / shorter side [default: {f.beta}].", default=None),
        reference: Optional[str] = config_option(HistogramConfig, "reference", "histogram: match each image to a random style image or to all pooled [default: random].", default=None),
        token: Optional[Path] = _opt("inst: style token: a `cellxfer learn-style` run folder or its token.safetensors."),
        model: Optional[Path] = _opt("inst: local SD v1 diffusers folder or single-file checkpoint."),
        clip: Optional[Path] = _opt("inst: local CLIP image-encoder folder."),
        model_config: Optional[Path] = _opt("inst: with a single-file --model, a diffusers SD v1 folder holding its configs."),
        strength: Optional[float] = config_option(InSTConfig, "strength", f"inst: share of the schedule re-noised [default: {i['strength'].default}].", default=None),
        steps: Optional[int] = config_option(InSTConfig, "steps", f"inst: DDIM schedule length [default: {i['steps'].default}].", default=None),
        guidance: Optional[float] = config_option(InSTConfig, "guidance", f"inst: classifier-free guidance scale [default: {i['guidance'].default}].", default=None),
        batch_size: Optional[int] = config_option(FDAConfig, "batch_size", "Images per stylizer call [default: 64 fda/histogram, 4 inst].", default=None),
        device: Optional[str] = config_option(InSTConfig, "device", "inst: auto, cpu or cuda[:N] [default: auto].", default=None),
        precision: Optional[str] = config_option(InSTConfig, "precision", "inst: auto (fp16 on CUDA), fp32 or fp16 [default: auto].", default=None),
        set_: list[str] = set_option("Any other stylizer parameter, KEY=VALUE (repeatable)."),
    ):
        """Give synthetic images the look of real ones; points, masks and counts are carried unchanged."""
        from cellxfer.console import out as console
        from cellxfer.errors import SomeInputsFailed
        from cellxfer.executors import executor_for
        from cellxfer.plugins import get_registry
        from cellxfer.progress import progress
        from cellxfer.options import make_config, parse_sets
        from cellxfer.stylize.base import require_extra, run_stylize

        given = {k: (str(v) if isinstance(v, Path) else v) for k, v in dict(
            beta=beta, reference=reference, token=token, model=model, clip=clip, model_config=model_config,
            strength=strength, steps=steps,
            guidance=guidance, batch_size=batch_size, device=device, precision=precision,
        ).items() if v is not None}
        given.update(parse_sets(set_))
        stylizer = get_registry().get("cellxfer_stylizers", method)
        require_extra(stylizer)  # before the inputs are checked, as a command's own extra is
        config = make_config(stylizer.config_cls, given, f"stylizer '{method}'")
        from cellxfer.dataset import CellDataset

        total = len(CellDataset(content))
        total = min(total, limit) if limit is not None else total
        with progress(f"stylize ({method})", total=total, unit="img") as bar:
            result = run_stylize(stylizer, config, content, style, out, seed=seed, overwrite=overwrite,
                                 limit=limit, on_progress=bar.advance, executor=executor_for(scheduler))
        per = f", {result.seconds_per_image:.3f} s per image after loading" if result.seconds_per_image else ""
        console.print(f"{result.out}: {len(result.counts)} images ({result.written} written, "
                      f"{result.skipped} already done){per}; {result.seconds:.2f} s")
        if result.failed:
            raise SomeInputsFailed(result.failed, total, "fix them and rerun the same command (finished images are kept)")


def _learn_style(app: typer.Typer) -> None:
    L = LearnStyleConfig

    @app.command("learn-style")
    def learn_style(
        style: list[Path] = typer.Option(..., "--style", "-s", help="Real style images: a folder or files (repeatable); one token for all."),
        model: Path = typer.Option(..., "--model", help="Local SD v1 diffusers folder or single-file checkpoint."),
        clip: Path = typer.Option(..., "--clip", help="Local CLIP image-encoder folder."),
        out: Path = out_option("Run folder (token.safetensors, state.pt, history.csv, manifest); a rerun continues it."),
        model_config: Optional[Path] = _opt("With a single-file --model, a diffusers SD v1 folder holding its configs."),
        steps: int = config_option(L, "steps", "Training steps."),
        lr: float = config_option(L, "lr", "AdamW learning rate."),
        batch_size: int = config_option(L, "batch_size", "Style crops per step."),
        size: int = config_option(L, "size", "Training crop side in pixels."),
        save_every: int = config_option(L, "save_every", "Save a resumable state every N steps."),
        seed: int = seed_option(),
        device: str = device_option(),
        precision: str = precision_option(),
        overwrite: bool = overwrite_option(),
        set_: list[str] = set_option("Other settings, KEY=VALUE: heads, dim-head, blocks, dropout, prompt."),
    ):
        """Learn an InST style token from real images (CLIP image embedding -> attention -> token)."""
        from cellxfer.console import out as console
        from cellxfer.progress import progress
        from cellxfer.options import make_config, parse_sets
        from cellxfer.stylize.learn import learn_style as run

        given = dict(model=str(model), clip=str(clip), model_config=str(model_config or ""), steps=steps, lr=lr, batch_size=batch_size, size=size,
                     save_every=save_every, device=device, precision=precision)
        given.update(parse_sets(set_))
        config = make_config(LearnStyleConfig, given, "learn-style")
        with progress("learn-style", total=config.steps, unit="step", fields="loss {task.fields[loss]:.4f}") as bar:
            bar.update(loss=float("nan"))
            result = run(style, config, out, seed=seed, overwrite=overwrite, on_progress=bar.advance)
        console.print(f"{result.out}: {result.steps} steps (resumed from {result.resumed_from}), "
                      f"loss {result.loss:.4f}; {result.seconds:.1f} s -> {result.token}")
