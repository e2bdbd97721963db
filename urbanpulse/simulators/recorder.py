"""Record what crosses the MQTT broker to a file, and replay a recording.

A recording is JSON lines: first a header ``{"recording": 1, "topic_root": ..., "started_at":
...}``, then one line per message with ``offset_ms`` from the start, ``topic``, ``qos``,
``retain`` and the payload as ``text`` (UTF-8) or ``b64`` (anything else).  Replay publishes
the messages again with QoS 1 at the original pace divided by ``speed``, optionally under
another topic root and with sensor ids renamed (``old prefix -> new prefix``), so a recording
can be replayed next to the original without the two colliding.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
import paho.mqtt.client as mqtt

from urbanpulse.core.mqtt_login import Identity, broker_port, new_client
from urbanpulse.core.settings import MqttSettings
from urbanpulse.simulators.gateway import MqttGateway

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class RecordingError(ValueError):
    pass


class Recorder:
    """Subscribes to ``<topic_root>/#`` with its own client and appends each message to a file."""

    def __init__(self, settings: MqttSettings, path: Path, client_id: str | None = None) -> None:
        self._settings = settings
        self.path = path
        # Reading what crosses the broker is the bridge's privilege alone (README, "Security"):
        # the recorder logs in as the bridge, with a client id of its own.
        self._client = new_client(
            settings, Identity.BRIDGE, client_id or f"urbanpulse-recorder-{id(self)}"
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *_args: self._subscribed.set()
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._started = 0.0
        self.count = 0

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:  # (re)subscribe on every connection
            client.subscribe(f"{self._settings.topic_root}/#", qos=1)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        entry: dict[str, Any] = {
            "offset_ms": round((time.monotonic() - self._started) * 1000.0, 1),
            "topic": message.topic,
            "qos": message.qos,
            "retain": bool(message.retain),
        }
        try:
            entry["text"] = message.payload.decode("utf-8")
        except UnicodeDecodeError:
            entry["b64"] = base64.b64encode(message.payload).decode("ascii")
        with self._lock:
            if self._file is not None:
                self._file.write(orjson.dumps(entry) + b"\n")
                self.count += 1

    def start(self, timeout_s: float = 10.0) -> None:
        self._file = self.path.open("wb")
        header = {
            "recording": FORMAT_VERSION,
            "topic_root": self._settings.topic_root,
            "started_at": datetime.now(UTC).isoformat(),
        }
        self._file.write(orjson.dumps(header) + b"\n")
        self._started = time.monotonic()
        self._client.connect(self._settings.host, broker_port(self._settings), keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise ConnectionError("the recorder could not subscribe to the broker")

    def wait_for(self, count: int, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.count < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.count >= count

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


@dataclass(frozen=True)
class Recorded:
    offset_ms: float
    topic: str
    payload: bytes
    qos: int
    retain: bool


def read_recording(path: Path) -> tuple[dict[str, Any], list[Recorded]]:
    """The header and the messages of a recording; ``RecordingError`` names a bad line."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc}") from exc
    if not lines:
        raise RecordingError(f"{path}: empty file, not a recording")
    messages = []
    header: dict[str, Any] = {}
    for number, line in enumerate(lines, start=1):
        try:
            entry = orjson.loads(line)
            if number == 1:
                if not isinstance(entry, dict) or entry.get("recording") != FORMAT_VERSION:
                    raise ValueError("the first line is not a recording header")
                header = entry
                continue
            payload = entry["text"].encode() if "text" in entry else base64.b64decode(entry["b64"])
            messages.append(
                Recorded(
                    float(entry["offset_ms"]),
                    str(entry["topic"]),
                    payload,
                    int(entry.get("qos", 1)),
                    bool(entry.get("retain", False)),
                )
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{path} line {number}: {exc}") from exc
    return header, messages


def retarget(
    topic: str, old_root: str, new_root: str, rename: tuple[str, str] | None = None
) -> str:
    """The topic under ``new_root``; with ``rename=(old, new)`` the sensor id prefix changes."""
    if topic.startswith(old_root.rstrip("/") + "/"):
        topic = new_root.rstrip("/") + topic[len(old_root.rstrip("/")) :]
    if rename is not None:
        root = new_root.rstrip("/") + "/"
        parts = topic[len(root) :].split("/") if topic.startswith(root) else []
        if len(parts) == 3 and parts[1].startswith(rename[0]):
            parts[1] = rename[1] + parts[1][len(rename[0]) :]
            topic = root + "/".join(parts)
    return topic


async def replay(
    settings: MqttSettings,
    path: Path,
    stop: asyncio.Event,
    *,
    speed: float = 1.0,
    rename: tuple[str, str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Publish a recording at its original pace / ``speed``; returns the messages published."""
    header, messages = read_recording(path)
    old_root = str(header.get("topic_root", settings.topic_root))
    gateway = MqttGateway(settings, client_id=f"urbanpulse-replay-{id(path)}")
    await asyncio.to_thread(gateway.connect)
    started = time.monotonic()
    sent = 0
    try:
        for message in _paced(messages):
            if stop.is_set():
                break
            ahead = started + message.offset_ms / 1000.0 / speed - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            topic = retarget(message.topic, old_root, settings.topic_root, rename)
            gateway.publish(topic, message.payload, qos=max(1, message.qos), retain=message.retain)
            sent += 1
            if on_progress is not None:
                on_progress(sent, len(messages))
            if sent % 500 == 0:
                await asyncio.sleep(0)
    finally:
        await asyncio.to_thread(gateway.close)
    return sent


def _paced(messages: list[Recorded]) -> Iterator[Recorded]:
    return iter(sorted(messages, key=lambda m: m.offset_ms))
