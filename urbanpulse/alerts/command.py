"""``urbanpulse rules check [FILE]``: validate a rule file as the processor would load it."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import timedelta
from typing import Any

from urbanpulse.alerts.rules import RulesError, load_rules
from urbanpulse.core.settings import Settings


def cmd_rules_check(settings: Settings, args: argparse.Namespace) -> int:
    path = args.file or settings.alerts.rules_path
    try:
        rules = load_rules(path, timedelta(seconds=settings.alerts.default_cooldown_s))
    except RulesError as exc:
        sys.stderr.write(f"{exc}\n{len(exc.problems)} problem(s); the rules were not accepted\n")
        return 1
    by_kind = Counter(rule.kind for rule in rules)
    summary = ", ".join(f"{kind} {count}" for kind, count in sorted(by_kind.items()))
    sys.stdout.write(f"{path}: {len(rules)} rules OK ({summary})\n")
    return 0


def add_rules_parser(subparsers: Any) -> None:
    """Add ``rules check [FILE]`` to the ``urbanpulse`` command's subparsers."""
    rules = subparsers.add_parser("rules", help="Alert rules: check a rule file.")
    actions = rules.add_subparsers(dest="rules_action", required=True)
    check = actions.add_parser(
        "check", help="Validate a rule file (default: the configured one) and report problems."
    )
    check.add_argument("file", nargs="?", help="YAML rule file (default: settings' rules_path)")
    check.set_defaults(handler=cmd_rules_check)
