"""Line-aware YAML loading for skill specs.

PyYAML's ``safe_load`` forgets where things were. Skill spec errors must name the line, so
this module composes the node tree first, records the line of every mapping key and
sequence item under its path (``("tools", 1, "approval")``), and only then constructs the
plain Python data. Duplicate mapping keys, which PyYAML silently collapses to the last one,
are reported as problems instead of being lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

Path = tuple[str | int, ...]
"""Where a value sits in the document: mapping keys and sequence indexes from the root."""

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
# Aliases let a tiny file describe an enormous tree ("billion laughs"); a skill spec never
# needs more than a few thousand nodes.
_MAX_NODES: Final = 50_000


class YamlSyntaxError(Exception):
    """The text is not YAML (or not a single YAML document); ``line`` is 1-based or None."""

    def __init__(self, message: str, *, line: int | None) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass(frozen=True)
class YamlProblem:
    """Something legal for PyYAML but wrong for us, such as a duplicate key."""

    path: Path
    line: int
    message: str


@dataclass(frozen=True)
class LineMappedDocument:
    """Plain data (dicts, lists, scalars) plus the 1-based line of each path."""

    data: Any
    lines: Mapping[Path, int]
    problems: list[YamlProblem] = field(default_factory=list)

    def line_for(self, path: Path) -> int | None:
        """The line of ``path`` or, when it has none (a missing key), of its nearest parent."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def load_yaml(text: str) -> LineMappedDocument:
    """Parse one YAML document with the safe loader, keeping the line of every path.

    Raises ``YamlSyntaxError`` for malformed YAML, several documents or absurd alias fan-out.
    An empty document gives ``data=None``.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return LineMappedDocument(data=None, lines={})
        lines: dict[Path, int] = {(): node.start_mark.line + 1}
        problems: list[YamlProblem] = []
        _LineRecorder(loader, lines, problems).visit(node, ())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise YamlSyntaxError(_describe(exc), line=_line_of(exc)) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), line=None) from exc
    finally:
        loader.dispose()
    return LineMappedDocument(data=data, lines=lines, problems=problems)


class _LineRecorder:
    """Walks a composed node tree, filling ``lines`` and noting duplicate keys."""

    def __init__(
        self, loader: yaml.SafeLoader, lines: dict[Path, int], problems: list[YamlProblem]
    ) -> None:
        self._loader = loader
        self._lines = lines
        self._problems = problems
        self._visited = 0
        self._active: set[int] = set()  # node ids on the current branch (recursive anchors)

    def visit(self, node: yaml.Node, path: Path) -> None:
        self._visited += 1
        if self._visited > _MAX_NODES:
            raise YamlSyntaxError(
                f"document too large (more than {_MAX_NODES} nodes; check for alias loops)",
                line=node.start_mark.line + 1,
            )
        if id(node) in self._active:
            return
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                self._visit_mapping(node, path)
            elif isinstance(node, yaml.SequenceNode):
                for index, item in enumerate(node.value):
                    self._lines[(*path, index)] = item.start_mark.line + 1
                    self.visit(item, (*path, index))
        finally:
            self._active.discard(id(node))

    def _visit_mapping(self, node: yaml.MappingNode, path: Path) -> None:
        seen: set[object] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue  # merged keys keep their parent's line; complex keys never validate
            key = self._loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str | int):
                key = str(key)
            if key in seen:
                self._problems.append(
                    YamlProblem(path=(*path, key), line=line, message=f"duplicate key {key!r}")
                )
                continue
            seen.add(key)
            self._lines[(*path, key)] = line
            self.visit(value_node, (*path, key))


def _line_of(exc: yaml.MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else None


def _describe(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "malformed YAML"
    if exc.context:
        return f"invalid YAML: {problem} ({exc.context})"
    return f"invalid YAML: {problem}"
