"""Kafka, a single KRaft node (broker and controller) run from the jars Maven fetched."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import socket
import struct
import uuid
from pathlib import Path

from urbanpulse.stack.services.base import (
    HEADER,
    Launch,
    Port,
    Service,
    StackContext,
    StackError,
    run_setup,
    system_user,
)

logger = logging.getLogger(__name__)

# Keep in step with <kafka.version> in deploy/kafka/pom.xml.
KAFKA_VERSION = "4.1.2"

_METADATA_API_KEY = 3
# Kafka 4.x dropped Metadata v0-v3 (KIP-896); v4 is the oldest it answers, and the newest that
# needs no "flexible" (tagged-field) encoding.
_METADATA_VERSION = 4
_CLIENT_ID = b"urbanpulse-stack"


def java_binary() -> Path | None:
    found = shutil.which("java")
    return Path(found) if found else None


def kafka_libs(cache_dir: Path) -> Path:
    return cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"


def split_host_port(address: str) -> tuple[str, int]:
    first = address.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        raise StackError(f"kafka.bootstrap_servers must be HOST:PORT, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def new_cluster_id() -> str:
    """A Kafka Uuid as its tools print it: 16 random bytes, URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def server_properties(*, host: str, port: int, controller_port: int, log_dir: Path) -> str:
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


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def kafka_brokers(host: str, port: int, timeout_s: float = 2.0) -> list[tuple[int, str, int]]:
    """Send a Kafka Metadata request and return the live brokers it lists (id, host, port).

    A KRaft broker lists itself only once it is registered with the controller, caught up with
    the metadata log and unfenced, i.e. ready to serve clients.  Raises ``OSError`` (including
    ``ConnectionError``) or ``ValueError`` when the broker does not answer properly.
    """
    correlation_id = 1
    header = (
        struct.pack(">hhih", _METADATA_API_KEY, _METADATA_VERSION, correlation_id, len(_CLIENT_ID))
        + _CLIENT_ID
    )
    # topics: null array (all topics; we only read the brokers), allow_auto_topic_creation=false
    body = struct.pack(">ib", -1, 0)
    request = header + body
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 0 < size < 64 * 1024 * 1024:
            raise ValueError(f"implausible Kafka response size {size}")
        payload = _recv_exact(sock, size)
    got_id, _throttle_ms, count = struct.unpack_from(">iii", payload, 0)
    if got_id != correlation_id:
        raise ValueError(f"Kafka answered correlation id {got_id}, expected {correlation_id}")
    offset = 12
    brokers = []
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", payload, offset)
        offset += 6
        broker_host = payload[offset : offset + host_len].decode()
        offset += host_len
        broker_port, rack_len = struct.unpack_from(">ih", payload, offset)
        offset += 6 + max(rack_len, 0)
        brokers.append((node_id, broker_host, broker_port))
    return brokers


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


class Kafka(Service):
    name = "kafka"
    user = "kafka"
    startup_s = 10.0

    def __init__(self, ctx: StackContext) -> None:
        super().__init__(ctx)
        self._host, self._port = split_host_port(ctx.settings.kafka.bootstrap_servers)

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    def ports(self) -> list[Port]:
        return [
            *super().ports(),
            Port("controller port", self.host, self.settings.stack.kafka_controller_port),
        ]

    @property
    def _dir(self) -> Path:
        return self.layout.root / "kafka"

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
    def _cluster_id_file(self) -> Path:
        return self._dir / "cluster.id"

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

    def prepare(self) -> None:
        self.owned_dir(self._dir)
        self.owned_dir(self._data)
        self.write_owned(
            self._properties,
            server_properties(
                host=self.host,
                port=self.port,
                controller_port=self.settings.stack.kafka_controller_port,
                log_dir=self._data,
            ),
        )
        self.write_owned(self._log4j, log4j2_properties())
        if not (self._data / "meta.properties").is_file():
            self._format()

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

    def _format(self) -> None:
        if not self._cluster_id_file.is_file():
            self.write_owned(self._cluster_id_file, new_cluster_id() + "\n")
        cluster_id = self._cluster_id_file.read_text().strip()
        logger.info("formatting Kafka storage in %s (cluster id %s)", self._data, cluster_id)
        argv = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(self._properties),
            "--ignore-formatted",
            heap="256m",
        )
        run_setup("kafka storage format", argv, cwd=self._dir, run_as=self.run_as())

    def launch(self) -> Launch:
        argv = self._java("kafka.Kafka", str(self._properties), heap=self.settings.stack.kafka_heap)
        return Launch(argv, cwd=self._dir, run_as=self.run_as())

    def ready(self) -> bool:
        try:
            return bool(kafka_brokers(self.host, self.port))
        except (OSError, ValueError) as exc:
            logger.debug("kafka not ready: %s", exc)
            return False
