"""Stack concentrations at the reference oxygen content (pure functions).

Flue gas diluted with extra air shows lower concentrations without emitting less; emission limits
therefore apply at a reference O2.  The standard correction (QCVN 61-MT:2016/BTNMT, EU Directive
2010/75/EU Annex VI, US EPA alike):

    C_ref = C_meas * (21 - O2_ref) / (21 - O2_meas)        (O2 in % vol, dry gas)

REFERENCE_O2 is 11 % vol, the figure for waste incinerators in EU practice (Directive 2010/75/EU
Annex VI part 6).  That QCVN 61-MT:2016/BTNMT uses the same 11 % could NOT be checked against the
standard's text here: verify it before relying on the corrected values for compliance.
"""

from __future__ import annotations

from collections.abc import Mapping

AIR_O2 = 21.0  # % vol of oxygen in dry air
REFERENCE_O2 = 11.0  # % vol; see the module docstring for its (unverified) Vietnamese source
# Above this measured O2 the gas is nearly plain air (a stopped or starting furnace): the factor
# 10 / (21 - O2) explodes, and a "corrected" value would be noise, so none is given.
MAX_MEASURED_O2 = 20.0


def oxygen_factor(measured_o2: float, reference_o2: float = REFERENCE_O2) -> float | None:
    """(21 - O2_ref) / (21 - O2_meas), or None when the measured O2 is too close to air."""
    if not 0.0 <= measured_o2 <= MAX_MEASURED_O2:
        return None
    return (AIR_O2 - reference_o2) / (AIR_O2 - measured_o2)


def at_reference_oxygen(
    concentrations: Mapping[str, float], measured_o2: float, reference_o2: float = REFERENCE_O2
) -> dict[str, float]:
    """Each concentration at ``reference_o2``, keyed ``<name>_ref``; {} without a factor."""
    factor = oxygen_factor(measured_o2, reference_o2)
    if factor is None:
        return {}
    return {f"{name}_ref": round(value * factor, 3) for name, value in concentrations.items()}
