"""Tools: HTTP tools (the request, its templates, URL redaction) and built-in references."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    JsonValue,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from skills.spec._common import READ_METHODS, Loc
from skills.spec._validation import (
    ERROR_TYPE,
    HeaderName,
    HttpMethod,
    JsonSchema,
    NonEmptyStr,
    ParamName,
    ScalarStr,
    SpecModel,
    ToolName,
    _builtin_tool_name,
    custom_error,
    fail,
)
from skills.spec.approvals import Approval, ApprovalPolicy
from skills.spec.durations import describe_duration
from skills.spec.templates import Placeholder, Segment, parse_template, template_strings

SENSITIVE_NAME: Final = re.compile(
    r"auth|token|secret|password|passwd|key|cookie|signature|session|credential", re.I
)
REDACTED: Final = "<redacted>"
UNRESOLVED_URLS: Final = "skills.spec.unresolved"  # validation context key


def _is_only_placeholder(value: str) -> bool:
    try:
        segments = parse_template(value)
    except ValueError:
        return False
    return len(segments) == 1 and isinstance(segments[0], Placeholder)


def _fixed_text(value: str) -> str | None:
    """The text a template always renders to (braces unescaped), or None if it has
    placeholders (or is malformed)."""
    try:
        segments = parse_template(value)
    except ValueError:
        return None
    if any(isinstance(segment, Placeholder) for segment in segments):
        return None
    return "".join(str(segment) for segment in segments)


_AUTHORITY_END_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*[/?#]")


def _authority_is_literal(segments: Sequence[Segment]) -> bool:
    """True when scheme, host and port all come before the first placeholder (and so are
    fixed): the literal text up to it must already reach the ``/``, ``?`` or ``#`` after
    the authority."""
    prefix: list[str] = []
    for segment in segments:
        if isinstance(segment, Placeholder):
            return _AUTHORITY_END_RE.match("".join(prefix)) is not None
        prefix.append(segment)
    return True


_USERINFO_RE: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")
_QUERY_PAIR_RE: Final = re.compile(r"([?&])([^=&#]+)=([^&#]*)")
_TOKEN_SEGMENT_RE: Final = re.compile(
    r"(?<=/)(?=[^/?#]*\d)(?=[^/?#]*[A-Za-z])[A-Za-z0-9_-]{20,}(?=[/?#]|$)"
)


def redact_url(url: str) -> str:
    """A URL (or URL template) for display: credentials in the user-info, values of
    credential-like query parameters and token-like path segments (20+ letters and digits,
    such as a webhook secret) become ``<redacted>``; ``${VAR}`` and ``{param}`` stay."""
    url = _USERINFO_RE.sub(lambda m: m.group(1) + REDACTED + "@", url)

    def query(match: re.Match[str]) -> str:
        sep, name, value = match.groups()
        if SENSITIVE_NAME.search(name) and value and not value.startswith(("${", "{")):
            return f"{sep}{name}={REDACTED}"
        return match.group(0)

    base, mark, rest = url.partition("?")
    base = _TOKEN_SEGMENT_RE.sub(REDACTED, base)
    return base + (_QUERY_PAIR_RE.sub(query, mark + rest) if mark else "")


class HttpSpec(SpecModel):
    """The request an HTTP tool makes. Strings are templates: ``{param}`` fills at call time.

    Values may hold secrets expanded from the environment. ``repr`` and ``redacted_dict``
    show the spec's ``${VAR}`` text instead, and hide literal values of sensitive-looking
    headers and keys; only ``render_request`` uses the real values.
    """

    method: HttpMethod
    url: NonEmptyStr
    headers: dict[HeaderName, ScalarStr] = Field(default_factory=dict)
    body: JsonValue = Field(default=None, alias="json")
    query: dict[NonEmptyStr, ScalarStr] = Field(default_factory=dict)
    timeout: Annotated[float, Field(gt=0)] | None = None

    # Path within this block -> the string as written, before ${ENV} expansion.
    _templates: dict[Loc, str] = PrivateAttr(default_factory=dict)
    # The values the environment supplied to this block: secrets wherever they appear.
    _secrets: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def secrets(self) -> frozenset[str]:
        """Values that must never be shown, logged or returned to the model: every value
        expanded from the environment, and literal values of sensitive-looking headers,
        query parameters and JSON keys (``X-Api-Key: hardcoded``)."""
        found = set(self._secrets)
        for loc, name, value in self._named_strings():
            fixed = _fixed_text(value)
            if loc in self._templates and fixed is not None:
                found.add(fixed)  # "Bearer ${TOKEN}" as sent, not only the token
            elif SENSITIVE_NAME.search(name) and not _is_only_placeholder(value):
                found.add(fixed if fixed is not None else value)
        return frozenset(value for value in found if value)

    def _named_strings(self) -> Iterator[tuple[Loc, str, str]]:
        for name, value in self.headers.items():
            yield ("headers", name), name, value
        for name, value in self.query.items():
            yield ("query", name), name, value
        for loc, value in template_strings(self.body, ("json",)):
            key = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
            yield loc, key, value

    @property
    def is_write(self) -> bool:
        """Anything but GET/HEAD changes something and needs an approval decision."""
        return self.method not in READ_METHODS

    def templated_strings(self) -> Iterator[tuple[Loc, str]]:
        """Every call-time template in the block, with its location (``("url",)`` …)."""
        yield ("url",), self.url
        for name, value in self.headers.items():
            yield ("headers", name), value
        for name, value in self.query.items():
            yield ("query", name), value
        yield from template_strings(self.body, ("json",))

    def display_url(self) -> str:
        """The URL as written in the spec (``${CRM_URL}/orders/{order_id}``) with anything
        that looks like a credential redacted: safe to show."""
        return redact_url(self._templates.get(("url",), self.url))

    def redacted_dict(self) -> dict[str, Any]:
        """The block as plain data with secrets replaced; for ``skills show`` and logs."""
        data: dict[str, Any] = {"method": self.method, "url": self.display_url()}
        if self.headers:
            data["headers"] = {
                name: self._shown(("headers", name), name, value)
                for name, value in self.headers.items()
            }
        if self.query:
            data["query"] = {
                name: self._shown(("query", name), name, value)
                for name, value in self.query.items()
            }
        if self.body is not None:
            data["json"] = self._redact_json(self.body, ("json",), "")
        if self.timeout is not None:
            data["timeout"] = self.timeout
        return data

    def _shown(self, loc: Loc, name: str, value: str) -> str:
        if loc in self._templates:
            return self._templates[loc]
        if SENSITIVE_NAME.search(name) and not _is_only_placeholder(value):
            return REDACTED
        return value

    def _redact_json(self, value: JsonValue, loc: Loc, name: str) -> JsonValue:
        if isinstance(value, str):
            return self._shown(loc, name, value)
        if isinstance(value, dict):
            return {k: self._redact_json(v, (*loc, k), k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact_json(v, (*loc, i), name) for i, v in enumerate(value)]
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        shown = self.redacted_dict()
        for name, info in type(self).model_fields.items():
            key = info.alias or name
            yield name, shown[key] if key in shown else getattr(self, name)

    @model_validator(mode="after")
    def _templates_are_well_formed(self, info: ValidationInfo) -> HttpSpec:
        problems: list[tuple[Loc, str]] = []
        # The loader lists URLs that used an unset variable: that is reported already.
        unresolved = (info.context or {}).get(UNRESOLVED_URLS, ())
        for loc, text in self.templated_strings():
            try:
                parse_template(text)
            except ValueError as exc:
                problems.append((loc, str(exc)))
        if not problems and self.url not in unresolved:
            segments = parse_template(self.url)
            sample = "".join(s if isinstance(s, str) else "x" for s in segments)
            parts = urlsplit(sample)
            if not _authority_is_literal(segments):
                problems.append(
                    (
                        ("url",),
                        "placeholders may only fill the path, query or fragment: the scheme, "
                        "host and port must be fixed in the spec (a model-chosen host could "
                        "send this tool's credentials anywhere)",
                    )
                )
            elif parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append((("url",), "must be an absolute http:// or https:// URL"))
        if problems:
            fail(problems, self)
        return self


class HttpToolSpec(SpecModel):
    """A tool the model may call, implemented as one HTTP request."""

    # Field order matters: validators below read earlier fields from ``info.data``.
    name: ToolName
    description: NonEmptyStr
    parameters: dict[ParamName, JsonSchema] = Field(default_factory=dict)
    required: list[str] | None = None
    http: HttpSpec
    approval: Approval | None = Field(default=None, validate_default=True)

    @property
    def is_write(self) -> bool:
        return self.http.is_write

    @property
    def required_parameters(self) -> list[str]:
        """``required`` if given, else every declared parameter."""
        return list(self.parameters) if self.required is None else list(self.required)

    @property
    def approval_policy(self) -> ApprovalPolicy | None:
        """The policy to enforce, or None when calls run without approval."""
        return self.approval if isinstance(self.approval, ApprovalPolicy) else None

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments object: what the model sees and calls must fit."""
        return {
            "type": "object",
            "properties": dict(self.parameters),
            "required": self.required_parameters,
            "additionalProperties": False,
        }

    def display_url(self) -> str:
        return self.http.display_url()

    def describe(self) -> str:
        """One line for people: ``issue_refund  POST ${CRM_URL}/refunds  approval: …``."""
        line = f"{self.name}  {self.http.method} {self.display_url()}"
        policy = self.approval_policy
        if policy is not None:
            approvers = ", ".join([*policy.approvers.users, *policy.approvers.usergroups])
            line += (
                f"  approval: {policy.quorum} of {approvers}, expires in "
                f"{describe_duration(policy.expires_in)}"
                + ("" if policy.four_eyes else ", requester may approve")
                + (", editable" if policy.allow_edit else "")
            )
        elif self.approval == "none":
            line += "  approval: none"
        return line

    def redacted_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.parameters:
            data["parameters"] = dict(self.parameters)
        if self.required is not None:
            data["required"] = list(self.required)
        data["http"] = self.http.redacted_dict()
        if self.approval is not None:
            data["approval"] = (
                self.approval
                if isinstance(self.approval, str)
                else self.approval.model_dump(mode="json")
            )
        return data

    @field_validator("required")
    @classmethod
    def _required_are_declared(
        cls, value: list[str] | None, info: ValidationInfo
    ) -> list[str] | None:
        declared = info.data.get("parameters")
        if value is None or declared is None:
            return value
        problems = [
            ((index,), f"{name!r} is not a declared parameter")
            for index, name in enumerate(value)
            if name not in declared
        ]
        if problems:
            fail(problems, value)
        return value

    @field_validator("http")
    @classmethod
    def _placeholders_are_declared(cls, value: HttpSpec, info: ValidationInfo) -> HttpSpec:
        declared = info.data.get("parameters")
        if declared is None:
            return value  # parameters already failed; don't pile on
        problems = []
        for loc, text in value.templated_strings():
            unknown = [
                s.name
                for s in parse_template(text)
                if isinstance(s, Placeholder) and s.name not in declared
            ]
            for name in dict.fromkeys(unknown):
                known = ", ".join(declared) or "none"
                problems.append(
                    (loc, f"placeholder {{{name}}} is not a declared parameter (declared: {known})")
                )
        if problems:
            fail(problems, value)
        return value

    @field_validator("approval")
    @classmethod
    def _writes_need_approval(cls, value: Any, info: ValidationInfo) -> Any:
        http = info.data.get("http")
        if value is None and isinstance(http, HttpSpec) and http.is_write:
            raise custom_error(f"required for {http.method} tools (or write `approval: none`)")
        return value


