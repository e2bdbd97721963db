"""Times from untrusted input, in UTC.

A valid ISO 8601 time may have no date in UTC: ``9999-12-31T23:59:59-01:00`` falls after year
9999 once converted, ``0001-01-01T00:00:00+01:00`` before year 1, and ``astimezone`` raises
``OverflowError`` for them.  Every door that converts a stated time (the bridge's payloads, the
readings topic's records, the API's parameters) asks :func:`in_utc` and answers with its own
kind of error, worded with :data:`NO_UTC_DATE`.
"""

from __future__ import annotations

from datetime import UTC, datetime

NO_UTC_DATE = "lies outside the years 1 to 9999 in UTC"


def in_utc(moment: datetime) -> datetime | None:
    """``moment`` (with an offset) in UTC; None when it has no date there."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None
