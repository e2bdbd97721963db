"""The configuration files the local stack writes for its servers (regenerated at every start)."""

from __future__ import annotations

from pathlib import Path

HEADER = "# Written by urbanpulse.stack at every start: edits here are overwritten.\n"

MOSQUITTO_PERSISTENCE_FILE = "mosquitto.db"
# Mosquitto saves its in-memory state after this many changes (a reading queued for the bridge,
# a queued reading acked by it, a subscription): a crash loses at most about this many readings.
MOSQUITTO_AUTOSAVE_CHANGES = 1000


def mosquitto_conf(
    *,
    host: str,
    port: int,
    persistence_dir: Path,
    log_file: Path,
    run_as: str | None,
    message_size_limit: int,
    max_queued_bytes: int,
) -> str:
    lines = [
        HEADER,
        "per_listener_settings false",
        f"listener {port} {host}",
        "allow_anonymous true",
        "",
        "# Persistent sessions and queued QoS 1 messages survive a broker restart.  A clean",
        "# stop saves everything; after a crash (SIGKILL, power cut) the readings the broker",
        "# acked since its last save are lost, so save after a fixed number of changes (each",
        "# reading queued for the bridge is one): see README, Delivery contract.",
        "persistence true",
        f"persistence_location {persistence_dir}/",
        f"persistence_file {MOSQUITTO_PERSISTENCE_FILE}",
        f"autosave_interval {MOSQUITTO_AUTOSAVE_CHANGES}",
        "autosave_on_changes true",
        "",
        "# The bridge's offline queue: the default of 1000 would drop QoS 1 readings.  Bytes",
        "# are bounded too, so that a flood of large messages cannot exhaust the broker's memory.",
        "max_queued_messages 1000000",
        f"max_queued_bytes {max_queued_bytes}",
        "max_inflight_messages 1000",
        "queue_qos0_messages false",
        "",
        "# Limits at the door (README).  A larger payload is acked and dropped; the bridge",
        "# dead-letters smaller ones above its own, lower limit.  Mosquitto suggests",
        "# max_packet_size instead, but that disconnects the sender, whose client then resends",
        "# the same QoS 1 message on every reconnect: an MQTT 3.1.1 gateway would stall.",
        f"message_size_limit {message_size_limit}",
        "# A packet beyond this is not even read: its client is disconnected.  Twice the",
        "# payload limit leaves room for any topic and properties.",
        f"max_packet_size {2 * message_size_limit}",
        "",
        "# Not stdout: mosquitto does not flush it, so a killed broker would leave no log.",
        f"log_dest file {log_file}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "log_timestamp true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "connection_messages true",
    ]
    if run_as is not None:
        lines += ["", "# Started as root: drop privileges to this user.", f"user {run_as}"]
    return "\n".join(lines) + "\n"


def kafka_server_properties(*, host: str, port: int, controller_port: int, log_dir: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "3",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        "group.initial.rebalance.delay.ms": "0",
        # After a SIGKILL the controller keeps the dead broker's registration until its session
        # times out (default 9 s) and refuses the restarted broker until then; fault tests kill
        # and restart the broker, so keep that short.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "4000",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.hours": "168",
        "log.segment.bytes": str(256 * 1024 * 1024),
    }
    body = "".join(f"{key}={value}\n" for key, value in settings.items())
    return HEADER + body


def kafka_log4j2_properties() -> str:
    """Log4j 2 configuration: everything to stdout, which is the stack's kafka.log."""
    return HEADER + "\n".join(
        [
            "status = warn",
            "shutdownHook = disable",
            "name = urbanpulse-kafka",
            "appender.out.type = Console",
            "appender.out.name = STDOUT",
            "appender.out.target = SYSTEM_OUT",
            "appender.out.layout.type = PatternLayout",
            "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.out.ref = STDOUT",
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "logger.state.name = state.change.logger",
            "logger.state.level = WARN",
            "logger.authorizer.name = kafka.authorizer.logger",
            "logger.authorizer.level = WARN",
            "logger.clients.name = org.apache.kafka.clients",
            "logger.clients.level = WARN",
            "",
        ]
    )


def postgres_conf(*, host: str, port: int, socket_dir: Path) -> str:
    settings = {
        "listen_addresses": f"'{host}'",
        "port": str(port),
        "unix_socket_directories": f"'{socket_dir}'",
        "unix_socket_permissions": "0700",
        "shared_preload_libraries": "'timescaledb'",
        "timescaledb.telemetry_level": "off",
        "max_connections": "100",
        "shared_buffers": "'128MB'",
        "max_worker_processes": "16",
        "timescaledb.max_background_workers": "8",
        "logging_collector": "off",
        "log_destination": "'stderr'",
        "log_line_prefix": "'%m [%p] %q%u@%d '",
        "log_timezone": "'UTC'",
        "timezone": "'UTC'",
    }
    return HEADER + "".join(f"{key} = {value}\n" for key, value in settings.items())


PG_HBA = HEADER + (
    "# Unix socket (a directory only the server's user can open): the stack's superuser access.\n"
    "local   all   all                 trust\n"
    "# TCP on loopback: passwords.\n"
    "host    all   all   127.0.0.1/32  scram-sha-256\n"
)

# The platform's login roles (owner, writer, api, reader; README, "Security") with the stack's
# generated passwords, which psql reads from its environment: never on a command line.  The
# migration grants the non-owner roles their rights.
PG_PROVISION_SQL = r"""
\set ON_ERROR_STOP on
\getenv app_db URBANPULSE_STACK_PG_DB
\getenv owner URBANPULSE_STACK_PG_USER_OWNER
\getenv owner_password URBANPULSE_STACK_PG_PASSWORD_OWNER
\getenv writer URBANPULSE_STACK_PG_USER_WRITER
\getenv writer_password URBANPULSE_STACK_PG_PASSWORD_WRITER
\getenv api URBANPULSE_STACK_PG_USER_API
\getenv api_password URBANPULSE_STACK_PG_PASSWORD_API
\getenv reader URBANPULSE_STACK_PG_USER_READER
\getenv reader_password URBANPULSE_STACK_PG_PASSWORD_READER
SELECT format('CREATE ROLE %I', name) FROM (VALUES (:'owner'), (:'writer'), (:'api'), (:'reader'))
    AS wanted (name) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L',
              name, password)
  FROM (VALUES (:'owner', :'owner_password'), (:'writer', :'writer_password'),
               (:'api', :'api_password'), (:'reader', :'reader_password'))
    AS wanted (name, password)
\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
\connect :"app_db"
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS timescaledb;
"""
