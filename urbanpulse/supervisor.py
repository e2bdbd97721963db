"""``urbanpulse run``: the platform's parts as separate OS processes under one supervisor.

Each child is ``urbanpulse <command>`` (through :mod:`urbanpulse.supervised`, so that it stops
if the supervisor dies) with the supervisor's environment plus its own settings. Its output is
forwarded line by line, under its name. A child that exits while the platform runs is restarted
as :mod:`urbanpulse.supervisor_policy` decides; when that policy gives up on one, the
supervisor stops the others and exits 1. On stop, every child gets SIGTERM (which it handles
like Ctrl-C), then SIGKILL if it is still there after the timeout.

Children run in their own process group, so a Ctrl-C at the terminal reaches the supervisor
only: a second signal would make a child skip its clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import orjson

from urbanpulse.core.settings import MetricsSettings
from urbanpulse.supervisor_policy import (
    GiveUp,
    RestartPolicy,
    RestartTracker,
    describe_exit,
    supervisor_exit_code,
)

log = logging.getLogger(__name__)

# Defaults of `urbanpulse run` and `demo`. One bridge: two share one broker session (and take
# it from each other) until each has its own MQTT client id from URBANPULSE_MQTT__BRIDGE_INSTANCE.
# Two processors: the consumer group splits the readings partitions between them, and storing
# goes on while one restarts; up to KafkaSettings.readings_partitions of them all get work.
DEFAULT_BRIDGES = 1
DEFAULT_PROCESSORS = 2

# A child's output line longer than this is cut (asyncio's stream reader limit).
LINE_LIMIT = 1 << 20


@dataclass(frozen=True)
class ChildSpec:
    name: str
    command: str  # an ``urbanpulse`` command: bridge, process, api
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the supervisor's


SHARE_GROUP = "urbanpulse-bridge"  # unless URBANPULSE_MQTT__SHARE_GROUP names another


def platform_children(
    bridges: int,
    processors: int,
    api: bool,
    env: Mapping[str, str] | None = None,
    first_bridge: int = 1,
    metrics: MetricsSettings | None = None,
) -> list[ChildSpec]:
    """Bridges with distinct instance numbers from ``first_bridge`` on (each its own MQTT
    client id, one shared subscription), processors in the one consumer group, and the API;
    ``env`` for all.  Each bridge and processor serves its metrics on a port of its own,
    counted up from ``metrics.bridge_port`` and ``metrics.processor_port`` (none if
    ``metrics.port`` is 0)."""
    common = dict(env or {})
    cfg = metrics or MetricsSettings()
    # Several bridges (here, or on other machines: a first bridge above 1) need one share
    # group, or each would receive every reading; one bridge keeps the plain subscription that
    # survives a broker restart (see MqttSettings.share_group).
    sharing = (
        {"URBANPULSE_MQTT__SHARE_GROUP": SHARE_GROUP} if bridges > 1 or first_bridge > 1 else {}
    )

    def metrics_port(base: int, n: int) -> dict[str, str]:
        return {"URBANPULSE_METRICS__PORT": str(0 if cfg.port == 0 else base + n)}

    children = [
        ChildSpec(
            f"bridge-{i}",
            "bridge",
            {
                **sharing,
                **common,
                "URBANPULSE_MQTT__BRIDGE_INSTANCE": str(i),
                **metrics_port(cfg.bridge_port, i - first_bridge),
            },
        )
        for i in range(first_bridge, first_bridge + bridges)
    ]
    children += [
        ChildSpec(
            f"processor-{i}", "process", {**common, **metrics_port(cfg.processor_port, i - 1)}
        )
        for i in range(1, processors + 1)
    ]
    if api:
        children.append(ChildSpec("api", "api", common))
    return children


@dataclass
class _ChildState:
    pid: int | None = None
    state: str = "starting"  # running, restarting, stopped, gave up
    restarts: int = 0
    last_exit: str | None = None


class Supervisor:
    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        policy: RestartPolicy | None = None,
        stop_timeout_s: float = 30.0,
        status_path: Path | None = None,
        out: TextIO | None = None,
    ) -> None:
        """``status_path``: a JSON file, rewritten on every change, with each child's pid,
        state and restart count (for operators and tests); ``out``: where children's output
        goes (default: stderr, beside the supervisor's own log)."""
        self._children = list(children)
        self._policy = policy or RestartPolicy()
        self._stop_timeout_s = stop_timeout_s
        self._status_path = status_path
        self._out = out or sys.stderr
        self._width = max((len(c.name) for c in self._children), default=0)
        self._states = {c.name: _ChildState() for c in self._children}
        self._stopping = asyncio.Event()
        self._gave_up = False

    async def run(self, stop: asyncio.Event) -> int:
        """Run every child until ``stop`` is set (or one is given up on); the exit code."""
        log.info("supervisor starting %s", ", ".join(c.name for c in self._children))
        watcher = asyncio.create_task(self._stop_when(stop))
        tasks = [asyncio.create_task(self._supervise(c), name=c.name) for c in self._children]
        try:
            codes = await asyncio.gather(*tasks)
        finally:
            watcher.cancel()
            for task in tasks:
                task.cancel()  # only matters if we are cancelled: each kills its child
            await asyncio.gather(*tasks, return_exceptions=True)
        exit_code = supervisor_exit_code(self._gave_up, [c for c in codes if c is not None])
        log.info("supervisor stopped (exit code %d)", exit_code)
        return exit_code

    async def _stop_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping.set()

    async def _supervise(self, spec: ChildSpec) -> int | None:
        """Keep one child running; its exit code once stopped (None if none was running)."""
        tracker = RestartTracker(self._policy)
        while not self._stopping.is_set():
            ended = await self._run_once(spec)
            if ended is None:
                return None
            returncode, ran_s = ended
            if self._stopping.is_set():
                return returncode
            self._update(spec.name, pid=None, last_exit=describe_exit(returncode))
            how = f"{spec.name} exited ({describe_exit(returncode)}) after {ran_s:.1f}s"
            decision = tracker.after_exit(ran_s, returncode)
            if isinstance(decision, GiveUp):
                _say(
                    logging.ERROR,
                    f"{how}; giving up on it: {decision.reason}. Stopping the platform; its "
                    "output above says why it failed",
                )
                self._give_up(spec.name)
                return returncode
            _say(logging.WARNING, f"{how}; restarting it in {decision.delay_s:g}s")
            self._update(spec.name, state="restarting")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), decision.delay_s)
            self._update(spec.name, restarts=self._states[spec.name].restarts + 1)
        return None

    async def _run_once(self, spec: ChildSpec) -> tuple[int, float] | None:
        """Start the child and wait until it exits or is stopped: its exit code and run time
        (None if it could not start). Cancelled, it kills the child."""
        process = await self._start(spec)
        if process is None:
            return None
        started = time.monotonic()
        forwarding = asyncio.create_task(self._forward(spec.name, process))
        try:
            exited = asyncio.create_task(process.wait())
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if exited.done():
                await forwarding
                return exited.result(), time.monotonic() - started
            exited.cancel()
            return await self._terminate(spec.name, process, forwarding), 0.0
        finally:
            if process.returncode is None:  # cancelled: leave nothing behind
                _say(logging.WARNING, f"killing {spec.name}: the supervisor was interrupted")
                process.kill()
                await process.wait()
                forwarding.cancel()
                await asyncio.gather(forwarding, return_exceptions=True)

    def _give_up(self, name: str) -> None:
        self._update(name, state="gave up")
        self._gave_up = True
        self._stopping.set()

    async def _start(self, spec: ChildSpec) -> asyncio.subprocess.Process | None:
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "urbanpulse.supervised",
                str(os.getpid()),
                spec.command,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **spec.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                process_group=0,  # see the module's docstring
                limit=LINE_LIMIT,
            )
        except OSError as exc:
            _say(logging.ERROR, f"cannot start {spec.name} ({exc}); stopping the platform")
            self._update(spec.name, last_exit=str(exc))
            self._give_up(spec.name)
            return None
        _say(logging.INFO, f"started {spec.name} (pid {process.pid}): urbanpulse {spec.command}")
        self._update(spec.name, pid=process.pid, state="running")
        return process

    async def _terminate(
        self, name: str, process: asyncio.subprocess.Process, forwarding: asyncio.Task[None]
    ) -> int:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self._stop_timeout_s)
        except TimeoutError:
            _say(
                logging.ERROR,
                f"{name} did not stop within {self._stop_timeout_s:g}s of SIGTERM: killing it",
            )
            process.kill()
            await process.wait()
        await forwarding
        returncode = process.returncode
        assert returncode is not None  # waited for above
        _say(logging.INFO, f"{name} stopped ({describe_exit(returncode)})")
        self._update(name, pid=None, state="stopped", last_exit=describe_exit(returncode))
        return returncode

    async def _forward(self, name: str, process: asyncio.subprocess.Process) -> None:
        """Copy the child's output, each line prefixed with its name, until it closes."""
        assert process.stdout is not None  # created with a pipe
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # longer than LINE_LIMIT: asyncio has discarded it
                line = b"(a line longer than %d bytes was cut)\n" % LINE_LIMIT
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")
            self._out.write(label_line(name, self._width, text) + "\n")
            self._out.flush()

    def _update(self, name: str, **changes: object) -> None:
        state = self._states[name]
        for key, value in changes.items():
            setattr(state, key, value)
        if self._status_path is not None:
            temporary = self._status_path.with_name(self._status_path.name + ".tmp")
            temporary.write_text(json.dumps({n: vars(s) for n, s in self._states.items()}))
            temporary.replace(self._status_path)  # readers never see half a file


def label_line(name: str, width: int, text: str) -> str:
    """A child's output line under its name. A JSON log line (URBANPULSE_LOG_FORMAT=json) gets
    a ``process`` key and stays one JSON object for log shippers; any other, ``name | `` first."""
    if text.startswith("{"):
        try:
            entry = orjson.loads(text)
        except orjson.JSONDecodeError:
            entry = None
        if isinstance(entry, dict):
            return orjson.dumps({"process": name, **entry}).decode()
    return f"{name:<{width}} | {text}"


def _say(level: int, message: str) -> None:
    """Log one child's lifecycle event, formatted here: the repeat throttle of
    :mod:`urbanpulse.core.logs` holds back a format string seen within seconds, and each
    child's start, exit and restart must be seen, however close together."""
    log.log(level, message)
