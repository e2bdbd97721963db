"""``urbanpulse grafana export DIR`` and ``urbanpulse grafana push --url URL --token TOKEN``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from urbanpulse.alerts.rules import RulesError, RuleSet, load_rules
from urbanpulse.core.settings import DatabaseCredentialError, DbRole, Settings
from urbanpulse.grafana.dashboards import build_dashboards
from urbanpulse.grafana.provisioning import GRAFANA_DASHBOARDS_PATH

log = logging.getLogger("urbanpulse")
TOKEN_ENV = "URBANPULSE_GRAFANA_TOKEN"
# The Prometheus service of deploy/compose, as Grafana reaches it there.
DEFAULT_PROMETHEUS_URL = "http://prometheus:9090"


def _rules(settings: Settings, args: argparse.Namespace) -> RuleSet | None:
    path = args.rules or settings.alerts.rules_path
    try:
        return load_rules(path, timedelta(seconds=settings.alerts.default_cooldown_s))
    except RulesError as exc:
        log.error("the boards take their limits from the alert rules, which are invalid:\n%s", exc)
        return None


def cmd_grafana_export(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.grafana.platform import platform_dashboards
    from urbanpulse.grafana.provisioning import export

    rules = _rules(settings, args)
    if rules is None:
        return 2
    try:
        boards = {**build_dashboards(rules), **platform_dashboards()}
        written = export(Path(args.dir), boards, args.dashboards_path)
    except OSError as exc:
        log.error("cannot write to %s: %s", args.dir, exc.strerror or exc)
        return 1
    sys.stdout.write("".join(f"wrote {path}\n" for path in written))
    return 0


def cmd_grafana_push(settings: Settings, args: argparse.Namespace) -> int:
    import requests
    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaException

    from urbanpulse.grafana.platform import platform_dashboards
    from urbanpulse.grafana.provisioning import datasource, prometheus_datasource
    from urbanpulse.grafana.push import push
    from urbanpulse.storage.db import login

    if not args.token:
        log.error("give a Grafana service-account token with --token or %s", TOKEN_ENV)
        return 2
    rules = _rules(settings, args)
    if rules is None:
        return 2
    try:
        reader = login(settings, DbRole.READER)  # Grafana reads, never writes
    except DatabaseCredentialError as exc:
        log.error("%s", exc)
        return 2
    source = datasource(
        args.db_address or f"{reader.host}:{reader.port}",
        reader.database,
        reader.user,
        reader.password,
        args.db_sslmode,
    )
    api = GrafanaApi.from_url(args.url, credential=args.token, timeout=args.timeout)
    try:
        boards = {**build_dashboards(rules), **platform_dashboards()}
        report = push(api, boards, [source, prometheus_datasource(args.prometheus_url)])
    except GrafanaException as exc:
        log.error("Grafana at %s refused: %s", args.url, exc.message)
        return 1
    except requests.exceptions.RequestException as exc:
        log.error("cannot reach Grafana at %s: %s", args.url, exc)
        return 1
    sys.stdout.write(report.text() + "\n")
    return 0


def add_grafana_parser(subparsers: Any) -> None:
    """Add ``grafana export`` and ``grafana push`` to the ``urbanpulse`` command."""
    grafana = subparsers.add_parser(
        "grafana",
        help="Grafana wall boards: export provisioning files or push to a running Grafana.",
        description="Boards built from the kind catalogue and the alert rules' limits.",
    )
    actions = grafana.add_subparsers(dest="grafana_action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--rules", help="alert rules whose limits the boards draw (default: settings' rules_path)"
    )

    export = actions.add_parser(
        "export",
        parents=[common],
        help="Write dashboards/*.json and provisioning/ (data source, dashboard provider) to DIR.",
    )
    export.add_argument("dir", help="output directory, e.g. deploy/compose/grafana")
    export.add_argument(
        "--dashboards-path",
        default=GRAFANA_DASHBOARDS_PATH,
        help=f"where Grafana sees the JSON files (default {GRAFANA_DASHBOARDS_PATH})",
    )
    export.set_defaults(handler=cmd_grafana_export)

    push = actions.add_parser(
        "push",
        parents=[common],
        help="Create or update the data source, folder and boards in a running Grafana.",
        description="The data source uses URBANPULSE_DATABASE__* (name, user, password): give "
        "it a read-only role. Safe to run again: everything is addressed by a fixed uid.",
    )
    push.add_argument("--url", required=True, help="Grafana's base URL, e.g. http://grafana:3000")
    push.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"service-account token (Editor); default ${TOKEN_ENV}, which keeps it out of "
        "the shell history",
    )
    push.add_argument(
        "--db-address",
        help="host:port at which Grafana reaches the database (default: the settings' host:port)",
    )
    push.add_argument(
        "--db-sslmode",
        default="disable",
        choices=["disable", "require", "verify-ca", "verify-full"],
        help="TLS to the database from Grafana (default disable)",
    )
    push.add_argument(
        "--prometheus-url",
        default=DEFAULT_PROMETHEUS_URL,
        help="where Grafana reaches the Prometheus that scrapes every process's /metrics, for "
        f"the platform-health board (default {DEFAULT_PROMETHEUS_URL})",
    )
    push.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in s (10)")
    push.set_defaults(handler=cmd_grafana_push)
