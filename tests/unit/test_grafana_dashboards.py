"""The boards: stable uids, one source for columns, units and limits, committed exports current."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from urbanpulse.alerts.rules import RuleSet, load_rules, parse_rules
from urbanpulse.cli import main
from urbanpulse.core.settings import Settings
from urbanpulse.grafana.dashboards import build_dashboards

REPO = Path(__file__).resolve().parents[2]
COMMITTED_EXPORT = REPO / "deploy" / "compose" / "grafana"

# Links, kiosk URLs on the wall screens and pushes depend on these: they must never change.
EXPECTED_UIDS = {
    "urbanpulse-overview",
    "urbanpulse-air",
    "urbanpulse-water",
    "urbanpulse-waste",
    "urbanpulse-traffic",
    "urbanpulse-alerts",
    "urbanpulse-facilities",
}


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(Settings().alerts.rules_path)


@pytest.fixture(scope="module")
def boards(rules: RuleSet) -> dict[str, dict[str, Any]]:
    return build_dashboards(rules)


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        if panel["type"] != "row":
            yield panel
        yield from panel.get("panels", [])


def test_uids_are_the_committed_ones_and_stable_across_builds(
    boards: dict[str, dict[str, Any]], rules: RuleSet
) -> None:
    assert set(boards) == EXPECTED_UIDS
    assert {uid: board["uid"] for uid, board in boards.items()} == {u: u for u in EXPECTED_UIDS}
    assert build_dashboards(rules) == boards


def test_every_board_is_bilingual_refreshes_and_has_area_kind_sensor_variables(
    boards: dict[str, dict[str, Any]],
) -> None:
    for board in boards.values():
        vi, en = board["title"].split(" / ")
        assert vi and en
        assert board["refresh"] == "30s"
        names = [v["name"] for v in board["templating"]["list"]]
        assert names == ["area", "kind", "sensor"]
        assert all(v["multi"] and v["includeAll"] for v in board["templating"]["list"])
        for panel in panels(board):
            assert " / " in panel["title"], panel["title"]


def test_panel_ids_are_unique_and_every_panel_queries_the_provisioned_datasource(
    boards: dict[str, dict[str, Any]],
) -> None:
    for board in boards.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in panels(board):
            assert panel["datasource"]["uid"] == "urbanpulse-timescaledb"
            assert panel["targets"] and all(t["rawSql"] for t in panel["targets"])


def test_stat_panels_are_readable_across_the_room(boards: dict[str, dict[str, Any]]) -> None:
    stats = [p for b in boards.values() for p in panels(b) if p["type"] == "stat"]
    assert len(stats) >= 15
    for panel in stats:
        assert panel["options"]["text"]["valueSize"] >= 72
        assert panel["gridPos"]["h"] >= 6


def test_air_limits_follow_the_rules_file(rules: RuleSet) -> None:
    """Change a limit in the rules and the line on the air board moves: nothing is re-typed."""
    text = (REPO / "rules" / "default.yaml").read_text(encoding="utf-8")
    assert "    above: 45\n" in text
    changed = parse_rules(text.replace("    above: 45\n", "    above: 50\n", 1))
    air = build_dashboards(changed)["urbanpulse-air"]
    pm25 = next(p for p in panels(air) if p["title"].startswith("PM25"))
    steps = pm25["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 50.0]
    assert "limit 50 µg/m³" in pm25["title"]
    # Every QCVN rule with a window has its panel, at the rule's own limit.
    windowed = [r for r in rules.for_kind("air") if r.window is not None]
    default_air = build_dashboards(rules)["urbanpulse-air"]
    limits = {
        p["title"].split(":")[0]: p["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"]
        for p in panels(default_air)
        if "limit" in p["title"]
    }
    assert limits == {(r.metric or "").upper(): r.threshold for r in windowed}


def test_table_columns_and_units_come_from_the_catalogue(
    boards: dict[str, dict[str, Any]],
) -> None:
    from urbanpulse.core.catalogue import KINDS

    water = boards["urbanpulse-water"]
    latest = next(p for p in panels(water) if p["type"] == "table")
    sql = latest["targets"][0]["rawSql"]
    for metric in KINDS["water"].metrics:
        assert f'"{metric.name} ({metric.unit})"' in sql
    traffic = boards["urbanpulse-traffic"]
    by_class = next(p for p in panels(traffic) if "by class" in p["title"])
    for name in ("motorbike", "car", "bus", "truck", "bicycle"):
        assert f'AS "{name}"' in by_class["targets"][0]["rawSql"]


def test_export_writes_provisioning_files_grafana_can_read(tmp_path: Path) -> None:
    assert main(["grafana", "export", str(tmp_path)]) == 0
    source = yaml.safe_load((tmp_path / "provisioning/datasources/urbanpulse.yaml").read_text())
    sources = {s["uid"]: s for s in source["datasources"]}
    assert set(sources) == {"urbanpulse-timescaledb", "urbanpulse-prometheus"}
    datasource = sources["urbanpulse-timescaledb"]
    assert datasource["uid"] == "urbanpulse-timescaledb"
    assert datasource["type"] == "grafana-postgresql-datasource"
    assert datasource["jsonData"]["timescaledb"] is True
    # No secret in the file: Grafana fills it from its environment.
    assert datasource["secureJsonData"]["password"] == "${URBANPULSE_GRAFANA_DB_PASSWORD}"
    assert sources["urbanpulse-prometheus"]["type"] == "prometheus"
    assert sources["urbanpulse-prometheus"]["url"] == "${URBANPULSE_GRAFANA_PROMETHEUS_URL}"
    provider = yaml.safe_load((tmp_path / "provisioning/dashboards/urbanpulse.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/urbanpulse"
    exported = {p.stem for p in (tmp_path / "dashboards").glob("*.json")}
    assert exported == EXPECTED_UIDS | {"urbanpulse-platform"}


def test_the_platform_board_reads_the_seams_metrics_from_prometheus() -> None:
    import re

    from urbanpulse.core.metrics import DEFINITIONS
    from urbanpulse.grafana.platform import platform_dashboards

    board = platform_dashboards()["urbanpulse-platform"]
    assert board["uid"] == "urbanpulse-platform"
    known = {d.name for d in DEFINITIONS} | {"process_cpu_seconds_total"}
    queried: set[str] = set()
    for panel in panels(board):
        vi, en = panel["title"].split(" / ")
        assert vi and en
        assert panel["datasource"]["uid"] == "urbanpulse-prometheus"
        for target in panel["targets"]:
            names = set(re.findall(r"\b(?:urbanpulse|process)_[a-z_]+", target["expr"]))
            queried |= {n.removesuffix("_bucket") for n in names}
    assert queried and queried <= known
    watched = {
        "urbanpulse_stream_records_total",
        "urbanpulse_dead_letters_total",
        "urbanpulse_stream_consumer_lag",
        "urbanpulse_stream_batch_write_seconds",
        "urbanpulse_alerts_open",
        "urbanpulse_live_clients",
    }
    assert watched <= queried


def test_the_committed_export_is_current(tmp_path: Path) -> None:
    """deploy/compose/grafana is `urbanpulse grafana export` output: regenerate it when the
    boards change (`urbanpulse grafana export deploy/compose/grafana`)."""
    assert main(["grafana", "export", str(tmp_path)]) == 0
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(COMMITTED_EXPORT) for p in COMMITTED_EXPORT.rglob("*") if p.is_file()
    )
    assert fresh == committed
    for relative in fresh:
        assert (tmp_path / relative).read_bytes() == (COMMITTED_EXPORT / relative).read_bytes(), (
            f"{relative} is stale"
        )
    board = json.loads((COMMITTED_EXPORT / "dashboards" / "urbanpulse-air.json").read_text())
    assert board["uid"] == "urbanpulse-air"


def test_export_refuses_an_invalid_rules_file(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("version: 1\nrules:\n  - {id: x, kind: air, metric: pm25, severity: warning}\n")
    assert main(["grafana", "export", str(tmp_path / "out"), "--rules", str(bad)]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("action", ["export", "push"])
def test_grafana_commands_explain_themselves(
    action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["grafana", action, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--rules" in text
    assert ("--token" in text) == (action == "push")
