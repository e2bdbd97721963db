"""Mosquitto, the MQTT broker the gateways publish to.

Every client logs in (README, "Security"): the dynamic-security plugin holds the users, hashed,
with their roles and ACLs, denies by default, and takes changes at run time over MQTT
(``urbanpulse/gateways/``).  The stack writes the platform's own identities into its file at
every start (their passwords are the stack's secrets) and keeps whatever else it holds: the
gateways.  A TLS listener serves beside plain MQTT with the configured certificate, or one
signed by the stack's development CA.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from urbanpulse.core.mqtt_login import Identity, password_field, secret_name, tls_dir, username_of
from urbanpulse.core.secrets import ensure_secret, secrets_dir
from urbanpulse.core.settings import Settings
from urbanpulse.gateways.acl import bootstrap_config, merged_dynsec
from urbanpulse.stack.dev_tls import CertificatePair, ensure_ca, issue_server_certificate
from urbanpulse.stack.services.base import HEADER, Launch, Port, Service, StackError, tcp_open

PERSISTENCE_FILE = "mosquitto.db"
# Mosquitto saves its in-memory state after this many changes (a reading queued for the bridge,
# a queued reading acked by it, a subscription): a crash loses at most about this many readings.
AUTOSAVE_CHANGES = 1000


def binary() -> Path:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    return Path(found) if found else Path("/usr/sbin/mosquitto")


def persistence_path(data_dir: Path) -> Path:
    """The broker's saved state in the stack under ``data_dir``."""
    return data_dir / "mosquitto" / PERSISTENCE_FILE


PLUGIN_FILE = "mosquitto_dynamic_security.so"
DYNSEC_FILE = "dynamic-security.json"


def dynsec_plugin() -> Path:
    """Mosquitto's dynamic-security plugin (Debian's mosquitto package ships it)."""
    found = sorted(Path("/usr/lib").glob(f"*/{PLUGIN_FILE}"))
    return found[0] if found else Path("/usr/lib/x86_64-linux-gnu") / PLUGIN_FILE


@dataclass(frozen=True)
class BrokerSecurity:
    """Authentication (dynamic-security) and the TLS listener; None: an open broker (benches)."""

    plugin: Path
    dynsec_file: Path
    tls_port: int
    cert: CertificatePair


def security_lines(host: str, security: BrokerSecurity | None) -> list[str]:
    if security is None:
        return ["allow_anonymous true"]
    return [
        "# Every client logs in; users, roles and ACLs live in the dynamic-security file and",
        "# change at run time over $CONTROL/dynamic-security/v1 (README, Security).",
        "allow_anonymous false",
        f"plugin {security.plugin}",
        f"plugin_opt_config_file {security.dynsec_file}",
        "",
        "# MQTT over TLS beside plain MQTT.",
        f"listener {security.tls_port} {host}",
        f"certfile {security.cert.cert}",
        f"keyfile {security.cert.key}",
        "tls_version tlsv1.2",
    ]


def platform_passwords(settings: Settings, data_dir: Path) -> dict[str, str]:
    """Each platform identity's password: its setting, else the stack's secret (made once)."""
    passwords = {}
    for identity in Identity:
        username = username_of(settings.mqtt, identity)
        explicit = getattr(settings.mqtt, password_field(identity))
        passwords[username] = (
            explicit.get_secret_value()
            if explicit is not None
            else ensure_secret(secrets_dir(data_dir), secret_name(username))
        )
    return passwords


