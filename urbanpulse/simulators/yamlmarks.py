"""Load YAML keeping the line of every key and list item, to name lines in error messages."""

from __future__ import annotations

from typing import Any

import yaml

Path = tuple[str | int, ...]


class YamlSyntaxError(ValueError):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def load_with_lines(text: str) -> tuple[Any, dict[Path, int]]:
    """The document and a map from each path (keys and list indexes) to its 1-based line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[Path, int] = {(): node.start_mark.line + 1}
        _walk(node, (), lines)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlSyntaxError(line, f"invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(None, f"invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return data, lines


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise YamlSyntaxError(
                    key_node.start_mark.line + 1, f"{_dotted((*path, key))}: duplicate key"
                )
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), lines)


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(document)"


def dotted(path: Path) -> str:
    """``("events", 2, "area")`` -> ``"events[2].area"``."""
    return _dotted(path)


def line_of(path: Path, lines: dict[Path, int]) -> tuple[Path, int | None]:
    """The part of ``path`` present in the document and the line of its deepest present part.

    Parts absent from the document (pydantic's union tags, a missing field's name) are skipped
    when they lie in the middle, and kept at the end (a missing field is named on its parent's
    line).
    """
    kept: list[str | int] = []
    line = lines.get(())
    for index, part in enumerate(path):
        candidate = (*kept, part)
        if candidate in lines:
            kept.append(part)
            line = lines[candidate]
        elif index == len(path) - 1 and isinstance(part, str) and part.isidentifier():
            kept.append(part)
    return tuple(kept), line
