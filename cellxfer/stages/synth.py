"""Built-in plugin: the Syn-HC and nuclei synthesizers and the ``cellxfer synth`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cellxfer.commands import CommandSpec, Output, Role
from cellxfer.errors import ExitCode
from cellxfer.hookspecs import hookimpl, lazy
from cellxfer.options import out_option, overwrite_option, scheduler_option, seed_option, set_option, workers_option
from cellxfer.synth.base import Synthesizer
from cellxfer.synth.config import SynHCConfig
from cellxfer.synth.nuclei_config import NucleiConfig


SYNHC = Synthesizer(
    name="synhc",
    description="Syn-HC: clustered ellipse nuclei on a noisy background (InST-Microscopy, Algorithm 1)",
    config_cls=SynHCConfig,
    render=lazy("cellxfer.synth.synhc", "render"),
    prepare=lazy("cellxfer.synth.synhc", "prepare"),
)

NUCLEI = Synthesizer(
    name="nuclei",
    description="Realistic fluorescence nuclei: varied size, shape, texture, brightness, defocus, debris, camera noise",
    config_cls=NucleiConfig,
    render=lazy("cellxfer.synth.nuclei", "render"),
    prepare=lazy("cellxfer.synth.nuclei", "prepare"),
)


SYNTH = CommandSpec(
    "synth", interrupted="finished images are in --out; rerun the same command to make the rest "
    "(finished ones are checked and kept)",
    reads={Role.LAYOUT: ExitCode.BAD_INPUT}, writes=Output.FOLDER,
    argv=lambda x: ["synth", "--n", "2", "--size", "32", "--workers", "1", "--out", x.out, "--layout-from", x.dataset],
)


@hookimpl
def cellxfer_commands():
    return [SYNTH]


@hookimpl
def cellxfer_synthesizers():
    return [SYNHC, NUCLEI]


def _opt(help_: str):
    return typer.Option(None, help=help_, show_default=False)


@hookimpl
def cellxfer_register_commands(app: typer.Typer):
    d = SynHCConfig()

    @app.command("synth")
    def synth(
        n: int = typer.Option(1000, "--n", help="Number of images."),
        out: Path = out_option("Output cell dataset folder.", Path("synthetic")),
        method: str = typer.Option("synhc", help="Synthesizer: synhc, nuclei, ... (see `cellxfer plugins`); "
                                   "the options below from --cell-size on are Syn-HC's, --set reaches any."),
        seed: int = seed_option("Random seed: the same seed gives byte-identical images."),
        workers: int = workers_option("Worker processes (0 = one per core)."),
        scheduler: Optional[str] = scheduler_option("Dask scheduler ADDRESS (tcp://host:8786) or local:N (the dask extra) [default: this machine]."),
        overwrite: bool = overwrite_option(),
        size: Optional[int] = _opt(f"Image side in pixels [default: {d.size}]."),
        cell_size: Optional[float] = _opt(f"Nominal cell diameter in pixels [default: {d.cell_size:g}]."),
        count_mean: Optional[float] = _opt(f"Mean of the cell-count normal law [default: {d.count_mean}]."),
        count_std: Optional[float] = _opt(f"SD of the cell-count normal law [default: {d.count_std}]."),
        max_cells: Optional[int] = _opt(f"Upper clamp of the count [default: {d.max_cells}]."),
        clusters: Optional[str] = _opt("Cluster centres per image, LOW:HIGH [default: 3:7]."),
        spread: Optional[float] = _opt(f"Cluster SD as a fraction of the image side [default: {d.spread}]."),
        overlap: Optional[float] = _opt(f"Largest share of a new cell's area over earlier cells [default: {d.overlap}]."),
        intensity: Optional[str] = _opt("Cell intensity range LOW:HIGH [default: 100:255]."),
        background: Optional[str] = _opt("Background level range LOW:HIGH [default: 10:30]."),
        noise: Optional[float] = _opt(f"Background noise SD [default: {d.noise:g}]."),
        layout_from: Optional[Path] = _opt("Copy cell centres from this annotated dataset (cell dataset or IDCIA)."),
        set_: list[str] = set_option("Any other synthesizer parameter, KEY=VALUE (repeatable)."),
    ):
        """Generate synthetic cell images with exact centres (a cell dataset folder)."""
        from cellxfer.console import out as console
        from cellxfer.errors import SomeInputsFailed
        from cellxfer.executors import executor_for
        from cellxfer.plugins import get_registry
        from cellxfer.progress import progress
        from cellxfer.options import make_config, parse_sets
        from cellxfer.synth.base import run_synth

        given = {k: v for k, v in dict(
            size=size, cell_size=cell_size, count_mean=count_mean, count_std=count_std, max_cells=max_cells,
            clusters=clusters, spread=spread, overlap=overlap, intensity=intensity, background=background,
            noise=noise, layout_from=str(layout_from) if layout_from else None,
        ).items() if v is not None}
        given.update(parse_sets(set_))
        synthesizer = get_registry().get("cellxfer_synthesizers", method)
        config = make_config(synthesizer.config_cls, given, f"synthesizer '{method}'")
        with progress("synth", total=n, unit="img") as bar:
            result = run_synth(synthesizer, config, n, out, seed=seed, workers=workers, overwrite=overwrite,
                               executor=executor_for(scheduler), on_progress=bar.advance)
        counts = list(result.counts.values())
        mean = sum(counts) / len(counts) if counts else 0.0
        console.print(
            f"{result.out}: {len(counts)} images ({result.written} written, {result.skipped} already done), "
            f"cells per image mean {mean:.1f}, min {min(counts, default=0)}, max {max(counts, default=0)}; "
            f"{result.seconds:.2f} s"
        )
        if result.failed:
            raise SomeInputsFailed(result.failed, n, "rerun the same command to retry them (finished images are kept)")
