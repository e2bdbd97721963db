"""The metrics seam: the list of definitions follows Prometheus conventions, label values stay
bounded, the named views count into the registry, and the exposition server serves it."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_ports
from urbanpulse.core import metrics as m
from urbanpulse.core.settings import MetricsSettings
from urbanpulse.supervisor import platform_children

# Enough for every rejection class and stage; a label beyond this is a cardinality risk.
MAX_LABEL_VALUES = 20


def test_metric_names_are_unique() -> None:
    names = [d.name for d in m.DEFINITIONS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("definition", m.DEFINITIONS, ids=lambda d: d.name)
def test_names_follow_prometheus_conventions(definition: m.MetricDef) -> None:
    assert definition.name.startswith("urbanpulse_")
    assert definition.name == definition.name.lower()
    assert definition.help
    if definition.kind == "counter":
        assert definition.name.endswith("_total")
    else:
        assert not definition.name.endswith("_total")
    if definition.kind == "histogram":  # every histogram here measures a duration
        assert definition.name.endswith("_seconds")


@pytest.mark.parametrize("definition", m.DEFINITIONS, ids=lambda d: d.name)
def test_label_values_are_bounded(definition: m.MetricDef) -> None:
    for label in definition.labels:
        if label.values is None:
            assert label.name == "partition"  # bounded by the topic's partition count
        else:
            assert len(label.values) <= MAX_LABEL_VALUES
            assert m.OTHER not in label.values


def test_the_seam_covers_what_operators_watch() -> None:
    names = {d.name for d in m.DEFINITIONS}
    assert {
        "urbanpulse_ingest_messages_total",
        "urbanpulse_stream_records_total",
        "urbanpulse_dead_letters_total",
        "urbanpulse_stream_consumer_lag",
        "urbanpulse_stream_batch_write_seconds",
        "urbanpulse_alerts_open",
        "urbanpulse_live_clients",
    } <= names


def test_a_reason_outside_the_list_is_counted_as_other() -> None:
    metrics = m.Metrics()
    raw_text = "unknown sensor 'x' (provisioning mode: reject)"
    metrics.inc(m.DEAD_LETTERS, stage="stream", reason=raw_text)
    metrics.inc(m.DEAD_LETTERS, stage="stream", reason="registry")
    assert metrics.value(m.DEAD_LETTERS, reason=m.OTHER) == 1
    assert metrics.value(m.DEAD_LETTERS, reason=raw_text) == 0
    assert metrics.value(m.DEAD_LETTERS, stage="stream") == 2


def test_a_view_reads_and_counts_into_the_registry() -> None:
    metrics = m.Metrics()
    view = m.CounterView(
        metrics,
        {
            "stored": m.Series(m.STREAM_RECORDS, {"result": "stored"}),
            "consumed": m.Series(m.STREAM_RECORDS),
        },
    )
    view.stored += 3
    metrics.inc(m.STREAM_RECORDS, 2, result="duplicate")
    assert (view.stored, view.consumed) == (3, 5)
    assert view.snapshot() == {"stored": 3, "consumed": 5}
    with pytest.raises(AttributeError):
        view.consumed += 1  # a sum of series: which one would it be?
    with pytest.raises(AttributeError):
        _ = view.unknown


def test_a_metric_is_used_as_its_kind() -> None:
    with pytest.raises(TypeError, match="gauge"):
        m.Metrics().inc(m.LIVE_CLIENTS)


def test_the_exposition_server_serves_the_registry() -> None:
    metrics = m.Metrics()
    metrics.inc(m.DEAD_LETTERS, 4, stage="ingest", reason="malformed")
    metrics.observe(m.BATCH_WRITE_SECONDS, 0.25)
    [port] = free_ports(1)
    url = f"http://127.0.0.1:{port}/metrics"
    with m.serving(metrics, "127.0.0.1", port, "test"), urllib.request.urlopen(url) as response:
        text = response.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    dead = ("urbanpulse_dead_letters_total", (("reason", "malformed"), ("stage", "ingest")))
    assert samples[dead] == 4
    assert samples[("urbanpulse_stream_batch_write_seconds_count", ())] == 1
    assert samples[("urbanpulse_stream_batch_write_seconds_sum", ())] == 0.25


def test_a_taken_port_is_a_clear_error() -> None:
    [port] = free_ports(1)
    with (
        m.serving(m.Metrics(), "127.0.0.1", port, "first"),
        pytest.raises(OSError, match="URBANPULSE_METRICS__PORT"),
        m.serving(m.Metrics(), "127.0.0.1", port, "second"),
    ):
        pass


def test_port_zero_serves_nothing_and_unset_takes_the_process_default() -> None:
    assert MetricsSettings().port_for(9101) == 9101
    assert MetricsSettings(port=9500).port_for(9101) == 9500
    assert MetricsSettings(port=0).port_for(9101) == 0


def _ports(metrics: MetricsSettings, first_bridge: int = 1) -> dict[str, str | None]:
    children = platform_children(2, 3, True, first_bridge=first_bridge, metrics=metrics)
    return {c.name: c.env.get("URBANPULSE_METRICS__PORT") for c in children}


def test_the_supervisor_gives_each_child_its_own_metrics_port() -> None:
    assert _ports(MetricsSettings(), first_bridge=3) == {
        "bridge-3": "9101",
        "bridge-4": "9102",
        "processor-1": "9201",
        "processor-2": "9202",
        "processor-3": "9203",
        "api": None,  # serves /metrics on its HTTP port
    }
    off = _ports(MetricsSettings(port=0))
    assert {port for name, port in off.items() if name != "api"} == {"0"}
