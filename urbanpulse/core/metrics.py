"""The platform's metrics: one list of definitions and the one small interface code counts with.

Every number a long-running process keeps about itself (messages in, readings stored, dead
letters, consumer lag, batch write latency, open alerts, live-feed clients) is defined once in
:data:`DEFINITIONS` and counted through a :class:`Metrics`, which keeps it in the process's own
Prometheus registry.  The same numbers are scraped from ``/metrics``, logged by
:func:`urbanpulse.core.logs.report_counters` and read by tests: there is no second set.

Label values are bounded: a label lists the values it may take and anything else is counted as
``other`` (a dead letter's *reason class*, never its text).  The one open label, ``partition``,
is bounded by the topic's partition count.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

from urbanpulse.core.vocabulary import Rejection, Severity

log = logging.getLogger(__name__)

Kind = Literal["counter", "gauge", "histogram"]
_T = TypeVar("_T", Counter, Gauge, Histogram)
OTHER = "other"  # what an unlisted label value is counted as


@dataclass(frozen=True)
class Label:
    name: str
    # The values this label may take (``other`` is added); None only for ``partition``.
    values: tuple[str, ...] | None

    def bounded(self, value: str) -> str:
        if self.values is None or value in self.values:
            return value
        return OTHER


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: Kind
    help: str
    labels: tuple[Label, ...] = ()


STAGE = Label("stage", ("ingest", "stream"))
# Why a message or record was dead-lettered: the bridge's rejection classes, a record Kafka
# refused for good, and the processor's classes (see StreamProcessor._process).
REASON = Label(
    "reason",
    (
        *(r.value for r in Rejection),
        "kafka_refused",
        "undecodable",  # not a valid reading record
        "registry",  # the sensor registry refuses it (wrong kind, retired, unknown)
        "pending_cap",  # unknown sensor beyond the pending cap or rate
        "db_refused",  # the database refused it even alone
    ),
)
PARTITION = Label("partition", None)


def _counter(name: str, help: str, *labels: Label) -> MetricDef:
    return MetricDef(f"urbanpulse_{name}_total", "counter", help, labels)


# --- ingest bridge -------------------------------------------------------------------------------
INGEST_MESSAGES = _counter("ingest_messages", "MQTT messages the bridge took in")
INGEST_STATUS_MESSAGES = _counter(
    "ingest_status_messages", "MQTT status messages (no readings, nothing forwarded)"
)
INGEST_READINGS = _counter("ingest_readings", "readings the bridge forwarded to Kafka")
INGEST_IGNORED_ATTRIBUTES = _counter(
    "ingest_ignored_attributes", "FIWARE attributes the catalogue does not hold"
)
INGEST_KAFKA_RETRIES = _counter("ingest_kafka_retries", "produce attempts retried after a fault")
INGEST_KAFKA_DROPPED = _counter(
    "ingest_kafka_dropped", "dead letters of refused records that Kafka refused too (lost)"
)
INGEST_DEAD_LETTERS_PRODUCED = _counter(
    "ingest_dead_letters_produced", "dead letters the bridge produced to Kafka"
)
INGEST_DEAD_LETTERS_CAPPED = _counter(
    "ingest_dead_letters_capped", "dead letters over the rate cap: counted, not produced"
)
STREAM_DEAD_LETTERS_CAPPED = _counter(
    "stream_dead_letters_capped",
    "the processor's dead letters over the rate cap: counted, not produced",
)
# --- both stages ---------------------------------------------------------------------------------
DEAD_LETTERS = _counter(
    "dead_letters", "messages or records rejected, by stage and reason class", STAGE, REASON
)
# --- stream processor ----------------------------------------------------------------------------
STREAM_RECORDS = _counter(
    "stream_records",
    "readings the processor consumed (a record holding none it can read counts once), by result",
    Label("result", ("stored", "duplicate", "dead_letter")),
)
STREAM_BATCHES = _counter("stream_batches", "batches stored")
STREAM_WRITE_RETRIES = _counter("stream_write_retries", "batch writes retried after a fault")
STREAM_PENDING_REGISTERED = _counter(
    "stream_pending_registered", "unknown sensors registered as pending"
)
STREAM_WINDOW_EVICTIONS = _counter(
    "stream_window_evictions", "sensors dropped from the hourly windows at their cap"
)
STREAM_ALERT_TIMER_TICKS = _counter("stream_alert_timer_ticks", "alert timer runs")
BATCH_WRITE_SECONDS = MetricDef(
    "urbanpulse_stream_batch_write_seconds",
    "histogram",
    "time to store one batch (one transaction: readings, alerts, outbox)",
)
CONSUMER_LAG = MetricDef(
    "urbanpulse_stream_consumer_lag",
    "gauge",
    "records between the processor's position and the partition's high-water mark",
    (PARTITION,),
)
# --- alerts (in the processor) -------------------------------------------------------------------
ALERTS_OPEN = MetricDef(
    "urbanpulse_alerts_open",
    "gauge",
    "active alerts, by severity",
    (Label("severity", tuple(s.value for s in Severity)),),
)
ALERT_EVENTS = _counter(
    "alert_events", "alerts opened or resolved", Label("event", ("opened", "resolved"))
)
INCIDENT_EVENTS = _counter(
    "incident_events",
    "grouped incidents (storms of one rule in one area) opened or resolved",
    Label("event", ("opened", "resolved")),
)
ALERTS_PUBLISHED = _counter("alerts_published", "alert events relayed from the outbox to Kafka")
ALERT_RELAY_FAILURES = _counter("alert_relay_failures", "outbox relay attempts that failed")
ALERT_SENSORS_FORGOTTEN = _counter(
    "alert_sensors_forgotten", "silent sensors dropped from the alert state at its cap"
)
ALERT_RULE_RELOADS = _counter(
    "alert_rule_reloads", "rule file reloads, by result", Label("result", ("ok", "error"))
)
# --- API live feed -------------------------------------------------------------------------------
LIVE_CLIENTS = MetricDef("urbanpulse_live_clients", "gauge", "WebSocket live-feed clients")
LIVE_RECORDS = _counter(
    "live_records",
    "Kafka records offered to live-feed clients, by kind (rejected: unreadable, skipped)",
    Label("kind", ("reading", "alert", "rejected")),
)
LIVE_REVOKED_CLOSES = _counter(
    "live_revoked_closes", "live-feed sockets closed because their API key was revoked"
)
# --- API guards ----------------------------------------------------------------------------------
API_AUTH_FAILURES = _counter(
    "api_auth_failures",
    "failed authentications (unknown or revoked key, bad live ticket), by where",
    Label("via", ("http", "live")),
)
API_REFUSED = _counter(
    "api_refused",
    "requests refused by a guard: too many failed authentications from the client, or a cap",
    Label("guard", ("auth_rate", "live_total", "live_per_key", "exports")),
)

# Every definition above, in order.
DEFINITIONS: tuple[MetricDef, ...] = tuple(
    value for value in globals().values() if isinstance(value, MetricDef)
)

_TYPES = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


class Metrics:
    """One process's (or one component's) metrics, in its own Prometheus registry."""

    def __init__(self) -> None:
        # No ``_created`` twin of every counter (a process-wide switch).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # CPU and memory of the process
        self._metrics = {
            d.name: _TYPES[d.kind](
                # prometheus_client adds the ``_total`` suffix of counters itself.
                d.name.removesuffix("_total"),
                d.help,
                [label.name for label in d.labels],
                registry=self.registry,
            )
            for d in DEFINITIONS
        }

    def inc(self, metric: MetricDef, amount: float = 1, **labels: str) -> None:
        if amount:
            self._child(metric, labels, Counter).inc(amount)

    def set(self, metric: MetricDef, value: float, **labels: str) -> None:
        self._child(metric, labels, Gauge).set(value)

    def observe(self, metric: MetricDef, value: float, **labels: str) -> None:
        self._child(metric, labels, Histogram).observe(value)

    def clear(self, metric: MetricDef) -> None:
        """Drop every labelled series of ``metric`` (partitions revoked, say)."""
        self._metrics[metric.name].clear()

    def value(self, metric: MetricDef, **labels: str) -> float:
        """The sum of ``metric``'s series that carry ``labels`` (for logs and tests);
        a histogram's count of observations."""
        if metric.kind != "histogram" and len(labels) == len(metric.labels):
            # One series, read directly: collect() builds every sample, too slow per message
            # (the bridge's ``counters.messages += 1``); prometheus_client has no public getter.
            if metric.kind == "counter":
                return float(self._child(metric, labels, Counter)._value.get())
            return float(self._child(metric, labels, Gauge)._value.get())
        sample_name = f"{metric.name}_count" if metric.kind == "histogram" else metric.name
        return float(
            sum(
                sample.value
                for family in self._metrics[metric.name].collect()
                for sample in family.samples
                if sample.name == sample_name and labels.items() <= sample.labels.items()
            )
        )

    def _child(self, metric: MetricDef, labels: Mapping[str, str], expected: type[_T]) -> _T:
        family = self._metrics[metric.name]
        child = (
            family.labels(**{lb.name: lb.bounded(labels[lb.name]) for lb in metric.labels})
            if metric.labels
            else family
        )
        if not isinstance(child, expected):
            raise TypeError(f"{metric.name} is a {metric.kind}, not a {expected.__name__}")
        return child


