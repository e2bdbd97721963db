"""Typed settings, read from the environment (``URBANPULSE_*``, nested with ``__``).

Each entry point builds one ``Settings`` and passes it down; nothing reads the environment at
import time.  Example: ``URBANPULSE_DATABASE__PORT=5432`` sets ``settings.database.port``.
"""

from __future__ import annotations

import ipaddress
import itertools
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.envelope import DeadLetterLimits
from urbanpulse.core.secrets import SecretError, read_secret, secrets_dir

LOOPBACK = "127.0.0.1"


class MqttSettings(BaseModel):
    host: str = LOOPBACK
    port: int = 11883  # plain MQTT
    # MQTT over TLS; with ``tls`` on, the platform's clients connect here, trusting ``ca_file``
    # (unset: the local stack's development CA).  The local stack's listener presents
    # ``server_cert_file`` and ``server_key_file`` (PEM), or a certificate it generates.
    tls_port: int = 18883
    tls: bool = False
    ca_file: Path | None = None
    server_cert_file: Path | None = None
    server_key_file: Path | None = None
    # The platform's own identities (README, "Security"); each password comes from its setting,
    # else from the local stack's secret file mqtt-<username> (urbanpulse/core/mqtt_login.py).
    # ``username`` publishes simulated readings (simulators, replays, benchmarks).
    username: str = "urbanpulse-simulator"
    password: SecretStr | None = None
    bridge_username: str = "urbanpulse-bridge"
    bridge_password: SecretStr | None = None
    admin_username: str = "urbanpulse-admin"  # manages the broker's users (dynamic security)
    admin_password: SecretStr | None = None
    topic_root: str = "urbanpulse/v1"
    # Several bridges share the readings through the MQTT 5 shared subscription
    # ``$share/<share_group>/<topic_root>/#``: the broker hands each message to one member.
    # Empty (one bridge, the default): a plain subscription.  Mosquitto 2.0 restores a plain
    # subscription of a persistent session from its persistence file after a restart, but not a
    # shared one (tested): with a share group, what gateways publish between a broker restart and
    # the bridges' re-subscription is acked to them and dropped (README, "Several bridges").
    share_group: str = ""
    # Each bridge has its own broker-side session, ``<bridge_client_id>-<bridge_instance>``,
    # which outlives it by ``bridge_session_expiry_s``: the broker queues the QoS 1 readings of
    # a stopped bridge meanwhile and hands them over when that same instance comes back (see
    # README, "Several bridges").  After expiry the broker discards the session and its queue.
    bridge_client_id: str = "urbanpulse-bridge"  # the prefix of every instance's client id
    bridge_instance: str = "1"
    bridge_session_expiry_s: int = Field(default=86_400, gt=0, le=0xFFFFFFFF)

    @field_validator("bridge_instance")
    @classmethod
    def _one_topic_level(cls, name: str) -> str:
        # It ends up in MQTT names, as the share group does: no "/", "+" or "#" (MQTT 5, 4.8.2).
        if not name or any(char in name for char in "/+#"):
            raise ValueError(f"{name!r} must be non-empty, without '/', '+' or '#'")
        return name

    @field_validator("share_group")
    @classmethod
    def _share_name(cls, name: str) -> str:
        return name and cls._one_topic_level(name)

    def bridge_client(self) -> str:
        """This bridge's MQTT client id (and so its session)."""
        return f"{self.bridge_client_id}-{self.bridge_instance}"

    def bridge_subscription(self) -> str:
        everything = f"{self.topic_root}/#"
        return f"$share/{self.share_group}/{everything}" if self.share_group else everything


class KafkaPrincipal(StrEnum):
    """The SASL/SCRAM users of the platform (their ACLs: ``urbanpulse.core.kafka_acl``)."""

    ADMIN = "admin"  # the stack's set-up and operators' tools: a super user
    BRIDGE = "bridge"
    PROCESSOR = "processor"
    API = "api"

    @property
    def secret_name(self) -> str:
        return f"kafka-{self.value}"


