"""Where the time goes, from py-spy's collapsed stacks (``py-spy record --format raw``).

    python -m bench.collapsed PROFILE.txt [--top 20] [--under FUNCTION]

Prints the functions with the most samples on top of the stack (self) and anywhere in it
(inclusive, each stack counted once per function), as % of all samples.  ``--under`` keeps only
the stacks that pass through a function (e.g. ``_consume``), to split one task's time.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

LINE_NUMBER = re.compile(r":\d+\)$")


def function(frame: str) -> str:
    """``name (path/to/module.py:123)`` -> ``name (module.py)``: one entry per function."""
    name, _, where = LINE_NUMBER.sub(")", frame).partition(" (")
    return f"{name} ({Path(where.rstrip(')')).name})" if where else name


def stacks(text: str) -> list[tuple[list[str], int]]:
    out = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append(([function(f) for f in stack.split(";")], int(count)))
    return out


def summary(parsed: list[tuple[list[str], int]], top: int) -> list[str]:
    total = sum(count for _, count in parsed) or 1
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    for frames, count in parsed:
        own[frames[-1]] += count
        for name in set(frames):
            anywhere[name] += count
    lines = [f"{total} samples"]
    for title, counter in (("self", own), ("inclusive", anywhere)):
        lines.append(f"{title}:")
        lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(top)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy --format raw output")
    parser.add_argument("--top", type=int, default=20, help="functions to list (20)")
    parser.add_argument("--under", default=None, help="only stacks through this function")
    args = parser.parse_args(argv)
    parsed = stacks(args.profile.read_text())
    if args.under:
        parsed = [(f, n) for f, n in parsed if any(args.under in name for name in f)]
    sys.stdout.write("\n".join(summary(parsed, args.top)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