@dataclass(frozen=True)
class Series:
    """A named number of a component: ``metric``'s series with ``labels`` (others summed)."""

    metric: MetricDef
    labels: Mapping[str, str] = field(default_factory=dict)


class CounterView:
    """A component's numbers by their familiar names, kept in its :class:`Metrics`.

    ``view.stored`` reads the seam; ``view.retries += 1`` counts into it (counters only grow).
    """

    metrics: Metrics
    _series: dict[str, Series]

    def __init__(self, metrics: Metrics, series: Mapping[str, Series]) -> None:
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "_series", dict(series))

    def __getattr__(self, name: str) -> float:
        series = self._lookup(name)
        value = self.metrics.value(series.metric, **series.labels)
        return int(value) if value.is_integer() else value

    def __setattr__(self, name: str, value: float) -> None:
        series = self._lookup(name)
        if len(series.labels) != len(series.metric.labels):
            raise AttributeError(f"{name} is a sum of several series: count into one of them")
        current = self.metrics.value(series.metric, **series.labels)
        if series.metric.kind == "gauge":
            self.metrics.set(series.metric, value, **series.labels)
        else:
            self.metrics.inc(series.metric, value - current, **series.labels)

    def snapshot(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self._series}

    def _lookup(self, name: str) -> Series:
        if name not in self._series:
            raise AttributeError(name)
        return self._series[name]


@contextlib.contextmanager
def serving(metrics: Metrics, host: str, port: int, what: str) -> Iterator[None]:
    """Serve ``metrics`` at ``http://host:port/metrics`` while the block runs (0: not at all)."""
    if not port:
        yield
        return
    try:
        server, thread = start_http_server(port, host, registry=metrics.registry)
    except OSError as exc:
        raise OSError(
            f"cannot serve {what} metrics on {host}:{port} ({exc.strerror}); set "
            "URBANPULSE_METRICS__PORT to a free port, or to 0 for none"
        ) from exc
    log.info("%s metrics on http://%s:%d/metrics", what, host, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
