"""Import layers, checked by import-linter (its contracts are in pyproject.toml ``[tool.importlinter]``):

- ``layers``: commands -> pipelines -> engines -> export -> models and their metadata -> data and I/O, each
  layer importing only the layers below it (README "Code map");
- ``acyclic``: no import circles, between the packages or between the modules of any package;
- ``core``: the modules a core install (``pip install cellxfer``) runs never import torch, timm, diffusers or
  transformers themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_contracts_are_declared():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert {c["id"] for c in contracts} >= {"layers", "acyclic", "core"}


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.is_file(), "import-linter is missing: pip install -e '.[dev]'"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's cellxfer, not an installed one
    proc = subprocess.run([str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " 0 broken" in proc.stdout, proc.stdout[-2000:]
