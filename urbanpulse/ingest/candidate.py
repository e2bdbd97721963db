"""A reading as a payload stated it, before validation: the meeting point of all formats."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Candidate:
    ts: Any
    values: Any  # metric -> stated value; validated to a dict of numbers
    units: Mapping[str, str] = field(default_factory=dict)  # metric -> stated unit
    factors: Mapping[str, float] = field(default_factory=dict)  # metric -> species factor
    seq: Any = None
    location: Any = None  # a GeoJSON geometry
    ignored: list[str] = field(default_factory=list)  # attributes deliberately not stored
    problems: list[str] = field(default_factory=list)  # found while mapping the format
