"""Settings come from URBANPULSE_* variables; a bad value is refused with a message naming it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from urbanpulse.core.settings import Settings


def test_nested_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URBANPULSE_DATABASE__PORT", "5433")
    monkeypatch.setenv("URBANPULSE_KAFKA__TOPIC_PREFIX", "hcm")
    monkeypatch.setenv("URBANPULSE_API__MAP_BBOX", "[106.62, 10.72, 106.78, 10.84]")
    settings = Settings()
    assert settings.database.port == 5433
    assert settings.kafka.topic("readings") == "hcm.readings"
    assert settings.api.map_bbox == (106.62, 10.72, 106.78, 10.84)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("URBANPULSE_INGEST__NAIVE_TIME_ZONE", "Asia/Saigon_Typo", "unknown time zone"),
        ("URBANPULSE_API__MAP_BBOX", "[106.9, 10.7, 106.8, 10.9]", "is not west,south,east,north"),
        ("URBANPULSE_STREAM__PROVISIONING", "maybe", "provisioning"),
        ("URBANPULSE_DATABASE__PORT", "five", "port"),
    ],
)
def test_bad_values_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_isolated_copies_share_servers_but_not_topics() -> None:
    base = Settings()
    mine = base.isolated("t1")
    assert mine.kafka.topic("readings") == "t1.readings"
    assert mine.kafka.consumer_group == "t1-stream"
    assert mine.mqtt.topic_root == "t1/v1"
    assert mine.mqtt.bridge_client_id == "t1-bridge"
    assert (mine.database, mine.kafka.bootstrap_servers) == (
        base.database,
        base.kafka.bootstrap_servers,
    )


def test_the_cli_reports_bad_settings_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from urbanpulse.cli import main

    monkeypatch.setenv("URBANPULSE_INGEST__NAIVE_TIME_ZONE", "Mars/Olympus")
    assert main(["stack", "status"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err and "unknown time zone 'Mars/Olympus'" in err
    assert "Traceback" not in err


def test_each_bridge_instance_has_its_own_session_in_one_share_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("URBANPULSE_MQTT__BRIDGE_INSTANCE", "3")
    # One bridge (no share group): a plain subscription, which the broker keeps across restarts.
    mqtt = Settings().mqtt
    assert mqtt.bridge_client() == "urbanpulse-bridge-3"
    assert mqtt.bridge_subscription() == "urbanpulse/v1/#"
    assert Settings().isolated("t1").mqtt.bridge_subscription() == "t1/v1/#"
    # Several: one share group, isolated per test like everything else.
    monkeypatch.setenv("URBANPULSE_MQTT__SHARE_GROUP", "urbanpulse-bridge")
    assert Settings().mqtt.bridge_subscription() == "$share/urbanpulse-bridge/urbanpulse/v1/#"
    mine = Settings().isolated("t1").mqtt
    assert mine.bridge_client() == "t1-bridge-3"
    assert mine.bridge_subscription() == "$share/t1-bridge/t1/v1/#"


@pytest.mark.parametrize("name", ["", "a/b", "a+", "#"])
def test_a_share_group_or_instance_must_be_one_topic_level(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    for variable in ("URBANPULSE_MQTT__SHARE_GROUP", "URBANPULSE_MQTT__BRIDGE_INSTANCE"):
        if variable == "URBANPULSE_MQTT__SHARE_GROUP" and not name:
            continue  # an empty share group is the default: no sharing
        with monkeypatch.context() as env:
            env.setenv(variable, name)
            with pytest.raises(ValidationError, match="without '/'"):
                Settings()
