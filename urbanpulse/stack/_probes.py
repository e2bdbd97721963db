"""Readiness checks that speak to the servers themselves (blocking, no event loop needed)."""

from __future__ import annotations

import socket
import struct

_METADATA_API_KEY = 3
# Kafka 4.x dropped Metadata v0-v3 (KIP-896); v4 is the oldest it answers, and the newest that
# needs no "flexible" (tagged-field) encoding.
_METADATA_VERSION = 4
_CLIENT_ID = b"urbanpulse-stack"


def tcp_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


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