class KafkaSettings(BaseModel):
    bootstrap_servers: str = f"{LOOPBACK}:19092"
    topic_prefix: str = "urbanpulse"
    consumer_group: str = "urbanpulse-stream"
    # The most processors that can share the readings (each partition has one consumer in the
    # group): 12 lets `urbanpulse run --processors M` spread over up to 12 processes or
    # machines. Only topics created from now on get it. Raising an existing topic's count
    # (`kafka-topics --alter`) moves sensors to other partitions, so do it with the bridges
    # stopped and the processors caught up, or a sensor's readings may be processed out of order.
    readings_partitions: int = 12
    # Used when the platform creates its topics; a production cluster wants 3.
    replication_factor: int = Field(default=1, ge=1)
    # Replicas that must have a record before a producer with acks=all is told it is written:
    # 2 of 3 lets one broker die without losing or refusing anything.
    min_insync_replicas: int = Field(default=1, ge=1)
    # SASL/SCRAM passwords of the principals (README, "Security"); unset, a process reads the
    # local stack's generated one (``<stack.data_dir>/secrets/kafka-<principal>``).  A process
    # needs only its own: the bridge's, the processor's or the API's.
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-256"
    admin_password: SecretStr | None = None
    bridge_password: SecretStr | None = None
    processor_password: SecretStr | None = None
    api_password: SecretStr | None = None
    # Who this copy's clients speak as: set by ``Settings.kafka_as``, never from the environment.
    _credential: tuple[KafkaPrincipal, SecretStr] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _isr_within_replicas(self) -> KafkaSettings:
        # More in-sync replicas required than exist: every acks=all write would be refused.
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) must not exceed "
                f"replication_factor ({self.replication_factor})"
            )
        return self

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("readings") == "urbanpulse.readings"``."""
        return f"{self.topic_prefix}.{name}"

    def speaking_as(self, principal: KafkaPrincipal, password: SecretStr) -> KafkaSettings:
        copy = self.model_copy()
        copy._credential = (principal, password)
        return copy

    def explicit_password(self, principal: KafkaPrincipal) -> SecretStr | None:
        """``principal``'s password if a setting gives it."""
        passwords = {
            KafkaPrincipal.ADMIN: self.admin_password,
            KafkaPrincipal.BRIDGE: self.bridge_password,
            KafkaPrincipal.PROCESSOR: self.processor_password,
            KafkaPrincipal.API: self.api_password,
        }
        return passwords[principal]

    def _identity(self) -> tuple[KafkaPrincipal, SecretStr]:
        if self._credential is None:
            raise ValueError(
                "these Kafka settings speak as no principal: get them from "
                "Settings.kafka_as(KafkaPrincipal.<who>)"
            )
        return self._credential

    @property
    def principal(self) -> KafkaPrincipal:
        return self._identity()[0]

    def client_kwargs(self) -> dict[str, Any]:
        """Connection and SASL/SCRAM arguments of every aiokafka client (producer, consumer,
        admin): the one place where clients get their security settings."""
        principal, password = self._identity()
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": principal.value,
            "sasl_plain_password": password.get_secret_value(),
        }

    def librdkafka_config(self) -> dict[str, str]:
        """The same for librdkafka clients (the admin client that grants ACLs, kcat)."""
        kwargs = self.client_kwargs()
        return {
            "bootstrap.servers": kwargs["bootstrap_servers"],
            "security.protocol": kwargs["security_protocol"],
            "sasl.mechanisms": kwargs["sasl_mechanism"],
            "sasl.username": kwargs["sasl_plain_username"],
            "sasl.password": kwargs["sasl_plain_password"],
        }


class DbRole(StrEnum):
    """The platform's PostgreSQL roles, each with only what its processes need (README, "Security").

    Grants live in the migration (``urbanpulse/storage/grants.py``), so new tables follow them.
    """

    OWNER = "owner"  # owns the schema: migrations, retention (drop_chunks needs the owner)
    WRITER = "writer"  # processor, rollups, forecasts, bulletins, imports: rows, never DDL or keys
    API = "api"  # reads; writes sensors, alert states, API keys and audit rows, nothing else
    READER = "reader"  # Grafana and SQL readers: SELECT, never the API keys or the audit log

    @property
    def grantee(self) -> str:
        """The login role the schema's grants name (the owner's is ``DatabaseSettings.user``)."""
        return f"urbanpulse_{self.value}"

    @property
    def secret_name(self) -> str:
        """Its password's file among the local stack's secrets (``core/secrets.py``)."""
        return f"db-{self.value}"


