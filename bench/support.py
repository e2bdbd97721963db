"""What every benchmark needs: the local stack up and migrated, and plain printed figures."""

from __future__ import annotations

import asyncio
import sys

import httpx

from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.kafka_access import provision
from urbanpulse.stack import LocalStack
from urbanpulse.storage.db import connect
from urbanpulse.storage.schema import migrate


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# One rule the benchmarks' probe readings trip (above 100) and clear (below 60), no cool-down.
PROBE_RULES = """
version: 1
defaults: {cooldown: 0s}
rules:
  - {id: bench-pm25, kind: air, metric: pm25, above: 100, clear_below: 60, severity: warning,
     citation: benchmark}
"""


async def stack_ready(settings: Settings) -> Settings:
    """Install what is missing, start the local stack if it is not running, migrate, provision
    the settings' Kafka topics and their ACLs; the settings with the passwords the stack
    generated on its first start."""
    stack = LocalStack(settings)
    await asyncio.to_thread(stack.ensure_installed)
    await asyncio.to_thread(stack.up)
    conn = await connect(settings, DbRole.OWNER)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    await provision(stack.settings)
    return stack.settings


async def api_answering(http: httpx.AsyncClient, attempts: int) -> None:
    """Wait (0.1 s per refused attempt) until the API answers its map config, or give up."""
    for _ in range(attempts):
        try:
            if (await http.get("/v1/map/config")).status_code == 200:
                return
        except httpx.TransportError:
            await asyncio.sleep(0.1)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
