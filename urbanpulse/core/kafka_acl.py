"""What each Kafka principal may do: the ACLs the platform grants, as data.

Least privilege by topic: the bridge writes readings, dead letters and its heartbeats; the
processor reads readings in its consumer group and writes alerts, dead letters and its
heartbeats; the API only reads (the live feed follows readings and alerts without a group;
health reads heartbeats and the processors' committed offsets).  The admin principal is a
super user and needs no ACL.

Grants are literal (exact topic and group names) and per topic prefix: each prefix
(``Settings.isolated`` gives every test its own) gets its own set, applied by the admin
principal when the prefix is provisioned (``urbanpulse.kafka_access.provision``).  A prefixed
ACL on the prefix would be shorter, but it would let the bridge write alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from urbanpulse.core.settings import KafkaPrincipal, KafkaSettings

Operation = Literal["READ", "WRITE", "DESCRIBE"]

# Topic (without prefix) -> what each principal does with it.
_TOPIC_GRANTS: dict[KafkaPrincipal, dict[str, Operation]] = {
    KafkaPrincipal.BRIDGE: {"readings": "WRITE", "deadletter": "WRITE", "heartbeats": "WRITE"},
    KafkaPrincipal.PROCESSOR: {
        "readings": "READ",
        "alerts": "WRITE",
        "deadletter": "WRITE",
        "heartbeats": "WRITE",
    },
    KafkaPrincipal.API: {"readings": "READ", "alerts": "READ", "heartbeats": "READ"},
}
# The processors' consumer group: they join it (READ); the API reads its offsets (DESCRIBE).
_GROUP_GRANTS: dict[KafkaPrincipal, Operation] = {
    KafkaPrincipal.PROCESSOR: "READ",
    KafkaPrincipal.API: "DESCRIBE",
}


@dataclass(frozen=True)
class Grant:
    """ALLOW ``principal`` to do ``operation`` on the topic or group named ``name``."""

    principal: KafkaPrincipal
    resource: Literal["TOPIC", "GROUP"]
    name: str
    operation: Operation


def grants(kafka: KafkaSettings) -> list[Grant]:
    """Every ACL the platform needs for the topics and group of ``kafka``."""
    topic_grants = [
        Grant(principal, "TOPIC", kafka.topic(topic), operation)
        for principal, topics in _TOPIC_GRANTS.items()
        for topic, operation in topics.items()
    ]
    group_grants = [
        Grant(principal, "GROUP", kafka.consumer_group, operation)
        for principal, operation in _GROUP_GRANTS.items()
    ]
    return topic_grants + group_grants


def topics_of(kafka: KafkaSettings, principal: KafkaPrincipal) -> list[str]:
    """The full names of the topics ``principal`` uses (empty for the admin: all of them)."""
    return [kafka.topic(topic) for topic in _TOPIC_GRANTS.get(principal, {})]
