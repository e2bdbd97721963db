"""How the supervisor labels its children's output lines."""

from __future__ import annotations

import orjson

from urbanpulse.supervisor import label_line


def test_a_text_line_gets_the_child_name_padded_to_the_widest() -> None:
    line = "2026-11-29 18:00:00,000 INFO    urbanpulse.ingest.bridge: bridge subscribed"
    assert label_line("bridge-1", 11, line) == f"bridge-1    | {line}"
    assert label_line("api", 3, "") == "api | "


def test_a_json_log_line_stays_one_json_object_with_the_child_name() -> None:
    line = '{"time":"2026-11-29T18:00:00+00:00","level":"info","message":"bridge stopped"}'
    labelled = label_line("bridge-2", 11, line)
    assert orjson.loads(labelled) == {
        "process": "bridge-2",
        "time": "2026-11-29T18:00:00+00:00",
        "level": "info",
        "message": "bridge stopped",
    }


def test_text_that_only_looks_like_json_is_prefixed() -> None:
    assert label_line("api", 3, "{not json") == "api | {not json"
    assert label_line("api", 3, "[1, 2]") == "api | [1, 2]"
    assert label_line("api", 3, '{"a": 1} trailing') == 'api | {"a": 1} trailing'
