"""Built-in plugin: ``cellxfer plugins`` and ``cellxfer inspect``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cellxfer.commands import CommandSpec, Output, Role
from cellxfer.errors import ExitCode
from cellxfer.hookspecs import hookimpl
from cellxfer.bounds import INDEX
from cellxfer.options import bounded_option, overwrite_option

PLUGINS = CommandSpec("plugins", interrupted="nothing was written")
INSPECT = CommandSpec(
    "inspect", interrupted="nothing was written (--preview appears only when complete); rerun the same command",
    reads={Role.DATASET: ExitCode.SOME_INPUTS_FAILED}, writes=Output.FILE, out_suffix=".png",
    argv=lambda x: ["inspect", x.dataset, "--preview", x.out],
)


@hookimpl
def cellxfer_commands():
    return [PLUGINS, INSPECT]


@hookimpl
def cellxfer_register_commands(app: typer.Typer):
    @app.command("plugins")
    def plugins():
        """List loaded plugins, where they come from and what they provide; then each engine and device
        ``--engine auto`` tries, in its order, and why one cannot run on this machine."""
        from rich.table import Table

        from cellxfer.console import out
        from cellxfer.engines.base import availability
        from cellxfer.plugins import get_registry

        table = Table("plugin", "from", "status", "provides", box=None, pad_edge=False)
        for info in get_registry().infos.values():
            provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.provides.items())
            status = info.status if not info.error else f"{info.status} ({info.error})"
            table.add_row(info.name, info.origin, status, provides or "-")
        out.print(table)
        engines = Table("engine", "device", "here", box=None, pad_edge=False, title="engines, in --engine auto's order",
                        title_justify="left")
        for name, device, reason in availability():
            engines.add_row(name, device, "available" if reason is None else reason)
        out.print(engines)

    @app.command("inspect")
    def inspect(
        dataset: Path = typer.Argument(..., help="Cell dataset folder (or IDCIA layout)."),
        preview: Optional[Path] = typer.Option(None, help="Write a PNG contact sheet with centres marked."),
        tiles: int = bounded_option(16, "--tiles", help="Images on the contact sheet.", ge=1, le=1024, multiple_of=1),
        channel: Optional[int] = bounded_option(None, "--channel", help="Channel to read from multi-channel images (RGB, OME-TIFF C axis).", show_default=False, **INDEX),
        page: Optional[int] = bounded_option(None, "--page", help="Page/plane to read from multi-page images (Z, T).", show_default=False, **INDEX),
        overwrite: bool = overwrite_option("Replace the --preview file when it exists."),
    ):
        """Summarise a cell dataset: images, sizes, dtypes, counts; optionally a contact sheet."""
        from rich.markup import escape

        from cellxfer.console import out
        from cellxfer.inspect import inspect_dataset

        s = inspect_dataset(dataset, channel=channel, page=page, preview=preview, tiles=tiles, overwrite=overwrite)
        out.print(f"{dataset}: {s.images} images ({s.layout} layout), sizes {s.sizes}, dtypes {s.dtypes}")
        if s.labelled and s.mean is not None:
            out.print(f"cells per image: mean {s.mean:.1f}, sd {s.sd:.1f}, min {s.min}, max {s.max}, total {s.total}")
            if s.unmatched_points:
                out.print(f"[yellow]{len(s.unmatched_points)} points table(s) have no image in images/ and are left "
                          f"out: {escape(', '.join(s.unmatched_points[:5]))}[/]", markup=True)
            if s.counts_mismatch:
                out.print(f"[yellow]counts.csv disagrees with the points tables for: {escape(', '.join(s.counts_mismatch[:5]))}[/]",
                          markup=True)
        if s.preview is not None:
            out.print(f"contact sheet: {s.preview}")
        if s.damaged:  # flagged like a batch's failed inputs: exit 1, one line each
            from cellxfer.errors import SomeInputsFailed

            raise SomeInputsFailed(s.damaged, s.images, "the statistics above leave them out; fix or remove them")
