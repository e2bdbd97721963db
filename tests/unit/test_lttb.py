"""LTTB downsampling: shape-preserving, bounded, deterministic."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanpulse.api.lttb import lttb_indices


def test_short_series_are_kept_whole() -> None:
    assert lttb_indices([0, 1, 2], [5, 6, 7], 10) == [0, 1, 2]


def test_keeps_first_last_and_the_spike() -> None:
    xs = list(range(1000))
    ys = [0.0] * 1000
    ys[437] = 100.0
    kept = lttb_indices(xs, ys, 20)
    assert len(kept) == 20
    assert kept[0] == 0 and kept[-1] == 999
    assert 437 in kept


def test_follows_a_sine_wave_extremes() -> None:
    xs = [i / 100 for i in range(2000)]
    ys = [math.sin(x) for x in xs]
    kept = lttb_indices(xs, ys, 100)
    values = [ys[i] for i in kept]
    assert max(values) > 0.999 and min(values) < -0.999


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        lttb_indices([1, 2], [1], 3)
    with pytest.raises(ValueError):
        lttb_indices([1, 2, 3], [1, 2, 3], 2)


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=0, max_size=400),
    st.integers(3, 120),
)
def test_any_series_gives_sorted_unique_bounded_indices(ys: list[float], threshold: int) -> None:
    xs = [float(i) for i in range(len(ys))]
    kept = lttb_indices(xs, ys, threshold)
    assert len(kept) == min(len(ys), threshold)
    assert kept == sorted(set(kept))
    if ys:
        assert kept[0] == 0 and kept[-1] == len(ys) - 1