class DatabasePasswords(BaseModel):
    """Explicit passwords (``URBANPULSE_DATABASE__PASSWORDS__WRITER=...``); an unset one is read
    from the local stack's generated secret ``db-<role>``."""

    owner: SecretStr | None = None
    writer: SecretStr | None = None
    api: SecretStr | None = None
    reader: SecretStr | None = None

    def explicit(self, role: DbRole) -> SecretStr | None:
        value: SecretStr | None = getattr(self, role.value)
        return value


# The constant every install shared before passwords were generated: never accepted off loopback.
FORMER_DEFAULT_PASSWORD = "urbanpulse"


class DatabaseCredentialError(ValueError):
    """No usable password for a database role; the message says how to provide one."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: a loopback name or address, or a Unix socket directory."""
    if host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DatabaseSettings(BaseModel):
    host: str = LOOPBACK
    port: int = 15432
    user: str = "urbanpulse"  # the owner's login; the other roles log in as DbRole.grantee
    passwords: DatabasePasswords = Field(default_factory=DatabasePasswords)
    name: str = "urbanpulse"

    @model_validator(mode="after")
    def _no_default_secret_off_loopback(self) -> DatabaseSettings:
        if is_loopback(self.host):
            return self
        for role in DbRole:
            explicit = self.passwords.explicit(role)
            if explicit is None:
                continue
            if explicit.get_secret_value() in ("", FORMER_DEFAULT_PASSWORD):
                raise DatabaseCredentialError(
                    f"URBANPULSE_DATABASE__PASSWORDS__{role.name} is empty or the former default "
                    f"password, and the database host {self.host} is not loopback: set a long "
                    "random secret (e.g. `openssl rand -base64 32`)"
                )
        return self

    def user_for(self, role: DbRole) -> str:
        return self.user if role is DbRole.OWNER else role.grantee

    def password_for(self, role: DbRole, secrets: Path) -> str:
        """``role``'s password: the explicit setting, else the stack's secret in ``secrets``."""
        explicit = self.passwords.explicit(role)
        if explicit is not None:
            return explicit.get_secret_value()
        stored = read_secret(secrets, role.secret_name)
        if stored is None:
            raise DatabaseCredentialError(
                f"no password for the database role {self.user_for(role)}: start the local "
                f"stack (`urbanpulse stack up` writes {secrets / role.secret_name}) or set "
                f"URBANPULSE_DATABASE__PASSWORDS__{role.name}"
            )
        return stored


class StackSettings(BaseModel):
    """The embedded local stack: where its servers keep their data and their downloaded parts."""

    data_dir: Path = Path(".urbanpulse")
    cache_dir: Path = Path.home() / ".cache" / "urbanpulse"
    kafka_controller_port: int = 19093
    # Kafka nodes (each a broker and a controller); node n listens on the first node's client
    # and controller ports + 2 (n - 1), unless kafka.bootstrap_servers lists one address per
    # node.  3 (`urbanpulse stack up --kafka-brokers 3`) survives the loss of one.
    kafka_brokers: int = Field(default=1, ge=1, le=9)
    kafka_heap: str = "512m"
    ready_timeout_s: float = 90.0


class StreamSettings(BaseModel):
    batch_max_records: int = 2000
    batch_timeout_ms: int = 200
    # Unknown sensors: "pending" registers them for an operator to approve, "reject" dead-letters.
    provisioning: Literal["pending", "reject"] = "pending"
    # How VN_WQI combines its parameter groups; see urbanpulse/indices/vn_wqi.py for why the
    # weighted cube root is the default.
    wqi_combination: Literal["weighted_cube_root", "geometric_sqrt"] = "weighted_cube_root"
    # Under "pending": at most this many sensors wait for approval, and at most this many new
    # ones a minute are added; readings of other unknown ids are dead-lettered (a sender
    # inventing ids must not grow the registry and the processor's state without bound).
    pending_cap: int = Field(default=1000, ge=0)
    pending_per_minute: int = Field(default=100, ge=0)
    # A reading envelope is a few hundred bytes; a larger record is not one (dead-lettered,
    # its first max_record_bytes kept: at most 512 KB, so that the dead letter fits in Kafka).
    max_record_bytes: int = Field(default=64 * 1024, gt=0, le=512 * 1024)
    # Hourly windows kept in memory (air sensors); beyond, the least recently used is evicted
    # and re-read from the database when it reports again.
    max_window_sensors: int = Field(default=50_000, gt=0)
    # Seconds the alert outbox relay waits after a commit before sending; 0 in production.
    # Tests set it to hold events in the outbox and kill the processor between commit and send.
    outbox_relay_delay_s: float = Field(default=0.0, ge=0)


