"""Text normalization for PII detection, with a map back to the original positions.

Card numbers and e-mails reach us in spellings a plain pattern misses: full-width or
Arabic-Indic digits, zero-width spaces between digit groups, JSON escapes (``\\u0034``
for ``4``), soft hyphens. `normalize` rewrites such text into one spelling (NFKC, every
Unicode decimal digit as ASCII, zero-width and soft-hyphen characters removed, one level of
JSON string escapes decoded — repeated for text escaped more than once) and keeps a map, so
a match found in the normalized text can be replaced in the original.

Plain ASCII text without a backslash — nearly every message — is returned as is, with no
map, at the cost of two C-level scans.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

__all__ = ["Normalized", "normalize"]

#: Characters that render as nothing (or only at a line break) and split digit groups
#: invisibly: zero-width space/joiners, word joiner, BOM, soft hyphen, Mongolian vowel
#: separator, invisible operators.
ZERO_WIDTH: Final = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u2061\u2062\u2063\u2064")

_ESCAPES: Final = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "/": "/",
    "\\": "\\",
    '"': '"',
    "b": "",
    "f": "",
}
# Non-ASCII runs, and JSON string escapes.
_SPECIAL = re.compile(r'[^\x00-\x7f]++|\\(?:u[0-9a-fA-F]{4}|[nrt/\\"bf])')
_NON_ASCII_DIGIT = re.compile(r"\d")
_MAX_PASSES: Final = 3


@lru_cache(maxsize=4096)
def _char(char: str) -> str:
    """One character in its detection spelling."""
    if char in ZERO_WIDTH:
        return ""
    digit = unicodedata.decimal(char, None)
    if digit is not None:
        return str(digit)
    return unicodedata.normalize("NFKC", char)


def _run_is_plain(run: str) -> bool:
    return (
        unicodedata.is_normalized("NFKC", run)
        and _NON_ASCII_DIGIT.search(run) is None
        and not any(char in ZERO_WIDTH for char in run)
    )


@dataclass(frozen=True, slots=True)
class _Layer:
    """One rewriting pass: piece ``i`` is ``orig[o_starts[i]:o_ends[i]]`` written as
    ``text[n_starts[i]:n_starts[i+1]]``; ``same[i]`` says it was copied unchanged."""

    n_starts: list[int]
    o_starts: list[int]
    o_ends: list[int]
    same: list[bool]

    def start(self, pos: int) -> int:
        index = bisect_right(self.n_starts, pos) - 1
        if self.same[index]:
            return self.o_starts[index] + (pos - self.n_starts[index])
        return self.o_starts[index]

    def end(self, pos: int) -> int:
        """Original end of a span ending (exclusive) at normalized ``pos`` > 0."""
        index = bisect_right(self.n_starts, pos - 1) - 1
        if self.same[index]:
            return self.o_starts[index] + (pos - self.n_starts[index])
        return self.o_ends[index]


@dataclass(frozen=True, slots=True)
class Normalized:
    """``text`` is the normalized spelling of ``original``; `span` maps positions back."""

    original: str
    text: str
    layers: tuple[_Layer, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.layers)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span behind ``text[start:end]`` (a non-empty span)."""
        for layer in reversed(self.layers):
            start, end = layer.start(start), layer.end(end)
        return start, end


def _pass(text: str) -> tuple[str, _Layer] | None:
    parts: list[str] = []
    n_starts: list[int] = []
    o_starts: list[int] = []
    o_ends: list[int] = []
    same: list[bool] = []
    length = 0
    cursor = 0
    changed = False

    def piece(out: str, o_start: int, o_end: int, unchanged: bool) -> None:
        nonlocal length
        if unchanged and same and same[-1] and o_ends[-1] == o_start:
            o_ends[-1] = o_end  # extend the previous copied piece
        else:
            n_starts.append(length)
            o_starts.append(o_start)
            o_ends.append(o_end)
            same.append(unchanged)
        parts.append(out)
        length += len(out)

    for match in _SPECIAL.finditer(text):
        segment = match.group()
        if segment in ZERO_WIDTH:  # the common attack: one invisible character per gap
            if match.start() > cursor:
                piece(text[cursor : match.start()], cursor, match.start(), True)
            piece("", match.start(), match.end(), False)
            changed = True
            cursor = match.end()
            continue
        if segment[0] != "\\" and _run_is_plain(segment):
            continue
        if match.start() > cursor:
            piece(text[cursor : match.start()], cursor, match.start(), True)
        if segment[0] == "\\":
            decoded = chr(int(segment[2:], 16)) if segment[1] == "u" else _ESCAPES[segment[1]]
            piece(_char(decoded) if decoded else "", match.start(), match.end(), False)
        else:
            for offset, char in enumerate(segment):
                out = _char(char)
                position = match.start() + offset
                piece(out, position, position + 1, out == char)
        changed = True
        cursor = match.end()
    if not changed:
        return None
    if cursor < len(text):
        piece(text[cursor:], cursor, len(text), True)
    # A sentinel piece so that a span ending at the very end maps correctly.
    n_starts.append(length)
    o_starts.append(len(text))
    o_ends.append(len(text))
    same.append(True)
    return "".join(parts), _Layer(n_starts, o_starts, o_ends, same)


def normalize(text: str) -> Normalized:
    """``text`` in detection spelling, with the map back (see the module docstring)."""
    if text.isascii() and "\\" not in text:
        return Normalized(text, text)
    layers: list[_Layer] = []
    current = text
    for _ in range(_MAX_PASSES):
        result = _pass(current)
        if result is None:
            break
        current, layer = result
        layers.append(layer)
        if current.isascii() and "\\" not in current:
            break
    return Normalized(text, current, tuple(layers))
