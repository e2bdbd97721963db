"""preview(): bounded, non-recursive rendering of untrusted values for error messages."""

from __future__ import annotations

import orjson

from urbanpulse.core.untrusted import ELLIPSIS, preview


def test_small_values_read_like_repr() -> None:
    assert preview("pm25") == "'pm25'"
    assert preview(12.5) == "12.5"
    assert preview(None) == "None"
    assert preview([1, "a"]) == "[1, 'a']"
    assert preview({"a": [1, 2]}) == "{'a': [1, 2]}"
    assert preview("tab\there") == "'tab\\there'"


def test_long_string_is_cut_to_the_limit() -> None:
    text = preview("x" * 1_000_000, limit=20)
    assert text == "'" + "x" * 19 + ELLIPSIS


def test_nesting_deeper_than_python_recursion_does_not_raise() -> None:
    # orjson parses nesting up to its own limit (1024); build deeper by hand as well.
    payload = b"[" * 1000 + b"]" * 1000
    assert preview(orjson.loads(payload), limit=10) == "[" * 10 + ELLIPSIS
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert preview(deep, limit=5) == "[[[[[" + ELLIPSIS


def test_huge_array_is_cut() -> None:
    text = preview(list(range(100_000)), limit=12)
    assert text == "[0, 1, 2, 3," + ELLIPSIS
    assert preview([1, 2], limit=6) == "[1, 2]"
