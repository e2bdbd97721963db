"""Alert texts in Vietnamese and English: what happened, where, how bad, against which limit."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

from urbanpulse.alerts.rules import Rule
from urbanpulse.core.catalogue import KINDS, Label

OPS: dict[str, tuple[str, str]] = {
    "above": ("vượt ngưỡng", "above the limit"),
    "at_least": ("đạt hoặc vượt ngưỡng", "at or above the limit"),
    "below": ("dưới ngưỡng", "below the limit"),
    "at_most": ("không vượt quá", "at or below"),
    "not_equal": ("khác", "not"),
}


def _number(value: float, vietnamese: bool) -> str:
    text = f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return text.replace(".", ",") if vietnamese else text


def _field_names(rule: Rule) -> tuple[str, str]:
    """What the rule watches, as operators call it (the catalogue's label, else the field id)."""
    field = rule.metric or ""
    label = KINDS[rule.kind].field_label(field) or Label(field, field)
    return label.vi, label.en


def _kind_names(kind: str) -> tuple[str, str]:
    label = KINDS[kind].label if kind in KINDS else Label(kind, kind)
    return label.vi, label.en


def _unit(rule: Rule) -> str:
    unit = KINDS[rule.kind].field_unit(rule.metric or "")
    return f" {unit}" if unit else ""


def _titled(rule: Rule, vi: str, en: str) -> tuple[str, str]:
    if rule.title is None:
        return vi, en
    return f"{rule.title.vi}: {vi}", f"{rule.title.en}: {en}"


def threshold_message(rule: Rule, sensor_id: str, value: float) -> tuple[str, str]:
    name_vi, name_en = _field_names(rule)
    op, limit = rule.comparator
    op_vi, op_en = OPS[op]
    unit = _unit(rule)
    hours = rule.window_hours
    span_vi = f" trung bình {hours} giờ" if hours else ""
    span_en = f" {hours}-hour mean" if hours else ""
    vi = (
        f"{name_vi}{span_vi} {_number(value, True)}{unit} {op_vi} {_number(limit, True)}{unit} "
        f"tại cảm biến {sensor_id} ({rule.citation})"
    )
    en = (
        f"{name_en}{span_en} {_number(value, False)}{unit} {op_en} {_number(limit, False)}{unit} "
        f"at sensor {sensor_id} ({rule.citation})"
    )
    return _titled(rule, vi, en)


def offline_message(rule: Rule, sensor_id: str, silent: timedelta) -> tuple[str, str]:
    minutes = max(1, round(silent.total_seconds() / 60))
    kind_vi, kind_en = _kind_names(rule.kind)
    vi = f"Cảm biến {kind_vi} {sensor_id} mất kết nối: không có dữ liệu trong {minutes} phút"
    en = f"{kind_en.capitalize()} sensor {sensor_id} offline: no data for {minutes} min"
    return _titled(rule, vi, en)


def never_reported_message(
    rule: Rule, kind: str, sensor_id: str, since_registered: timedelta
) -> tuple[str, str]:
    minutes = max(1, round(since_registered.total_seconds() / 60))
    kind_vi, kind_en = _kind_names(kind)
    vi = (
        f"Cảm biến {kind_vi} {sensor_id} chưa từng gửi dữ liệu: "
        f"đã đăng ký {minutes} phút mà chưa có bản tin nào"
    )
    en = f"{kind_en.capitalize()} sensor {sensor_id} never reported: registered {minutes} min ago"
    return _titled(rule, vi, en)


def incident_title(rule: Rule) -> tuple[str, str]:
    """What an incident of ``rule`` is, in a word or two: "Offline: 1,234 sensors in ..."."""
    if rule.title is not None:
        return rule.title.vi, rule.title.en
    if rule.is_offline:
        return "Mất kết nối", "Offline"
    if rule.is_never_reported:
        return "Chưa từng gửi dữ liệu", "Never reported"
    if rule.metric is None:
        return rule.id, rule.id
    return _field_names(rule)


def area_message(
    rule: Rule, area_id: str, meeting: int, total: int, share: Fraction
) -> tuple[str, str]:
    name_vi, name_en = _field_names(rule)
    kind_vi, kind_en = _kind_names(rule.kind)
    op, limit = rule.comparator
    op_vi, op_en = OPS[op]
    percent = float(share) * 100
    vi = (
        f"Khu vực {area_id}: {meeting}/{total} cảm biến {kind_vi} có {name_vi} "
        f"{op_vi} {_number(limit, True)} ({_number(percent, True)} %; {rule.citation})"
    )
    en = (
        f"Area {area_id}: {meeting} of {total} {kind_en} sensors have {name_en} "
        f"{op_en} {_number(limit, False)} ({_number(percent, False)} %; {rule.citation})"
    )
    return _titled(rule, vi, en)
