"""Is ingest making progress, not only are the servers answering?

Two signals, both read from Kafka so that any process (the API, ``urbanpulse stack status``) can
judge without state of its own:

- the processor group's lag on the readings topic: readings that have waited in Kafka longer
  than ``health.lag_stall_s`` while no processor committed offsets in that time mean the lag has
  not decreased for that long (a processor catching up on a backlog commits all the time);
- the heartbeats of the bridge and processor instances (``urbanpulse.heartbeat``): a bridge
  holding MQTT messages it has not acked, or not connected to MQTT, for ``health.ack_stall_s``;
  a component none of whose instances has been heard from for ``health.silence_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from urbanpulse.bus import GroupLag, group_lag
from urbanpulse.core.settings import HealthSettings, KafkaPrincipal, Settings
from urbanpulse.heartbeat import Heartbeat, latest_heartbeats

PROGRESS_VERB = {"bridge": "acked", "processor": "committed"}


@dataclass(frozen=True)
class IngestReport:
    lag: GroupLag
    heartbeats: list[Heartbeat]
    problems: list[str]  # empty: ingest is making progress

    def summary(self) -> str:
        if self.problems:
            return "stalled: " + "; ".join(self.problems)
        return f"ok (processor lag {self.lag.lag:,}, {len(self.heartbeats)} instances heard)"


def ingest_problems(
    now: datetime, lag: GroupLag, beats: Sequence[Heartbeat], limits: HealthSettings
) -> list[str]:
    """What is stalled, in words an operator can act on; empty when ingest progresses."""
    problems = _lag_problems(now, lag, [b for b in beats if b.component == "processor"], limits)
    for component in ("bridge", "processor"):
        mine = [b for b in beats if b.component == component]
        problems += _silence_problems(now, component, mine, limits)
    problems += _bridge_problems(now, [b for b in beats if b.component == "bridge"], limits)
    return problems


def _seconds(now: datetime, then: datetime) -> float:
    return (now - then).total_seconds()


def _lag_problems(
    now: datetime, lag: GroupLag, processors: Sequence[Heartbeat], limits: HealthSettings
) -> list[str]:
    if lag.waiting_since_before == 0:
        return []
    commits = [b.progress_at for b in processors if b.progress_at is not None]
    last_commit = max(commits, default=None)
    if last_commit is not None and _seconds(now, last_commit) < limits.lag_stall_s:
        return []  # committing: a backlog being worked off, not a stall
    waiting = f"{lag.waiting_since_before:,} readings waiting over {limits.lag_stall_s:.0f}s"
    if last_commit is None:
        return [f"processor lag {lag.lag:,} and not decreasing ({waiting}, no commit heard of)"]
    age = _seconds(now, last_commit)
    return [f"processor lag {lag.lag:,} and not decreasing for {age:.0f}s ({waiting})"]


def _silence_problems(
    now: datetime, component: str, beats: Sequence[Heartbeat], limits: HealthSettings
) -> list[str]:
    """Every instance that did not stop cleanly has gone quiet: the component is gone."""
    if any(_seconds(now, b.at) <= limits.silence_s for b in beats):
        return []
    crashed = [b for b in beats if not b.stopped]
    if not crashed:
        return []
    last = max(crashed, key=lambda b: b.at)
    return [f"no {component} heard from for {_seconds(now, last.at):.0f}s (last: {last.instance})"]


def _bridge_problems(
    now: datetime, bridges: Sequence[Heartbeat], limits: HealthSettings
) -> list[str]:
    problems = []
    for beat in bridges:
        if beat.stopped or _seconds(now, beat.at) > limits.silence_s:
            continue
        if beat.disconnected_since and _seconds(now, beat.disconnected_since) >= limits.ack_stall_s:
            away = _seconds(now, beat.disconnected_since)
            problems.append(f"bridge {beat.instance} not connected to MQTT for {away:.0f}s")
        elif beat.waiting_since and _seconds(now, beat.waiting_since) >= limits.ack_stall_s:
            acked = (
                f"last acked {_seconds(now, beat.progress_at):.0f}s ago"
                if beat.progress_at
                else "never acked"
            )
            problems.append(f"bridge {beat.instance} {acked} with MQTT messages waiting")
    return problems


async def check_ingest(settings: Settings) -> IngestReport:
    """Read the lag and the heartbeats from Kafka and judge them (raises if Kafka fails)."""
    now = datetime.now(UTC)
    kafka = settings.kafka_as(KafkaPrincipal.API)
    older_than = now.timestamp() - settings.health.lag_stall_s
    lag, beats = await asyncio.gather(
        group_lag(kafka, kafka.consumer_group, kafka.topic("readings"), older_than),
        latest_heartbeats(kafka),
    )
    return IngestReport(lag, beats, ingest_problems(now, lag, beats, settings.health))
