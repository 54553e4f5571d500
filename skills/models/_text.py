"""Pure text helpers behind the offline model: commands, transcripts, keyword scores.

Everything here is deterministic and free of langchain types so it can be tested and
reasoned about on its own: same input, same output, no clock, no randomness.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ToolSpec",
    "TranscriptLine",
    "coerce_value",
    "estimate_tokens",
    "extract_transcript",
    "find_tool_command",
    "first_sentence",
    "keyword_scores",
    "truncate",
]


def estimate_tokens(text: str) -> int:
    """A rough token count (four characters per token) so run records carry numbers."""
    return len(text) // 4


def truncate(text: str, limit: int) -> str:
    """Shorten `text` to at most `limit` characters, marking the cut with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of `text` (or its first `limit` characters)."""
    text = " ".join(text.split())
    match = re.search(r"(?<=[.!?])\s", text)
    return truncate(text[: match.start()] if match else text, limit)


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the offline model needs to know about a bound tool."""

    name: str
    description: str
    properties: Mapping[str, Any]
    required: tuple[str, ...]

    @classmethod
    def from_openai(cls, tool: Mapping[str, Any]) -> ToolSpec:
        """Build from an OpenAI-format tool (`{"type": "function", "function": {...}}`)."""
        function = tool.get("function", tool)
        parameters = function.get("parameters") or {}
        return cls(
            name=str(function["name"]),
            description=str(function.get("description") or ""),
            properties=dict(parameters.get("properties") or {}),
            required=tuple(parameters.get("required") or ()),
        )

    def usage(self) -> str:
        """An example invocation, e.g. `lookup_order order_id=...`."""
        names = list(self.required) or list(self.properties)[:2]
        return " ".join([self.name, *(f"{name}=..." for name in names)])


# A `key=value` pair; the value may be "double", 'single' or “curly” quoted.
_PAIR = re.compile(
    r"""(?<![\w.-])(?P<key>[A-Za-z_][\w-]*)=(?:
        "(?P<dq>(?:[^"\\]|\\.)*)"
      | '(?P<sq>(?:[^'\\]|\\.)*)'
      | “(?P<cq>[^”]*)”
      | (?P<bare>[^\s"'“”]+)
    )""",
    re.VERBOSE,
)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _parse_pairs(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for match in _PAIR.finditer(text):
        if match.group("bare") is not None:
            value = match.group("bare")
        elif match.group("cq") is not None:
            value = match.group("cq")
        else:
            value = _unescape(match.group("dq") or match.group("sq") or "")
        pairs[match.group("key")] = value
    return pairs


_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}


def _schema_types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [str(k) for k in kind]
    found: list[str] = []
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key) or ():
            if isinstance(option, Mapping):
                found.extend(_schema_types(option))
    return found


def coerce_value(raw: str, schema: Mapping[str, Any]) -> Any:
    """Convert a command-line string to the JSON type its schema asks for.

    Values that do not fit stay strings, so the tool's own validation reports the problem
    to the user rather than the offline model guessing.
    """
    types = _schema_types(schema)
    if "null" in types and raw.lower() in {"null", "none"}:
        return None
    for kind in types:
        if kind == "integer" and re.fullmatch(r"[+-]?\d+", raw):
            return int(raw)
        if kind == "number" and re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", raw):
            return int(raw) if re.fullmatch(r"[+-]?\d+", raw) else float(raw)
        if kind == "boolean" and raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        if kind in {"array", "object"} and raw[:1] in {"[", "{"}:
            try:
                return json.loads(raw)
            except ValueError:
                continue
        if kind == "array":
            return [part for part in raw.split(",") if part]
    return raw


def find_tool_command(
    text: str, tools: Sequence[ToolSpec]
) -> tuple[ToolSpec, dict[str, Any]] | None:
    """Find `tool_name key=value …` in `text` for one of `tools`.

    A tool named with at least one `key=value` after it is a command; so is a tool that
    needs no arguments when its name is the whole request. The earliest match wins.
    """
    best: tuple[int, ToolSpec, dict[str, Any]] | None = None
    for tool in tools:
        pattern = re.compile(rf"(?<![\w.-]){re.escape(tool.name)}(?![\w-])")
        for match in pattern.finditer(text):
            rest = text[match.end() :]
            pairs = _parse_pairs(rest)
            bare_call = not tool.required and not rest.strip(" \t\n.!?")
            if not pairs and not bare_call:
                continue
            args = {
                key: coerce_value(value, tool.properties.get(key) or {})
                for key, value in pairs.items()
            }
            if best is None or match.start() < best[0]:
                best = (match.start(), tool, args)
            break
    return None if best is None else (best[1], best[2])


