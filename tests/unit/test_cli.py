from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from shapely.geometry import MultiPolygon, box

from urbanpulse.cli import build_parser, main
from urbanpulse.core.areas import AreaIndex, AreaRecord
from urbanpulse.core.settings import DbRole
from urbanpulse.storage.registry import SensorRecord
from urbanpulse.storage.sensor_admin import placement_warnings

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

    from urbanpulse.core import metrics
    from urbanpulse.core.logs import report_counters

    counters = metrics.CounterView(
        metrics.Metrics(), {"seen": metrics.Series(metrics.INGEST_MESSAGES)}
    )

    class Watched:
        """The reporter's view of the counters, counting its looks: evidence of intervals."""

        def __init__(self) -> None:
            self.looks = 0
            self.enough = asyncio.Event()

        def snapshot(self) -> dict[str, float]:
            self.looks += 1
            if self.looks >= 5:
                self.enough.set()
            return counters.snapshot()

    watched = Watched()
    logger = logging.getLogger("test.counters")
    caplog.set_level(logging.INFO, logger="test.counters")
    counters.seen = 5
    task = asyncio.create_task(report_counters(logger, "test", watched, interval_s=0.01))
    # Five intervals pass (the reporter looked five times); only the one change is reported.
    await asyncio.wait_for(watched.enough.wait(), timeout=30)
    task.cancel()
    reports = [r for r in caplog.records if r.getMessage() == "test counters"]
    assert len(reports) == 1
    assert reports[0].fields == {"seen": 5}  # type: ignore[attr-defined]


