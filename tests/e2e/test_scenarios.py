"""Every shipped scenario, run accelerated against the real pipeline, keeps its promises.

The alerts subsystem is built separately: these tests run the processor with no alert rules,
so ``alert_raised`` expectations are reported but not required here.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import running_pipeline
from urbanpulse.core.settings import Settings
from urbanpulse.simulators.command import REPO_SCENARIOS, run_and_check
from urbanpulse.simulators.scenario import load_scenario

SCENARIOS = sorted(REPO_SCENARIOS.glob("*.yaml"))


def without_alert_rules(settings: Settings, directory: Path) -> Settings:
    """The same settings with an empty alert rule file, when the platform has alerts at all."""
    alerts = getattr(settings, "alerts", None)
    if alerts is None or not hasattr(alerts, "rules_path"):
        return settings
    empty = directory / "no-rules.yaml"
    empty.write_text("version: 1\nrules: []\n")
    return settings.model_copy(update={"alerts": alerts.model_copy(update={"rules_path": empty})})


def test_at_least_five_scenarios_ship() -> None:
    assert len(SCENARIOS) >= 5


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_shipped_scenario_runs_and_meets_its_expectations(
    path: Path, settings: Settings, tmp_path: Path
) -> None:
    scenario = load_scenario(path)
    assert scenario.expect, "every shipped scenario states what it promises"
    settings = without_alert_rules(settings, tmp_path)
    async with running_pipeline(settings):
        started = time.monotonic()
        report = await run_and_check(
            settings,
            scenario,
            asyncio.Event(),
            check=True,
            prefix=settings.kafka.topic_prefix,
            check_timeout_s=60.0,
            progress_stream=io.StringIO(),
        )
        wall = time.monotonic() - started
    print(f"\n{path.stem}: {wall:.1f}s wall\n{report.text}")  # noqa: T201 - shown with -s
    required = [o for o in report.outcomes if not o.expectation.startswith("alert_raised")]
    assert required, report.text
    assert all(o.status == "met" for o in required), report.text
    # Every good reading sent is stored exactly once, whatever the faults did.
    distinct = len(report.summary.keys)
    assert f"stored {distinct} of {distinct}" in report.text, report.text
    assert wall < 90, report.text
