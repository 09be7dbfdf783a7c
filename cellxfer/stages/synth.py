"""Built-in plugin: the Syn-HC and nuclei synthesizers and the ``cellxfer synth`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cellxfer.commands import CommandSpec, Output, Role
from cellxfer.errors import ExitCode
from cellxfer.hookspecs import hookimpl, lazy
from cellxfer.options import (bounded_option, config_option, out_option, overwrite_option, scheduler_option, seed_option, set_option,
                              workers_option)
from cellxfer.synth.base import Synthesizer
from cellxfer.synth.config import SynHCConfig
from cellxfer.synth.nuclei_config import NucleiConfig


SYNHC = Synthesizer(
    name="synhc",
    description="Syn-HC: clustered ellipse nuclei on a noisy background (InST-Microscopy, Algorithm 1)",
    config_cls=SynHCConfig,
    render=lazy("cellxfer.synth.synhc", "render"),
    prepare=lazy("cellxfer.synth.synhc", "prepare"),
    estimate=lazy("cellxfer.synth.synhc", "estimate"),
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


def _opt(name: str, help_: str):
    """A Syn-HC parameter as an option: not given (None) means the synthesizer's default."""
    return config_option(SynHCConfig, name, help_, default=None)


@hookimpl
def cellxfer_register_commands(app: typer.Typer):
    d = SynHCConfig()

    @app.command("synth")
    def synth(
        n: int = bounded_option(1000, "--n", help="Number of images.", ge=1, le=10**7, multiple_of=1),
        out: Path = out_option("Output cell dataset folder.", Path("synthetic")),
        method: str = typer.Option("synhc", help="Synthesizer: synhc, nuclei, ... (see `cellxfer plugins`); "
                                   "the options below from --cell-size on are Syn-HC's, --set reaches any."),
        seed: int = seed_option("Random seed: the same seed gives byte-identical images."),
        workers: int = workers_option("Worker processes (0 = one per core)."),
        scheduler: Optional[str] = scheduler_option("Dask scheduler ADDRESS (tcp://host:8786) or local:N (the dask extra) [default: this machine]."),
        overwrite: bool = overwrite_option(),
        size: Optional[int] = _opt("size", f"Image side in pixels [default: {d.size}]."),
        cell_size: Optional[float] = _opt("cell_size", f"Nominal cell diameter in pixels [default: {d.cell_size:g}]."),
        count_mean: Optional[float] = _opt("count_mean", f"Mean of the cell-count normal law [default: {d.count_mean}]."),
        count_std: Optional[float] = _opt("count_std", f"SD of the cell-count normal law [default: {d.count_std}]."),
        max_cells: Optional[int] = _opt("max_cells", f"Upper clamp of the count [default: {d.max_cells}]."),
        clusters: Optional[str] = _opt("clusters", "Cluster centres per image, LOW:HIGH [default: 3:7]."),
        spread: Optional[float] = _opt("spread", f"Cluster SD as a fraction of the image side [default: {d.spread}]."),
        overlap: Optional[float] = _opt("overlap", f"Largest share of a new cell's area over earlier cells [default: {d.overlap}]."),
        intensity: Optional[str] = _opt("intensity", "Cell intensity range LOW:HIGH [default: 100:255]."),
        background: Optional[str] = _opt("background", "Background level range LOW:HIGH [default: 10:30]."),
        noise: Optional[float] = _opt("noise", f"Background noise SD [default: {d.noise:g}]."),
        layout_from: Optional[Path] = _opt("layout_from", "Copy cell centres from this annotated dataset (cell dataset or IDCIA)."),
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
