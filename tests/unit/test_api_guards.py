"""The API's guards as pure logic: the failed-authentication window, export slots, the live
hub's caps and revocation, the key prefix logs may show, and uvicorn's log lines without
query strings.  The e2e tests (tests/e2e/test_api_hygiene.py) drive them through the real API."""

from __future__ import annotations

import logging

import pytest

from urbanpulse.api.guards import FailureWindow, Slots
from urbanpulse.api.live import Hub, Subscription
from urbanpulse.api.server import QueryStringHider
from urbanpulse.core import metrics as m
from urbanpulse.storage.keys import key_prefix


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_is_refused_after_max_failures_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    window = FailureWindow(max_failures=3, window_s=60, clock=clock)
    for t in (1000.0, 1010.0, 1020.0):
        assert window.retry_after("10.0.0.1") is None
        clock.now = t
        window.fail("10.0.0.1")
    # Three failures at 1000, 1010, 1020: refused until 1000 + 60 = 1060.
    clock.now = 1030.0
    assert window.retry_after("10.0.0.1") == 30
    assert window.retry_after("10.0.0.2") is None  # per client
    clock.now = 1060.0
    assert window.retry_after("10.0.0.1") is None  # 1000 has left: two in the window
    window.fail("10.0.0.1")
    assert window.retry_after("10.0.0.1") == 10  # now 1010, 1020, 1060: until 1070


def test_the_window_remembers_a_bounded_number_of_clients() -> None:
    window = FailureWindow(max_failures=1, window_s=60, clock=Clock(), max_clients=2)
    for client in ("a", "b", "c"):
        window.fail(client)
    assert window.retry_after("a") is None  # forgotten: the least recent
    assert window.retry_after("b") is not None and window.retry_after("c") is not None


def test_slots_refuse_beyond_their_limit_and_free_on_release() -> None:
    slots = Slots(2)
    assert slots.take() and slots.take() and not slots.take()
    slots.release()
    assert slots.take()


def test_the_hub_caps_clients_in_all_and_per_key_and_counts_refusals() -> None:
    hub = Hub()
    hub.connect(Subscription(), key_id=1)
    hub.connect(Subscription(), key_id=1)
    hub.connect(Subscription(), key_id=None)
    assert hub.cap_refusal(2, total=4, per_key=2) is None
    refusal = hub.cap_refusal(1, total=4, per_key=2)
    assert refusal is not None and "2 live connections" in refusal
    assert hub.cap_refusal(None, total=4, per_key=1) is None  # anonymous: the total only
    hub.connect(Subscription(), key_id=3)
    refusal = hub.cap_refusal(2, total=4, per_key=2)
    assert refusal is not None and "4 clients" in refusal
    assert hub.metrics.value(m.API_REFUSED, guard="live_per_key") == 1
    assert hub.metrics.value(m.API_REFUSED, guard="live_total") == 1


def test_revoking_a_key_closes_only_its_clients_once() -> None:
    hub = Hub()
    mine = [hub.connect(Subscription(), key_id=7) for _ in range(2)]
    other = hub.connect(Subscription(), key_id=8)
    anonymous = hub.connect(Subscription())
    assert hub.key_ids() == {7, 8}
    hub.close_keys({7})
    hub.close_keys({7})  # a second notice of the same revocation
    assert all(c.close_reason == "API key revoked" and c.outbox.wakeup.is_set() for c in mine)
    assert other.close_reason is None and anonymous.close_reason is None
    assert hub.metrics.value(m.LIVE_REVOKED_CLOSES) == 2


@pytest.mark.parametrize(
    ("presented", "shown"),
    [
        ("up_0a1b2c3d_s3cr3t-part", "up_0a1b2c3d"),
        ("up_0a1b2c3d", "(not an UrbanPulse key)"),  # no secret part: not a key's form
        ("hunter2", "(not an UrbanPulse key)"),
    ],
)
def test_logs_see_a_keys_prefix_only(presented: str, shown: str) -> None:
    assert key_prefix(presented) == shown


def test_uvicorn_log_lines_lose_their_query_string() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5555", "/v1/live?key=up_0a1b2c3d_s3cr3t&kinds=air"),
        None,
    )
    assert QueryStringHider().filter(record)
    assert record.getMessage() == '127.0.0.1:5555 - "WebSocket /v1/live?<hidden>" [accepted]'
