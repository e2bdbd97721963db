"""Mutation testing of the pure modules with mutmut 3, one module at a time; score per module.

    python tools/mutation_score.py            # run every module in [tool.mutmut] only_mutate
    python tools/mutation_score.py --report   # only print the scores of the last run
    python tools/mutation_score.py urbanpulse/alerts/engine.py   # one module

mutmut keeps its results in ``mutants/<path>.py.meta`` (exit code per mutant); this script
runs it with a single worker (the machine is shared) and reads those files.  Score = killed /
(killed + survived + no tests), where a timeout or a type-check catch counts as killed.
Surviving mutants judged equivalent are listed in tests/mutation/EQUIVALENT.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

KILLED = {"killed", "timeout", "caught by type check", "segfault"}
COUNTED = {*KILLED, "survived", "no tests", "suspicious"}


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def configured_modules() -> list[str]:
    config = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def dotted(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def run(module: str) -> int:
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", "1", f"{dotted(module)}.*"]
    return subprocess.run(command, stdout=subprocess.DEVNULL, check=False).returncode


def statuses(module: str) -> Counter[str]:
    meta = Path("mutants") / f"{module}.meta"
    if not meta.exists():
        return Counter()
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return Counter(status_by_exit_code[code] for code in codes.values())


def report(modules: list[str]) -> None:
    say(f"{'module':42} {'killed':>6} {'surv.':>6} {'no t.':>6} {'other':>6} {'score':>7}")
    for module in modules:
        counts = statuses(module)
        killed = sum(counts[s] for s in KILLED)
        counted = sum(counts[s] for s in COUNTED)
        other = sum(counts.values()) - counted
        score = f"{100 * killed / counted:6.1f}%" if counted else "     -"
        survived, no_tests = counts["survived"] + counts["suspicious"], counts["no tests"]
        say(f"{module:42} {killed:6} {survived:6} {no_tests:6} {other:6} {score:>7}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("modules", nargs="*", help="paths from [tool.mutmut] only_mutate")
    parser.add_argument("--report", action="store_true", help="print the last results only")
    args = parser.parse_args()
    modules = args.modules or configured_modules()
    if not args.report:
        for module in modules:
            if run(module) != 0:
                sys.stderr.write(f"mutmut failed on {module}\n")
                return 1
    report(modules)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
