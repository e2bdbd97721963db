"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from urbanpulse.core.settings import Settings
from urbanpulse.stack import LocalStack

# --------------------------------------------------------------------------- no hidden skips

ALLOW_SKIP_ENV = "URBANPULSE_TESTS_ALLOW_SKIP"


def skip_is_allowed(reason: str, allowed: str | None) -> bool:
    """Whether a skip with ``reason`` was opted into: ``allowed`` is a comma-separated list of
    words (``chromium``), each matched case-insensitively within the reason, or ``all``."""
    words = [w.strip().lower() for w in (allowed or "").split(",") if w.strip()]
    return "all" in words or any(word in reason.lower() for word in words)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """A skipped test fails the run unless the skip was opted into.

    A missing tool (a browser, a server) would otherwise turn a red run green.  Opt out
    explicitly, e.g. ``URBANPULSE_TESTS_ALLOW_SKIP=chromium``; expected failures (xfail) are
    left alone.
    """
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    if skip_is_allowed(reason, os.environ.get(ALLOW_SKIP_ENV)):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped without an opt-out: {reason}\n"
        f"A missing tool fails the run.  To allow this skip, set {ALLOW_SKIP_ENV} to a word "
        "of the reason (comma-separated for several), e.g. chromium."
    )


# --------------------------------------------------------------------------- the local stack


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback TCP ports that nothing listens on right now.

    Drawn at random from below the kernel's ephemeral range: a port from that range can be
    taken by any outgoing connection (a Kafka client's, say) while its server is stopped for a
    restart test, and the server could then not get it back.
    """
    low, _high = _ephemeral_range()
    pool = range(15000, max(low, 15000 + count * 10))
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.choice(pool)
        if port in chosen:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
    return chosen


def stack_data_dir(prefix: str = "urbanpulse-stack-") -> Path:
    """A fresh data directory that the postgres and mosquitto users can reach.

    pytest's tmp_path lives under /tmp/pytest-of-root (mode 0700), where servers that drop to
    their own system user could not go; hence a 0755 directory directly under /tmp.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    return path


def settings_for_stack(data_dir: Path) -> Settings:
    """Settings for a private stack: free loopback ports, the given data directory."""
    base = Settings()
    mqtt_port, kafka_port, controller_port, pg_port, mqtt_tls_port = free_ports(5)
    return base.model_copy(
        update={
            "mqtt": base.mqtt.model_copy(update={"port": mqtt_port, "tls_port": mqtt_tls_port}),
            "kafka": base.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{kafka_port}"}),
            "database": base.database.model_copy(update={"port": pg_port}),
            "stack": base.stack.model_copy(
                update={"data_dir": data_dir, "kafka_controller_port": controller_port}
            ),
        }
    )


@contextlib.contextmanager
def running_stack(settings: Settings) -> Iterator[LocalStack]:
    """A private stack up for the block, then down and its data directory gone."""
    stack = LocalStack(settings)
    try:
        stack.ensure_installed()
        stack.up()
        yield stack
    finally:
        try:
            stack.down()
        finally:
            shutil.rmtree(settings.stack.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The real local stack (Mosquitto, Kafka, PostgreSQL + TimescaleDB), up for the session."""
    with running_stack(settings_for_stack(stack_data_dir())) as stack:
        yield stack


@pytest.fixture(scope="session")
def stack_settings(local_stack: LocalStack) -> Settings:
    """Settings pointing at the session's running local stack."""
    return local_stack.settings