class BuiltinToolRef(SpecModel):
    """A tool the runtime implements, referenced by name (``use: slack.read_thread``)."""

    use: Annotated[str, AfterValidator(_builtin_tool_name)]


def _tool_kind(value: Any) -> str | None:
    if isinstance(value, BuiltinToolRef) or (isinstance(value, dict) and "use" in value):
        return "<builtin>"
    if isinstance(value, dict | HttpToolSpec):
        return "<http>"
    return None


ToolSpec = Annotated[
    Annotated[BuiltinToolRef, Tag("<builtin>")] | Annotated[HttpToolSpec, Tag("<http>")],
    Discriminator(
        _tool_kind,
        custom_error_type=ERROR_TYPE,
        custom_error_message="expected a mapping: `use: <built-in tool>` or an HTTP tool",
    ),
]
UNION_TAGS: Final = frozenset({"<builtin>", "<http>", "<policy>", "<none>"})


def tool_key(item: Any) -> tuple[str, str] | None:
    """("name"|"use", value) identifying a raw or validated tool, for duplicate checks."""
    if isinstance(item, BuiltinToolRef):
        return "use", item.use
    if isinstance(item, HttpToolSpec):
        return "name", item.name
    if isinstance(item, dict):
        for key in ("use", "name"):
            if isinstance(item.get(key), str):
                return key, item[key]
    return None
