"""The scripts under ``scripts/`` share one helper module (``benchlib``) and never import each other;
the data root is defined once (``benchlib.DATA``: $CELLXFER_DATA or ../shared/data)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_scripts_import_only_the_shared_module():
    scripts = {p.stem for p in SCRIPTS.glob("*.py")}
    assert "benchlib" in scripts
    for path in SCRIPTS.glob("*.py"):
        others = (_imported_modules(path) & scripts) - {"benchlib", path.stem}
        assert not others, f"{path.name} imports the script(s) {sorted(others)}: move what they share into benchlib.py"


def test_the_data_root_is_written_once():
    pattern = re.compile(r"""["']shared["']\s*\)?\s*/\s*["']data["']""")
    writers = [p.name for p in SCRIPTS.glob("*.py") if pattern.search(p.read_text())]
    assert writers == ["benchlib.py"], f"{writers}: take DATA / IDCIA / ISL / CC0_DAPI from benchlib instead"
