"""Mutate the numbers in the index modules' tables, one at a time, and check a test notices.

mutmut 3 mutates code inside functions only; the published breakpoint tables, band limits and
colours, molar masses and coefficients are module-level constants, and a wrong one there is the
error that matters most.  For every numeric literal outside a function this script writes a copy
of the module with that number changed (n -> n + 1, x -> x * 1.1, 0 -> 1), runs the index tests
against the copy and counts the literals whose change no test catches.

    python tools/mutate_tables.py            # all three index modules
    python tools/mutate_tables.py urbanpulse/indices/vn_wqi.py

Runs in a temporary copy of the repository: the working tree is never touched.  Slow: one
pytest run per number (about 440 in all), so run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MODULES = {
    "urbanpulse/indices/vn_aqi.py": ["tests/unit/test_vn_aqi.py"],
    "urbanpulse/indices/us_aqi.py": ["tests/unit/test_us_aqi.py"],
    "urbanpulse/indices/vn_wqi.py": ["tests/unit/test_vn_wqi.py"],
}
# The example-based tests only: the property tests cannot notice a moved breakpoint and take
# most of the time of a run.
SELECT = ["-m", "not hypothesis"]
TIMEOUT_S = 300


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def module_level_numbers(source: str) -> list[ast.Constant]:
    """Numeric literals that are not inside a function body."""
    inside: set[int] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside.update(id(child) for child in ast.walk(node))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and type(node.value) in (int, float)
        and id(node) not in inside
    ]


def changed(value: float) -> str:
    if value == 0:
        return "1"
    if isinstance(value, int):
        return str(value + 1)
    return repr(value * 1.1)


def mutate(source: str, node: ast.Constant) -> str:
    lines = source.splitlines(keepends=True)
    line = lines[node.lineno - 1]
    assert node.end_col_offset is not None
    lines[node.lineno - 1] = (
        line[: node.col_offset] + changed(node.value) + line[node.end_col_offset :]
    )
    return "".join(lines)


def survives(copy: Path, tests: list[str]) -> bool:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        *SELECT,
        *tests,
    ]
    try:
        result = subprocess.run(
            command, cwd=copy, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return False  # a run that hangs is noticed too
    return result.returncode == 0


def check(root: Path, module: str, tests: list[str]) -> tuple[int, list[str]]:
    source = (root / module).read_text(encoding="utf-8")
    numbers = module_level_numbers(source)
    survivors = []
    with tempfile.TemporaryDirectory(prefix="mutate-tables-") as tmp:
        copy = Path(tmp)
        for part in ("urbanpulse", "tests", "pyproject.toml"):
            target = root / part
            if target.is_dir():
                shutil.copytree(target, copy / part, ignore=shutil.ignore_patterns("_probe_*"))
            else:
                shutil.copy(target, copy / part)
        if not survives(copy, tests):
            raise SystemExit(f"the tests fail on the unchanged {module}: fix them first")
        for node in numbers:
            (copy / module).write_text(mutate(source, node), encoding="utf-8")
            if survives(copy, tests):
                text = source.splitlines()[node.lineno - 1].strip()
                survivors.append(f"{module}:{node.lineno}: {node.value!r} -> "
                                 f"{changed(node.value)}   ({text[:70]})")  # fmt: skip
        (copy / module).write_text(source, encoding="utf-8")
    return len(numbers), survivors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)}")
    modules = parser.parse_args().modules or list(MODULES)
    root = Path.cwd()
    for module in modules:
        total, survivors = check(root, module, MODULES[module])
        killed = total - len(survivors)
        say(
            f"{module:34} table numbers {total:4}  caught {killed:4}  ({100 * killed / total:.1f}%)"
        )
        for line in survivors:
            say(f"    survived: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
