"""``urbanpulse grafana push`` against a recording HTTP server that answers like Grafana's API.

Grafana's server is in no package registry reachable here, so this server stands in for it on a
real loopback socket: grafana-client sends its real HTTP requests, and the test checks what a
Grafana would receive.  Its answers follow Grafana's HTTP API documentation for the endpoints the
push uses (data sources by uid, folders, dashboards/db); it keeps what was created, so a
second push meets existing objects like a real Grafana would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from urbanpulse.cli import main

TOKEN = "glsa_test_token"
UIDS = {
    "urbanpulse-overview",
    "urbanpulse-air",
    "urbanpulse-water",
    "urbanpulse-waste",
    "urbanpulse-traffic",
    "urbanpulse-alerts",
    "urbanpulse-facilities",
    "urbanpulse-platform",
}


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class FakeGrafana:
    requests: list[Request] = field(default_factory=list)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    refuse_with: int | None = None

    def answer(self, request: Request) -> tuple[int, Any]:
        if self.refuse_with is not None:
            return self.refuse_with, {"message": "Unauthorized"}
        route = (request.method, request.path)
        if request.path.startswith("/api/datasources/uid/"):
            uid = request.path.rsplit("/", 1)[1]
            if uid not in self.datasources:
                return 404, {"message": "Data source not found"}
            if request.method == "PUT":
                self.datasources[uid] = request.body
                return 200, {"message": "Datasource updated", "id": 1, "name": uid}
            return 200, self.datasources[uid]
        if route == ("POST", "/api/datasources"):
            self.datasources[request.body["uid"]] = request.body
            return 200, {"message": "Datasource added", "id": 1, "name": request.body["name"]}
        if request.method == "GET" and request.path.startswith("/api/folders/"):
            uid = request.path.rsplit("/", 1)[1]
            if uid not in self.folders:
                return 404, {"message": "folder not found", "status": "not-found"}
            return 200, self.folders[uid]
        if route == ("POST", "/api/folders"):
            self.folders[request.body["uid"]] = request.body
            return 200, {"id": 1, **request.body}
        if route == ("POST", "/api/dashboards/db"):
            board = request.body["dashboard"]
            if board["uid"] in self.dashboards and not request.body.get("overwrite"):
                return 412, {"message": "A dashboard with the same uid already exists"}
            self.dashboards[board["uid"]] = request.body
            return 200, {"status": "success", "uid": board["uid"], "url": f"/d/{board['uid']}/x"}
        return 404, {"message": "Not found"}


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Request(
                self.command,
                self.path,
                self.headers.get("Authorization"),
                json.loads(raw) if raw else None,
            )
            fake.requests.append(request)
            status, body = fake.answer(request)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


ADDRESSES = ("--db-address", "timescaledb:5432", "--prometheus-url", "http://prom.lan:9090")


def push(url: str, *extra: str) -> int:
    return main(["grafana", "push", "--url", url, "--token", TOKEN, *extra])


def test_first_push_creates_then_second_updates_in_place(
    grafana: tuple[FakeGrafana, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = grafana
    monkeypatch.setenv("URBANPULSE_DATABASE__USER", "grafana_reader")
    monkeypatch.setenv("URBANPULSE_DATABASE__PASSWORD", "reader-secret")
    monkeypatch.setenv("URBANPULSE_DATABASE__NAME", "urbanpulse")
    assert push(url, *ADDRESSES) == 0
    first = [(r.method, r.path) for r in fake.requests]
    assert first == [
        ("GET", "/api/datasources/uid/urbanpulse-timescaledb"),
        ("POST", "/api/datasources"),
        ("GET", "/api/datasources/uid/urbanpulse-prometheus"),
        ("POST", "/api/datasources"),
        ("GET", "/api/folders/urbanpulse"),
        ("POST", "/api/folders"),
        *[("POST", "/api/dashboards/db")] * len(UIDS),
    ]
    assert all(r.authorization == f"Bearer {TOKEN}" for r in fake.requests)

    source = fake.datasources["urbanpulse-timescaledb"]
    assert source["type"] == "grafana-postgresql-datasource"
    assert source["url"] == "timescaledb:5432"
    assert source["user"] == "grafana_reader"
    assert source["jsonData"]["database"] == "urbanpulse"
    assert source["secureJsonData"] == {"password": "reader-secret"}
    prometheus = fake.datasources["urbanpulse-prometheus"]
    assert (prometheus["type"], prometheus["url"]) == ("prometheus", "http://prom.lan:9090")
    assert fake.folders["urbanpulse"] == {"title": "UrbanPulse", "uid": "urbanpulse"}
    assert set(fake.dashboards) == UIDS
    for saved in fake.dashboards.values():
        assert saved["folderUid"] == "urbanpulse"
        assert saved["overwrite"] is True
        assert saved["dashboard"]["id"] is None  # Grafana matches on the uid
        assert saved["dashboard"]["panels"]

    fake.requests.clear()
    assert push(url, *ADDRESSES) == 0
    second = [(r.method, r.path) for r in fake.requests]
    assert second == [
        ("GET", "/api/datasources/uid/urbanpulse-timescaledb"),
        ("PUT", "/api/datasources/uid/urbanpulse-timescaledb"),
        ("GET", "/api/datasources/uid/urbanpulse-prometheus"),
        ("PUT", "/api/datasources/uid/urbanpulse-prometheus"),
        ("GET", "/api/folders/urbanpulse"),
        *[("POST", "/api/dashboards/db")] * len(UIDS),
    ]
    assert len(fake.datasources) == 2 and len(fake.folders) == 1 and len(fake.dashboards) == 8


def test_a_refused_token_is_a_one_line_error(
    grafana: tuple[FakeGrafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = grafana
    fake.refuse_with = 401
    assert push(url) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "Unauthorized" in err
    assert len(fake.requests) == 1  # nothing more is tried


def test_an_unreachable_grafana_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import free_ports

    [port] = free_ports(1)
    assert push(f"http://127.0.0.1:{port}", "--timeout", "2") == 1
    assert "cannot reach Grafana" in capsys.readouterr().err


def test_push_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("URBANPULSE_GRAFANA_TOKEN", raising=False)
    assert main(["grafana", "push", "--url", "http://127.0.0.1:9"]) == 2
    assert "token" in capsys.readouterr().err
