"""What ``urbanpulse stack status`` shows of the running processes: rates and consumer lag.

It scrapes the ``/metrics`` of the bridges and processors on this machine twice, ``window_s``
apart: at the default ports and up (the ports ``urbanpulse run`` hands out, one per process,
until one does not answer).  The numbers are those of :mod:`urbanpulse.core.metrics`.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from urbanpulse.core import metrics as m
from urbanpulse.core.settings import MetricsSettings

MAX_PROCESSES = 32  # per kind: more ports than this are not probed
SCRAPE_TIMEOUT_S = 2.0

# A scrape: (sample name, sorted labels) -> value.
Samples = Mapping[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Target:
    kind: str  # "bridge" | "processor"
    address: str  # host:port


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, metric: m.MetricDef, **labels: str) -> float:
    """The sum of ``metric``'s samples carrying ``labels``."""
    wanted = labels.items()
    return sum(
        value
        for (name, sample_labels), value in samples.items()
        if name == metric.name and wanted <= dict(sample_labels).items()
    )


def describe(kind: str, before: Samples, after: Samples, seconds: float) -> dict[str, str]:
    """One process's row: rates over the window and, for a processor, its lag per partition."""

    def per_s(metric: m.MetricDef, **labels: str) -> str:
        delta = total(after, metric, **labels) - total(before, metric, **labels)
        return f"{delta / seconds:.1f}"

    if kind == "bridge":
        return {
            "IN/S": per_s(m.INGEST_MESSAGES),
            "FORWARDED/S": per_s(m.INGEST_READINGS),
            "STORED/S": "-",
            "DEAD/S": per_s(m.DEAD_LETTERS),
            "LAG": "-",
        }
    lags = sorted(
        (int(dict(labels)["partition"]), int(value))
        for (name, labels), value in after.items()
        if name == m.CONSUMER_LAG.name
    )
    behind = [f"p{partition}: {lag}" for partition, lag in lags if lag]
    lag = str(sum(lag for _, lag in lags)) + (f" ({', '.join(behind)})" if behind else "")
    return {
        "IN/S": per_s(m.STREAM_RECORDS),
        "FORWARDED/S": "-",
        "STORED/S": per_s(m.STREAM_RECORDS, result="stored"),
        "DEAD/S": per_s(m.DEAD_LETTERS),
        "LAG": lag if lags else "-",
    }


def scrape(address: str) -> Samples | None:
    """The process's metrics, or None if nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=SCRAPE_TIMEOUT_S) as r:
            return parse(r.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def running_targets(cfg: MetricsSettings) -> list[tuple[Target, Samples]]:
    """The bridges and processors that answer, from each default port up, with a first scrape."""
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "") else cfg.host
    found: list[tuple[Target, Samples]] = []
    for kind, base in (("bridge", cfg.bridge_port), ("processor", cfg.processor_port)):
        for port in range(base, base + MAX_PROCESSES):
            samples = scrape(f"{host}:{port}")
            if samples is None:
                break
            found.append((Target(kind, f"{host}:{port}"), samples))
    return found


def rates_table(
    cfg: MetricsSettings, window_s: float = 2.0, sleep: Callable[[float], None] = time.sleep
) -> str:
    """The running processes' rates and lag as a small table (a note when none runs)."""
    first = running_targets(cfg)
    if not first:
        return "no bridge or processor serves metrics on this machine"
    started = time.monotonic()
    sleep(window_s)
    rows: list[dict[str, str]] = []
    for target, before in first:
        after = scrape(target.address)
        seconds = max(window_s, time.monotonic() - started)
        row = {"PROCESS": target.kind, "METRICS": target.address}
        if after is None:
            row["IN/S"] = "stopped"
        else:
            row |= describe(target.kind, before, after, seconds)
        rows.append(row)
    return format_rows(rows)


def format_rows(rows: list[dict[str, str]]) -> str:
    columns = ["PROCESS", "METRICS", "IN/S", "FORWARDED/S", "STORED/S", "DEAD/S", "LAG"]
    table = [columns] + [[row.get(c, "") for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )
