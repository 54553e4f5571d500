"""Call-time templates: ``{param}`` placeholders and ``{{``/``}}`` literal braces."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from pydantic import JsonValue

from skills.spec._common import Loc

# Strings under ``http`` are call-time templates: ``{name}`` is a parameter, ``{{``/``}}``
# are literal braces. Values coming from the environment are brace-escaped on the way in,
# so a token that happens to contain ``{`` is never mistaken for a placeholder.


@dataclass(frozen=True)
class Placeholder:
    name: str


Segment = str | Placeholder
_TEMPLATE_RE: Final = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


@functools.lru_cache(maxsize=1024)
def parse_template(text: str) -> tuple[Segment, ...]:
    """Split a call-time template into literal text and placeholders; ValueError if bad."""
    segments: list[Segment] = []
    literal: list[str] = []
    position = 0
    for match in _TEMPLATE_RE.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif match.group(1) is not None:
            segments.append("".join(literal))
            literal = []
            segments.append(Placeholder(match.group(1)))
        else:
            raise ValueError(
                f"unmatched {token!r} at position {match.start()}; "
                "write {name} for a parameter or {{ and }} for literal braces"
            )
    literal.append(text[position:])
    segments.append("".join(literal))
    return tuple(segment for segment in segments if segment != "")


def template_strings(value: JsonValue, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every string in a JSON-like value, with its location."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from template_strings(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from template_strings(item, (*loc, index))


def escape_braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")