class IngestSettings(BaseModel):
    @field_validator("naive_time_zone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        if zone is not None:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {zone!r}; use an IANA name") from None
        return zone

    @model_validator(mode="after")
    def _consistent_limits(self) -> IngestSettings:
        # A bridge limit at or above the broker's would never be reached: the broker drops
        # larger messages itself, silently.  Below it, the bridge dead-letters them with a
        # record of their source, size and hash.
        if self.max_payload_bytes >= self.broker_message_size_limit:
            raise ValueError(
                f"max_payload_bytes ({self.max_payload_bytes}) must be below "
                f"broker_message_size_limit ({self.broker_message_size_limit})"
            )
        if self.broker_max_queued_bytes < self.broker_message_size_limit:
            raise ValueError("broker_max_queued_bytes must hold at least one largest message")
        self.dead_letter_limits()  # raises if a dead letter could outgrow Kafka's limit
        return self

    # Limits at the door (see README, "Limits at the door").  The broker refuses payloads above
    # broker_message_size_limit (the local stack writes it as Mosquitto's message_size_limit;
    # set a production broker the same); the bridge dead-letters those above max_payload_bytes.
    max_payload_bytes: int = 256 * 1024
    broker_message_size_limit: int = 4 * 1024 * 1024
    # Mosquitto's per-client queue (the bridge's while it is away) in bytes; beyond it the
    # broker drops messages, so a flood of large ones cannot exhaust its memory.
    broker_max_queued_bytes: int = 512 * 1024 * 1024
    max_readings_per_message: int = 1000
    # Our format nests 3 deep, FIWARE's normalized form about 6; deeper is not a reading.
    max_nesting_depth: int = 16
    # Device clocks drift; beyond these bounds a timestamp is a fault, not a reading.
    max_future_skew_s: float = 300.0
    max_age_days: float = 30.0
    # IANA zone for timestamps sent without an offset (e.g. "Asia/Ho_Chi_Minh" for gateways on
    # local time); unset, such readings are dead-lettered because their instant is unknown.
    naive_time_zone: str | None = None
    # Messages the bridge holds (from paho's thread until Kafka acked their records), in number
    # and in bytes.  When full, paho's thread blocks, which stops MQTT acks and so makes the
    # broker hold back (it never drops QoS 1).
    # queue_size is also the MQTT 5 Receive Maximum the bridge announces (capped at 65,535).
    queue_size: int = 10_000
    max_queued_bytes: int = 64 * 1024 * 1024
    # The bridge's Kafka producer: records wait up to linger_ms to share a request with others,
    # in batches of up to kafka_max_batch_bytes per partition (bench/bridge_alone.py measures
    # the effect).  Larger batches cost latency of ms, and save Kafka requests and their CPU.
    kafka_linger_ms: int = Field(default=20, ge=0)
    kafka_max_batch_bytes: int = Field(default=256 * 1024, gt=0)
    # What a dead letter keeps of a rejected message (see DeadLetterLimits).
    dead_letter_raw_prefix_bytes: int = 64 * 1024
    dead_letter_max_reasons: int = 50
    # Dead letters produced per MQTT topic (one sensor) and in all, per interval; the rest are
    # counted and summarised in the log (see urbanpulse/core/deadletters.py).
    dead_letter_rate_per_source: int = 60
    dead_letter_rate_total: int = 6000
    dead_letter_rate_interval_s: float = 60.0

    def dead_letter_limits(self) -> DeadLetterLimits:
        return DeadLetterLimits(
            raw_prefix_bytes=self.dead_letter_raw_prefix_bytes,
            max_reasons=self.dead_letter_max_reasons,
        )


class AlertSettings(BaseModel):
    # The shipped rules: rules/default.yaml at the repository root.
    rules_path: Path = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"
    # Processing-time timer: staleness ("offline"), area rules, rule-file reloads, operator syncs.
    check_interval_s: float = 5.0
    # Cool-down of rules (and files) that do not set one.
    default_cooldown_s: float = 1800.0
    # Sensors whose last reading the engine remembers (staleness, area rules); beyond, the
    # longest silent ones without an active alert are forgotten (counted).
    max_tracked_sensors: int = Field(default=50_000, gt=0)
    # Storms: this many alerts of one rule in one area opening within the window are one incident.
    incident_min_members: int = Field(default=10, ge=2)
    incident_window_s: float = Field(default=300.0, gt=0)


