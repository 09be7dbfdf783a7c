"""The CLI shell: version, help, one-line errors without tracebacks, --debug."""

from __future__ import annotations

import os
import subprocess
import sys

import cellxfer


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cellxfer", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, cwd=cwd)


def test_version_and_help():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"cellxfer {cellxfer.__version__}"
    r = cli("--help")
    assert r.returncode == 0
    for command in ("synth", "plugins", "inspect"):
        assert command in r.stdout


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys; sys.argv=['cellxfer','--help']\n"
        "from cellxfer.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'numpy', 'diffusers', 'transformers', 'onnxruntime', 'timm', 'tifffile') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, r.stdout[-500:]


def test_bad_input_is_one_line_and_no_traceback(tmp_path):
    r = cli("inspect", str(tmp_path / "missing"))
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert "missing: no such folder" in r.stderr and "Traceback" not in r.stderr
    r = cli("--debug", "inspect", str(tmp_path / "missing"))
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_synth_cli_end_to_end(tmp_path):
    out = tmp_path / "syn"
    r = cli("synth", "--n", "5", "--size", "64", "--clusters", "2:3", "--out", str(out), "--seed", "9")
    assert r.returncode == 0, r.stderr
    assert "5 images (5 written, 0 already done)" in r.stdout
    r = cli("synth", "--n", "5", "--size", "64", "--clusters", "2:3", "--out", str(out), "--seed", "9")
    assert "(0 written, 5 already done)" in r.stdout
    r = cli("synth", "--n", "5", "--size", "64", "--out", str(out), "--seed", "9")
    assert r.returncode == 2 and "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("synth", "--n", "2", "--method", "nope", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "no synthesizer named 'nope' (available: " in r.stderr
    r = cli("inspect", str(out), "--preview", str(tmp_path / "sheet.png"))
    assert r.returncode == 0 and "5 images (cellxfer layout)" in r.stdout
    assert (tmp_path / "sheet.png").stat().st_size > 1000


def test_a_command_exit_code_reaches_the_shell():
    import typer

    from cellxfer.cli import app, main

    @app.command("exit-three-for-test")
    def _three():
        raise typer.Exit(3)

    try:
        import pytest

        with pytest.raises(SystemExit) as exc:
            main(["exit-three-for-test"])
        assert exc.value.code == 3
    finally:
        app.registered_commands[:] = [c for c in app.registered_commands if c.name != "exit-three-for-test"]


def test_usage_errors_are_clicks_message_and_exit_2():
    """A missing or unknown option is a usage error (exit 2, click's message), not an 'unexpected' one."""
    for args, said in ((["train-count", "--out", "x"], "Missing option '--regime'"),
                       (["count", "--bogus"], "No such option: --bogus")):
        r = cli(*args)
        assert r.returncode == 2, r.stderr
        assert said in r.stderr and "unexpected" not in r.stderr and "Traceback" not in r.stderr


def test_counting_with_onnx_does_not_import_torch(tmp_path):
    """`count` with auto (onnx on a CPU) or onnx needs no torch: reading the model's metadata
    and checking for TensorRT must not load it (1.6 s and ~500 MB of a count's start-up). The ONNX file is
    exported once beforehand, which does need torch."""
    import numpy as np
    import pytest
    import tifffile

    pytest.importorskip("onnxruntime")
    tifffile.imwrite(tmp_path / "a.tif", (np.random.default_rng(0).random((120, 160)) * 255).astype(np.uint8))
    first = cli("count", str(tmp_path / "a.tif"), "--engine", "onnx", "--out", str(tmp_path / "warm.csv"))
    assert first.returncode == 0, first.stderr[-500:]  # the cached export exists from here on
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from cellxfer.count.job import CountConfig, run_count\n"
        f"res = run_count(CountConfig(paths=({str(tmp_path / 'a.tif')!r},), out=Path({str(tmp_path / 'c.csv')!r})))  # engine auto: trt probed first\n"
        "print('FAILED', res.failed, 'TORCH', 'torch' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "FAILED {} TORCH False" in r.stdout, (r.stdout + r.stderr)[-800:]