def _with_database_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every role's password, so that reaching the server is what fails (a missing password
    has its own test, tests/unit/test_db_settings.py)."""
    for role in DbRole:
        monkeypatch.setenv(f"URBANPULSE_DATABASE__PASSWORDS__{role.name}", "unused")


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
    _with_database_passwords(monkeypatch)
    # Credentials are there (no stack has generated any here): the server is what is missing.
    monkeypatch.setenv("URBANPULSE_KAFKA__BRIDGE_PASSWORD", "unused")
    assert main([command]) == 1
    err = capsys.readouterr().err
    assert message in err and "urbanpulse stack up" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("action", ["create", "revoke"])
def test_keys_need_a_name_and_say_so(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", action]) == 2
    assert f"`keys {action}` needs the key's NAME" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["ops team", "ops\n", "ops/hcm", "k" * 129])
def test_keys_create_refuses_a_name_the_api_would_refuse(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused before any connection: no database runs here.
    assert main(["keys", "create", name]) == 2
    assert "is not 1-128 letters, digits or _.@:- starting with a letter or digit" in (
        capsys.readouterr().err
    )


def test_keys_refuse_an_unknown_role(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["keys", "create", "ops", "--role", "root"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'root'" in capsys.readouterr().err


# --------------------------------------------------------------------------- user mistakes


def _feature(sensor_id: str, kind: str, coordinates: list[float] | None) -> dict[str, object]:
    geometry = None if coordinates is None else {"type": "Point", "coordinates": coordinates}
    return {
        "type": "Feature",
        "geometry": geometry,
        "properties": {"sensor_id": sensor_id, "kind": kind},
    }


def _fleet_file(tmp_path: Path, *features: dict[str, object]) -> Path:
    path = tmp_path / "fleet.geojson"
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": list(features)}))
    return path


def test_an_unknown_option_is_named_with_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: urbanpulse")
    assert "error: unknown option --bogus (see `urbanpulse --help`)" in err
    assert "required" not in err


def test_an_unknown_option_of_a_command_points_at_its_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "air", "--bogus"])
    assert exit_info.value.code == 2
    assert "unknown option --bogus (see `urbanpulse simulate --help`)" in capsys.readouterr().err


def test_no_command_asks_for_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "error: give a COMMAND" in capsys.readouterr().err


def test_an_unknown_log_level_is_refused_with_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--log-level", "LOUD", "keys", "list"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --log-level: invalid choice: 'LOUD'" in err and "'DEBUG'" in err
    assert "Traceback" not in err


def test_log_levels_are_taken_in_any_case() -> None:
    assert build_parser().parse_args(["--log-level", "debug", "keys", "list"]).log_level == "DEBUG"


def test_an_unknown_log_level_in_the_settings_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("URBANPULSE_LOG_LEVEL", "loud")
    assert main(["keys", "list"]) == 2
    err = capsys.readouterr().err
    assert "invalid URBANPULSE_LOG_LEVEL: unknown log level 'loud'; use one of DEBUG" in err
    assert "Traceback" not in err


def test_sensors_import_names_every_bad_feature_by_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _fleet_file(
        tmp_path,
        _feature("ok-1", "air", [106.7, 10.77]),
        _feature("bad kind", "air", None),
        _feature("ok-2", "smoke", None),
        _feature("ok-3", "air", [106.7, 10.77]),
        _feature("ok-1", "water", None),
        {"type": "Feature", "geometry": None},
    )
    assert main(["sensors", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: 4 problem(s), so the file is refused:" in err
    assert "  feature 1: invalid or missing sensor_id 'bad kind'" in err
    assert "  feature 2 (ok-2): unknown kind 'smoke'" in err
    assert "  feature 4 (ok-1): sensor_id repeats feature 0" in err
    assert "  feature 5: missing 'properties'" in err
    assert "feature 0" not in err.replace("repeats feature 0", "")
    assert "feature 3" not in err
    assert "Traceback" not in err


def test_sensors_import_suggests_swapping_lon_and_lat(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _fleet_file(
        tmp_path,
        _feature("hanoi-1", "air", [21.03, 105.85]),  # [lat, lon] of Hoan Kiem lake
        _feature("far-1", "air", [200.0, 10.0]),  # out of range, but not a swap
    )
    assert main(["sensors", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        "feature 0 (hanoi-1): geometry must be a WGS 84 Point [lon, lat]; [21.03, 105.85] is "
        "out of range (latitude 105.85 is beyond ±90: are lon and lat swapped?)"
    ) in err
    far = next(line for line in err.splitlines() if "far-1" in line)
    assert "out of range" in far and "swapped" not in far


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read {path}: No such file or directory"),
        (b"{not json", "{path} is not JSON: "),
        (b'{"type": "Feature"}', "{path}: 1 problem(s), so the file is refused:\n"),
    ],
)
def test_sensors_import_refuses_an_unreadable_file_in_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    path = tmp_path / "fleet.geojson"
    if content is not None:
        path.write_bytes(content)
    assert main(["sensors", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"urbanpulse sensors: {message.format(path=path)}")
    assert "Traceback" not in err


def test_sensors_import_says_when_the_database_cannot_be_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    monkeypatch.setenv("URBANPULSE_DATABASE__PORT", str(port))
    _with_database_passwords(monkeypatch)
    path = _fleet_file(tmp_path, _feature("ok-1", "air", [106.7, 10.77]))
    assert main(["sensors", "import", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"urbanpulse sensors: cannot reach the database at 127.0.0.1:{port}/")
    assert "urbanpulse stack up" in err and len(err.splitlines()) == 1


def test_simulate_says_when_the_broker_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    monkeypatch.setenv("URBANPULSE_MQTT__PORT", str(port))
    monkeypatch.setenv("URBANPULSE_MQTT__PASSWORD", "unused")  # the broker is what is missing
    assert main(["simulate", "air", "--sensors", "2", "--count", "1"]) == 1
    err = capsys.readouterr().err
    assert f"urbanpulse simulate: cannot reach the MQTT broker at 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_simulate_refuses_a_fleet_file_without_the_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _fleet_file(
        tmp_path, _feature("w-1", "water", [106.7, 10.77]), _feature("w-2", "water", None)
    )
    assert main(["simulate", "air", "--fleet", str(path), "--count", "1"]) == 2
    assert f"urbanpulse simulate: no air sensors in {path} (it has 2 water)" in (
        capsys.readouterr().err
    )


def test_simulate_area_says_when_the_database_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("URBANPULSE_DATABASE__PORT", str(_closed_port()))
    _with_database_passwords(monkeypatch)
    assert main(["simulate", "air", "--area", "vn-hcm", "--count", "1"]) == 1
    err = capsys.readouterr().err
    assert "urbanpulse simulate: cannot reach the database" in err and "Traceback" not in err


def test_a_bug_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import urbanpulse.cli

    def broken(_settings: object, _args: object) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr(urbanpulse.cli, "cmd_keys", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["keys", "list"])
    assert "unexpected error, probably a bug" in capsys.readouterr().err


# --------------------------------------------------------------------------- placement


def _index_with_square(area_id: str, west: float, south: float) -> AreaIndex:
    square = MultiPolygon([box(west, south, west + 1, south + 1)])
    return AreaIndex([AreaRecord(area_id, area_id, "ward", None, square)])


def test_a_sensor_outside_every_area_is_warned_about() -> None:
    index = _index_with_square("w1", 106.0, 10.0)
    sensors = [
        SensorRecord("in", "air", lat=10.5, lon=106.5),
        SensorRecord("null-island", "air", lat=0.0, lon=0.0),
        SensorRecord("nowhere", "air"),
    ]
    assert placement_warnings(sensors, index) == [
        "null-island at [0.0, 0.0] is outside every stored area"
    ]


def test_a_swap_that_lands_in_an_area_is_suggested() -> None:
    index = _index_with_square("w1", 40.0, 10.0)  # lon 40..41, lat 10..11
    warnings = placement_warnings([SensorRecord("s", "air", lat=40.5, lon=10.5)], index)
    assert warnings == [
        "s at [10.5, 40.5] is outside every stored area; [40.5, 10.5] would be in w1: "
        "are lon and lat swapped? (GeoJSON is [lon, lat])"
    ]


def test_without_areas_one_warning_says_so() -> None:
    sensors = [SensorRecord("a", "air", 10.5, 106.5), SensorRecord("b", "air", 10.6, 106.6)]
    [warning] = placement_warnings(sensors, AreaIndex([]))
    assert warning.startswith("no areas are stored, so the 2 located sensors have no area")
