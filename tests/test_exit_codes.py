"""The exit-code contract (cellxfer.errors.ExitCode, docs/reruns.md "Exit status") and the command specs that
every registered command has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli_inproc import run_cli

REPO = Path(__file__).resolve().parents[1]


def registered_commands() -> set[str]:
    from cellxfer.cli import build_app

    app = build_app()
    return {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}


def test_every_registered_command_has_a_spec_and_every_spec_a_command():
    from cellxfer.commands import CommandSpec
    from cellxfer.plugins import get_registry

    specs = get_registry().commands()
    assert set(specs) == registered_commands()
    for name, spec in specs.items():
        assert isinstance(spec, CommandSpec) and spec.name == name
        assert spec.interrupted and "\n" not in spec.interrupted
        assert spec.argv is not None or not (spec.reads or spec.writes), f"{name}: reads or writes, but has no argv"


def test_documented_exit_table_is_the_exit_code_enum():
    from cellxfer.errors import ExitCode

    text = (REPO / "docs" / "reruns.md").read_text()
    table = text[text.index("## Exit status"):]
    documented = [int(m) for m in re.findall(r"^\| (\d+) \|", table, flags=re.M)]
    assert documented == [int(c) for c in ExitCode]


@pytest.fixture
def command(monkeypatch):
    """Register a throw-away command ``boom`` that raises what the test puts in ``raised[0]``."""
    import typer

    from cellxfer.cli import app, build_app

    build_app()
    raised = []

    @app.command("boom")
    def _boom():
        raise raised[0]

    yield raised
    app.registered_commands[:] = [c for c in app.registered_commands if c.name != "boom"]


def test_internal_error_is_one_line_exit_70_and_debug_shows_it(command, capsys):
    command.append(RuntimeError("went\nwrong"))
    r = run_cli(["boom"], capsys)
    assert r.returncode == 70 and r.stdout == ""
    assert r.stderr.strip() == ("error: unexpected RuntimeError: went wrong (rerun with --debug for the traceback, "
                                "and report it)")
    with pytest.raises(RuntimeError, match="went"):
        run_cli(["--debug", "boom"], capsys)


def test_batch_with_failed_inputs_exits_1_listing_each_on_stderr(command, capsys):
    from cellxfer.errors import SomeInputsFailed

    command.append(SomeInputsFailed({"/d/a.tif": "/d/a.tif: empty file", "b": "does not decode"}, 5, "rerun"))
    r = run_cli(["boom"], capsys)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == ["failed /d/a.tif: empty file", "failed b: does not decode",
                                     "error: 2 of 5 inputs failed; rerun"]


def test_ctrl_c_says_what_is_saved_and_how_to_resume(monkeypatch, tmp_path, capsys):
    import cellxfer.count.job as job

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "run_count", interrupted)
    r = run_cli(["count", tmp_path, "-o", tmp_path / "c.csv"], capsys)
    assert r.returncode == 130
    assert r.stderr.strip() == ("interrupted: the rows counted so far are in the --out CSV; rerun the same command "
                                "to count the rest (finished files are skipped)")


def test_ctrl_c_of_a_real_synth_run_with_workers(tmp_path):
    """SIGINT to the whole process group (what a terminal's Ctrl-C does): the parent says one line, the
    workers print no tracebacks, and the finished images are there for the rerun."""
    from conftest import SYNTH_INTERRUPTED, interrupt_synth

    out = tmp_path / "syn"
    code, stderr = interrupt_synth(out, ["--workers", "2"])
    assert code == 130, stderr
    assert [ln for ln in stderr.splitlines() if ln.strip()] == [SYNTH_INTERRUPTED]
    assert len(list((out / "images").glob("*.tif"))) >= 5


SLOW_MAP = """
import time
from cellxfer.executors import LocalExecutor
print("go", flush=True)
try:
    for item, result in LocalExecutor().map(time.sleep, [30] * 10, workers=2):
        print("finished", item, result, flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_ends_a_process_pool_at_once_without_running_its_queued_items(tmp_path):
    """Ctrl-C (SIGINT to the process group) while two workers run 30-second items with eight more
    queued: the workers ignore it, the parent ends them and cancels the queue, all within seconds, and
    no worker prints a traceback or outlives it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", SLOW_MAP], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().strip() == "go"
        time.sleep(2.0)  # the pool is up and both workers are inside time.sleep(30)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert stdout.split() == ["interrupted"] and "Traceback" not in stderr, (stdout, stderr)
    assert took < 15, took
    deadline = time.monotonic() + 10
    while True:  # the workers are gone with the parent
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "a worker outlived Ctrl-C"
        time.sleep(0.1)


def _sigint_state(_):
    import signal

    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN, signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_pool_workers_ignore_ctrl_c_and_do_not_keep_it_blocked():
    """Every worker of a local pool ignores SIGINT (the parent owns Ctrl-C) and does not leave it blocked
    (it is blocked while the worker starts, so no Ctrl-C reaches a worker before it ignores it)."""
    import signal

    from cellxfer.executors import LocalExecutor

    assert all(r == (True, False) for _, r in LocalExecutor().map(_sigint_state, range(8), workers=2))
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the parent's mask is restored


def _write_slowly(path):
    """Pool item: inside an atomic write, say so, then hang (ended from outside)."""
    import time
    from pathlib import Path

    from cellxfer.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(b"half an image")
        Path(f"{path}.inside").touch()
        time.sleep(60)


def test_a_pool_worker_ended_mid_write_deletes_its_temporary(tmp_path):
    """What a failing or interrupted run does to its pool (``_stop_now``: SIGTERM to the workers) while they
    write: before, each left its ``.cellxfer-tmp`` file (on a full disk, holding space); now none is left."""
    import time
    from concurrent.futures import ProcessPoolExecutor

    from cellxfer.atomic import TMP_MARK
    from cellxfer.executors import _stop_now, die_with_parent

    pool = ProcessPoolExecutor(max_workers=2, initializer=die_with_parent)
    targets = [tmp_path / "a.tif", tmp_path / "b.tif"]
    futures = [pool.submit(_write_slowly, t) for t in targets]
    deadline = time.monotonic() + 30
    while not all(Path(f"{t}.inside").exists() for t in targets):
        assert time.monotonic() < deadline, "the workers never started writing"
        time.sleep(0.05)
    assert len(list(tmp_path.glob(f"*{TMP_MARK}"))) == 2
    _stop_now(pool)
    assert all(f.done() for f in futures)
    assert not list(tmp_path.glob(f"*{TMP_MARK}")) and not any(t.exists() for t in targets)


def test_a_sigterm_right_after_a_temporary_is_created_still_finds_it(tmp_path, monkeypatch):
    """The window between creating a temporary and recording it for remove_live_temporaries: a SIGTERM that
    lands just after the file is created (sent here from inside the open call) finds it recorded, so the
    worker's handler deletes it (a fresh-clone CI run found one left by `synth --workers 2` on a full disk;
    it was created by mkstemp and recorded after)."""
    import os
    import signal

    from cellxfer import atomic

    class Ended(Exception):
        pass

    def handler(signum, frame):
        atomic.remove_live_temporaries()
        raise Ended

    real = os.open

    def open_then_sigterm(path, *a, **k):
        fd = real(path, *a, **k)
        if atomic.TMP_MARK in str(path):
            os.kill(os.getpid(), signal.SIGTERM)
        return fd

    old = signal.signal(signal.SIGTERM, handler)
    monkeypatch.setattr(os, "open", open_then_sigterm)
    try:
        for _ in range(20):  # the signal's handler runs at once here, or a few instructions later
            with pytest.raises(Ended):
                atomic.write_text(tmp_path / "out.txt", "x")
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGTERM, old)
    assert not list(tmp_path.iterdir())


TERM_RAISES = """
import os, signal, sys, time
from cellxfer import atomic, executors
def broken():
    raise RuntimeError("the handler failed")
atomic.remove_live_temporaries = broken
executors.die_with_parent()
print("ready", flush=True)
try:
    time.sleep(30)
except BaseException as exc:  # what a pool worker does with an item's exception: report it, go on
    print("survived", type(exc).__name__, flush=True)
    time.sleep(30)
"""


def test_a_pool_worker_ends_on_sigterm_even_when_its_handler_fails():
    """A pool worker's SIGTERM handler exits whatever happens in it: an exception there used to surface inside
    the running item, which the pool reports as its result, and the worker went on to the next item; a Ctrl-C
    left such a worker running and its parent waiting on it (one run in six of the process-pool Ctrl-C test: a
    second SIGTERM landed while the first handler imported cellxfer.atomic)."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", TERM_RAISES], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 128 + signal.SIGTERM and proc.stdout.read() == ""
