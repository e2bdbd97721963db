"""The platform-health board: rates, lag, latency and dead letters of the running processes.

It reads Prometheus, which scrapes every process's ``/metrics`` (deploy/compose/prometheus);
metric names come from :mod:`urbanpulse.core.metrics`, the one list of them.  Processors each
hold every active alert, so open alerts are the max over processors, not the sum.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig
from grafana_foundation_sdk.builders.dashboard import Dashboard, TimePicker
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from urbanpulse.core import metrics as m
from urbanpulse.grafana.dashboards import REFRESH, TAG, to_json, with_panels
from urbanpulse.grafana.panels import WALL_TEXT, PanelBuilder, count_thresholds, plain_thresholds

PLATFORM_UID = "urbanpulse-platform"
PROMETHEUS_UID = "urbanpulse-prometheus"
PROMETHEUS = DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
RATE = "[$__rate_interval]"
SCRAPE_INTERVAL = "15s"  # deploy/compose/prometheus/prometheus.yml scrapes this often


def rate(metric: m.MetricDef, by: str = "", where: str = "") -> str:
    """Per-second rate of a counter, summed (``by`` labels kept)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric.name}{where}{RATE}))"


def _query(expr: str, legend: str = "") -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).datasource(PROMETHEUS).range()
    return query.legend_format(legend) if legend else query


def _stat(title: str, expr: str, unit: str, *, alarm: str = "") -> stat.Panel:
    """A wall-size number; ``alarm`` colours it from one up (else neutral)."""
    return (
        stat.Panel()
        .title(title)
        .datasource(PROMETHEUS)
        .with_target(_query(expr))
        .unit(unit)
        .decimals(1)
        .thresholds(count_thresholds(alarm) if alarm else plain_thresholds())
        .color_mode(BigValueColorMode.BACKGROUND)
        .graph_mode(BigValueGraphMode.AREA)
        .text(WALL_TEXT)
        .no_value("-")
        .span(6)
        .height(6)
    )


def _graph(
    title: str, expr: str, legend: str, unit: str, *, stacked: bool = False, width: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .datasource(PROMETHEUS)
        .with_target(_query(expr, legend))
        .unit(unit)
        .thresholds(plain_thresholds())
        .line_width(2)
        .fill_opacity(10)
        .span(width)
        .height(9)
    )
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(60)
    return panel


def _latency(quantile: float) -> str:
    buckets = f"{m.BATCH_WRITE_SECONDS.name}_bucket{RATE}"
    return f"histogram_quantile({quantile}, sum by (le) (rate({buckets})))"


def platform_board() -> Dashboard:
    stored = rate(m.STREAM_RECORDS, where='{result="stored"}')
    open_alerts = f"max by (severity) ({m.ALERTS_OPEN.name})"
    now: list[PanelBuilder] = [
        _stat("Lưu / Readings stored", stored, "reqps"),
        _stat("Độ trễ hàng đợi / Consumer lag", f"sum({m.CONSUMER_LAG.name})", "none"),
        _stat("Thư lỗi / Dead letters", rate(m.DEAD_LETTERS), "reqps", alarm="orange"),
        _stat("Cảnh báo mở / Open alerts", f"sum({open_alerts})", "none", alarm="red"),
    ]
    flow: list[PanelBuilder] = [
        _graph(
            "Tin nhắn MQTT vào / MQTT messages in",
            rate(m.INGEST_MESSAGES, by="instance"),
            "{{instance}}",
            "reqps",
            stacked=True,
        ),
        _graph(
            "Bản ghi theo kết quả / Records by result",
            rate(m.STREAM_RECORDS, by="result"),
            "{{result}}",
            "reqps",
            stacked=True,
        ),
        _graph(
            "Thư lỗi theo lý do / Dead letters by stage and reason",
            rate(m.DEAD_LETTERS, by="stage, reason"),
            "{{stage}} {{reason}}",
            "reqps",
            stacked=True,
        ),
        _graph(
            "Độ trễ theo phân vùng / Consumer lag per partition",
            f"max by (partition) ({m.CONSUMER_LAG.name})",
            "{{partition}}",
            "none",
        ),
    ]
    health: list[PanelBuilder] = [
        _graph(
            "Thời gian ghi lô (p95) / Batch write time (p95)",
            _latency(0.95),
            "p95",
            "s",
        ),
        _graph("Cảnh báo mở / Open alerts", open_alerts, "{{severity}}", "none", stacked=True),
        _graph(
            "Khách xem trực tiếp / Live-feed clients",
            f"sum({m.LIVE_CLIENTS.name})",
            "clients",
            "none",
        ),
        _graph(
            "CPU theo tiến trình / CPU per process",
            f"rate(process_cpu_seconds_total{RATE})",
            "{{job}} {{instance}}",
            "percentunit",
        ),
    ]
    dashboard = (
        Dashboard("Sức khỏe nền tảng / Platform health")
        .uid(PLATFORM_UID)
        .tags([TAG, "platform"])
        .description(
            "UrbanPulse · platform health, from Prometheus. "
            "Generated by `urbanpulse grafana export`."
        )
        .refresh(REFRESH)
        .time("now-1h", "now")
        .timezone("browser")
        .timepicker(TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m"]))
    )
    return with_panels(
        dashboard,
        [
            ("Hiện trạng / Now", now),
            ("Luồng dữ liệu / Flow", flow),
            ("Sức khỏe / Health", health),
        ],
    )


def platform_dashboards() -> dict[str, dict[str, Any]]:
    return {PLATFORM_UID: to_json(platform_board())}