def mosquitto_conf(
    *,
    host: str,
    port: int,
    persistence_dir: Path,
    log_file: Path,
    run_as: str | None,
    message_size_limit: int,
    max_queued_bytes: int,
    security: BrokerSecurity | None = None,
) -> str:
    lines = [
        HEADER,
        "per_listener_settings false",
        f"listener {port} {host}",
        *security_lines(host, security),
        "",
        "# Persistent sessions and queued QoS 1 messages survive a broker restart.  A clean",
        "# stop saves everything; after a crash (SIGKILL, power cut) the readings the broker",
        "# acked since its last save are lost, so save after a fixed number of changes (each",
        "# reading queued for the bridge is one): see README, Delivery contract.",
        "persistence true",
        f"persistence_location {persistence_dir}/",
        f"persistence_file {PERSISTENCE_FILE}",
        f"autosave_interval {AUTOSAVE_CHANGES}",
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


class Mosquitto(Service):
    name = "mosquitto"
    user = "mosquitto"
    startup_s = 0.1
    stop_timeout_s = 10.0

    @property
    def host(self) -> str:
        return self.settings.mqtt.host

    @property
    def port(self) -> int:
        return self.settings.mqtt.port

    @property
    def _dir(self) -> Path:
        return self.layout.root / "mosquitto"

    @property
    def log(self) -> Path:
        # In the broker's own directory: it opens its log after dropping to its user, who
        # cannot enter the stack's private logs directory.
        return self._dir / "mosquitto.log"

    @property
    def _conf(self) -> Path:
        return self._dir / "mosquitto.conf"

    def ports(self) -> list[Port]:
        return [*super().ports(), Port("TLS port", self.host, self.settings.mqtt.tls_port)]

    def missing_parts(self) -> list[str]:
        parts = [] if binary().is_file() else ["mosquitto"]
        return parts + ([] if dynsec_plugin().is_file() else ["mosquitto (dynamic security)"])

    def prepare(self) -> None:
        # Root reads the config, then mosquitto drops to its own user, which writes persistence
        # and reads (and rewrites, on every change) its dynamic-security file.
        self.owned_dir(self._dir)
        run_as = self.run_as()
        ingest = self.settings.ingest
        security = BrokerSecurity(
            dynsec_plugin(), self._write_dynsec(), self.settings.mqtt.tls_port, self._certificate()
        )
        conf = mosquitto_conf(
            security=security,
            host=self.host,
            port=self.port,
            persistence_dir=self._dir,
            log_file=self.log,
            run_as=run_as.name if run_as else None,
            message_size_limit=ingest.broker_message_size_limit,
            max_queued_bytes=ingest.broker_max_queued_bytes,
        )
        self.write_owned(self._conf, conf)
        # The broker writes its log itself (after dropping to its user when we are root); its
        # stdout/stderr (start-up errors) are appended to the same file.
        self.log.touch(mode=0o600)
        os.chmod(self.log, 0o600)
        if run_as is not None:
            os.chown(self.log, run_as.uid, run_as.gid)

    def _write_dynsec(self) -> Path:
        """The platform's identities (this start's passwords and topic roots) in the broker's
        dynamic-security file, beside the gateways it holds."""
        path = self._dir / DYNSEC_FILE
        existing = json.loads(path.read_text()) if path.is_file() else None
        passwords = platform_passwords(self.settings, self.layout.root)
        document = merged_dynsec(existing, bootstrap_config(self.settings.mqtt, passwords))
        self.write_owned(path, json.dumps(document, indent=1))
        return path

    def _certificate(self) -> CertificatePair:
        """The TLS listener's certificate in the broker's directory (its user reads it there):
        a copy of the configured one, or one signed by the stack's development CA."""
        mqtt = self.settings.mqtt
        out = CertificatePair(self._dir / "server.crt", self._dir / "server.key")
        if mqtt.server_cert_file is None and mqtt.server_key_file is None:
            ca = ensure_ca(tls_dir(self.layout.root))
            issue_server_certificate(ca, out, [self.host, "localhost", "127.0.0.1"])
        elif mqtt.server_cert_file is None or mqtt.server_key_file is None:
            raise StackError("set both mqtt.server_cert_file and mqtt.server_key_file, or neither")
        else:
            for source, target in (
                (mqtt.server_cert_file, out.cert),
                (mqtt.server_key_file, out.key),
            ):
                try:
                    text = source.expanduser().read_text()
                except OSError as exc:
                    raise StackError(f"cannot read the MQTT server certificate: {exc}") from None
                target.write_text(text)
        for path in (out.cert, out.key):
            self.write_owned(path, path.read_text())  # 0600, the broker's user
        return out

    def launch(self) -> Launch:
        return Launch([str(binary()), "-c", str(self._conf)], cwd=self._dir)

    def ready(self) -> bool:
        return tcp_open(self.host, self.port)
