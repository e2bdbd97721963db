from __future__ import annotations

import pytest

from urbanpulse.cli import build_parser, main

COMMANDS = [
    ["stack"],
    ["db"],
    ["sensors"],
    ["bridge"],
    ["process"],
    ["api"],
    ["simulate"],
    ["demo"],
    ["index", "aqi"],
    ["index", "wqi"],
    ["areas"],
    ["scenario", "list"],
    ["scenario", "run"],
    ["scenario", "record"],
    ["scenario", "replay"],
    ["scenario", "validate"],
    ["rules", "check"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_subcommand_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: urbanpulse" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "air", "--rate", "0"],
        ["simulate", "air", "--sensors", "-3"],
        ["simulate", "noise"],
        ["stack", "restart"],
    ],
)
def test_bad_arguments_are_refused_with_a_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_sensors_import_reports_a_bad_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "fleet.geojson"
    bad.write_text(
        '{"type": "FeatureCollection", "features": [{"properties": {"sensor_id": "a"}}]}'
    )
    assert main(["sensors", "import", str(bad)]) == 2
    assert "feature 0 (a): unknown kind None" in capsys.readouterr().err


def test_repeated_log_messages_are_throttled() -> None:
    import logging

    from urbanpulse.core.logs import RepeatThrottle

    throttle = RepeatThrottle(interval_s=10)

    def record(at: float, msg: str = "Unable connect to node %s") -> logging.LogRecord:
        rec = logging.LogRecord("aiokafka", logging.ERROR, "f", 1, msg, (1,), None)
        rec.created = at
        return rec

    assert throttle.filter(record(0.0))
    assert not throttle.filter(record(1.0))
    assert not throttle.filter(record(2.0))
    assert throttle.filter(record(0.5, "another message"))
    later = record(11.0)
    assert throttle.filter(later)
    assert "[2 similar messages held back]" in later.getMessage()


async def test_counters_are_reported_while_they_change(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    import logging
    from dataclasses import dataclass

    from urbanpulse.core.logs import report_counters

    @dataclass
    class Counters:
        seen: int = 0

    counters = Counters()
    logger = logging.getLogger("test.counters")
    caplog.set_level(logging.INFO, logger="test.counters")
    task = asyncio.create_task(report_counters(logger, "test", counters, interval_s=0.01))
    counters.seen = 5
    await asyncio.sleep(0.05)  # several intervals pass; only the change is reported
    task.cancel()
    reports = [r for r in caplog.records if r.getMessage() == "test counters"]
    assert len(reports) == 1
    assert reports[0].fields == {"seen": 5}  # type: ignore[attr-defined]


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the probe closes


@pytest.mark.parametrize(
    ("command", "variable", "message"),
    [
        ("api", "URBANPULSE_DATABASE__PORT", "cannot reach the database at 127.0.0.1:"),
        ("bridge", "URBANPULSE_KAFKA__BOOTSTRAP_SERVERS", "cannot reach Kafka at 127.0.0.1:"),
    ],
)
def test_services_say_which_server_they_cannot_reach(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    variable: str,
    message: str,
) -> None:
    port = _closed_port()
    monkeypatch.setenv(variable, f"127.0.0.1:{port}" if "KAFKA" in variable else str(port))
    monkeypatch.setenv("URBANPULSE_API__PORT", str(_closed_port()))
    assert main([command]) == 1
    err = capsys.readouterr().err
    assert message in err and "urbanpulse stack up" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("action", ["create", "revoke"])
def test_keys_need_a_name_and_say_so(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", action]) == 2
    assert f"`keys {action}` needs the key's NAME" in capsys.readouterr().err


def test_keys_refuse_an_unknown_role(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["keys", "create", "ops", "--role", "root"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'root'" in capsys.readouterr().err
