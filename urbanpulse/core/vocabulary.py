"""Closed sets of values that several layers name: the core's metrics label by them.

They live in the core, not with the layer that produces them, so that the core depends on
nothing built on it: :mod:`urbanpulse.core.metrics` bounds its label values by these enums, and
the bridge (``urbanpulse.ingest``) and the alert engine (``urbanpulse.alerts``) use the same ones.
"""

from __future__ import annotations

from enum import StrEnum


class Rejection(StrEnum):
    """Why a message (or part of it) was dead-lettered, in classes worth counting apart."""

    TOPIC = "topic"  # not a topic of ours
    OVERSIZE = "oversize"  # payload above max_payload_bytes
    TOO_MANY = "too_many"  # array above max_readings
    TOO_DEEP = "too_deep"  # nesting above max_depth
    MALFORMED = "malformed"  # not JSON (including nesting beyond the parser's own limit)
    INVALID = "invalid"  # JSON, but items or fields that are not readings
    CRASH = "crash"  # decoding itself failed: a bug, contained by the bridge


class Severity(StrEnum):
    """How urgent an alert is."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
