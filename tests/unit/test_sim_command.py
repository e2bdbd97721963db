"""The ``simulate`` and ``scenario`` commands: help, list, validate, argument errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from urbanpulse.core.settings import Settings
from urbanpulse.simulators.command import add_simulator_parsers
from urbanpulse.simulators.fleet import FleetError, SimulatedSensor, fleet_of_kind
from urbanpulse.storage.registry import SensorRecord


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="urbanpulse")
    add_simulator_parsers(root.add_subparsers(dest="command", required=True))
    return root


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate"],
        ["scenario"],
        ["scenario", "list"],
        ["scenario", "run"],
        ["scenario", "record"],
        ["scenario", "replay"],
        ["scenario", "validate"],
    ],
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args([*argv, "--help"])
    assert info.value.code == 0
    assert "usage: urbanpulse" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "noise"],
        ["simulate", "air", "--rate", "0"],
        ["scenario", "run", "x", "--speed", "-2"],
        ["scenario", "dance"],
    ],
)
def test_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(argv)
    assert info.value.code == 2


def test_every_kind_can_be_simulated() -> None:
    for kind in ("air", "water", "waste_bin", "waste_truck", "traffic_camera"):
        args = parser().parse_args(["simulate", kind, "--sensors", "3", "--count", "5"])
        assert args.kind == kind and callable(args.handler)


def test_list_shows_one_line_per_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["scenario", "list"])
    assert args.handler(Settings(), args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 5 and any(line.startswith("hcmc-morning-rush ") for line in lines)


def test_validate_names_the_line_of_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\ncity: hcmc\nstart: '06:00'\nduration: 1h\nfleet: []\n")
    args = parser().parse_args(["scenario", "validate", str(bad)])
    assert args.handler(Settings(), args) == 2
    assert f"{bad} line 5: fleet: List should have at least 1 item" in capsys.readouterr().err


def test_run_refuses_an_invalid_scenario_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\ncity: hue\n")
    args = parser().parse_args(["scenario", "run", str(bad), "--check"])
    assert args.handler(Settings(), args) == 2
    assert "line 2: city:" in capsys.readouterr().err


def test_a_fleet_from_records_keeps_the_kind_in_file_order() -> None:
    records = [
        SensorRecord("a-1", "air", lat=10.7, lon=106.6),
        SensorRecord("w-1", "water", lat=10.8, lon=106.7),
        SensorRecord("a-2", "air", lat=10.9, lon=106.8),
    ]
    assert fleet_of_kind("air", records, "f.geojson") == [
        SimulatedSensor("a-1", "air", 10.7, 106.6, 0),
        SimulatedSensor("a-2", "air", 10.9, 106.8, 1),
    ]


def test_a_fleet_needs_sensors_of_the_kind_with_a_location() -> None:
    records = [SensorRecord("w-1", "water", 10.8, 106.7), SensorRecord("a-1", "air")]
    with pytest.raises(FleetError, match=r"^no traffic_camera sensors in f \(it has 1 air, 1 w"):
        fleet_of_kind("traffic_camera", records, "f")
    with pytest.raises(FleetError, match=r"^1 air sensors in f have no location, .*: a-1$"):
        fleet_of_kind("air", records, "f")


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "air", "--fleet", "f.geojson", "--area", "vn-hcm"],
        ["simulate", "air", "--sensors", "3", "--area", "vn-hcm"],
        ["simulate", "air", "--sensors", "3", "--fleet", "f.geojson"],
    ],
)
def test_one_fleet_source_at_a_time(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(argv)
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
