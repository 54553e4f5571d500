"""Rendering an HTTP tool call: arguments checked against its schema, templates filled."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote

import jsonschema
from pydantic import JsonValue

from skills.spec.errors import ToolArgumentsError
from skills.spec.templates import Placeholder, parse_template
from skills.spec.tools import REDACTED, HttpToolSpec


@dataclass(frozen=True)
class RenderedRequest:
    """A concrete HTTP request for one tool call. ``repr`` hides header values."""

    method: str
    url: str
    headers: dict[str, str]
    json: JsonValue
    params: dict[str, str]
    timeout: float | None = None

    def __repr__(self) -> str:
        headers = dict.fromkeys(self.headers, REDACTED)
        return (
            f"RenderedRequest(method={self.method!r}, url={self.url!r}, headers={headers!r}, "
            f"json={self.json!r}, params={self.params!r}, timeout={self.timeout!r})"
        )


_MISSING: Final = object()


def render_request(tool: HttpToolSpec, args: Mapping[str, Any]) -> RenderedRequest:
    """Validate ``args`` against the tool's parameters and fill in its request template.

    URL placeholders are percent-encoded (``a/b c`` becomes ``a%2Fb%20c``). A JSON string
    that is exactly ``"{amount}"`` becomes the argument itself, keeping its type; other
    strings interpolate. An optional argument that was not given leaves out the JSON key,
    header or query parameter that consists of only its placeholder, and is empty elsewhere.
    Raises ``ToolArgumentsError`` when the arguments do not fit the schema.
    """
    values = _checked_arguments(tool, args)
    http = tool.http
    headers: dict[str, str] = {}
    for name, template in http.headers.items():
        header = _render_exact(template, values)
        if header is _MISSING:
            continue
        text = _text(header).strip()  # HTTP forbids leading/trailing whitespace in values
        if "\r" in text or "\n" in text:
            raise ToolArgumentsError(tool.name, [f"header {name} may not contain line breaks"])
        if not text or text.lower() in {"bearer", "basic", "token"}:
            continue  # an unset secret (e.g. "Bearer ${CRM_TOKEN:-}"): send no header at all
        headers[name] = text
    params = {
        name: _text(value)
        for name, template in http.query.items()
        if (value := _render_exact(template, values)) is not _MISSING
    }
    body = _render_json(http.body, values)
    return RenderedRequest(
        method=http.method,
        url=_render_url(tool.name, http.url, values),
        headers=headers,
        json=None if body is _MISSING else body,
        params=params,
        timeout=http.timeout,
    )


def _checked_arguments(tool: HttpToolSpec, args: Mapping[str, Any]) -> dict[str, Any]:
    schema = tool.json_schema()
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(dict(args)), key=lambda e: list(e.absolute_path))
    if errors:
        raise ToolArgumentsError(
            tool.name,
            [
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                if e.absolute_path
                else e.message
                for e in errors
            ],
        )
    values = dict(args)
    for name, prop in tool.parameters.items():
        if name not in values and isinstance(prop, dict) and "default" in prop:
            values[name] = prop["default"]
    return values


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _render_string(template: str, values: Mapping[str, Any]) -> str:
    out = []
    for segment in parse_template(template):
        if isinstance(segment, str):
            out.append(segment)
        elif segment.name in values:
            out.append(_text(values[segment.name]))
    return "".join(out)


def _render_url(tool: str, template: str, values: Mapping[str, Any]) -> str:
    """The URL with percent-encoded arguments. An argument in the path that is, or decodes
    to, a ``.`` or ``..`` segment is refused: HTTP clients and servers collapse those, so
    ``/orders/{id}`` with ``..`` would reach another resource than the spec names."""
    out: list[str] = []
    in_path = True
    for segment in parse_template(template):
        if isinstance(segment, str):
            out.append(segment)
            in_path = in_path and not any(mark in segment for mark in "?#")
        elif segment.name in values:
            text = _text(values[segment.name])
            if in_path and _has_dot_segment(text):
                raise ToolArgumentsError(
                    tool, [f"{segment.name}: may not be or contain a '.' or '..' path segment"]
                )
            out.append(quote(text, safe=""))
    return "".join(out)


def _has_dot_segment(text: str) -> bool:
    for _ in range(3):  # %2e%2e, and %252e%252e for servers that decode twice
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return any(part in {".", ".."} for part in re.split(r"[/\\]", text))


def _render_exact(template: str, values: Mapping[str, Any]) -> Any:
    """The typed value for a lone ``{name}``, _MISSING if it was not given, else a string."""
    segments = parse_template(template)
    if len(segments) == 1 and isinstance(segments[0], Placeholder):
        return values.get(segments[0].name, _MISSING)
    return _render_string(template, values)


def _render_json(value: JsonValue, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _render_exact(value, values)
    if isinstance(value, dict):
        rendered = {key: _render_json(item, values) for key, item in value.items()}
        return {key: item for key, item in rendered.items() if item is not _MISSING}
    if isinstance(value, list):
        items = [_render_json(item, values) for item in value]
        return [item for item in items if item is not _MISSING]
    return value