class HealthSettings(BaseModel):
    """When ingest counts as stalled (``/healthz``, ``urbanpulse stack status``)."""

    # The bridge and the processor publish a heartbeat this often.
    heartbeat_interval_s: float = 10.0
    # Readings waiting in Kafka longer than this with no processor commit meanwhile: stalled.
    lag_stall_s: float = 60.0
    # A bridge with MQTT messages in hand and no ack (or no MQTT connection) this long: stalled.
    ack_stall_s: float = 60.0
    # No heartbeat from any instance of a component for this long: that component is gone.
    silence_s: float = 60.0


class ApiSettings(BaseModel):
    host: str = LOOPBACK
    port: int = 8080
    # Reads need a viewer key unless this is set; writes always need a key of their role.
    # /healthz is always open (load balancers and monitors probe it).
    public_read: bool = False
    # Open-data exports (/v1/exports/*) open to anyone, while other reads still need a key.
    public_exports: bool = False
    # Base map tiles for the ops-center map, e.g. "http://tiles.lan/{z}/{x}/{y}.png"; empty:
    # no base map, only our own area polygons (the map must work on a closed network).
    map_tile_url: str = ""
    # The wall map's home view as west,south,east,north (e.g. "106.62,10.72,106.78,10.84" for
    # central Ho Chi Minh City); unset, it opens on the extent of all sensors.
    map_bbox: tuple[float, float, float, float] | None = None
    # A client address with this many failed authentications (unknown or revoked key, bad
    # ticket) in the window is answered 429 until the oldest failure leaves the window.
    auth_failures_max: int = Field(default=30, ge=1)
    auth_failure_window_s: float = Field(default=60.0, gt=0)
    # A live-feed ticket (POST /v1/live/tickets) is good for one connection within this time.
    live_ticket_ttl_s: float = Field(default=30.0, gt=0)
    # Live WebSocket connections per API process, in all and per key; concurrent streamed
    # exports per API process.  Beyond them: close 1013 (live) or 429 (exports).
    live_max_clients: int = Field(default=500, ge=1)
    live_max_clients_per_key: int = Field(default=20, ge=1)
    exports_max_concurrent: int = Field(default=4, ge=1)

    @field_validator("map_bbox")
    @classmethod
    def _ordered_bbox(
        cls, bbox: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if bbox is not None:
            west, south, east, north = bbox
            if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
                raise ValueError(f"map_bbox {bbox} is not west,south,east,north in WGS 84")
        return bbox


class KindHistory(BaseModel):
    """How long one kind's history is kept, per tier, in days; None keeps it for ever."""

    raw_days: float | None = Field(default=30.0, gt=0)
    hourly_days: float | None = Field(default=730.0, gt=0)
    daily_days: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _coarser_tiers_outlive_finer(self) -> KindHistory:
        # A daily row is recomputed from the hourly rows of its day whenever a reading of that
        # day arrives, and an hourly row from raw rows: each tier must outlive the one below.
        tiers = [
            ("raw_days", self.raw_days),
            ("hourly_days", self.hourly_days),
            ("daily_days", self.daily_days),
        ]
        for (finer, short), (coarser, long) in itertools.pairwise(tiers):
            if long is None:
                continue
            if short is None:
                raise ValueError(f"{coarser} must be unset (kept for ever) while {finer} is")
            if long < short + 1:
                raise ValueError(f"{coarser} ({long:g}) must be at least {finer} + 1 day")
        return self


class HistorySettings(KindHistory):
    """Rollups and retention (``urbanpulse rollups run``; README, "Long-range history").

    ``URBANPULSE_HISTORY__RAW_DAYS=14`` (and ``HOURLY_DAYS``, ``DAILY_DAYS``) set every kind's
    retention; ``URBANPULSE_HISTORY__KINDS='{"traffic_camera": {"raw_days": 7}}'`` one kind's.
    """

    # How often the rollup job looks for new readings.
    interval_s: float = Field(default=60.0, gt=0)
    # Readings are rolled up once they have been stored this long: longer than any writer's
    # transaction, so that no reading commits later with an earlier ingest time.
    commit_margin_s: float = Field(default=120.0, ge=0)
    kinds: dict[str, KindHistory] = Field(default_factory=dict)

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: dict[str, KindHistory]) -> dict[str, KindHistory]:
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kind {unknown[0]!r}; known kinds: {', '.join(KINDS)}")
        return kinds

    @property
    def lag_s(self) -> float:
        """How far the hourly rollup may trail the newest reading: a whole hour, plus the
        commit margin, plus one interval between runs."""
        return 3600.0 + self.commit_margin_s + self.interval_s

    @model_validator(mode="after")
    def _raw_outlives_the_lag(self) -> HistorySettings:
        # Raw rows dropped before the job rolled them up would be lost from the history.
        policies: list[tuple[str, KindHistory]] = [("every kind", self), *self.kinds.items()]
        for name, policy in policies:
            if policy.raw_days is not None and policy.raw_days * 86400 <= self.lag_s:
                raise ValueError(
                    f"raw_days of {name} ({policy.raw_days:g}) is shorter than the hourly "
                    f"rollup's lag ({self.lag_s / 86400:.3f} days: one hour + commit_margin_s "
                    "+ interval_s); raw readings would be dropped before they are rolled up"
                )
        return self

    def for_kind(self, kind: str) -> KindHistory:
        return self.kinds.get(kind, self)


