"""Built-in plugin: ``cellxfer count`` (files, folders, globs -> counts CSV) and the Dask executor."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cellxfer.commands import CommandSpec, Output, Role
from cellxfer.errors import ExitCode
from cellxfer.hookspecs import hookimpl
from cellxfer.options import (config_option, deprecated_flag, device_option, engine_option, out_option, overwrite_option,
                              precision_option, scheduler_option, threads_option, trt_fp16, workers_option)

COUNT = CommandSpec(
    "count", interrupted="the rows counted so far are in the --out CSV; rerun the same command to count the rest "
    "(finished files are skipped)",
    reads={Role.IMAGES: ExitCode.SOME_INPUTS_FAILED, Role.MODEL: ExitCode.BAD_INPUT}, writes=Output.FILE, out_suffix=".csv",
    argv=lambda x: ["count", x.images, "-m", x.model, "-o", x.out, "--workers", "1"],
)


@hookimpl
def cellxfer_commands():
    return [COUNT]


@hookimpl
def cellxfer_executors():
    from cellxfer.count.dask_executor import DaskExecutor

    return [DaskExecutor()]


@hookimpl
def cellxfer_register_commands(app: typer.Typer):
    from cellxfer.count.config import CountConfig as C  # numpy-free: the defaults below are its

    @app.command("count")
    def count(
        paths: list[str] = typer.Argument(..., help="Image files, folders or glob patterns (TIFF, PNG)."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Counter (.safetensors or exported .onnx) [default: the shipped counter]."),
        engine: str = engine_option(),
        out: Path = out_option("Counts CSV, written as results arrive.", Path("counts.csv")),
        recursive: bool = config_option(C, "recursive", "Descend into subfolders.", "--recursive", "-r"),
        channel: Optional[int] = config_option(C, "channel", "Channel of a multi-channel image (never guessed)."),
        page: Optional[int] = config_option(C, "page", "Page/plane of a multi-page or OME-TIFF (never guessed)."),
        level: int = config_option(C, "level", "Pyramid level of a pyramidal TIFF/OME-TIFF or OME-Zarr folder (0 = full resolution; counts and points are in that level's pixels)."),
        overwrite: bool = overwrite_option("Recount files already in --out."),
        overlay: Optional[Path] = typer.Option(None, "--overlay", help="Write a PNG per image into this folder: windows, their counts and (density models) the cells found."),
        points: Optional[Path] = typer.Option(None, "--points", help="Density models: write the cells of each image as <name>.csv (or .geojson, --points-format) into this folder."),
        points_format: str = config_option(C, "points_format", "How --points writes each image's cells: csv (x,y pixels; Fiji, napari) or geojson (point objects for QuPath's File > Import objects).", "--points-format"),
        density_map: Optional[Path] = typer.Option(None, "--density-map", help="Density models, one image: write a low-resolution map of where the cells are (counts per block, at most 512 px a side) to OUT.tif (float32) or OUT.png."),
        workers: int = workers_option("Decode threads running ahead of inference (0 = one per core); with --scheduler local:N, N workers."),
        batch_size: int = config_option(C, "batch_size", "Windows per inference call (from several images)."),
        scheduler: Optional[str] = scheduler_option("Dask scheduler ADDRESS (tcp://host:8786) or local:N (the dask extra): one task per image, a whole slide split into blocks of parts [default: this machine]."),
        device: str = device_option("auto, cpu or cuda (torch/onnx engines)."),
        precision: str = precision_option("auto, fp16 or fp32: the TensorRT engine's arithmetic (auto = fp16); torch and onnx run fp32."),
        fp32: bool = deprecated_flag("--fp32", "use --precision fp32"),
        threads: Optional[int] = threads_option("Inference threads [default: one per core]."),
        diameter: Optional[str] = typer.Option(None, "--diameter", help="Nucleus diameter of the images: auto (estimated per image), PIXELS, or off; images are resized so their nuclei match the model's [default: auto when the model records its training diameter, else off]."),
    ):
        """Count cells in image files and folders; one CSV row per image."""
        from cellxfer.console import err
        from cellxfer.console import out as console
        from cellxfer.count.job import CountConfig, run_count
        from cellxfer.errors import SomeInputsFailed
        from cellxfer.progress import progress

        config = CountConfig(paths=tuple(paths), model=model, engine=engine, device=device, out=out,
                             recursive=recursive, channel=channel, page=page, level=level, overwrite=overwrite, overlay=overlay, points=points,
                             points_format=points_format,
                             workers=workers, batch_size=batch_size, scheduler=scheduler, fp16=trt_fp16(precision, fp32),
                             threads=threads, diameter=diameter, density_map=density_map)

        class _Late:  # the bar is opened once the number of files to count is known
            def __init__(self):
                self.bar, self.cm = None, None

            def total(self, n):
                self.cm = progress("count", total=n, unit="img")
                self.bar = self.cm.__enter__()

            def advance(self, n=1, **kw):
                self.bar.advance(n)

        late = _Late()
        try:
            result = run_count(config, on_progress=late.advance, on_total=late.total, log=err.print)
        finally:
            if late.cm is not None:
                late.cm.__exit__(None, None, None)
        n_ok = len(result.counts)
        _summary(result, console, err)
        if result.failed:
            raise SomeInputsFailed(result.failed, n_ok + len(result.failed),
                                   f"their rows in {result.out} say why; fix them and rerun the same command "
                                   f"(finished files are skipped)")


def _reasons(flagged: dict) -> str:
    """``crowded 3, disagrees 1``: how often each qc reason occurs among the flagged rows."""
    from collections import Counter

    tally = Counter(r for reasons in flagged.values() for r in reasons.split(";"))
    return ", ".join(f"{r} {n}" for r, n in tally.most_common())


def _summary(result, console, err) -> None:
    """The table ``count`` prints at the end, and one line per skipped file and about flagged counts."""
    from rich.table import Table

    n_ok = len(result.counts)
    rate = n_ok / max(result.seconds - result.startup_s, 1e-9) if n_ok else 0.0
    table = Table(title=f"cellxfer count -> {result.out}", show_header=False)
    table.add_row("engine", ", ".join(result.engines) or "-")
    table.add_row("model hash", result.model_hash)
    table.add_row("counted now", str(n_ok))
    table.add_row("already done (skipped)", str(result.skipped_done))
    table.add_row("failed", str(len(result.failed)))
    table.add_row("flagged (qc column)", f"{len(result.flagged)} of {n_ok}" + (
        f": {_reasons(result.flagged)}; check their overlays before trusting them" if result.flagged else ""))
    table.add_row("not images (skipped)", str(len(result.not_images)))
    if n_ok:
        values = list(result.counts.values())
        table.add_row("cells per image", f"mean {sum(values) / n_ok:.1f}, min {min(values):.1f}, max {max(values):.1f}")
    table.add_row("time", f"{result.seconds:.2f} s (start-up {result.startup_s:.2f} s), {rate:.2f} images/s")
    console.print(table)
    for path, why in result.not_images:
        err.print(f"skipped {path}: {why}")
    if result.flagged:
        err.print(f"warning: {len(result.flagged)} of {n_ok} counts flagged as unsure ({_reasons(result.flagged)}); "
                  f"the qc column of {result.out} says which and why")
