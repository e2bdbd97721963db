"""Kafka on KRaft, run from the jars Maven fetched: one node, or a cluster of combined
broker/controller nodes on loopback (``stack.kafka_brokers``), with SASL/SCRAM and ACLs.

Security (README, "Security"): clients authenticate with SCRAM on the broker listener; the
brokers talk to the controllers with SASL/PLAIN as the admin principal (KRaft cannot check
SCRAM on its controller listener: the credentials live in the metadata it serves).  The admin
principal is the only super user; its SCRAM credential is written at ``kafka-storage format``
time, through a 0600 argument file so that its password is never on a command line.  Once the
cluster is up, the admin creates the bridge, processor and API users and the ACLs of the
configured topic prefix (``urbanpulse.kafka_access``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from urbanpulse.core.secrets import ensure_secret, secrets_dir
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.kafka_access import ensure_users, provision
from urbanpulse.stack.services.base import (
    HEADER,
    Launch,
    Port,
    Service,
    StackContext,
    StackError,
    run_setup,
    system_user,
    tcp_open,
)

logger = logging.getLogger(__name__)

# Keep in step with <kafka.version> in deploy/kafka/pom.xml.
KAFKA_VERSION = "4.1.2"

# The second node's ports are the first's + 2, and so on: with the defaults, brokers on 19092,
# 19094, 19096 and controllers on 19093, 19095, 19097.
PORT_STEP = 2
# At most this many replicas however many brokers: 3 survives the loss of one with
# min.insync.replicas 2 and still accepts writes.
MAX_REPLICATION = 3
_PROBE_TIMEOUT_S = 2.0
_INERT = re.compile(r"[A-Za-z0-9_.~-]{16,}")


def java_binary() -> Path | None:
    found = shutil.which("java")
    return Path(found) if found else None


def kafka_libs(cache_dir: Path) -> Path:
    return cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise StackError(f"kafka.bootstrap_servers must be HOST:PORT[,...], got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def broker_addresses(settings: Settings, count: int) -> list[tuple[str, int]]:
    """Where ``count`` nodes listen for clients: the addresses of ``kafka.bootstrap_servers``
    if it lists one per node, else the first one's port and the next ones ``PORT_STEP`` apart."""
    listed = [_host_port(a) for a in settings.kafka.bootstrap_servers.split(",") if a.strip()]
    if len(listed) == count:
        return listed
    if len(listed) != 1:
        raise StackError(
            f"kafka.bootstrap_servers lists {len(listed)} addresses for {count} brokers: "
            "list one per broker, or only the first"
        )
    host, port = listed[0]
    return [(host, port + PORT_STEP * i) for i in range(count)]


def _nodes_file(root: Path) -> Path:
    return root / "kafka" / "nodes"


def recorded_nodes(root: Path) -> int | None:
    """How many nodes the stack's Kafka was formatted with, if it was."""
    try:
        return int(_nodes_file(root).read_text())
    except (FileNotFoundError, ValueError):
        return None


def controller_port(settings: Settings, node: int) -> int:
    return settings.stack.kafka_controller_port + PORT_STEP * (node - 1)


def as_cluster(settings: Settings, brokers: int) -> Settings:
    """``settings`` for a stack of ``brokers`` Kafka nodes whose topics are replicated on up to
    three of them, two of which must have every acknowledged record (one node: as they are)."""
    if brokers == 1:
        return settings
    replicas = min(brokers, MAX_REPLICATION)
    return settings.model_copy(
        update={
            "stack": settings.stack.model_copy(update={"kafka_brokers": brokers}),
            "kafka": settings.kafka.model_copy(
                update={
                    "replication_factor": replicas,
                    "min_insync_replicas": max(1, replicas - 1),
                }
            ),
        }
    )


