"""Facility boards (``/v1/boards``): kinds the map shows by site against their limits.

A board kind is any catalogue kind without a map colour scale whose readings the alert rules
limit (today landfills and incinerators).  Its metrics come from the kind catalogue, its limits
from the rule file the processor runs (``alerts.rules_path``, e.g. ``rules/default.yaml``), so
neither the map nor this module names a kind or a figure.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam

from urbanpulse.alerts.rules import Rule, RulesError, RuleSet, load_rules
from urbanpulse.api.auth import ViewerDep
from urbanpulse.api.deps import ConnectionDep, SettingsDep
from urbanpulse.api.errors import ApiError, error_responses
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.settings import Settings
from urbanpulse.core.untrusted import is_number
from urbanpulse.storage.boards import board_sites
from urbanpulse.storage.scales import SCALE_OF_KIND

router = APIRouter(prefix="/v1/boards", tags=["boards"])

SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}


@lru_cache(maxsize=4)
def _rules_at(path: Path, mtime_ns: int, cooldown_s: float) -> RuleSet:
    return load_rules(path, timedelta(seconds=cooldown_s))


def current_rules(settings: Settings) -> RuleSet:
    """The rule file as it is now (re-read when it changes); 503 if it cannot be used."""
    path = settings.alerts.rules_path
    try:
        return _rules_at(path, path.stat().st_mtime_ns, settings.alerts.default_cooldown_s)
    except (OSError, RulesError) as exc:
        raise ApiError(503, f"the alert rules cannot be read: {exc}") from exc


def board_kinds(rules: RuleSet) -> list[str]:
    """Catalogue kinds without a map scale that the rules set limits for."""
    return [k for k in KINDS if k not in SCALE_OF_KIND and rules.for_kind(k)]


def shown_boards(settings: Settings) -> list[str]:
    """The board kinds for the map's config: none while the rules cannot be read (the map
    still opens; ``/v1/boards`` says why)."""
    try:
        return board_kinds(current_rules(settings))
    except ApiError:
        return []


def _limit(rule: Rule) -> dict[str, Any]:
    op, value = rule.comparator
    return {
        "rule_id": rule.id,
        "op": op,
        "value": value,
        "window_h": rule.window_hours,
        "severity": rule.severity,
        "citation": rule.citation,
        "title_vi": rule.title.vi if rule.title else None,
        "title_en": rule.title.en if rule.title else None,
    }


def board_fields(kind: str, rules: RuleSet) -> list[dict[str, Any]]:
    """The kind's numeric fields in catalogue order (metrics, then derived), each with the
    limits the rules set on it."""
    limits: dict[str, list[dict[str, Any]]] = {}
    for rule in rules.for_kind(kind):
        if rule.metric:
            limits.setdefault(rule.metric, []).append(_limit(rule))
    entry = KINDS[kind]
    fields: list[dict[str, Any]] = [
        {"name": m.name, "source": "values", "unit": m.unit, "description": m.description}
        for m in entry.metrics
    ]
    fields += [
        {"name": d.name, "source": "derived", "unit": None, "description": d.description}
        for d in entry.derived
        if d.sql_type != "text"
    ]
    return [{**f, "limits": limits.get(f["name"], [])} for f in fields]


def site_status(site: dict[str, Any], checks: list[dict[str, Any]]) -> str:
    """``critical`` / ``warning`` / ``info``: the worst active alert; else ``over_limit`` when
    the latest reading is past a limit (its rule may still be waiting or averaging), ``ok``,
    or ``no_data`` before the first reading."""
    severities = [str(a["severity"]) for a in site["alerts"]]
    worst = max(severities, key=lambda s: SEVERITY_RANK.get(s, 0), default=None)
    if worst is not None:
        return worst
    if any(c["exceeded"] for c in checks):
        return "over_limit"
    return "ok" if site["ts"] is not None else "no_data"


def _checks(site: dict[str, Any], kind: str, rules: RuleSet) -> list[dict[str, Any]]:
    """Each limit against the latest value (one reading, where the rule may average or wait):
    ``exceeded`` is None without a value."""
    checks = []
    for rule in rules.for_kind(kind):
        if not rule.metric:
            continue
        value = site["values"].get(rule.metric, site["derived"].get(rule.metric))
        number = is_number(value)
        exceeded = rule.triggers(float(value)) if number else None
        checks.append({"metric": rule.metric, "rule_id": rule.id, "exceeded": exceeded})
    return checks


def _site(site: dict[str, Any], kind: str, rules: RuleSet) -> dict[str, Any]:
    checks = _checks(site, kind, rules)
    return {**site, "status": site_status(site, checks), "checks": checks}


@router.get(
    "",
    summary="The board kinds (no map scale, limited by alert rules) and their fields",
    responses=error_responses(401, 403, 503),
)
async def list_boards(_caller: ViewerDep, settings: SettingsDep) -> dict[str, Any]:
    rules = current_rules(settings)
    return {
        "boards": [
            {
                "kind": kind,
                "description": KINDS[kind].description,
                "fields": board_fields(kind, rules),
            }
            for kind in board_kinds(rules)
        ]
    }


@router.get(
    "/{kind}",
    summary="Every active site of a board kind: latest values against their limits, alerts",
    description="Per site: location, the latest reading (`values` as measured, `derived` as "
    "computed, e.g. stack concentrations at the reference O2), `checks` (each rule limit "
    "against the latest value: a single reading, where the rule may average or wait), the "
    "active alerts and `status`: the worst active alert's severity, else `over_limit` (a check "
    "exceeded), `ok` or `no_data`.",
    responses=error_responses(401, 403, 404, 503),
)
async def board(
    conn: ConnectionDep,
    settings: SettingsDep,
    _caller: ViewerDep,
    kind: Annotated[str, PathParam(max_length=32, pattern=r"^[a-z0-9_]+$")],
) -> dict[str, Any]:
    rules = current_rules(settings)
    kinds = board_kinds(rules)
    if kind not in kinds:
        raise ApiError(404, f"no board for {kind!r}; boards: {', '.join(kinds) or 'none'}")
    fields = board_fields(kind, rules)
    sites = await board_sites(conn, kind)
    return {
        "kind": kind,
        "fields": fields,
        "sites": [_site(site, kind, rules) for site in sites],
    }
