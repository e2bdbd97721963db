"""`stack status`'s rates and lag: computed from two real scrapes of a process's /metrics."""

from __future__ import annotations

from prometheus_client import generate_latest

from tests.conftest import free_ports
from urbanpulse.core import metrics as m
from urbanpulse.core.settings import MetricsSettings
from urbanpulse.stack import rates


def exposition(metrics: m.Metrics) -> rates.Samples:
    return rates.parse(generate_latest(metrics.registry).decode())


def test_a_processor_row_has_rates_over_the_window_and_lag_per_partition() -> None:
    metrics = m.Metrics()
    metrics.inc(m.STREAM_RECORDS, 10, result="stored")
    before = exposition(metrics)
    metrics.inc(m.STREAM_RECORDS, 40, result="stored")
    metrics.inc(m.STREAM_RECORDS, 10, result="duplicate")
    metrics.inc(m.DEAD_LETTERS, 2, stage="stream", reason="registry")
    for partition, lag in ((0, 0), (1, 7), (2, 3)):
        metrics.set(m.CONSUMER_LAG, lag, partition=str(partition))
    row = rates.describe("processor", before, exposition(metrics), seconds=2.0)
    # 50 records in 2 s, 40 of them stored; 2 dead letters; lag 7 + 3 behind.
    assert row["IN/S"] == "25.0"
    assert row["STORED/S"] == "20.0"
    assert row["DEAD/S"] == "1.0"
    assert row["LAG"] == "10 (p1: 7, p2: 3)"


def test_the_table_lists_the_processes_that_serve_metrics() -> None:
    bridge, processor = m.Metrics(), m.Metrics()
    bridge_port, processor_port = free_ports(2)
    cfg = MetricsSettings(bridge_port=bridge_port, processor_port=processor_port)

    def traffic(_seconds: float) -> None:  # what happens during the window
        bridge.inc(m.INGEST_MESSAGES, 8)

    with (
        m.serving(bridge, "127.0.0.1", bridge_port, "bridge"),
        m.serving(processor, "127.0.0.1", processor_port, "processor"),
    ):
        table = rates.rates_table(cfg, window_s=4.0, sleep=traffic).splitlines()
    assert table[0].split() == [
        "PROCESS",
        "METRICS",
        "IN/S",
        "FORWARDED/S",
        "STORED/S",
        "DEAD/S",
        "LAG",
    ]
    assert table[1].split()[:3] == ["bridge", f"127.0.0.1:{bridge_port}", "2.0"]  # 8 in 4 s
    assert table[2].split()[:2] == ["processor", f"127.0.0.1:{processor_port}"]
    assert len(table) == 3


def test_no_process_is_said_plainly() -> None:
    [port] = free_ports(1)
    cfg = MetricsSettings(bridge_port=port, processor_port=port)
    assert rates.rates_table(cfg, sleep=lambda _s: None) == (
        "no bridge or processor serves metrics on this machine"
    )
