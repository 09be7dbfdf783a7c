"""No function in cellxfer/ is over 80 lines (issue 17): long functions are split where they do several things."""

from __future__ import annotations

import ast
from pathlib import Path

LIMIT = 80


def test_no_function_over_80_lines():
    root = Path(__file__).resolve().parents[1] / "cellxfer"
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > LIMIT:
                    long.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 80 lines: " + "; ".join(long)
