"""``urbanpulse run`` and ``urbanpulse demo`` as real processes on the real stack.

The supervisor starts bridge, processors and API as child processes; a SIGKILLed child is
restarted and readings keep reaching the database; one SIGINT stops every process it started
(none is left), with exit code 0. The demo, on the test stack's settings, uses that stack,
stops on one SIGINT and leaves the stack running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from tests.e2e.conftest import eventually, settings_env
from tests.e2e.test_faults import stored_pairs, wait_until_flowing
from urbanpulse.core.settings import Settings
from urbanpulse.simulators.air import AirSensorModel
from urbanpulse.simulators.fleet import place_sensors
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.stack import LocalStack
from urbanpulse.storage import registry

STOP_DEADLINE_S = 90.0  # polling deadline; the children's own stop timeout is 30 s


class Launched:
    """An ``urbanpulse`` command run as a process with the test's settings."""

    def __init__(self, args: list[str], settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        # The test's unique topic prefix marks every process started with this environment.
        self.marker = f"URBANPULSE_KAFKA__TOPIC_PREFIX={settings.kafka.topic_prefix}"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "urbanpulse.cli", *args],
                env={**os.environ, **settings_env(settings)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def interrupt_and_wait(self) -> int:
        """One SIGINT, as one Ctrl-C; the exit code once the process ended (within a deadline)."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_DEADLINE_S}s after one SIGINT:\n{self.tail()}")

    def processes_left(self) -> list[int]:
        """Every process still alive that was started with this test's environment."""
        left = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue  # gone meanwhile
            if self.marker.encode() in environ and state != "Z":
                left.append(int(entry.name))
        return left

    def kill_all(self) -> None:
        for pid in [self.process.pid, *self.processes_left()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def tail(self) -> str:
        return self.output()[-4000:]


@pytest.fixture
def launch(settings: Settings, tmp_path: Path) -> Iterator[Any]:
    started: list[Launched] = []

    def start(*args: str) -> Launched:
        launched = Launched(list(args), settings, tmp_path / f"{args[0]}.log")
        started.append(launched)
        return launched

    yield start
    for launched in started:
        launched.kill_all()


def status(path: Path) -> dict[str, dict[str, Any]]:
    try:
        loaded: dict[str, dict[str, Any]] = json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet
        return {}
    return loaded


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_run_restarts_a_killed_child_and_one_sigint_stops_everything(
    settings: Settings, db: asyncpg.Connection, launch: Any, tmp_path: Path
) -> None:
    fleet = place_sensors("air", 4, seed=5, prefix=settings.kafka.topic_prefix)
    await registry.upsert(
        db, [registry.SensorRecord(s.sensor_id, "air", s.lat, s.lon) for s in fleet]
    )
    models = [AirSensorModel(sensor, seed=5) for sensor in fleet]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    sensor_ids = [s.sensor_id for s in fleet]
    published: set[tuple[str, datetime]] = set()

    def publish(first: int, count: int) -> None:
        for i in range(first, first + count):
            model, ts = models[i % len(models)], start + timedelta(seconds=i)
            topic = data_topic(settings.mqtt, "air", model.sensor.sensor_id)
            gateway.publish(topic, reading_payload(ts, model.values_at(ts)))
            published.add((model.sensor.sensor_id, ts))

    async def all_stored() -> None:
        stored = await eventually(
            lambda: stored_pairs(settings, sensor_ids),
            lambda pairs: pairs >= published,
            timeout_s=120,
        )
        missing = published - stored
        assert not missing, f"{len(missing)} readings not stored:\n{supervisor.tail()}"

    status_file = tmp_path / "status.json"
    supervisor = launch(
        "run", "--bridges", "1", "--processors", "2", "--status-file", str(status_file)
    )
    gateway = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gateway")
    await asyncio.to_thread(gateway.connect)
    try:
        await wait_until_flowing(settings, gateway, f"{settings.kafka.topic_prefix}-probe")
        children = status(status_file)
        assert sorted(children) == ["api", "bridge-1", "processor-1", "processor-2"]
        assert all(child["state"] == "running" for child in children.values()), children
        # Each child's output is forwarded under its name.
        assert re.search(r"^bridge-1 +\| .*bridge subscribed", supervisor.output(), re.M)
        publish(0, 200)
        await all_stored()

        # A crash: the only bridge is SIGKILLed. Readings flow again only if it is restarted.
        killed = children["bridge-1"]["pid"]
        os.kill(killed, signal.SIGKILL)

        async def bridge_restarted() -> dict[str, Any]:
            return status(status_file).get("bridge-1", {})

        bridge = await eventually(
            bridge_restarted,
            lambda b: b.get("restarts") == 1 and b.get("state") == "running",
            timeout_s=60,
        )
        assert bridge["pid"] != killed and alive(bridge["pid"]), bridge
        assert bridge["last_exit"] == "killed by SIGKILL"
        assert "bridge-1 exited (killed by SIGKILL)" in supervisor.output()
        publish(200, 200)
        await all_stored()
    finally:
        await asyncio.to_thread(gateway.close)

    child_pids = [child["pid"] for child in status(status_file).values()]
    assert supervisor.interrupt_and_wait() == 0, supervisor.tail()
    assert supervisor.processes_left() == [], supervisor.tail()
    assert not any(alive(pid) for pid in child_pids)
    final = status(status_file)
    assert all(child["state"] == "stopped" for child in final.values()), final
    assert all(child["last_exit"] == "exit code 0" for child in final.values()), final


async def test_demo_uses_the_running_stack_and_stops_on_one_sigint(
    settings: Settings, local_stack: LocalStack, launch: Any
) -> None:
    demo = launch("demo", "--sensors", "5", "--rate", "10", "--processors", "1")

    async def processed() -> int:
        counts = re.findall(r"published +\d+ +in Kafka +\d+ +processed +(\d+)", demo.output())
        return int(counts[-1]) if counts else 0

    # The demo's own fleet flows through its children: the count line shows readings processed.
    assert await eventually(processed, lambda n: n > 0, timeout_s=180, interval_s=1), demo.tail()
    output = demo.output()
    assert "leaving the local stack running" not in output
    assert "Press Ctrl-C to stop." in output

    assert demo.interrupt_and_wait() == 0, demo.tail()
    assert demo.processes_left() == [], demo.tail()
    output = demo.output()
    assert "supervisor stopped (exit code 0)" in output
    assert "leaving the local stack running" in output  # it was running before: not ours
    assert all(state.running for state in local_stack.status())


async def test_run_gives_up_on_a_crash_loop_and_says_why(
    settings: Settings, launch: Any, tmp_path: Path
) -> None:
    # The database refuses the processors' role (`run` itself migrates as the owner first):
    # every processor start fails at once, for good.
    passwords = settings.database.passwords.model_copy(update={"writer": SecretStr("refused")})
    refused = settings.model_copy(
        update={"database": settings.database.model_copy(update={"passwords": passwords})}
    )
    status_file = tmp_path / "status.json"
    supervisor = Launched(
        [
            "run",
            "--bridges",
            "0",
            "--processors",
            "1",
            "--no-api",
            "--status-file",
            str(status_file),
        ],
        refused,
        tmp_path / "loop.log",
    )
    try:
        # Five starts with 1 + 2 + 4 + 8 s between them, then the supervisor stops by itself.
        returncode = await asyncio.to_thread(supervisor.process.wait, 300)
    finally:
        supervisor.kill_all()
    output = supervisor.output()
    assert returncode == 1, supervisor.tail()
    assert "cannot reach the database" in output  # the child's own reason, forwarded
    assert re.search(
        r"processor-1 exited \(exit code 1\) after [\d.]+s; giving up on it: crash loop: "
        r"5 exits in a row, each within 60s of starting",
        output,
    ), supervisor.tail()
    for delay in ("1s", "2s", "4s", "8s"):
        assert f"restarting it in {delay}" in output
    assert status(status_file)["processor-1"]["state"] == "gave up"
    assert supervisor.processes_left() == []


async def test_children_stop_when_the_supervisor_is_killed(settings: Settings, launch: Any) -> None:
    supervisor = launch("run", "--bridges", "1", "--processors", "1", "--no-api")

    async def output() -> str:
        return supervisor.output()

    up = await eventually(output, lambda text: "bridge subscribed" in text, timeout_s=120)
    assert "bridge subscribed" in up, supervisor.tail()
    children = [pid for pid in supervisor.processes_left() if pid != supervisor.process.pid]
    assert len(children) == 2, children

    # No SIGTERM to forward, no cleanup: the supervisor just vanishes.
    supervisor.process.kill()
    supervisor.process.wait()

    async def left() -> list[int]:
        return supervisor.processes_left()

    assert await eventually(left, lambda pids: not pids, timeout_s=60) == []
