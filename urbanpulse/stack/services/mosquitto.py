"""Mosquitto, the MQTT broker the gateways publish to."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from urbanpulse.stack.services.base import HEADER, Launch, Service, tcp_open

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

    def missing_parts(self) -> list[str]:
        return [] if binary().is_file() else ["mosquitto"]

    def prepare(self) -> None:
        # Root reads the config, then mosquitto drops to its own user, which writes persistence.
        self.owned_dir(self._dir)
        run_as = self.run_as()
        ingest = self.settings.ingest
        conf = mosquitto_conf(
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

    def launch(self) -> Launch:
        return Launch([str(binary()), "-c", str(self._conf)], cwd=self._dir)

    def ready(self) -> bool:
        return tcp_open(self.host, self.port)
