"""`make bench` in miniature (bench/stepped.py): every kind of step runs and loses nothing.

Tiny rates for a few seconds each on the session's stack; speed is not asserted (it is
measured by `make bench`), only that every step's readings were all stored and that the
probes measured what the table prints.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bench.stepped import Options, bench
from urbanpulse.stack import LocalStack

log = logging.getLogger(__name__)


async def test_every_step_of_a_tiny_bench_stores_every_reading(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    options = Options(
        rates=[40], shapes=[1, 20], step_s=3, sensors=8, publishers=2, scaling=((2, 2),)
    )
    steps = await bench(local_stack, options, tmp_path)
    for step in steps:
        log.warning("%s", step.line())
    setups = [(s.setup, s.per_message) for s in steps]
    assert setups == [
        ("1 bridge + 1 processor", 1),
        ("1 bridge + 1 processor", 20),
        ("naive sink", 1),
        ("naive sink", 20),
        ("2 bridges + 2 processors", 20),
    ]
    for step in steps:
        # 40 readings/s for 3 s, and the probes: all stored, if not in the drain then after.
        assert step.sent >= 120 and step.lost == 0, step
        assert step.stored_ms, step
    for step in steps:
        if step.setup != "naive sink":  # only the platform raises alerts
            assert step.alert_ms, step
    assert all(step.cpu["bridge"] > 0 for step in steps if step.setup != "naive sink")