def new_cluster_id() -> str:
    """A Kafka Uuid as its tools print it: 16 random bytes, URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _jaas(module: str, username: str, password: str, *users: tuple[str, str]) -> str:
    # The admin password is checked to need no escaping inside the quotes (_INERT).
    accounts = "".join(f' user_{name}="{secret}"' for name, secret in users)
    return f'{module} required username="{username}" password="{password}"{accounts};'


def server_properties(
    *,
    node: int,
    listeners: list[tuple[str, int, int]],
    log_dir: Path,
    settings: Settings,
    admin_password: str,
) -> str:
    """One node's configuration; ``listeners`` is every node's (host, port, controller port)."""
    host, port, ctl = listeners[node - 1]
    kafka = settings.kafka
    replicas = str(kafka.replication_factor)
    min_isr = str(kafka.min_insync_replicas)
    admin = KafkaPrincipal.ADMIN.value
    scram = kafka.sasl_mechanism.lower()
    config = {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.voters": ",".join(
            f"{n}@{h}:{c}" for n, (h, _p, c) in enumerate(listeners, start=1)
        ),
        "listeners": f"SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{ctl}",
        "advertised.listeners": f"SASL_PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        # Clients and brokers: SCRAM.  Brokers to controllers: PLAIN, checked against the one
        # account below (the controllers serve the SCRAM credentials, so cannot depend on them).
        "sasl.enabled.mechanisms": kafka.sasl_mechanism,
        "sasl.mechanism.inter.broker.protocol": kafka.sasl_mechanism,
        f"listener.name.sasl_plaintext.{scram}.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.scram.ScramLoginModule", admin, admin_password
        ),
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule",
            admin,
            admin_password,
            (admin, admin_password),
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{admin}",
        "allow.everyone.if.no.acl.found": "false",
        "log.dirs": str(log_dir),
        "num.partitions": "3",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
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
    body = "".join(f"{key}={value}\n" for key, value in config.items())
    return HEADER + body


def _argfile_line(arg: str) -> str:
    # The java launcher's @argfile syntax: a quoted argument, backslash escapes.
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def log4j2_properties() -> str:
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


def live_brokers(kafka_as_admin: dict[str, str], timeout_s: float) -> set[int]:
    """The ids of the brokers a node lists as live (registered, caught up, unfenced)."""
    admin = AdminClient({**kafka_as_admin, "log_level": 0})  # its connection errors: ours
    try:
        return set(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException as exc:
        logger.debug("kafka not ready: %s", exc)
        return set()


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


class Kafka(Service):
    """One KRaft node (broker and controller); node 1 is "kafka", node n "kafka-n"."""

    name = "kafka"
    user = "kafka"
    startup_s = 10.0

    @classmethod
    def instances(cls, ctx: StackContext) -> list[Service]:
        # A cluster keeps the size it was formatted with (its voters are in its metadata), so
        # `stack status` and `down` see every node without being told their number again.
        count = recorded_nodes(ctx.layout.root) or ctx.settings.stack.kafka_brokers
        return [cls(ctx, node, count) for node in range(1, count + 1)]

    def __init__(self, ctx: StackContext, node: int = 1, count: int = 1) -> None:
        super().__init__(ctx)
        self.node = node
        if node > 1:
            self.name = f"kafka-{node}"
        brokers = broker_addresses(ctx.settings, count)
        self._listeners = [
            (host, port, controller_port(ctx.settings, n))
            for n, (host, port) in enumerate(brokers, start=1)
        ]
        self._host, self._port, self._controller_port = self._listeners[node - 1]

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    def ports(self) -> list[Port]:
        return [*super().ports(), Port("controller port", self.host, self._controller_port)]

    @property
    def _dir(self) -> Path:
        return self.layout.root / self.name

    @property
    def _data(self) -> Path:
        return self._dir / "data"

    @property
    def _properties(self) -> Path:
        return self._dir / "server.properties"

    @property
    def _log4j(self) -> Path:
        return self._dir / "log4j2.properties"

    @property
    def _scram_marker(self) -> Path:
        # Written once the storage is formatted with the admin's SCRAM credential.
        return self._dir / "scram-formatted"

    @property
    def _cluster_id_file(self) -> Path:
        # One id for the whole cluster, kept by node 1.
        return self.layout.root / "kafka" / "cluster.id"

    @property
    def _cached_libs(self) -> Path:
        return kafka_libs(self.ctx.cache_dir)

    def missing_parts(self) -> list[str]:
        missing = []
        if java_binary() is None:
            missing.append("java")
        if not (self._cached_libs / ".complete").is_file():
            missing.append(f"Kafka jars in {self._cached_libs}")
        if self.ctx.as_root and system_user(self.user) is None:
            missing.append(f"the {self.user!r} system user")
        return missing

    def _admin_password(self) -> str:
        """The admin principal's password, generated on the first start unless set."""
        directory = secrets_dir(self.layout.root)
        for principal in KafkaPrincipal:
            if self.settings.kafka.explicit_password(principal) is None:
                ensure_secret(directory, principal.secret_name)
        password = self.settings.kafka_password(KafkaPrincipal.ADMIN).get_secret_value()
        # It goes inside JAAS quotes and a properties file: keep to characters inert in both.
        if not _INERT.fullmatch(password):
            raise StackError(
                "the Kafka admin password must be 16 or more letters, digits, - _ . or ~ "
                "(URBANPULSE_KAFKA__ADMIN_PASSWORD)"
            )
        return password

    def prepare(self) -> None:
        asked, count = self.settings.stack.kafka_brokers, len(self._listeners)
        if asked not in (1, count):
            raise StackError(
                f"this stack's Kafka has {count} node(s), not {asked}: stop the stack and "
                f"remove {self.layout.root}/kafka* to start Kafka afresh (its topics are lost)"
            )
        self.owned_dir(self.layout.root / "kafka")  # the cluster id's home, node 1's directory
        self.owned_dir(self._dir)
        self.owned_dir(self._data)
        admin_password = self._admin_password()
        self.write_owned(
            self._properties,
            server_properties(
                node=self.node,
                listeners=self._listeners,
                log_dir=self._data,
                settings=as_cluster(self.settings, count),
                admin_password=admin_password,
            ),
        )
        self.write_owned(self._log4j, log4j2_properties())
        if not (self._data / "meta.properties").is_file():
            self._format(admin_password)
        elif not self._scram_marker.is_file():
            raise StackError(
                f"the Kafka data in {self._data} predates SCRAM principals (issue 12): stop the "
                f"stack and remove {self._dir} to start Kafka afresh (its topics are lost)"
            )

    def _libs(self) -> Path:
        """The jars: the cache's, or (run as its own user, who may not reach the cache, e.g.
        under /root) hard links to them in the server's own directory."""
        cached = self._cached_libs
        if not (cached / ".complete").is_file():
            raise StackError(f"no Kafka jars in {cached}: run ensure_installed() first")
        if self.run_as() is None:
            return cached
        private = self._dir / "libs"
        shutil.rmtree(private, ignore_errors=True)
        private.mkdir(mode=0o755)
        for jar in cached.glob("*.jar"):
            _link_or_copy(jar, private / jar.name)
        return private

    def _java(self, main_class: str, *args: str, heap: str) -> list[str]:
        java = java_binary()
        if java is None:
            raise StackError("java not found: run ensure_installed() first")
        return [
            str(java),
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._log4j}",
            f"-Dkafka.logs.dir={self._dir}",
            "-cp",
            f"{self._libs()}/*",
            main_class,
            *args,
        ]

    def _format(self, admin_password: str) -> None:
        if not self._cluster_id_file.is_file():
            self.write_owned(self._cluster_id_file, new_cluster_id() + "\n")
            self.write_owned(_nodes_file(self.layout.root), f"{len(self._listeners)}\n")
        cluster_id = self._cluster_id_file.read_text().strip()
        logger.info("formatting Kafka storage in %s (cluster id %s)", self._data, cluster_id)
        java, *args = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(self._properties),
            "--ignore-formatted",
            "--add-scram",
            f"{self.settings.kafka.sasl_mechanism}=[name={KafkaPrincipal.ADMIN.value},"
            f"password={admin_password}]",
            heap="256m",
        )
        # The java launcher reads its arguments from a file (@file): the password stays off
        # the command line, which every local user can read in /proc.
        argfile = self._dir / "format.args"
        self.write_owned(argfile, "".join(_argfile_line(arg) + "\n" for arg in args))
        try:
            run_setup(
                "kafka storage format", [java, f"@{argfile}"], cwd=self._dir, run_as=self.run_as()
            )
        finally:
            argfile.unlink(missing_ok=True)
        self.write_owned(self._scram_marker, "")

    def launch(self) -> Launch:
        argv = self._java("kafka.Kafka", str(self._properties), heap=self.settings.stack.kafka_heap)
        return Launch(argv, cwd=self._dir, run_as=self.run_as())

    def _admin_config(self, address: str) -> dict[str, str]:
        kafka = self.settings.kafka.model_copy(update={"bootstrap_servers": address})
        settings = self.settings.model_copy(update={"kafka": kafka})
        return settings.kafka_as(KafkaPrincipal.ADMIN).librdkafka_config()

    def ready(self) -> bool:
        if not tcp_open(self.host, self.port):
            return False
        own = self._admin_config(f"{self.host}:{self.port}")
        return self.node in live_brokers(own, _PROBE_TIMEOUT_S)

    def after_ready(self) -> None:
        """Node 1, once every node is live: the service users, the topics of the configured
        prefix and their ACLs (idempotent)."""
        if self.node != 1:
            return
        everyone = self._admin_config(",".join(f"{h}:{p}" for h, p, _c in self._listeners))
        expected = set(range(1, len(self._listeners) + 1))
        deadline = time.monotonic() + self.settings.stack.ready_timeout_s
        while (live := live_brokers(everyone, _PROBE_TIMEOUT_S)) != expected:
            if time.monotonic() > deadline:
                raise StackError(f"Kafka brokers {sorted(expected - live)} did not join in time")
            time.sleep(0.5)
        ensure_users(self.settings)
        cluster = as_cluster(self.settings, len(self._listeners))
        # A thread of its own: the stack's callers may be inside an event loop already.
        with ThreadPoolExecutor(max_workers=1) as setup:
            setup.submit(asyncio.run, provision(cluster)).result()
