"""Property-based run of schemathesis against the live OpenAPI spec: no request may cause 5xx.

Read-only operations (GET) are fuzzed: fuzzed writes would fill the shared test database with
random sensors and keys.  /healthz is left out (503 is its honest answer when Kafka is down) and
so are the alert routes, which the alert engine's own tests cover.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.api_support import Api, build_world, running_api
from urbanpulse.core.settings import Settings

EXAMPLES = int(os.environ.get("URBANPULSE_SCHEMATHESIS_EXAMPLES", "60"))


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        yield running


async def test_no_generated_request_causes_a_server_error(
    api: Api, settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    await build_world(db, settings)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    process = await asyncio.create_subprocess_exec(
        str(schemathesis),
        "run",
        f"{api.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--include-method",
        "GET",
        "--exclude-path-regex",
        "^/(healthz|v1/alerts)",
        "--header",
        f"X-API-Key: {api.keys['admin']}",  # GET only: reads, including the key list
        "--max-examples",
        str(EXAMPLES),
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    output, _ = await asyncio.wait_for(process.communicate(), 900)
    text = output.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(text)
    assert process.returncode == 0, text[-6000:]
