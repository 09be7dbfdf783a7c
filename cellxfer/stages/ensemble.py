"""Built-in plugin: the ``ensemble`` counter architecture and ``cellxfer ensemble`` (average trained counters)."""

from __future__ import annotations

from pathlib import Path

import typer

from cellxfer.commands import CommandSpec, Output, Role
from cellxfer.errors import ExitCode
from cellxfer.hookspecs import hookimpl
from cellxfer.options import out_option, overwrite_option

ENSEMBLE = CommandSpec(
    "ensemble", interrupted="nothing was written (-o appears only when complete); rerun the same command",
    reads={Role.MODEL: ExitCode.BAD_INPUT}, writes=Output.FILE, out_suffix=".safetensors",
    argv=lambda x: ["ensemble", x.model, x.other_model or x.model, "-o", x.out], extra="train",
)


@hookimpl
def cellxfer_commands():
    return [ENSEMBLE]


def _build(meta):
    from cellxfer.counter.ensemble import build_ensemble

    return build_ensemble(meta)


@hookimpl
def cellxfer_counter_architectures():
    from cellxfer.counter.model import CounterArch  # numpy-free module top: cheap at registration

    return [CounterArch("ensemble", "mean of trained counters (made by `cellxfer ensemble`, not trained directly)", _build)]


@hookimpl
def cellxfer_register_commands(app: typer.Typer):
    @app.command("ensemble")
    def ensemble(
        models: list[Path] = typer.Argument(..., help="Two or more counter checkpoints (.safetensors) trained with the same data settings, e.g. one recipe with several --seed values."),
        out: Path = out_option("The ensemble checkpoint (.safetensors) to write; its manifest goes beside it. Never one of the inputs."),
        overwrite: bool = overwrite_option("Replace --out when it exists."),
    ):
        """Average trained counters into one counter (mean of their outputs) that count, evaluate and export use like any other."""
        from cellxfer.console import out as console
        from cellxfer.counter.ensemble import EnsembleConfig, make_ensemble

        path = make_ensemble(EnsembleConfig(models=tuple(models), out=out, overwrite=overwrite))
        console.print(f"{path}: ensemble of {len(models)} counters written")
