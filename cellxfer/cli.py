"""The ``cellxfer`` command line: a typer app whose commands come from plugins.

Errors: a :class:`cellxfer.errors.CellxferError` prints one line ``error: ...`` and exits 2; any other
exception prints one line naming it and exits 1; ``--debug`` (or ``CELLXFER_DEBUG=1``) shows tracebacks.
"""

from __future__ import annotations

import os
import sys

import typer

import cellxfer

app = typer.Typer(
    name="cellxfer",
    help="Synthetic-to-real transfer for microscopy cell counting: synth, stylize, train-count, adapt, export, count.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"cellxfer {cellxfer.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
):
    """cellxfer: synthetic-to-real transfer for microscopy cell counting."""
    if debug:
        os.environ["CELLXFER_DEBUG"] = "1"
    if ctx.invoked_subcommand:  # advice on multi-plane images names only options this command has
        from cellxfer.imageio import set_plane_options

        command = ctx.command.get_command(ctx, ctx.invoked_subcommand)
        names = {p.name for p in getattr(command, "params", ())}
        set_plane_options(page="page" in names, channel="channel" in names)


def build_app() -> typer.Typer:
    """Register every plugin's commands on :data:`app` (once)."""
    if not getattr(app, "_cellxfer_built", False):
        from cellxfer.plugins import get_registry

        get_registry().register_commands(app)
        app._cellxfer_built = True
    return app


def main(argv: list[str] | None = None) -> None:
    import click

    from rich.markup import escape

    from cellxfer.console import err
    from cellxfer.errors import CellxferError

    # typer >= 0.2x runs on its own copy of click: its usage errors, Exit and Abort are not click's
    try:
        from typer._click.exceptions import ClickException as TyperClickException
    except ImportError:
        TyperClickException = click.ClickException
    usage_errors = tuple({click.ClickException, TyperClickException})
    aborts = tuple({click.exceptions.Abort, typer.Abort})
    exits = tuple({click.exceptions.Exit, typer.Exit})

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("CELLXFER_DEBUG") == "1"
    try:
        # standalone_mode=False: click returns a command's `typer.Exit(code)` instead of exiting.
        code = build_app()(args=argv, prog_name="cellxfer", standalone_mode=False)
    except exits as exc:
        sys.exit(exc.exit_code)
    except usage_errors as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except aborts:
        err.print("aborted")
        sys.exit(130)
    except CellxferError as exc:
        if debug:
            raise
        err.print(f"[red]error:[/] {escape(str(exc))}", markup=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - one line, no traceback, unless --debug
        if debug:
            raise
        err.print(f"[red]error:[/] unexpected {type(exc).__name__}: {escape(str(exc))} (rerun with --debug for the traceback)",
                  markup=True)
        sys.exit(1)
    finally:  # what the command declared (its --page/--channel) does not outlive it in this process
        from cellxfer.imageio import set_plane_options

        set_plane_options(page=True, channel=True)
    sys.exit(code if isinstance(code, int) else 0)
