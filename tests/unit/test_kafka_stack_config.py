"""The local stack's Kafka configuration: no unauthenticated listener, ACLs enforced with the
admin as the only super user, and a cluster's addresses and replication."""

from __future__ import annotations

from pathlib import Path

import pytest

from urbanpulse.core.settings import Settings
from urbanpulse.stack.services.base import StackError
from urbanpulse.stack.services.kafka import (
    as_cluster,
    broker_addresses,
    controller_port,
    server_properties,
)


def properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {key: value for key, value in pairs}


def node_config(settings: Settings, node: int, nodes: int) -> dict[str, str]:
    listeners = [
        (host, port, controller_port(settings, n))
        for n, (host, port) in enumerate(broker_addresses(settings, nodes), start=1)
    ]
    text = server_properties(
        node=node,
        listeners=listeners,
        log_dir=Path("/data"),
        settings=as_cluster(settings, nodes),
        admin_password="s3cret-admin-password",
    )
    return properties(text)


def test_every_listener_authenticates_and_acls_are_enforced() -> None:
    config = node_config(Settings(), 1, 1)
    assert config["listeners"] == ("SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093")
    assert "PLAINTEXT:PLAINTEXT" not in config["listener.security.protocol.map"]
    assert config["listener.security.protocol.map"] == (
        "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    )
    assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-256"
    assert config["authorizer.class.name"].endswith(".StandardAuthorizer")
    assert config["super.users"] == "User:admin"
    assert config["allow.everyone.if.no.acl.found"] == "false"
    # The controller accepts one account, the admin's, with its password.
    assert (
        'user_admin="s3cret-admin-password"'
        in (config["listener.name.controller.plain.sasl.jaas.config"])
    )
    assert config["default.replication.factor"] == "1"


def test_three_nodes_vote_together_and_replicate_on_three_with_two_in_sync() -> None:
    configs = [node_config(Settings(), node, 3) for node in (1, 2, 3)]
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert [c["controller.quorum.voters"] for c in configs] == [voters] * 3
    assert [c["advertised.listeners"] for c in configs] == [
        "SASL_PLAINTEXT://127.0.0.1:19092",
        "SASL_PLAINTEXT://127.0.0.1:19094",
        "SASL_PLAINTEXT://127.0.0.1:19096",
    ]
    assert [c["node.id"] for c in configs] == ["1", "2", "3"]
    for config in configs:
        assert config["default.replication.factor"] == "3"
        assert config["offsets.topic.replication.factor"] == "3"
        assert config["min.insync.replicas"] == "2"


def test_listed_addresses_name_the_nodes_and_a_wrong_count_is_refused() -> None:
    base = Settings()
    listed = base.model_copy(
        update={"kafka": base.kafka.model_copy(update={"bootstrap_servers": "h:1,h:5,h:9"})}
    )
    assert broker_addresses(listed, 3) == [("h", 1), ("h", 5), ("h", 9)]
    with pytest.raises(StackError, match="lists 3 addresses for 2 brokers"):
        broker_addresses(listed, 2)


def test_a_cluster_replicates_on_at_most_three() -> None:
    assert as_cluster(Settings(), 1).kafka.replication_factor == 1
    five = as_cluster(Settings(), 5)
    assert (five.kafka.replication_factor, five.kafka.min_insync_replicas) == (3, 2)
    assert five.stack.kafka_brokers == 5
