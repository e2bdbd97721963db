"""The stall decision (urbanpulse.health) and the heartbeat's wait tracking, on hand-made facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from urbanpulse.bus import GroupLag
from urbanpulse.core.settings import HealthSettings
from urbanpulse.health import ingest_problems
from urbanpulse.heartbeat import Heartbeat, Progress, Watch, next_watch

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
LIMITS = HealthSettings(lag_stall_s=60, ack_stall_s=60, silence_s=30)
NO_LAG = GroupLag(0, 0)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def beat(
    component: str,
    *,
    at: float = 5,
    progress: float | None = 5,
    waiting: float | None = None,
    disconnected: float | None = None,
    stopped: bool = False,
    instance: str = "",
) -> Heartbeat:
    return Heartbeat(
        component,
        instance or f"{component}-1",
        ago(at),
        None if progress is None else ago(progress),
        None if waiting is None else ago(waiting),
        None if disconnected is None else ago(disconnected),
        stopped,
        {},
    )


def test_a_quiet_healthy_pipeline_has_no_problem() -> None:
    assert ingest_problems(NOW, NO_LAG, [beat("bridge"), beat("processor")], LIMITS) == []


def test_old_waiting_readings_and_no_commit_name_the_lag() -> None:
    lag = GroupLag(12_000, 8_000)
    [problem] = ingest_problems(NOW, lag, [beat("processor", progress=95)], LIMITS)
    assert problem == (
        "processor lag 12,000 and not decreasing for 95s (8,000 readings waiting over 60s)"
    )


def test_no_processor_ever_with_old_readings_is_a_stall() -> None:
    [problem] = ingest_problems(NOW, GroupLag(300, 300), [], LIMITS)
    assert problem.startswith("processor lag 300 and not decreasing")


def test_a_processor_working_off_a_backlog_is_not_stalled() -> None:
    # Old readings wait, but it committed 2 s ago: the lag is going down.
    assert (
        ingest_problems(NOW, GroupLag(50_000, 40_000), [beat("processor", progress=2)], LIMITS)
        == []
    )


def test_fresh_lag_is_not_a_stall() -> None:
    # Readings arrived after an idle hour: none has waited 60 s yet.
    assert ingest_problems(NOW, GroupLag(500, 0), [beat("processor", progress=3600)], LIMITS) == []


def test_a_bridge_holding_unacked_messages_is_named() -> None:
    bridge = beat("bridge", progress=95, waiting=90, instance="urbanpulse-bridge")
    assert ingest_problems(NOW, NO_LAG, [bridge], LIMITS) == [
        "bridge urbanpulse-bridge last acked 95s ago with MQTT messages waiting"
    ]


def test_a_short_wait_is_not_a_stall() -> None:
    assert ingest_problems(NOW, NO_LAG, [beat("bridge", progress=70, waiting=10)], LIMITS) == []


def test_a_bridge_cut_off_from_mqtt_is_named() -> None:
    [problem] = ingest_problems(NOW, NO_LAG, [beat("bridge", disconnected=61)], LIMITS)
    assert problem == "bridge bridge-1 not connected to MQTT for 61s"


def test_a_crashed_component_without_successor_is_named() -> None:
    [problem] = ingest_problems(NOW, NO_LAG, [beat("bridge", at=95)], LIMITS)
    assert problem == "no bridge heard from for 95s (last: bridge-1)"


def test_a_crashed_instance_replaced_by_a_live_one_is_fine() -> None:
    old, new = beat("processor", at=900, instance="p:1"), beat("processor", instance="p:2")
    assert ingest_problems(NOW, NO_LAG, [old, new], LIMITS) == []


def test_a_cleanly_stopped_component_is_not_a_crash() -> None:
    assert ingest_problems(NOW, NO_LAG, [beat("bridge", at=900, stopped=True)], LIMITS) == []


def test_work_without_progress_starts_a_wait_and_progress_ends_it() -> None:
    start = Watch(ago(20), work=10)
    waiting = next_watch(start, ago(10), Progress({}, 15, ago(30)))
    assert waiting.waiting_since == ago(20)
    # No new work (the hand-off queue is full) and still no ack: the wait goes on.
    still = next_watch(waiting, NOW, Progress({}, 15, ago(30)))
    assert still.waiting_since == ago(20)
    acked = next_watch(still, NOW + timedelta(seconds=10), Progress({}, 16, NOW))
    assert acked.waiting_since is None


def test_disconnection_is_dated_from_the_first_tick_that_saw_it() -> None:
    first = next_watch(Watch(ago(20), 0), ago(10), Progress({}, 0, None, connected=False))
    second = next_watch(first, NOW, Progress({}, 0, None, connected=False))
    assert second.disconnected_since == ago(10)
    assert next_watch(second, NOW, Progress({}, 0, None)).disconnected_since is None


def test_a_heartbeat_survives_its_json() -> None:
    original = beat("bridge", waiting=3, disconnected=None)
    assert Heartbeat.from_json(original.to_json()) == original