# --------------------------------------------------------------------------- transcripts


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One message of a conversation found in the model's context."""

    speaker: str
    text: str


# `[10:02] alice: text`, `- <@U012AB>: text`, `2024-05-01 10:02 Bob Smith: text`, …
_LINE = re.compile(
    r"""^\s*(?:[-*•>]\s+)?
    (?:\[[^\]\n]{1,40}\]\s*|\d{4}-\d{2}-\d{2}[T ][\d:.]+Z?\s+|\d{1,2}:\d{2}(?::\d{2})?\s+)?
    (?P<speaker><@[A-Z0-9]+(?:\|[^>]*)?>|@?[A-Za-z][\w.-]*(?:\ [A-Z][\w.-]*){0,2})
    \s*:\s+(?P<text>\S.*?)\s*$""",
    re.VERBOSE,
)


def _json_lines(text: str) -> list[TranscriptLine]:
    """Slack-like JSON: a list of `{"user"/"speaker"/"author": …, "text": …}` objects."""
    stripped = text.strip()
    if not stripped.startswith(("[", "{")):
        return []
    try:
        data = json.loads(stripped)
    except ValueError:
        return []
    if isinstance(data, dict):
        data = data.get("messages")
    if not isinstance(data, list):
        return []
    lines = []
    for item in data:
        if isinstance(item, dict) and isinstance(item.get("text"), str) and item["text"].strip():
            speaker = next(
                (str(item[k]) for k in ("user_name", "user", "speaker", "author") if item.get(k)),
                "someone",
            )
            lines.append(TranscriptLine(speaker=speaker, text=item["text"].strip()))
    return lines


def extract_transcript(texts: Iterable[str], *, minimum: int = 2) -> list[TranscriptLine]:
    """The conversation lines found in `texts`, in order.

    A text counts as a transcript only when it holds at least `minimum` message lines, so a
    stray `Note: …` in a prompt is not taken for a conversation.
    """
    found: list[TranscriptLine] = []
    for text in texts:
        lines = _json_lines(text)
        if not lines:
            for raw in text.splitlines():
                match = _LINE.match(raw)
                if match:
                    lines.append(TranscriptLine(match.group("speaker"), match.group("text")))
        if len(lines) >= minimum:
            found.extend(lines)
    return found


# --------------------------------------------------------------------------- routing

# Words too common to say anything about which skill is meant.
_STOPWORDS = frozenset(
    """a about all also an and any are as at be been but by can could do does for from get
    has have help how i if in into is it its me my need of on or our please should so some
    than that the their them then there these they this to up us use want was we what when
    where which who why will with would you your""".split()  # noqa: SIM905
)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _words(text: str) -> set[str]:
    text = re.sub(r"<[@#!][^>]*>", " ", text.lower())
    return {_stem(w) for w in re.findall(r"[a-z0-9]+", text) if w not in _STOPWORDS and len(w) > 2}


def _related(a: str, b: str) -> bool:
    if a == b:
        return True
    prefix = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        prefix += 1
    return prefix >= 5


def keyword_scores(text: str, candidates: Mapping[str, str]) -> dict[str, int]:
    """Score each candidate by how well `text` matches its name and description.

    Naming a candidate outright scores 10, each word of its name 3, each description word
    1 (words match on a crude stem or a shared five-letter prefix).
    """
    lowered = text.lower()
    words = _words(text)
    scores: dict[str, int] = {}
    for name, description in candidates.items():
        score = 0
        if re.search(rf"(?<![\w-]){re.escape(name.lower())}(?![\w-])", lowered):
            score += 10
        name_words = _words(name.replace("_", " ").replace("-", " "))
        score += 3 * sum(1 for n in name_words if any(_related(n, w) for w in words))
        score += sum(1 for d in _words(description) if any(_related(d, w) for w in words))
        scores[name] = score
    return scores
