"""Structured logging on the standard library: human text by default, JSON lines for shipping.

Library code logs with ``logging.getLogger(__name__)`` and lazy ``%s`` arguments; structured
fields go in ``extra={"fields": {...}}`` and are rendered as ``key=value`` or JSON keys.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from urbanpulse.core.untrusted import preview

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields: dict[str, Any] = getattr(record, "fields", {})
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class RepeatThrottle(logging.Filter):
    """Lets a repeated message through once per ``interval_s``, noting how many were held back.

    While a broker is down, client libraries log the same connection error ten times a
    second; operators need to see that it is happening, not thousands of identical lines.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        last_time, held = self._last.get(key, (-self._interval_s, 0))
        if record.created - last_time < self._interval_s:
            self._last[key] = (last_time, held + 1)
            return False
        self._last[key] = (record.created, 0)
        if held:
            record.msg = f"{record.msg} [{held} similar messages held back]"
        return True


def level_number(name: str) -> int:
    """The ``logging`` level called ``name`` (any case); a clear ValueError for other names."""
    upper = name.upper()
    if upper not in LEVELS:
        raise ValueError(f"unknown log level {preview(name)}; use one of {', '.join(LEVELS)}")
    return logging.getLevelNamesMapping()[upper]


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Log to stderr at ``level`` (one of :data:`LEVELS`, any case) as text or JSON lines."""
    number = level_number(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if fmt == "json"
        else _TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(number)
    # aiokafka logs every reconnect attempt; keep the first of each kind, throttle the rest.
    handler.addFilter(RepeatThrottle())
    logging.getLogger("aiokafka").setLevel(max(root.level, logging.WARNING))


def fields(**values: Any) -> dict[str, Any]:
    """``log.info("stored batch", extra=fields(rows=10))``."""
    return {"fields": values}


class Snapshots(Protocol):
    def snapshot(self) -> Mapping[str, float]: ...


async def report_counters(
    logger: logging.Logger, what: str, counters: Snapshots, interval_s: float = 60.0
) -> None:
    """Log a component's counters every ``interval_s`` while they change (run as a task).

    ``counters`` is its :class:`urbanpulse.core.metrics.CounterView`: the log lines show the
    numbers ``/metrics`` serves."""
    last: Mapping[str, float] = {}
    while True:
        await asyncio.sleep(interval_s)
        current = dict(counters.snapshot())
        if current != last:
            logger.info("%s counters", what, extra=fields(**current))
            last = current
