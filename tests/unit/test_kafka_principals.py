"""Kafka clients get their SASL/SCRAM identity from one place; each principal's ACLs follow
issue 12's table (bridge writes readings and dead letters; processor reads readings in its
group, writes alerts and dead letters; API only reads)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from urbanpulse.core.kafka_acl import Grant, grants, topics_of
from urbanpulse.core.secrets import SecretError, ensure_secret, secrets_dir
from urbanpulse.core.settings import KafkaPrincipal, KafkaSettings, Settings

P = KafkaPrincipal


def stack_settings(data_dir: Path) -> Settings:
    base = Settings()
    return base.model_copy(update={"stack": base.stack.model_copy(update={"data_dir": data_dir})})


def test_a_client_speaks_as_its_principal_with_the_stacks_generated_password(
    tmp_path: Path,
) -> None:
    settings = stack_settings(tmp_path)
    password = ensure_secret(secrets_dir(tmp_path), "kafka-bridge")
    kwargs = settings.kafka_as(P.BRIDGE).client_kwargs()
    assert kwargs == {
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "bridge",
        "sasl_plain_password": password,
    }
    assert settings.kafka_as(P.BRIDGE).librdkafka_config() == {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "bridge",
        "sasl.password": password,
    }


def test_an_explicit_password_wins_over_the_stacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_secret(secrets_dir(tmp_path), "kafka-api")
    monkeypatch.setenv("URBANPULSE_KAFKA__API_PASSWORD", "from-the-environment")
    monkeypatch.setenv("URBANPULSE_STACK__DATA_DIR", str(tmp_path))
    kwargs = Settings().kafka_as(P.API).client_kwargs()
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
        "api",
        "from-the-environment",
    )


def test_a_missing_password_says_how_to_set_it(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="URBANPULSE_KAFKA__PROCESSOR_PASSWORD") as caught:
        stack_settings(tmp_path).kafka_as(P.PROCESSOR)
    assert "urbanpulse stack up" in str(caught.value)


def test_settings_without_a_principal_give_no_client_arguments() -> None:
    with pytest.raises(ValueError, match="speak as no principal"):
        Settings().kafka.client_kwargs()


def test_the_identity_survives_copies_and_stays_out_of_the_fields() -> None:
    kafka = KafkaSettings().speaking_as(P.API, SecretStr("pw"))
    moved = kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"})
    assert moved.client_kwargs()["sasl_plain_username"] == "api"
    assert moved.client_kwargs()["bootstrap_servers"] == "127.0.0.1:1"
    assert "pw" not in repr(kafka) and "pw" not in str(dict(kafka))


def test_more_in_sync_replicas_than_replicas_is_refused() -> None:
    with pytest.raises(ValidationError, match="min_insync_replicas"):
        KafkaSettings(replication_factor=1, min_insync_replicas=2)


def test_each_principal_gets_exactly_issue_12s_grants() -> None:
    kafka = KafkaSettings(topic_prefix="hcm", consumer_group="hcm-stream")
    expected = {
        Grant(P.BRIDGE, "TOPIC", "hcm.readings", "WRITE"),
        Grant(P.BRIDGE, "TOPIC", "hcm.deadletter", "WRITE"),
        Grant(P.BRIDGE, "TOPIC", "hcm.heartbeats", "WRITE"),
        Grant(P.PROCESSOR, "TOPIC", "hcm.readings", "READ"),
        Grant(P.PROCESSOR, "GROUP", "hcm-stream", "READ"),
        Grant(P.PROCESSOR, "TOPIC", "hcm.alerts", "WRITE"),
        Grant(P.PROCESSOR, "TOPIC", "hcm.deadletter", "WRITE"),
        Grant(P.PROCESSOR, "TOPIC", "hcm.heartbeats", "WRITE"),
        Grant(P.API, "TOPIC", "hcm.readings", "READ"),
        Grant(P.API, "TOPIC", "hcm.alerts", "READ"),
        Grant(P.API, "TOPIC", "hcm.heartbeats", "READ"),
        Grant(P.API, "GROUP", "hcm-stream", "DESCRIBE"),
    }
    got = grants(kafka)
    assert len(got) == len(set(got)) and set(got) == expected
    assert not any(g.principal is P.ADMIN for g in got)  # a super user


def test_an_isolated_prefix_gets_grants_of_its_own() -> None:
    mine = Settings().isolated("t1").kafka
    assert {g.name for g in grants(mine)} == {
        "t1.readings",
        "t1.deadletter",
        "t1.heartbeats",
        "t1.alerts",
        "t1-stream",
    }
    assert topics_of(mine, P.BRIDGE) == ["t1.readings", "t1.deadletter", "t1.heartbeats"]
    assert topics_of(mine, P.ADMIN) == []
