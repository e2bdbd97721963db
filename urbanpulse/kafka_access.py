"""Kafka principals and their ACLs on a running cluster, set up by the admin principal.

``urbanpulse stack up`` calls ``ensure_users`` and ``provision`` once Kafka is ready; tests and
benchmarks that use a topic prefix of their own (``Settings.isolated``) call ``provision`` for
it.  Both are idempotent.  aiokafka has no ACL or SCRAM-user requests, so these two use
librdkafka's admin client (confluent-kafka); everything else speaks aiokafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from urbanpulse.bus import ensure_topics
from urbanpulse.core.kafka_acl import Grant, grants
from urbanpulse.core.settings import KafkaPrincipal, KafkaSettings, Settings

log = logging.getLogger(__name__)

# Kafka's minimum for SCRAM, and the tools' default.
SCRAM_ITERATIONS = 4096
_TIMEOUT_S = 30.0
SERVICE_PRINCIPALS = (KafkaPrincipal.BRIDGE, KafkaPrincipal.PROCESSOR, KafkaPrincipal.API)


class KafkaAccessError(Exception):
    """The cluster refused to create a principal or an ACL."""


def _admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(dict(kafka.librdkafka_config()))


def _wait_all(futures: Mapping[Any, Future[Any]], what: str) -> None:
    failures = []
    for key, future in futures.items():
        try:
            future.result(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            failures.append(f"{key}: {exc.args[0]}")
        except TimeoutError:
            failures.append(f"{key}: no answer from Kafka within {_TIMEOUT_S:.0f} s")
    if failures:
        raise KafkaAccessError(f"{what} failed: " + "; ".join(failures))


def ensure_users(settings: Settings) -> None:
    """Create (or update the password of) the bridge, processor and API SCRAM users, each with
    its password from ``settings`` (explicit, or the stack's secret file).  Blocking."""
    mechanism = ScramMechanism[settings.kafka.sasl_mechanism.replace("-", "_")]
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            principal.value,
            ScramCredentialInfo(mechanism, SCRAM_ITERATIONS),
            settings.kafka_password(principal).get_secret_value().encode(),
        )
        for principal in SERVICE_PRINCIPALS
    ]
    admin = _admin(settings.kafka_as(KafkaPrincipal.ADMIN))
    _wait_all(admin.alter_user_scram_credentials(upserts), "creating the Kafka SCRAM users")
    log.info("Kafka SCRAM users ready: %s", ", ".join(p.value for p in SERVICE_PRINCIPALS))


def _binding(grant: Grant) -> AclBinding:
    return AclBinding(
        ResourceType[grant.resource],
        grant.name,
        ResourcePatternType.LITERAL,
        f"User:{grant.principal.value}",
        "*",
        AclOperation[grant.operation],
        AclPermissionType.ALLOW,
    )


def grant_acls(settings: Settings) -> None:
    """Grant the ACLs of ``settings.kafka``'s topic prefix (``urbanpulse.core.kafka_acl``)
    and return once the broker enforces them.  Creating an ACL that exists changes nothing.
    Blocking."""
    admin = _admin(settings.kafka_as(KafkaPrincipal.ADMIN))
    bindings = [_binding(grant) for grant in grants(settings.kafka)]
    _wait_all(admin.create_acls(bindings), "granting Kafka ACLs")
    # The controller has committed them; a broker enforces them once it has replayed them, a
    # moment later.  A client connecting meanwhile would be refused, so wait for that moment.
    deadline = time.monotonic() + _TIMEOUT_S
    while missing := [b for b in bindings if not _enforced(admin, b)]:
        if time.monotonic() > deadline:
            raise KafkaAccessError(f"the broker does not show {len(missing)} granted ACLs")
        time.sleep(0.1)


def _enforced(admin: AdminClient, binding: AclBinding) -> bool:
    """Whether the broker answering lists ``binding`` among the ACLs it enforces."""
    exactly = AclBindingFilter(
        binding.restype,
        binding.name,
        binding.resource_pattern_type,
        binding.principal,
        binding.host,
        binding.operation,
        binding.permission_type,
    )
    return bool(admin.describe_acls(exactly).result(timeout=_TIMEOUT_S))


async def provision(settings: Settings) -> None:
    """The platform's topics for ``settings.kafka``'s prefix, and the ACLs that let each
    principal use its own (as the admin principal)."""
    await ensure_topics(settings.kafka_as(KafkaPrincipal.ADMIN))
    await asyncio.to_thread(grant_acls, settings)
