"""Run ``cellxfer ARGS`` in the test process (a subprocess would pay torch's import every time)."""

from __future__ import annotations

from typing import NamedTuple


class CliResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def run_cli(args, capsys) -> CliResult:
    """Exit code and captured stdout/stderr of ``cellxfer ARGS``; unpacks as ``code, out, err``."""
    from cellxfer.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)