class MetricsSettings(BaseModel):
    """Where each long-running process serves its Prometheus ``/metrics``.

    ``port`` is this process's port: unset, a bridge uses ``bridge_port`` and a processor
    ``processor_port``; 0 serves no metrics.  The API serves ``/metrics`` on its own HTTP port,
    whatever ``port`` says.  ``urbanpulse run`` gives its n-th bridge ``bridge_port + n - 1``
    and its n-th processor ``processor_port + n - 1``.
    """

    host: str = LOOPBACK
    port: int | None = Field(default=None, ge=0, le=65535)
    bridge_port: int = Field(default=9101, gt=0, le=65535)
    processor_port: int = Field(default=9201, gt=0, le=65535)

    def port_for(self, default: int) -> int:
        return default if self.port is None else self.port


class ForecastSettings(BaseModel):
    """Forecasts (``urbanpulse forecast run``; README, "Forecasts")."""

    # How often the refresh job recomputes and stores every forecast.
    interval_s: float = Field(default=900.0, gt=0)
    # Hourly history the model learns from; older hours are not read.
    history_days: float = Field(default=28.0, gt=1)
    # Bins whose 90 % falls within this many hours go on a truck's collection list.
    collect_within_h: float = Field(default=12.0, gt=0)
    # Bin fill readings the time-to-90 % slope is fitted on.
    bin_window_h: float = Field(default=6.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="URBANPULSE_", env_nested_delimiter="__", extra="ignore"
    )

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    def kafka_password(self, principal: KafkaPrincipal) -> SecretStr:
        """``principal``'s password: the explicit setting, else the local stack's secret."""
        explicit = self.kafka.explicit_password(principal)
        if explicit is not None:
            return explicit
        directory = secrets_dir(self.stack.data_dir.expanduser().resolve())
        stored = read_secret(directory, principal.secret_name)
        if stored is None:
            raise SecretError(
                f"no Kafka password for the {principal.value} principal: set "
                f"URBANPULSE_KAFKA__{principal.value.upper()}_PASSWORD, or start the local "
                f"stack (`urbanpulse stack up`), which writes {directory}/{principal.secret_name}"
            )
        return SecretStr(stored)

    def kafka_as(self, principal: KafkaPrincipal) -> KafkaSettings:
        """The Kafka settings whose clients authenticate as ``principal``."""
        return self.kafka.speaking_as(principal, self.kafka_password(principal))

    @model_validator(mode="after")
    def _mqtt_stack_secrets(self) -> Settings:
        from urbanpulse.core.mqtt_login import with_stack_secrets

        self.mqtt = with_stack_secrets(self).mqtt
        return self

    def isolated(self, name: str) -> Settings:
        """A copy whose MQTT topics, bridge sessions and share group, Kafka topics and consumer
        group belong to ``name`` alone.

        Tests and benchmarks share the servers this way without seeing each other's data.
        """
        return self.model_copy(
            update={
                "mqtt": self.mqtt.model_copy(
                    update={
                        "topic_root": f"{name}/v1",
                        "bridge_client_id": f"{name}-bridge",
                        "share_group": f"{name}-bridge" if self.mqtt.share_group else "",
                    }
                ),
                "kafka": self.kafka.model_copy(
                    update={"topic_prefix": name, "consumer_group": f"{name}-stream"}
                ),
            }
        )
