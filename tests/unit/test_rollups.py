"""Pure parts of the long-range history: bucket arithmetic, the plan of a run, which part of a
read comes from rollups, the settings' checks, and the SQL for TimescaleDB's community edition
(which the Apache build here cannot run: only the generated text is checked)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from urbanpulse.cli import build_parser
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.settings import HistorySettings, KindHistory, Settings
from urbanpulse.storage.retention import policy_statements
from urbanpulse.storage.rollups import (
    DAILY,
    HOURLY,
    bucket_reads,
    ceil_to,
    continuous_aggregate_ddl,
    floor_to,
    plan,
    rolled_fields,
)

HOUR = timedelta(hours=1)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def test_buckets_are_utc_hours_and_days() -> None:
    assert floor_to(at(3, 10, 59), HOUR) == at(3, 10)
    assert ceil_to(at(3, 10, 1), HOUR) == at(3, 11)
    assert ceil_to(at(3, 10), HOUR) == at(3, 10)
    assert floor_to(at(3, 23, 59), DAILY.width) == at(3, 0)
    # Midnight in Ho Chi Minh City is 17:00 UTC the day before: inside that UTC day's bucket.
    local_midnight = datetime(2026, 11, 4, tzinfo=timezone(timedelta(hours=7)))
    assert floor_to(local_midnight, DAILY.width) == at(3, 0)
    assert ceil_to(local_midnight, DAILY.width) == at(4, 0)
    assert bucket_reads(local_midnight, at(6, 0), DAILY.width, at(9, 0)) == (at(4, 0), at(6, 0))


def test_a_plan_recomputes_touched_hours_and_their_days_and_skips_dropped_ones() -> None:
    touched = [("b", at(3, 23)), ("a", at(3, 10)), ("a", at(4, 0)), ("a", at(1, 5))]
    work = plan(touched, raw_complete_from=at(2, 0))
    assert work.hours == [("a", at(3, 10)), ("a", at(4, 0)), ("b", at(3, 23))]
    assert work.days == [("a", at(3, 0)), ("a", at(4, 0)), ("b", at(3, 0))]
    assert work.skipped == [("a", at(1, 5))]
    assert plan(touched, raw_complete_from=None).skipped == []


def test_reads_take_whole_rolled_up_buckets_from_rollups_and_the_rest_from_raw() -> None:
    # from 10:30 to 18:15, rolled up to 15:20: rollups hold [11:00, 15:00).
    assert bucket_reads(at(3, 10, 30), at(3, 18, 15), HOUR, at(3, 15, 20)) == (
        at(3, 11),
        at(3, 15),
    )
    # Rolled up beyond the range: the last partial bucket still comes from raw.
    assert bucket_reads(at(3, 10), at(3, 18, 15), HOUR, at(5, 0)) == (at(3, 10), at(3, 18))
    # Nothing rolled up yet, or a range inside one bucket: all raw.
    start, end = at(3, 10, 30), at(3, 18)
    assert bucket_reads(start, end, HOUR, None) == (at(3, 11), at(3, 11))
    assert bucket_reads(at(3, 10, 5), at(3, 10, 50), HOUR, at(5, 0)) == (at(3, 10, 50),) * 2
    # Real-time continuous aggregates (complete by themselves).
    far = datetime.max.replace(tzinfo=UTC)
    assert bucket_reads(at(1, 0), at(3, 0), DAILY.width, far) == (at(1, 0), at(3, 0))


def test_rollups_keep_every_numeric_field_of_the_catalogue() -> None:
    air = [f.column for f in rolled_fields(KINDS["air"])]
    assert air == [m.column for m in KINDS["air"].metrics] + ["vn_aqi"]  # not the pollutant name
    counts = {f.name: f.integer for f in rolled_fields(KINDS["traffic_camera"])}
    assert counts["motorbike"] and not counts["avg_speed"]
    assert "dissolved_oxygen" in [f.column for f in rolled_fields(KINDS["water"])]


def test_continuous_aggregates_are_real_time_and_daily_sums_the_hourly() -> None:
    hourly = continuous_aggregate_ddl(KINDS["traffic_camera"], HOURLY)
    assert "WITH (timescaledb.continuous, timescaledb.materialized_only = false)" in hourly
    assert "FROM readings_traffic_camera GROUP BY sensor_id, time_bucket(" in hourly
    assert "sum(motorbike)::bigint AS motorbike_sum" in hourly
    assert hourly.endswith("WITH NO DATA")
    daily = continuous_aggregate_ddl(KINDS["traffic_camera"], DAILY)
    assert "FROM readings_traffic_camera_1h" in daily
    # Count-weighted: the day's sum and count are sums of the hours', never a mean of means.
    assert "sum(avg_speed_sum)::double precision AS avg_speed_sum" in daily
    assert "sum(avg_speed_count)::bigint AS avg_speed_count" in daily
    assert "GROUP BY sensor_id, time_bucket(INTERVAL '86400 seconds', bucket)" in daily


def test_community_policies_follow_the_settings() -> None:
    settings = HistorySettings(
        interval_s=300, kinds={"air": KindHistory(raw_days=7, hourly_days=90, daily_days=3650)}
    )
    statements = policy_statements(KINDS["air"], settings)
    assert (
        "SELECT add_continuous_aggregate_policy('readings_air_1h', start_offset => "
        "INTERVAL '518400 seconds', end_offset => INTERVAL '3600 seconds', "
        "schedule_interval => INTERVAL '300 seconds')"
    ) in statements  # refreshes stop a day short of the raw retention (7 days)
    assert (
        "SELECT add_retention_policy('readings_air', drop_after => INTERVAL '604800 seconds')"
        in (statements)
    )
    assert (
        "SELECT add_retention_policy('readings_air_1d', drop_after => INTERVAL '315360000 seconds')"
        in statements
    )
    # Water keeps the defaults: daily rollups for ever, so no policy on them.
    water = policy_statements(KINDS["water"], settings)
    assert not any("add_retention_policy('readings_water_1d'" in s for s in water)
    assert "SELECT remove_retention_policy('readings_water_1d', if_exists => true)" in water


def test_history_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URBANPULSE_HISTORY__RAW_DAYS", "14")
    monkeypatch.setenv("URBANPULSE_HISTORY__KINDS", '{"traffic_camera": {"raw_days": 7}}')
    history = Settings().history
    assert history.for_kind("air").raw_days == 14
    assert history.for_kind("traffic_camera").raw_days == 7


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"raw_days": 0.04}, "shorter than the hourly rollup's lag"),
        ({"interval_s": 86400, "raw_days": 1}, "shorter than the hourly"),
        ({"raw_days": 30, "hourly_days": 20}, "hourly_days"),
        ({"raw_days": None, "hourly_days": 20}, "must be unset"),
        ({"hourly_days": 60, "daily_days": 30}, "daily_days"),
        ({"kinds": {"bicycle": {"raw_days": 3}}}, "unknown kind 'bicycle'"),
    ],
)
def test_bad_history_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HistorySettings.model_validate(values)


def test_the_commands_have_help() -> None:
    parser = build_parser()
    args = parser.parse_args(["rollups", "backfill", "--from", "2026-01-01", "--to", "2026-02-01"])
    assert args.start == datetime(2026, 1, 1, tzinfo=UTC) and args.kind is None
    assert parser.parse_args(["rollups", "run", "--once"]).once
    assert parser.parse_args(["retention", "run"]).action == "run"
    with pytest.raises(SystemExit):
        parser.parse_args(["rollups", "backfill", "--from", "yesterday"])


@pytest.mark.parametrize("command", [["rollups"], ["retention"]])
def test_the_history_commands_explain_themselves(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    assert "URBANPULSE_HISTORY__" in capsys.readouterr().out


def test_history_settings_pass_to_child_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The e2e tests start services with flat URBANPULSE_* variables; history must survive."""
    from tests.e2e.conftest import settings_env

    for name, value in settings_env(Settings()).items():
        monkeypatch.setenv(name, value)
    assert Settings().history == HistorySettings()
