"""Landfills and incinerators: the reference-oxygen correction, their cited limits, simulators.

Expected values are computed by hand in the comments; limits are written here from the
citations (not read back from the rule file).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from urbanpulse.alerts.messages import incident_title, offline_message, threshold_message
from urbanpulse.alerts.rules import load_rules
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.envelope import Reading
from urbanpulse.core.units import converter_for
from urbanpulse.indices.stack_oxygen import REFERENCE_O2, at_reference_oxygen, oxygen_factor
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.indices.vn_wqi import Combination
from urbanpulse.simulators.command import REPO_SCENARIOS
from urbanpulse.simulators.conditions import Conditions
from urbanpulse.simulators.engine import ScenarioEngine
from urbanpulse.simulators.fleet import SimulatedSensor
from urbanpulse.simulators.incinerator import IncineratorModel
from urbanpulse.simulators.landfill import LandfillModel
from urbanpulse.simulators.live import models_for
from urbanpulse.simulators.scenario import load_scenario
from urbanpulse.stream.derive import derive_indices
from urbanpulse.stream.windows import HourlyMeans

DEFAULT = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # 10:00 in Vietnam


def test_reference_oxygen_is_eleven_percent() -> None:
    assert REFERENCE_O2 == 11.0


@pytest.mark.parametrize(
    ("measured_o2", "factor"),
    [
        (9.0, 10 / 12),  # (21 - 11) / (21 - 9) = 10/12 = 0.8333
        (11.0, 1.0),  # at the reference: unchanged
        (15.0, 10 / 6),  # (21 - 11) / (21 - 15) = 10/6 = 1.6667
        (0.0, 10 / 21),  # undiluted: (21 - 11) / 21 = 0.4762
    ],
)
def test_oxygen_factor_by_hand(measured_o2: float, factor: float) -> None:
    assert oxygen_factor(measured_o2) == pytest.approx(factor)


def test_concentrations_at_reference_oxygen_by_hand() -> None:
    # O2 measured 15 %: factor 10/6.  Dust 60 -> 100.0; CO 150 -> 250.0; HCl 3 -> 5.0.
    assert at_reference_oxygen({"dust": 60.0, "co": 150.0, "hcl": 3.0}, 15.0) == {
        "dust_ref": pytest.approx(100.0),
        "co_ref": pytest.approx(250.0),
        "hcl_ref": pytest.approx(5.0),
    }


@pytest.mark.parametrize("measured_o2", [20.5, 21.0, -1.0])
def test_no_correction_when_the_gas_is_nearly_air_or_impossible(measured_o2: float) -> None:
    assert oxygen_factor(measured_o2) is None
    assert at_reference_oxygen({"dust": 5.0}, measured_o2) == {}


def _reading(kind: str, values: dict[str, float], ts: datetime = T0) -> Reading:
    return Reading("s-1", kind, ts, values, ts, "test")


def problems(kind: str, values: dict[str, float]) -> list[str]:
    """What the catalogue finds impossible in ``values`` (validation's per-metric check)."""
    found = [KINDS[kind].by_name[name].problem_with(value) for name, value in values.items()]
    return [p for p in found if p is not None]


def test_the_processor_derives_every_stack_pollutant_at_reference_oxygen() -> None:
    stack = {"dust": 12.0, "so2": 120.0, "nox": 300.0, "co": 60.0, "hcl": 6.0, "hf": 0.6}
    reading = _reading("incinerator", {**stack, "toc": 1.2, "o2": 9.0, "temperature": 160.0})
    derived = derive_indices([reading], HourlyMeans(POLLUTANTS), Combination.WEIGHTED_CUBE_ROOT)
    # factor 10/12: 12 -> 10, 120 -> 100, 300 -> 250, 60 -> 50, 6 -> 5, 0.6 -> 0.5, 1.2 -> 1.0
    assert derived[("s-1", T0)] == {
        "dust_ref": 10.0,
        "so2_ref": 100.0,
        "nox_ref": 250.0,
        "co_ref": 50.0,
        "hcl_ref": 5.0,
        "hf_ref": 0.5,
        "toc_ref": 1.0,
    }
    assert {f.name for f in KINDS["incinerator"].derived} == set(derived[("s-1", T0)])


def test_no_derived_values_without_oxygen_or_for_landfills() -> None:
    readings = [
        _reading("incinerator", {"dust": 12.0}),
        _reading("landfill", {"ch4": 2.0}, T0 + timedelta(seconds=1)),
    ]
    assert derive_indices(readings, HourlyMeans(POLLUTANTS), Combination.WEIGHTED_CUBE_ROOT) == {}


def test_stated_units_convert_to_the_canonical_ones() -> None:
    ppm_to_vol = converter_for("% vol", "ppm")
    assert ppm_to_vol is not None and ppm_to_vol(12500.0) == pytest.approx(1.25)  # 1.25 % vol
    ug = converter_for("mg/Nm³", "µg/Nm3")
    assert ug is not None and ug(2500.0) == pytest.approx(2.5)
    assert converter_for("mg/Nm³", "mg/m3") is not None


def test_impossible_readings_are_rejected_with_the_metric_named() -> None:
    assert problems("landfill", {"ch4": 140.0}) == [
        "ch4=140.0 outside the possible range 0..100 % vol"
    ]
    assert problems("incinerator", {"o2": 22.0}) != []
    assert problems("landfill", {"ch4": 5.2, "leachate_level": 0.4}) == []


# Limits written by hand from the citations: (rule id, metric, threshold, words cited).
CITED = [
    # Methane LEL 5 % vol; 25 % of it = 1.25 % vol (US 40 CFR 258.23(a)).
    ("landfill-ch4-lel", "ch4", 5.0, ["5 % vol", "258.23"]),
    ("landfill-ch4-25-lel", "ch4", 1.25, ["25 %", "1.25 % vol", "258.23"]),
    ("landfill-leachate-cod-qcvn", "leachate_cod", 400.0, ["QCVN 25:2009", "B1", "400 mg/L"]),
    ("landfill-leachate-head", "leachate_level", 0.3, ["258.40", "30 cm"]),
    ("incinerator-dust-qcvn61", "dust_ref", 100.0, ["QCVN 61-MT:2016", "100 mg/Nm³"]),
    ("incinerator-so2-qcvn61", "so2_ref", 250.0, ["QCVN 61-MT:2016", "250 mg/Nm³"]),
    ("incinerator-nox-qcvn61", "nox_ref", 500.0, ["QCVN 61-MT:2016", "500 mg/Nm³"]),
    ("incinerator-co-qcvn61", "co_ref", 250.0, ["QCVN 61-MT:2016", "250 mg/Nm³"]),
    ("incinerator-hcl-qcvn61", "hcl_ref", 50.0, ["QCVN 61-MT:2016", "50 mg/Nm³"]),
]


@pytest.mark.parametrize(("rule_id", "metric", "limit", "words"), CITED, ids=[c[0] for c in CITED])
def test_facility_limits_match_their_citations(
    rule_id: str, metric: str, limit: float, words: list[str]
) -> None:
    rule = {r.id: r for r in load_rules(DEFAULT)}[rule_id]
    assert (rule.metric, rule.threshold) == (metric, limit)
    assert rule.triggers(limit * 1.01)
    assert not rule.triggers(limit * 0.99)
    for word in words:
        assert word in rule.citation


def test_unverified_figures_say_so() -> None:
    rules = {r.id: r for r in load_rules(DEFAULT)}
    for rule_id in [c[0] for c in CITED if "qcvn" in c[0]]:
        assert "unverified" in rules[rule_id].citation


def _sensor(kind: str) -> SimulatedSensor:
    return SimulatedSensor(f"t-{kind}-0000", kind, 10.78, 106.70, 0)


def _hourly(
    model: LandfillModel | IncineratorModel, conditions: Conditions
) -> list[dict[str, float]]:
    return [model.values_at(T0 + timedelta(hours=h), conditions) for h in range(24)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_facilities_are_valid_and_below_their_limits_when_calm(seed: int) -> None:
    for model in (
        LandfillModel(_sensor("landfill"), seed),
        IncineratorModel(_sensor("incinerator"), seed),
    ):
        for values in _hourly(model, Conditions()):
            assert problems(model.kind, values) == []
            if model.kind == "landfill":
                assert values["ch4"] < 1.25 and values["leachate_level"] < 0.3
                assert values["leachate_cod"] < 400
            else:
                ref = at_reference_oxygen(values, values["o2"])
                assert ref["dust_ref"] < 100 and ref["co_ref"] < 250 and ref["nox_ref"] < 500


def test_an_upset_breaches_the_limits() -> None:
    upset = Conditions(upset=1.0)
    landfill = LandfillModel(_sensor("landfill"), 4).values_at(T0, upset)
    assert (
        landfill["ch4"] > 5 and landfill["leachate_level"] > 0.3 and landfill["leachate_cod"] > 400
    )
    stack = IncineratorModel(_sensor("incinerator"), 4).values_at(T0, upset)
    ref = at_reference_oxygen(stack, stack["o2"])
    assert ref["dust_ref"] > 100 and ref["co_ref"] > 250


def test_landfill_methane_peaks_at_the_pressure_lows() -> None:
    model = LandfillModel(_sensor("landfill"), 5)
    day = datetime(2026, 11, 19, 17, 0, tzinfo=UTC)  # 00:00 in Vietnam

    def mean_ch4(local_hour: int) -> float:
        ts = day + timedelta(hours=local_hour)
        return sum(model.values_at(ts + timedelta(minutes=m))["ch4"] for m in range(0, 60, 5)) / 12

    assert mean_ch4(4) > 1.3 * mean_ch4(10)
    assert mean_ch4(16) > 1.3 * mean_ch4(22)


def _stack_dust(scenario_file: str, start: datetime) -> dict[str, list[tuple[datetime, float]]]:
    """(ts, dust) per sensor from every message the scenario's engine would publish."""
    scenario = load_scenario(REPO_SCENARIOS / scenario_file)
    out: dict[str, list[tuple[datetime, float]]] = {}
    for message in ScenarioEngine(scenario, start, "urbanpulse/v1", prefix="t").all_messages():
        body = orjson.loads(message.payload)
        for item in body if isinstance(body, list) else [body]:
            ts = datetime.fromisoformat(item["ts"])
            out.setdefault(message.sensor_id, []).append((ts, item["values"]["dust"]))
    return out


def test_the_incinerator_scenario_upsets_only_the_named_line() -> None:
    start = datetime(2026, 11, 19, 23, 0, tzinfo=UTC)  # 06:00 in Vietnam; the upset 10:00-11:30
    upset_from, upset_to = (
        start + timedelta(hours=4, minutes=15),
        start + timedelta(hours=5, minutes=15),
    )
    dust = _stack_dust("hcmc-incinerator-upset.yaml", start)
    during = {s: [d for ts, d in v if upset_from <= ts < upset_to] for s, v in dust.items()}
    before = {s: [d for ts, d in v if ts < start + timedelta(hours=4)] for s, v in dust.items()}
    # Calm: 8 mg/Nm³ x load (0.8..1.0) x noise, under 20; upset: 18 times that, about 115-144.
    assert max(before["t-incinerator-0000"]) < 20
    assert max(during["t-incinerator-0001"]) < 20
    assert min(during["t-incinerator-0000"]) > 80


def test_live_simulation_has_models_for_the_new_kinds() -> None:
    models = models_for("landfill", [_sensor("landfill")], 1) + models_for(
        "incinerator", [_sensor("incinerator")], 1
    )
    assert [type(m) for m in models] == [LandfillModel, IncineratorModel]


def test_facility_alerts_name_what_they_watch_in_both_languages() -> None:
    rules = {r.id: r for r in load_rules(DEFAULT)}
    vi, en = threshold_message(rules["incinerator-dust-qcvn61"], "inc-1", 130.0)
    assert en.startswith(
        "Incinerator dust above the limit: Total dust (at reference O2) 130 mg/Nm³ "
        "above the limit 100 mg/Nm³ at sensor inc-1"
    )
    assert vi.startswith(
        "Bụi khí thải lò đốt vượt quy chuẩn: Bụi tổng (quy về O2 chuẩn) 130 mg/Nm³ "
        "vượt ngưỡng 100 mg/Nm³ tại cảm biến inc-1"
    )
    vi, en = threshold_message(rules["incinerator-so2-qcvn61"], "inc-1", 262.5)
    assert en.startswith("SO2 (at reference O2) 262.5 mg/Nm³ above the limit 250 mg/Nm³")
    assert vi.startswith("SO2 (quy về O2 chuẩn) 262,5 mg/Nm³ vượt ngưỡng 250 mg/Nm³")


def test_facility_offline_alerts_name_the_kind() -> None:
    rules = {r.id: r for r in load_rules(DEFAULT)}
    vi, en = offline_message(rules["offline-landfill"], "lf-2", timedelta(minutes=31))
    assert en.startswith("Landfill sensor lf-2 offline: no data for 31 min")
    assert vi.startswith("Cảm biến bãi chôn lấp lf-2 mất kết nối: không có dữ liệu trong 31 phút")
    assert incident_title(rules["landfill-ch4-lel"]) == (
        "Khí mê-tan đạt giới hạn nổ",
        "Methane at its explosive limit",
    )
    assert incident_title(rules["incinerator-hcl-qcvn61"]) == (
        "HCl (quy về O2 chuẩn)",
        "HCl (at reference O2)",
    )
