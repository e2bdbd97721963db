"""The core depends on nothing built on it: no module of ``urbanpulse.core`` imports a layer."""

from __future__ import annotations

import ast
from pathlib import Path

import urbanpulse.core

CORE = Path(urbanpulse.core.__file__).parent


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):  # function-level imports count as much as top-level ones
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_core_imports_only_core_from_urbanpulse() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert CORE / "metrics.py" in modules  # the walk sees the module that once broke the rule
    upward = {
        f"{path.name}: {name}"
        for path in modules
        for name in _imported_modules(path)
        if name.split(".")[0] == "urbanpulse" and not name.startswith("urbanpulse.core")
    }
    assert upward == set()
