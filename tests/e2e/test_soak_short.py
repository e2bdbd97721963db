"""A short soak (bench/soak.py): every part killed and restarted under load, nothing lost.

The full soak runs for ten minutes (`make soak`); this one runs about a minute and a half on the
session's stack, killing each component at least once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bench.soak import COMPONENTS, SoakOptions, soak
from urbanpulse.core.settings import Settings
from urbanpulse.stack import LocalStack

log = logging.getLogger(__name__)


async def test_a_short_soak_loses_nothing_outside_the_broker_window_and_doubles_no_event(
    settings: Settings, local_stack: LocalStack, tmp_path: Path
) -> None:
    options = SoakOptions(duration_s=75, rate=150, sensors=20, pause_s=5, seed=7)
    report = await soak(settings, local_stack, options, tmp_path)
    for line in report.lines():
        log.warning("%s", line)
    assert set(report.kills) == set(COMPONENTS), report.kills
    assert {name for name, times in report.recovery_s.items() if times} == set(COMPONENTS)
    assert report.missing_outside_windows == 0
    assert report.extras == 0
    assert report.lost_in_broker_windows <= report.loss_bound
    assert report.accepted > 0 and report.stored >= report.accepted - report.loss_bound
    assert report.alert_duplicates == 0
    assert report.alert_events_missing == 0 and report.alert_events_unexpected == 0
