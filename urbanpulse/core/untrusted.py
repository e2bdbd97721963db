"""Showing untrusted input in error messages and logs without letting it hurt us.

``repr`` of a value from a payload is unbounded twice over: a deeply nested list makes it recurse
until ``RecursionError`` (orjson accepts nesting deeper than Python's recursion allows ``repr``
to go), and a megabyte string makes a megabyte message.  :func:`preview` walks the value itself,
iteratively, stops after ``limit`` characters and never recurses, so it cannot raise on any
value a JSON parser returns.
"""

from __future__ import annotations

from typing import Any, TypeGuard

PREVIEW_CHARS = 60
ELLIPSIS = "…"
_NUMBER = (int, float)  # a constant tuple: this runs per value on hot paths


def is_number(value: Any) -> TypeGuard[int | float]:
    """Whether a parsed JSON value is a number: ``True`` and ``False`` are ints in Python, not
    numbers in JSON."""
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A short, safe, repr-like rendering of ``value`` for an error message.

    Strings are quoted like ``repr`` (control characters escaped); containers are rendered
    element by element until ``limit`` characters, then cut with ``…``.
    """
    out: list[str] = []
    size = 0
    # A stack of pieces still to render: either text to emit as is, or a value to expand.
    stack: list[tuple[bool, Any]] = [(False, value)]
    while stack and size <= limit:
        is_text, item = stack.pop()
        if is_text:
            piece = item
        elif isinstance(item, dict):
            stack.append((True, "}"))
            entries = list(item.items())
            for index in range(len(entries) - 1, -1, -1):
                key, inner = entries[index]
                stack.append((False, inner))
                stack.append((True, ": "))
                stack.append((False, key))
                if index:
                    stack.append((True, ", "))
            piece = "{"
        elif isinstance(item, list | tuple):
            stack.append((True, "]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append((False, item[index]))
                if index:
                    stack.append((True, ", "))
            piece = "["
        elif isinstance(item, str | bytes):
            # repr of a long string is as long as the string: cut it first.
            piece = repr(item[: limit + 1])
        else:
            piece = repr(item)[: limit + 1]
        out.append(piece)
        size += len(piece)
    text = "".join(out)
    if len(text) > limit or stack:
        return text[:limit] + ELLIPSIS
    return text
