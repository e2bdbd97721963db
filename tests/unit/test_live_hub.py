"""The live feed's fan-out and coalescing, without servers.

Records are fed to the hub as their producers write them: readings from ``Reading.to_json``
(the bridge's envelope) and alerts from ``urbanpulse.stream.alerting.event_json`` (the
processor's lifecycle events), never as hand-written dictionaries.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from urbanpulse.alerts.model import Alert, AlertEvent, AlertState, EventType
from urbanpulse.api.live import (
    MAX_RECORD_BYTES,
    Client,
    Hub,
    Outbox,
    RejectLog,
    SensorDirectory,
    Subscription,
)
from urbanpulse.api.params import BBox
from urbanpulse.core.envelope import READINGS_SCHEMA, Reading, readings_records
from urbanpulse.core.vocabulary import Severity
from urbanpulse.stream.alerting import event_json

T0 = datetime(2026, 1, 1, tzinfo=UTC)
READINGS, ALERTS = "urbanpulse.readings", "urbanpulse.alerts"


def reading(sensor_id: str, ts: str, pm25: float = 1.0, kind: str = "air") -> dict[str, Any]:
    """A reading as the hub hands it to an outbox (for the outbox's own tests)."""
    return {"sensor_id": sensor_id, "kind": kind, "ts": ts, "values": {"pm25": pm25}}


def envelope(sensor_id: str, ts: datetime = T0, kind: str = "air", **values: float) -> bytes:
    """A readings-topic record as the bridge writes it (the envelope's own serializer)."""
    reading = Reading(sensor_id, kind, ts, values or {"pm25": 1.0}, ts, "test")
    [value] = readings_records([reading], 16 * 1024)
    return value


def alert_event(
    sensor_id: str | None,
    area_id: str | None,
    kind: str = "air",
    event: EventType = EventType.OPENED,
    alert_id: str = "a1",
) -> bytes:
    """An alerts-topic record, made by the processor's own serializer."""
    alert = Alert(
        alert_id=alert_id,
        rule_id="pm25-24h-qcvn",
        subject=sensor_id or f"area:{area_id}",
        kind=kind,
        severity=Severity.CRITICAL,
        state=AlertState.RESOLVED if event is EventType.RESOLVED else AlertState.OPEN,
        opened_at=T0,
        last_triggered_at=T0 + timedelta(minutes=5),
        value=62.5,
        threshold=45.0,
        message_vi="Bụi mịn PM2.5 vượt quy chuẩn",
        message_en="PM2.5 above the national limit",
        sensor_id=sensor_id,
        area_id=area_id,
        metric="pm25",
    )
    return event_json(AlertEvent(event, alert), T0 + timedelta(minutes=6))


def hub_with_places() -> Hub:
    directory = SensorDirectory()
    directory.load(
        [
            ("s1", "air", 106.70, 10.78, "ward-1"),
            ("s2", "water", 106.80, 10.90, "ward-2"),
            ("s3", "air", None, None, None),
        ],
        {"ward-1": "hcm", "ward-2": "hcm", "hcm": None},
    )
    return Hub(directory)


def alerts_of(client: Client) -> list[dict[str, Any]]:
    return client.outbox.take()[0]


def test_outbox_keeps_the_newest_reading_per_sensor() -> None:
    box = Outbox()
    box.offer_reading(reading("s1", "2026-01-01T00:00:00Z", 1))
    box.offer_reading(reading("s1", "2026-01-01T00:00:00.500Z", 2))
    box.offer_reading(reading("s1", "2026-01-01T00:00:00.100Z", 3))  # late: ignored
    box.offer_reading(reading("s2", "2026-01-01T00:00:00Z", 4))
    alerts, readings = box.take()
    assert alerts == []
    assert {r["sensor_id"]: r["values"]["pm25"] for r in readings} == {"s1": 2, "s2": 4}
    assert box.coalesced == 2
    assert len(box) == 0 and not box.wakeup.is_set()


def test_outbox_overflows_instead_of_growing() -> None:
    box = Outbox(max_sensors=2, max_alerts=1)
    for n in range(3):
        box.offer_reading(reading(f"s{n}", "2026-01-01T00:00:00Z"))
    assert box.overflowed and len(box.readings) == 2
    box = Outbox(max_sensors=2, max_alerts=1)
    box.offer_alert({"alert_id": "a"})
    assert not box.overflowed
    box.offer_alert({"alert_id": "b"})
    assert box.overflowed and [a["alert_id"] for a in box.alerts] == ["a"]


def test_subscriptions_filter_by_kind_area_and_bbox() -> None:
    hub = hub_with_places()
    everything = hub.connect(Subscription())
    air = hub.connect(Subscription(kinds=frozenset({"air"})))
    city = hub.connect(Subscription(areas=frozenset({"hcm"})))
    ward2 = hub.connect(Subscription(areas=frozenset({"ward-2"})))
    box = hub.connect(Subscription(bbox=BBox(106.6, 10.7, 106.75, 10.8)))
    no_readings = hub.connect(Subscription(readings=False))
    for sid, kind in (("s1", "air"), ("s2", "water"), ("s3", "air"), ("unknown", "air")):
        hub.offer_record(READINGS, False, envelope(sid, kind=kind))

    def got(client: Client) -> set[str]:
        return {r["sensor_id"] for r in client.outbox.take()[1]}

    assert got(everything) == {"s1", "s2", "s3", "unknown"}
    assert got(air) == {"s1", "s3", "unknown"}
    assert got(city) == {"s1", "s2"}
    assert got(ward2) == {"s2"}
    assert got(box) == {"s1"}
    assert got(no_readings) == set()
    assert hub.counters.readings == 4 and hub.counters.rejected == 0


def test_moving_sensors_are_placed_by_their_reported_position() -> None:
    hub = hub_with_places()
    box = hub.connect(Subscription(bbox=BBox(100, 20, 101, 21)))
    hub.offer_record(READINGS, False, envelope("t1", kind="waste_truck", lat=20.5, lon=100.5))
    [sent] = box.outbox.take()[1]
    assert (sent["lon"], sent["lat"]) == (100.5, 20.5)


def test_a_records_good_readings_go_out_beside_a_bad_one_which_is_counted() -> None:
    hub = hub_with_places()
    client = hub.connect(Subscription())
    sent = [
        Reading("s1", "air", T0 + timedelta(minutes=m), {"pm25": float(m)}, T0, "t")
        for m in (1, 2, 3)
    ]
    [value] = readings_records(sent, 16 * 1024)
    hub.offer_record(READINGS, False, value.replace(b'"pm25":2.0', b'"pm25":"x"'), READINGS_SCHEMA)
    # The outbox keeps each sensor's latest: the third reading, then the bad one is counted.
    [latest] = client.outbox.take()[1]
    assert latest["values"] == {"pm25": 3.0}
    assert (hub.counters.readings, hub.counters.rejected) == (2, 1)


def test_an_older_bridges_one_reading_record_still_goes_out() -> None:
    hub = hub_with_places()
    client = hub.connect(Subscription())
    older = Reading("s1", "air", T0, {"pm25": 4.0}, T0, "t").to_json()
    hub.offer_record(READINGS, False, older, b"reading/1")
    [sent] = client.outbox.take()[1]
    assert sent["sensor_id"] == "s1" and sent["values"] == {"pm25": 4.0}


def test_the_processors_alert_events_reach_clients_filtered_by_the_alerts_place() -> None:
    """Issue 15: the hub read sensor_id/area_id at the top of the event, where they are not."""
    hub = hub_with_places()
    city = hub.connect(Subscription(areas=frozenset({"hcm"})))
    ward1 = hub.connect(Subscription(areas=frozenset({"ward-1"})))
    ward2 = hub.connect(Subscription(areas=frozenset({"ward-2"})))
    air = hub.connect(Subscription(kinds=frozenset({"air"})))
    water = hub.connect(Subscription(kinds=frozenset({"water"})))
    inside = hub.connect(Subscription(bbox=BBox(106.6, 10.7, 106.75, 10.8)))
    silent = hub.connect(Subscription(alerts=False))
    record = alert_event("s1", "ward-1")
    hub.offer_record(ALERTS, True, record)

    [sent] = alerts_of(city)
    # Clients get the event in the processor's shape, the alert's fields inside "alert".
    assert sent["event"] == "opened"
    alert = sent["alert"]
    assert (alert["alert_id"], alert["sensor_id"], alert["area_id"]) == ("a1", "s1", "ward-1")
    assert alert["message_en"] == "PM2.5 above the national limit"
    assert alert["message_vi"] == "Bụi mịn PM2.5 vượt quy chuẩn"
    assert (alert["severity"], alert["state"]) == ("critical", "open")
    # What the client is sent, serialized, is what the processor published.
    assert orjson.loads(orjson.dumps(sent, option=orjson.OPT_UTC_Z)) == orjson.loads(record)
    assert [len(alerts_of(c)) for c in (ward1, air, inside)] == [1, 1, 1]
    assert [len(alerts_of(c)) for c in (ward2, water, silent)] == [0, 0, 0]
    assert hub.counters.alerts == 1 and hub.counters.rejected == 0


def test_an_area_alert_follows_its_area_and_the_areas_above_it() -> None:
    hub = hub_with_places()
    city = hub.connect(Subscription(areas=frozenset({"hcm"})))
    ward1 = hub.connect(Subscription(areas=frozenset({"ward-1"})))
    ward2 = hub.connect(Subscription(areas=frozenset({"ward-2"})))
    hub.offer_record(ALERTS, True, alert_event(None, "ward-2"))
    [sent] = alerts_of(city)
    assert sent["alert"]["area_id"] == "ward-2" and sent["alert"]["sensor_id"] is None
    assert len(alerts_of(ward2)) == 1 and alerts_of(ward1) == []


def test_each_lifecycle_event_of_an_alert_is_passed_on_in_order() -> None:
    hub = hub_with_places()
    client = hub.connect(Subscription())
    hub.offer_record(ALERTS, True, alert_event("s1", "ward-1", alert_id="x"))
    hub.offer_record(ALERTS, True, alert_event("s1", "ward-1", event=EventType.RESOLVED))
    sent = alerts_of(client)
    assert [(e["event"], e["alert"]["state"]) for e in sent] == [
        ("opened", "open"),
        ("resolved", "resolved"),
    ]


def test_fields_added_beside_the_event_are_ignored() -> None:
    hub = hub_with_places()
    client = hub.connect(Subscription())
    record = {**orjson.loads(alert_event("s1", "ward-1")), "event_id": "e-17"}
    hub.offer_record(ALERTS, True, orjson.dumps(record))
    [sent] = alerts_of(client)
    assert sent["alert"]["alert_id"] == "a1" and hub.counters.rejected == 0


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# What one record on either topic can hold that is not what its producer writes.
ALERT_RECORDS = {
    "not JSON": b"\xff{not json",
    "nothing (a tombstone)": None,
    "a JSON list": b"[1, 2, 3]",
    "the flat hand-written shape": orjson.dumps(
        {"alert_id": "a", "sensor_id": "s1", "message_en": "x", "severity": "critical"}
    ),
    "an alert with a wrong type": orjson.dumps(
        {**orjson.loads(alert_event("s1", "ward-1")), "alert": {"alert_id": ["x"]}}
    ),
    "an unknown event": alert_event("s1", "ward-1").replace(b'"opened"', b'"exploded"'),
    "deep nesting": b'{"event": "opened", "at": ' + _deep(1020) + b"}",
    "too large": b'{"pad": "' + b"x" * MAX_RECORD_BYTES + b'"}',
}
READING_RECORDS = {
    "not JSON": b"\x00\x01",
    "nothing (a tombstone)": None,
    "a JSON string": b'"hello"',
    "values that are not numbers": envelope("s1").replace(b'"pm25":1.0', b'"pm25":"high"'),
    "a location that is not numbers": envelope("s1").replace(
        b'"location":null', b'"location":["x","y"]'
    ),
    "a sensor id nested deeper than repr can go": envelope("s1").replace(
        b'"sensor_id":"s1"', b'"sensor_id":' + _deep(1020)
    ),
    "a timestamp without an offset": envelope("s1").replace(b'00:00Z"', b'00:00"'),
    "too large": envelope("s1").replace(b'"source":"test"', b'"source":"' + b"y" * 70000 + b'"'),
}


@pytest.mark.parametrize(
    ("is_alert", "value"),
    [(True, v) for v in ALERT_RECORDS.values()] + [(False, v) for v in READING_RECORDS.values()],
    ids=[f"alerts: {k}" for k in ALERT_RECORDS] + [f"readings: {k}" for k in READING_RECORDS],
)
def test_a_bad_record_is_counted_and_skipped_and_the_next_good_one_goes_out(
    is_alert: bool, value: bytes | None
) -> None:
    hub = hub_with_places()
    client = hub.connect(Subscription(kinds=frozenset({"air"})))
    hub.offer_record(ALERTS if is_alert else READINGS, is_alert, value)
    assert hub.counters.rejected == 1
    assert client.outbox.take() == ([], [])
    hub.offer_record(READINGS, False, envelope("s1"))
    hub.offer_record(ALERTS, True, alert_event("s1", "ward-1"))
    alerts, readings = client.outbox.take()
    assert [a["alert"]["alert_id"] for a in alerts] == ["a1"]
    assert [r["sensor_id"] for r in readings] == ["s1"]
    assert hub.counters.rejected == 1


def test_skipped_records_are_logged_once_per_interval_and_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = hub_with_places()
    now = [1000.0]
    hub.rejects = RejectLog(interval_s=60.0, clock=lambda: now[0])

    def logged() -> list[str]:
        lines = [r.getMessage() for r in caplog.records if r.name == "urbanpulse.api.live"]
        caplog.clear()
        return lines

    with caplog.at_level(logging.WARNING, logger="urbanpulse.api.live"):
        for _ in range(50):
            hub.offer_record(READINGS, False, b'{"sensor_id": "' + b"z" * 60000 + b'"}')
        [line] = logged()
        assert "skipped a record on urbanpulse.readings" in line and "0 more skipped" in line
        assert len(line) < 800
        now[0] += 59.0
        hub.offer_record(ALERTS, True, b"nope")
        assert logged() == []
        # Once the interval has passed, the next one is logged with the count held back.
        now[0] += 1.0
        hub.offer_record(ALERTS, True, b"nope")
        [line] = logged()
        assert "50 more skipped" in line and "urbanpulse.alerts" in line
    assert hub.counters.rejected == 52


def test_a_slow_client_never_holds_back_the_others() -> None:
    hub = hub_with_places()
    slow = hub.connect(Subscription(), Outbox(max_sensors=10))
    fast = hub.connect(Subscription())
    for n in range(100):
        hub.offer_record(READINGS, False, envelope(f"x{n}"))
        if n % 10 == 0:
            fast.outbox.take()
    assert slow.outbox.overflowed
    assert not fast.outbox.overflowed
    hub.disconnect(slow)
    assert slow not in hub.clients
