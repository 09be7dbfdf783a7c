"""Import layers: the inference packages import downwards only, so there is no loop
``count -> engines -> export -> count`` (or ``counter -> count``): what ``count`` builds on never imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "cellxfer"

#: package -> packages it must never import (at any depth, lazily inside functions included)
FORBIDDEN = {
    "counter": ("cellxfer.count", "cellxfer.engines", "cellxfer.export", "cellxfer.evaluate"),
    "export": ("cellxfer.count", "cellxfer.engines", "cellxfer.evaluate"),
    "engines": ("cellxfer.count", "cellxfer.evaluate"),
    "density": ("cellxfer.count", "cellxfer.engines", "cellxfer.export", "cellxfer.evaluate"),
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_packages_never_import_higher_ones(package):
    bad = []
    for path in sorted((PKG / package).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(PKG.parent)} imports {name}")
    assert not bad, "; ".join(bad)
