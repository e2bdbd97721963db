"""Every shipped scenario, run accelerated against the real pipeline (with the shipped alert
rules), keeps its promises: what is stored and which alerts are raised."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from tests.e2e.conftest import running_pipeline
from urbanpulse.core.settings import Settings
from urbanpulse.simulators.command import REPO_SCENARIOS, run_and_check
from urbanpulse.simulators.scenario import load_scenario

SCENARIOS = sorted(REPO_SCENARIOS.glob("*.yaml"))


def test_at_least_five_scenarios_ship() -> None:
    assert len(SCENARIOS) >= 5


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_shipped_scenario_runs_and_meets_its_expectations(
    path: Path, settings: Settings
) -> None:
    scenario = load_scenario(path)
    assert scenario.expect, "every shipped scenario states what it promises"
    async with running_pipeline(settings):
        report = await run_and_check(
            settings,
            scenario,
            asyncio.Event(),
            check=True,
            prefix=settings.kafka.topic_prefix,
            check_timeout_s=60.0,
            progress_stream=io.StringIO(),
        )
    assert report.outcomes, report.text
    assert all(o.status == "met" for o in report.outcomes), report.text
    # Every good reading sent is stored exactly once, whatever the faults did.
    distinct = len(report.summary.keys)
    assert f"stored {distinct} of {distinct}" in report.text, report.text
