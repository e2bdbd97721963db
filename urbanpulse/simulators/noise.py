"""Deterministic noise: a pure function of a seed and a key, never of call order.

Device models draw their noise from ``uniform(seed, key...)`` instead of a stateful generator,
so the value a sensor reports at a given instant depends only on the seed, the sensor and the
instant.  That makes the scenario engine a pure function of (scenario, seed, time): any window
of a run can be recomputed, and a run resumed or replayed gives the same readings.
"""

from __future__ import annotations

import hashlib
import math

_SCALE = 1.0 / float(1 << 53)


def uniform(*key: object) -> float:
    """A number in [0, 1) determined by ``key`` (any printable values)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 11) * _SCALE


def normal(*key: object) -> float:
    """A standard normal number determined by ``key`` (Box-Muller on two uniforms)."""
    u1 = max(uniform(*key, "n1"), 1e-12)
    u2 = uniform(*key, "n2")
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def between(low: float, high: float, *key: object) -> float:
    return low + (high - low) * uniform(*key)


def poisson(mean: float, *key: object) -> int:
    """A Poisson-like count: normal approximation for large means, inversion for small."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(mean + math.sqrt(mean) * normal(*key)))
    u = uniform(*key)
    k, p = 0, math.exp(-mean)
    cumulative = p
    while u > cumulative and k < 1000:
        k += 1
        p *= mean / k
        cumulative += p
    return k
