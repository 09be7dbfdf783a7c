"""The ``cellxfer`` command line: a typer app whose commands come from plugins.

Exit codes (:class:`cellxfer.errors.ExitCode`, the same for every command): a
:class:`cellxfer.errors.CellxferError` prints its lines (``error: ...``) on stderr and exits with its
code (2 bad input, 1 a batch with failed inputs); a usage error is click's message on one line (with the command's ``--help``) and 2; an
:class:`OSError` naming a file (an output folder that is a file, a full disk, no permission) is one
line naming it with the fix and 2, since the user fixes it, not cellxfer; a command whose extra is not
installed (:mod:`cellxfer.extras`) is one line naming the pip command and 2; any other
exception prints one line ``error: unexpected ... (rerun with --debug ...)`` and exits 70; Ctrl-C prints
``interrupted: <what is saved and how to resume>`` from the command's spec and exits 130.
``--debug`` (or ``CELLXFER_DEBUG=1``) shows tracebacks instead.
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
    rich_markup_mode="markdown",  # help text is shown as written: "[default: ...]" and ranges are not rich markup
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
    global _invoked  # (--debug is read by main, before parsing: it decides how errors of parsing show)
    _invoked = ctx.invoked_subcommand
    if ctx.invoked_subcommand:  # advice on multi-plane images names only options this command has
        from cellxfer.imageio import set_plane_options

        command = ctx.command.get_command(ctx, ctx.invoked_subcommand)
        names = {p.name for p in getattr(command, "params", ())}
        set_plane_options(page="page" in names, channel="channel" in names)


_invoked: str | None = None  # the command being run (set by the root callback)


def _interrupted_line() -> str:
    """The Ctrl-C line: what the running command's spec says is saved and how to resume."""
    from cellxfer.plugins import get_registry

    spec = get_registry().commands().get(_invoked or "")
    return f"interrupted: {spec.interrupted}" if spec is not None else "interrupted"


def _print_error(console, line: str) -> None:
    """``line`` on stderr, its ``error:`` prefix in red on a terminal."""
    from rich.markup import escape

    head, sep, rest = line.partition("error: ")
    if sep and not head:
        console.print(f"[red]error:[/] {escape(rest)}", markup=True)
    else:
        console.print(line)


def build_app() -> typer.Typer:
    """Register every plugin's commands on :data:`app` (once)."""
    if not getattr(app, "_cellxfer_built", False):
        from cellxfer.plugins import get_registry

        get_registry().register_commands(app)
        app._cellxfer_built = True
    return app


def main(argv: list[str] | None = None) -> None:
    import click

    from cellxfer.console import err
    from cellxfer.errors import CellxferError, ExitCode, os_error_message
    from cellxfer.extras import missing_extra_error

    # typer >= 0.2x runs on its own copy of click: its usage errors, Exit and Abort are not click's
    try:
        from typer._click.exceptions import ClickException as TyperClickException
    except ImportError:
        TyperClickException = click.ClickException
    usage_errors = tuple({click.ClickException, TyperClickException})
    aborts = tuple({click.exceptions.Abort, typer.Abort})
    exits = tuple({click.exceptions.Exit, typer.Exit})

    global _invoked
    _invoked = None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("CELLXFER_DEBUG") == "1"
    try:
        # standalone_mode=False: click returns a command's `typer.Exit(code)` instead of exiting.
        code = build_app()(args=argv, prog_name="cellxfer", standalone_mode=False)
    except exits as exc:
        sys.exit(exc.exit_code)
    except usage_errors as exc:  # one line, as every other refusal: click's message and where the options are
        where = getattr(getattr(exc, "ctx", None), "command_path", None) or "cellxfer"
        _print_error(err, f"error: {' '.join(exc.format_message().split())} (see `{where} --help`)")
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, *aborts):
        err.print(_interrupted_line())
        sys.exit(ExitCode.INTERRUPTED)
    except CellxferError as exc:
        if debug:
            raise
        for line in exc.lines():
            _print_error(err, line)
        sys.exit(int(exc.exit_code))
    except Exception as exc:  # noqa: BLE001 - one line, no traceback, unless --debug
        if debug:
            raise
        missing = missing_extra_error(exc, _invoked) if isinstance(exc, ModuleNotFoundError) else None
        if missing is not None:  # a module of an extra that is not installed: the pip line
            _print_error(err, missing.lines()[0])
            sys.exit(missing.exit_code)
        if isinstance(exc, OSError) and exc.filename is not None:
            _print_error(err, f"error: {os_error_message(exc)}")
            sys.exit(ExitCode.BAD_INPUT)
        from cellxfer.errors import is_disk_full

        if is_disk_full(exc):  # a write outside cellxfer.atomic, which names the file itself
            _print_error(err, "error: no space left on the device (or quota) being written; free some space or "
                              "write somewhere else")
            sys.exit(ExitCode.BAD_INPUT)
        what = " ".join(f"{type(exc).__name__}: {exc}".split())
        _print_error(err, f"error: unexpected {what} (rerun with --debug for the traceback, and report it)")
        sys.exit(ExitCode.INTERNAL)
    finally:  # what the command declared (its --page/--channel) does not outlive it in this process
        from cellxfer.imageio import set_plane_options

        set_plane_options(page=True, channel=True)
    if code == ExitCode.INTERRUPTED:  # typer turns Ctrl-C (KeyboardInterrupt) into a returned 130
        err.print(_interrupted_line())
    sys.exit(code if isinstance(code, int) else 0)
