"""The embedded local stack: Mosquitto, Kafka (KRaft) and PostgreSQL 15 + PostGIS + TimescaleDB.

Real servers, installed from Debian's packages, Debian's source and Maven Central by
``deploy/install-stack.sh``, run on loopback as detached processes with everything under
``settings.stack.data_dir``.  Each server is a module of ``urbanpulse.stack.services``; this one
orchestrates them.  They are tracked by PID files; a PID counts as ours only while its command
line names our data directory, so a stale PID file is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka.errors import KafkaError

from urbanpulse.core.mqtt_login import with_stack_secrets
from urbanpulse.core.settings import Settings
from urbanpulse.health import check_ingest
from urbanpulse.stack import _process as proc
from urbanpulse.stack._layout import INSTALL_SCRIPT, Layout
from urbanpulse.stack.services import SERVICES, Kafka, Service
from urbanpulse.stack.services.base import StackContext, StackError, tcp_open

logger = logging.getLogger(__name__)

_POLL_S = 0.1
_PORT_FREE_S = 10.0

__all__ = ["LocalStack", "ServiceState", "StackError", "format_states"]


@dataclass(frozen=True)
class ServiceState:
    """One server of the stack as ``status()`` sees it."""

    name: str  # "mosquitto" | "kafka" | "postgres", or "ingest" (see LocalStack.ingest_state)
    pid: int | None
    port: int
    running: bool
    detail: str = ""
    label: str = ""  # the STATE column, if not running/stopped


def format_states(states: list[ServiceState]) -> str:
    """A small table for the CLI."""
    rows = [("SERVICE", "STATE", "PID", "PORT", "DETAIL")]
    for st in states:
        rows.append(
            (
                st.name,
                st.label or ("running" if st.running else "stopped"),
                str(st.pid) if st.pid is not None else "-",
                str(st.port),
                st.detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  "
        + row[4]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _frees(host: str, port: int, within_s: float = _PORT_FREE_S) -> bool:
    """Whether nothing accepts connections on ``host:port``, or stops doing so within
    ``within_s``: a SIGKILLed JVM's listening socket still answers a moment after its reaping."""
    deadline = time.monotonic() + within_s
    while tcp_open(host, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


class LocalStack:
    """Installs, starts, checks and stops the local servers for one ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._layout = Layout(settings.stack.data_dir.expanduser().resolve())
        self._cache_dir = settings.stack.cache_dir.expanduser().resolve()
        context = StackContext(
            settings=settings,
            layout=self._layout,
            cache_dir=self._cache_dir,
            as_root=os.geteuid() == 0,
        )
        self._services = {
            service.name: service for kind in SERVICES for service in kind.instances(context)
        }
        self._kafka = self._services[Kafka.name]

    @property
    def settings(self) -> Settings:
        """The stack's settings, with the MQTT passwords and CA the stack generated."""
        return with_stack_secrets(self._settings)

    @property
    def data_dir(self) -> Path:
        return self._layout.root

    def log_path(self, name: str) -> Path:
        return self._service(name).log

    # ------------------------------------------------------------------ installation

    def _missing_parts(self) -> list[str]:
        return [part for service in self._services.values() for part in service.missing_parts()]

    def ensure_installed(self) -> None:
        """Install what the stack needs (``deploy/install-stack.sh``) unless it is all there."""
        missing = self._missing_parts()
        if not missing:
            logger.debug("local stack installed")
            return
        logger.info("local stack: missing %s; running %s", ", ".join(missing), INSTALL_SCRIPT)
        if not INSTALL_SCRIPT.is_file():
            raise StackError(
                f"missing {', '.join(missing)} and no installer at {INSTALL_SCRIPT} "
                "(run from a checkout of the repository)"
            )
        env = dict(os.environ, URBANPULSE_STACK__CACHE_DIR=str(self._cache_dir))
        with subprocess.Popen(
            ["bash", str(INSTALL_SCRIPT)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        ) as installer:
            assert installer.stdout is not None
            for line in installer.stdout:
                logger.info("%s", line.rstrip())
            code = installer.wait()
        if code != 0:
            raise StackError(f"{INSTALL_SCRIPT} failed with exit code {code}")
        still = self._missing_parts()
        if still:
            raise StackError(f"still missing after {INSTALL_SCRIPT}: {', '.join(still)}")

    # ------------------------------------------------------------------ public operations

    def up(self) -> list[ServiceState]:
        """Start whatever is not running and wait until every server is ready."""
        # Slowest to get ready first, so their start-up overlaps the others' set-up work; then
        # wait for the quickest first.
        by_startup = sorted(self._services.values(), key=lambda s: s.startup_s, reverse=True)
        with self._locked():
            started = time.monotonic()
            launched: dict[str, float] = {}
            for service in by_startup:
                if self._running_pid(service) is None:
                    self._launch(service)
                    launched[service.name] = time.monotonic()
            for service in reversed(by_startup):
                self._wait_ready(service, launched.get(service.name, time.monotonic()))
            states = self._states()
        logger.info(
            "local stack up in %.1f s (started: %s)",
            time.monotonic() - started,
            ", ".join(launched) or "none, all were running",
        )
        return states

    def status(self) -> list[ServiceState]:
        return self._states()

    def ingest_state(self) -> ServiceState:
        """Whether readings make progress through the platform (``urbanpulse.health``), as a row
        of the status table: running means not stalled."""
        port = self._kafka.port
        if self._running_pid(self._kafka) is None:
            return ServiceState("ingest", None, port, False, "unknown: kafka", "unknown")
        try:
            report = asyncio.run(asyncio.wait_for(check_ingest(self._settings), 10))
        except (KafkaError, OSError, TimeoutError) as exc:
            return ServiceState("ingest", None, port, False, repr(exc), "unknown")
        label = "stalled" if report.problems else "ok"
        return ServiceState("ingest", None, port, not report.problems, report.summary(), label)

    def down(self) -> None:
        """Stop every server (politely, then SIGKILL after a timeout). Safe when none runs."""
        with self._locked():
            asked: dict[Service, int] = {}
            for service in self._services.values():
                pid = self._running_pid(service)
                if pid is not None:
                    logger.info("stopping %s (pid %d)", service.name, pid)
                    proc.send(pid, service.stop_signal)
                    asked[service] = pid
            for service, pid in asked.items():
                if not proc.wait_stopped(pid, service.stop_timeout_s):
                    raise StackError(f"{service.name} (pid {pid}) is still running after SIGKILL")
                self._layout.pid_file(service.name).unlink(missing_ok=True)
            for name in self._services:
                self._layout.pid_file(name).unlink(missing_ok=True)

    def stop_service(self, name: str, hard: bool = False) -> None:
        """Stop one server: politely, or with ``hard=True`` by SIGKILL (for fault tests)."""
        service = self._service(name)
        with self._locked():
            pid = self._running_pid(service)
            if pid is None:
                logger.info("%s is not running", name)
            elif hard:
                logger.info("killing %s (pid %d) with SIGKILL", name, pid)
                if not proc.kill_hard(pid):
                    raise StackError(f"{name} (pid {pid}) survived SIGKILL")
            else:
                logger.info("stopping %s (pid %d)", name, pid)
                proc.send(pid, service.stop_signal)
                if not proc.wait_stopped(pid, service.stop_timeout_s):
                    raise StackError(f"{name} (pid {pid}) is still running after SIGKILL")
            self._layout.pid_file(name).unlink(missing_ok=True)

    def start_service(self, name: str) -> ServiceState:
        """Start one server (if it is not running) and wait until it is ready."""
        service = self._service(name)
        with self._locked():
            launched = time.monotonic()
            if self._running_pid(service) is None:
                self._launch(service)
            self._wait_ready(service, launched)
            return self._state(service)

    # ------------------------------------------------------------------ state

    def _service(self, name: str) -> Service:
        service = self._services.get(name)
        if service is None:
            raise StackError(
                f"unknown service {name!r}; expected one of {', '.join(self._services)}"
            )
        return service

    def _running_pid(self, service: Service) -> int | None:
        pid = proc.read_pid(self._layout.pid_file(service.name))
        if pid is not None and proc.is_ours(pid, str(self._layout.root)):
            return pid
        return None

    def _state(self, service: Service) -> ServiceState:
        name = service.name
        pid = self._running_pid(service)
        if pid is not None:
            return ServiceState(name, pid, service.port, True, str(service.log))
        recorded = proc.read_pid(self._layout.pid_file(name))
        detail = "not started"
        if recorded is not None:
            detail = f"stale pid file (pid {recorded} is gone); log {service.log}"
        return ServiceState(name, None, service.port, False, detail)

    def _states(self) -> list[ServiceState]:
        return [self._state(service) for service in self._services.values()]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One stack operation at a time per data directory (several CLIs, tests)."""
        self._prepare_root()
        with open(os.open(self._layout.lock_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _prepare_root(self) -> None:
        # The root stays searchable: each server's own (0700) directory is under it.
        self._layout.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._layout.logs.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self._layout.logs, 0o700)

    # ------------------------------------------------------------------ launching

    def _launch(self, service: Service) -> None:
        for port in service.ports():
            if not _frees(port.host, port.port):
                raise StackError(
                    f"cannot start {service.name}: {port.what} {port.port} is already in use "
                    "by another process"
                )
        service.prepare()
        how = service.launch()
        pid = proc.spawn(
            how.argv, log_path=service.log, cwd=how.cwd, env=how.env, run_as=how.run_as
        )
        proc.write_pid(self._layout.pid_file(service.name), pid)
        logger.info(
            "started %s (pid %d, port %d, log %s)", service.name, pid, service.port, service.log
        )

    # ------------------------------------------------------------------ readiness

    def _wait_ready(self, service: Service, launched_at: float) -> None:
        name, log = service.name, service.log
        timeout = self._settings.stack.ready_timeout_s
        deadline = launched_at + timeout
        while True:
            pid = proc.read_pid(self._layout.pid_file(name))
            if pid is None or not proc.is_ours(pid, str(self._layout.root)):
                code = proc.exit_code(pid) if pid is not None else None
                how = f" with exit code {code}" if code is not None else ""
                if pid is None:
                    how = f" (its pid file {self._layout.pid_file(name)} is gone)"
                elif code is None and proc.is_alive(pid):
                    how = f" (pid {pid} now runs {proc.cmdline(pid)!r})"
                raise StackError(
                    f"{name} exited{how} before it was ready; last lines of {log}:\n{_tail(log)}"
                )
            if service.ready():
                break
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{name} (pid {pid}) was not ready within {timeout:.0f} s; last lines of "
                    f"{log}:\n{_tail(log)}"
                )
            time.sleep(_POLL_S)
        service.after_ready()
        logger.info("%s ready on port %d", name, service.port)
