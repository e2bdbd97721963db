"""The live feed's fan-out and coalescing, without servers."""

from __future__ import annotations

from typing import Any

from urbanpulse.api.live import Hub, Outbox, SensorDirectory, Subscription
from urbanpulse.api.params import BBox


def reading(sensor_id: str, ts: str, pm25: float = 1.0, kind: str = "air") -> dict[str, Any]:
    return {"sensor_id": sensor_id, "kind": kind, "ts": ts, "values": {"pm25": pm25}}


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
        hub.publish_reading(reading(sid, "2026-01-01T00:00:00Z", kind=kind))

    def got(client: Any) -> set[str]:
        return {r["sensor_id"] for r in client.outbox.take()[1]}

    assert got(everything) == {"s1", "s2", "s3", "unknown"}
    assert got(air) == {"s1", "s3", "unknown"}
    assert got(city) == {"s1", "s2"}
    assert got(ward2) == {"s2"}
    assert got(box) == {"s1"}
    assert got(no_readings) == set()


def test_moving_sensors_are_placed_by_their_reported_position() -> None:
    hub = hub_with_places()
    box = hub.connect(Subscription(bbox=BBox(100, 20, 101, 21)))
    truck = {
        "sensor_id": "t1",
        "kind": "waste_truck",
        "ts": "2026-01-01T00:00:00Z",
        "values": {"lat": 20.5, "lon": 100.5, "speed": 3.0},
    }
    hub.publish_reading(truck)
    [sent] = box.outbox.take()[1]
    assert (sent["lon"], sent["lat"]) == (100.5, 20.5)


def test_alerts_pass_through_and_follow_area_filters() -> None:
    hub = hub_with_places()
    city = hub.connect(Subscription(areas=frozenset({"hcm"})))
    other = hub.connect(Subscription(areas=frozenset({"hanoi"})))
    silent = hub.connect(Subscription(alerts=False))
    alert = {
        "alert_id": "a1",
        "rule_id": "pm25",
        "state": "open",
        "severity": "critical",
        "sensor_id": None,
        "area_id": "ward-2",
        "message_vi": "Bụi",
        "message_en": "Dust",
    }
    hub.publish_alert(alert)
    assert city.outbox.take()[0] == [alert]
    assert other.outbox.take()[0] == []
    assert silent.outbox.take()[0] == []


def test_a_slow_client_never_holds_back_the_others() -> None:
    hub = hub_with_places()
    slow = hub.connect(Subscription(), Outbox(max_sensors=10))
    fast = hub.connect(Subscription())
    for n in range(100):
        hub.publish_reading(reading(f"x{n}", "2026-01-01T00:00:00Z"))
        if n % 10 == 0:
            fast.outbox.take()
    assert slow.outbox.overflowed
    assert not fast.outbox.overflowed
    hub.disconnect(slow)
    assert slow not in hub.clients
