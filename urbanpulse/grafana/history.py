"""Time-series panels read raw readings for short ranges and the rollups for long ones.

A panel's rows come from one ``FROM`` that unions three sources, each guarded by the length of
the dashboard's time range; PostgreSQL evaluates those guards once (one-time filters), so only
one source is read:

- up to ``RAW_UP_TO`` (2 days): the raw hypertable, every reading;
- up to ``HOURLY_UP_TO`` (31 days): the hourly rollup (``<table>_1h``);
- beyond: the daily rollup (``<table>_1d``).

Every source shows the same columns per field: ``<column>_sum``, ``_count``, ``_min``, ``_max``
(a raw row is a bucket of one reading), so one SELECT list serves all three and means stay
count-weighted.  Long ranges end at the newest rolled-up hour (the job runs every minute or so).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from urbanpulse.core.catalogue import KINDS
from urbanpulse.grafana.variables import sensor_filter
from urbanpulse.storage.rollups import DAILY, HOURLY, Tier, rollup_table

RAW_UP_TO = timedelta(days=2)
HOURLY_UP_TO = timedelta(days=31)
RANGE = "($__timeTo()::timestamptz - $__timeFrom()::timestamptz)"


def _interval(span: timedelta) -> str:
    return f"interval '{span.days} days'"


def _in_range(column: str, since: str | None) -> str:
    if since is None:
        return f"$__timeFilter({column})"
    return f"{column} BETWEEN {since} AND $__timeTo()::timestamptz"


def _raw(table: str, columns: Sequence[str], since: str | None) -> str:
    fields = ", ".join(
        f"{c} AS {c}_sum, ({c} IS NOT NULL)::int AS {c}_count, {c} AS {c}_min, {c} AS {c}_max"
        for c in columns
    )
    return (
        f"SELECT ts, sensor_id, {fields} FROM {table} "
        f"WHERE {_in_range('ts', since)} AND {RANGE} <= {_interval(RAW_UP_TO)}"
    )


def _rolled(
    table: str, columns: Sequence[str], since: str | None, longer_than: timedelta, up_to: str
) -> str:
    fields = ", ".join(f"{c}_sum, {c}_count, {c}_min, {c}_max" for c in columns)
    return (
        f"SELECT bucket, sensor_id, {fields} FROM {table} "
        f"WHERE {_in_range('bucket', since)} AND {RANGE} > {_interval(longer_than)}{up_to}"
    )


def history_from(
    kind: str, columns: Sequence[str], coarsest: Tier = DAILY, since: str | None = None
) -> str:
    """``FROM`` the kind's rows in the time range as ``r`` (``r.ts``, ``r.<column>_sum`` ...),
    of the chosen sensors (``s``), from raw rows or a rollup by the range's length.

    ``coarsest=HOURLY`` never goes past hourly rows (for hourly means, e.g. QCVN windows);
    ``since`` (SQL) starts the rows earlier than the range (e.g. a window's first hours).
    """
    k = KINDS[kind]
    hourly, daily = rollup_table(k, HOURLY), rollup_table(k, DAILY)
    parts = [_raw(k.table, columns, since)]
    if coarsest is HOURLY:
        parts.append(_rolled(hourly, columns, since, RAW_UP_TO, ""))
    else:
        up_to = f" AND {RANGE} <= {_interval(HOURLY_UP_TO)}"
        parts.append(_rolled(hourly, columns, since, RAW_UP_TO, up_to))
        parts.append(_rolled(daily, columns, since, HOURLY_UP_TO, ""))
    union = " UNION ALL ".join(parts)
    return f"FROM ({union}) r JOIN sensors s USING (sensor_id) WHERE {sensor_filter([kind])}"


def mean_of(column: str) -> str:
    return f"sum(r.{column}_sum) / nullif(sum(r.{column}_count), 0)"


def sum_of(column: str) -> str:
    return f"sum(r.{column}_sum)"


def max_of(column: str) -> str:
    return f"max(r.{column}_max)"


def min_of(column: str) -> str:
    return f"min(r.{column}_min)"
