"""Skill specs: the YAML contract, its validation, and request rendering for HTTP tools.

A skill spec is a YAML file (see "Skill spec (contract)" in the design notes). Loading one:

1. parses the YAML, remembering the line of every key (``skills._yaml``);
2. expands ``${ENV}`` references from an explicit ``env`` mapping (never ``os.environ``
   implicitly), in every string except the text the model reads (name, description,
   instructions, tool parameters), so secrets can only reach HTTP requests;
3. validates the result with the pydantic models below and reports *every* problem as a
   ``SpecIssue`` such as ``refunds.yaml:14 tools[1].approval: required for POST tools``.

At call time ``render_request`` checks a tool's arguments against its JSON Schema and fills
the ``{param}`` placeholders of its URL, headers, query and JSON body.

Exceptions::

    SpecError                 base of everything raised here
    ├── SpecValidationError   one or more spec files are invalid; ``.issues`` lists them all
    └── ToolArgumentsError    a tool call's arguments do not match the tool's parameters
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NoReturn
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import jsonschema
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    PlainSerializer,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from skills._yaml import LineMappedDocument, YamlSyntaxError, load_yaml

__all__ = [
    "BUILTIN_TOOLS",
    "Access",
    "ApprovalPolicy",
    "Approvers",
    "Budget",
    "BuiltinToolRef",
    "HttpSpec",
    "HttpToolSpec",
    "LoadResult",
    "McpServerSpec",
    "McpToolRef",
    "Memory",
    "RenderedRequest",
    "Rollout",
    "SkillSpec",
    "SpecError",
    "SpecIssue",
    "SpecValidationError",
    "ToolArgumentsError",
    "ToolSpec",
    "builtin_dir",
    "check_paths",
    "format_duration",
    "load_spec_dirs",
    "load_spec_file",
    "load_spec_text",
    "parse_duration",
    "redact_url",
    "render_request",
    "validate_paths",
]

BUILTIN_TOOLS: Final = frozenset(
    {"slack.read_thread", "slack.read_channel", "slack.user_info", "time.now"}
)
"""Tools a spec may reference with ``use:``; the runtime provides their implementations."""

READ_METHODS: Final = frozenset({"GET", "HEAD"})

Loc = tuple[str | int, ...]


# --------------------------------------------------------------------------- exceptions


class SpecError(Exception):
    """Base class for skill spec errors."""


@dataclass(frozen=True)
class SpecIssue:
    """One problem in one spec file, printed as ``file:line field: message``."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where} {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecValidationError(SpecError):
    """A spec (or several) failed to load; ``issues`` holds every problem found."""

    def __init__(self, issues: Sequence[SpecIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class ToolArgumentsError(SpecError):
    """A tool call's arguments do not satisfy the tool's parameter schema.

    The message is meant for the model, so it can correct the call.
    """

    def __init__(self, tool: str, problems: Sequence[str]) -> None:
        self.tool = tool
        self.problems = list(problems)
        super().__init__(f"invalid arguments for {tool}: " + "; ".join(self.problems))


# --------------------------------------------------------------------------- durations

_DURATION_RE: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_HINT: Final = "expected a duration like 7d, 4h, 30m or 90s"


def parse_duration(text: str) -> timedelta:
    """Parse ``7d``, ``4h``, ``30m``, ``90s`` or combinations such as ``1h30m``."""
    match = _DURATION_RE.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{_DURATION_HINT}, got {text!r}")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if duration <= timedelta(0):
        raise ValueError("duration must be longer than zero")
    return duration


def format_duration(duration: timedelta) -> str:
    """The compact form ``parse_duration`` reads: ``timedelta(hours=28)`` gives ``1d4h``."""
    total = int(duration.total_seconds())
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def describe_duration(duration: timedelta) -> str:
    """For people: ``timedelta(days=1)`` gives ``1 day``, ``timedelta(hours=28)`` gives
    ``1 day 4 hours`` (never ``1 day, 0:00:00``)."""
    total = int(duration.total_seconds())
    parts = []
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts) or "0 seconds"


def _to_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise _custom(_DURATION_HINT)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _custom(str(exc)) from None


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


# --------------------------------------------------------------------------- templates
#
# Strings under ``http`` are call-time templates: ``{name}`` is a parameter, ``{{``/``}}``
# are literal braces. Values coming from the environment are brace-escaped on the way in,
# so a token that happens to contain ``{`` is never mistaken for a placeholder.


@dataclass(frozen=True)
class _Placeholder:
    name: str


_Segment = str | _Placeholder
_TEMPLATE_RE: Final = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


@functools.lru_cache(maxsize=1024)
def _parse_template(text: str) -> tuple[_Segment, ...]:
    """Split a call-time template into literal text and placeholders; ValueError if bad."""
    segments: list[_Segment] = []
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
            segments.append(_Placeholder(match.group(1)))
        else:
            raise ValueError(
                f"unmatched {token!r} at position {match.start()}; "
                "write {name} for a parameter or {{ and }} for literal braces"
            )
    literal.append(text[position:])
    segments.append("".join(literal))
    return tuple(segment for segment in segments if segment != "")


def _template_strings(value: JsonValue, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every string in a JSON-like value, with its location."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _template_strings(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _template_strings(item, (*loc, index))


def _escape_braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


# --------------------------------------------------------------------------- validation helpers

_ERROR_TYPE: Final = "skill_spec"


def _custom(message: str) -> PydanticCustomError:
    return PydanticCustomError(_ERROR_TYPE, message)


def _fail(problems: Sequence[tuple[Loc, str]], value: Any) -> NoReturn:
    """Raise several errors at locations relative to the value being validated."""
    raise ValidationError.from_exception_data(
        "SkillSpec",
        [{"type": _custom(message), "loc": loc, "input": value} for loc, message in problems],
    )


def _reraise_with(
    exc: ValidationError, problems: Sequence[tuple[Loc, str]], value: Any
) -> NoReturn:
    details: list[InitErrorDetails] = [
        {
            "type": PydanticCustomError(error["type"], error["msg"]),
            "loc": error["loc"],
            "input": error["input"],
        }
        for error in exc.errors()
    ]
    details.extend({"type": _custom(m), "loc": loc, "input": value} for loc, m in problems)
    raise ValidationError.from_exception_data("SkillSpec", details)


def _non_empty(value: str) -> str:
    if not value.strip():
        raise _custom("must not be empty")
    return value


def _pattern_check(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise _custom(f"{value!r} is not a valid {what} (must match {pattern})")
        return value

    return AfterValidator(check)


def _scalar_to_str(value: Any) -> Any:
    """Let YAML numbers and booleans stand in for header and query strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _builtin_tool_name(value: str) -> str:
    if value not in BUILTIN_TOOLS:
        close = difflib.get_close_matches(value, sorted(BUILTIN_TOOLS), n=1)
        hint = (
            f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(sorted(BUILTIN_TOOLS))
        )
        raise _custom(f"unknown built-in tool {value!r}; {hint}")
    return value


@functools.cache
def _schema_meta_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        jsonschema.Draft202012Validator.META_SCHEMA,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def _json_schema(value: Any) -> dict[str, Any] | bool:
    """One entry of ``parameters``: must be a valid Draft 2020-12 JSON Schema."""
    if not isinstance(value, dict | bool):
        raise _custom("expected a JSON Schema mapping such as {type: string}")
    error = jsonschema.exceptions.best_match(_schema_meta_validator().iter_errors(value))
    if error is not None:
        at = "/".join(str(part) for part in error.absolute_path)
        raise _custom(f"invalid JSON Schema{f' at {at}' if at else ''}: {error.message}")
    return value


NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]
SkillName = Annotated[str, _pattern_check(r"[a-z][a-z0-9_-]*", "skill name")]
ToolName = Annotated[str, Field(max_length=64), _pattern_check(r"[a-z_][a-z0-9_]*", "tool name")]
ParamName = Annotated[str, _pattern_check(r"[A-Za-z_][A-Za-z0-9_]*", "parameter name")]
HeaderName = Annotated[str, _pattern_check(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", "header name")]
ScalarStr = Annotated[str, BeforeValidator(_scalar_to_str)]
VersionStr = Annotated[
    str, BeforeValidator(_scalar_to_str), AfterValidator(_non_empty), Field(max_length=64)
]
JsonSchema = Annotated[Any, AfterValidator(_json_schema)]
HttpMethod = Annotated[
    Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], BeforeValidator(_upper)
]


def _at_least_one(value: int) -> int:
    if value < 1:
        raise _custom(f"must be at least 1, got {value}")
    return value


class _Model(BaseModel):
    # strict: `four_eyes: "false"` must not quietly become True; forbid: typos are errors.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --------------------------------------------------------------------------- models


class Access(_Model):
    """Allow-lists; all empty means everyone may use the skill.

    Guest accounts (``guests``) and people from other organizations over Slack Connect
    (``external``) are refused unless the skill opts in; the allow-lists then apply to
    them too.
    """

    channels: list[NonEmptyStr] = Field(default_factory=list)
    users: list[NonEmptyStr] = Field(default_factory=list)
    usergroups: list[NonEmptyStr] = Field(default_factory=list)
    guests: bool = False
    external: bool = False


class Memory(_Model):
    """How long a conversation is remembered after its last message."""

    ttl: Duration = timedelta(days=7)


class Budget(_Model):
    """Spending limits; a skill over its budget refuses new runs until the next UTC day."""

    daily_tokens: Annotated[int, AfterValidator(_at_least_one)]


def _percent(value: Any) -> Any:
    """``10%``, ``"10"`` or ``10`` (and ``2.5%``) as a number of percent."""
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        try:
            return float(text)
        except ValueError:
            raise _custom(f"expected a share like 10%, got {value!r}") from None
    return value


Percent = Annotated[float, BeforeValidator(_percent), Field(ge=0, le=100)]


class Rollout(_Model):
    """How much of the traffic this version gets while an older one (same ``name``, no
    ``rollout``) keeps running: ``canary: 10%`` sends that share of *new* conversations to
    it, chosen by thread, so a conversation never switches version mid-way."""

    canary: Percent


class Approvers(_Model):
    """Who may approve: Slack user ids and user group ids."""

    users: list[NonEmptyStr] = Field(default_factory=list)
    usergroups: list[NonEmptyStr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _someone(self) -> Approvers:
        if not self.users and not self.usergroups:
            raise _custom("at least one approver (users or usergroups) is required")
        return self


class ApprovalPolicy(_Model):
    """Gate for a risky tool call: who approves, how many, for how long."""

    approvers: Approvers
    quorum: Annotated[int, AfterValidator(_at_least_one)] = 1
    four_eyes: bool = True
    expires_in: Duration = timedelta(hours=24)
    allow_edit: bool = False

    @model_validator(mode="after")
    def _quorum_reachable(self) -> ApprovalPolicy:
        users = len(set(self.approvers.users))
        if not self.approvers.usergroups and self.quorum > users:
            message = f"quorum {self.quorum} is unreachable: only {users} approver(s) listed"
            _fail([(("quorum",), message)], self.quorum)
        return self


def _approval_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "<none>"
    if isinstance(value, dict | ApprovalPolicy):
        return "<policy>"
    return None


Approval = Annotated[
    Annotated[ApprovalPolicy, Tag("<policy>")] | Annotated[Literal["none"], Tag("<none>")],
    Discriminator(
        _approval_kind,
        custom_error_type=_ERROR_TYPE,
        custom_error_message="expected `none` or a mapping with approvers",
    ),
]

_SENSITIVE_NAME: Final = re.compile(
    r"auth|token|secret|password|passwd|key|cookie|signature|session|credential", re.I
)
_REDACTED: Final = "<redacted>"
_UNRESOLVED_URLS: Final = "skills.spec.unresolved"  # validation context key


def _is_only_placeholder(value: str) -> bool:
    try:
        segments = _parse_template(value)
    except ValueError:
        return False
    return len(segments) == 1 and isinstance(segments[0], _Placeholder)


def _fixed_text(value: str) -> str | None:
    """The text a template always renders to (braces unescaped), or None if it has
    placeholders (or is malformed)."""
    try:
        segments = _parse_template(value)
    except ValueError:
        return None
    if any(isinstance(segment, _Placeholder) for segment in segments):
        return None
    return "".join(str(segment) for segment in segments)


_AUTHORITY_END_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*[/?#]")


def _authority_is_literal(segments: Sequence[_Segment]) -> bool:
    """True when scheme, host and port all come before the first placeholder (and so are
    fixed): the literal text up to it must already reach the ``/``, ``?`` or ``#`` after
    the authority."""
    prefix: list[str] = []
    for segment in segments:
        if isinstance(segment, _Placeholder):
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
    url = _USERINFO_RE.sub(lambda m: m.group(1) + _REDACTED + "@", url)

    def query(match: re.Match[str]) -> str:
        sep, name, value = match.groups()
        if _SENSITIVE_NAME.search(name) and value and not value.startswith(("${", "{")):
            return f"{sep}{name}={_REDACTED}"
        return match.group(0)

    base, mark, rest = url.partition("?")
    base = _TOKEN_SEGMENT_RE.sub(_REDACTED, base)
    return base + (_QUERY_PAIR_RE.sub(query, mark + rest) if mark else "")


class HttpSpec(_Model):
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
            elif _SENSITIVE_NAME.search(name) and not _is_only_placeholder(value):
                found.add(fixed if fixed is not None else value)
        return frozenset(value for value in found if value)

    def _named_strings(self) -> Iterator[tuple[Loc, str, str]]:
        for name, value in self.headers.items():
            yield ("headers", name), name, value
        for name, value in self.query.items():
            yield ("query", name), name, value
        for loc, value in _template_strings(self.body, ("json",)):
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
        yield from _template_strings(self.body, ("json",))

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
        if _SENSITIVE_NAME.search(name) and not _is_only_placeholder(value):
            return _REDACTED
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
        unresolved = (info.context or {}).get(_UNRESOLVED_URLS, ())
        for loc, text in self.templated_strings():
            try:
                _parse_template(text)
            except ValueError as exc:
                problems.append((loc, str(exc)))
        if not problems and self.url not in unresolved:
            segments = _parse_template(self.url)
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
            _fail(problems, self)
        return self


class HttpToolSpec(_Model):
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
            _fail(problems, value)
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
                for s in _parse_template(text)
                if isinstance(s, _Placeholder) and s.name not in declared
            ]
            for name in dict.fromkeys(unknown):
                known = ", ".join(declared) or "none"
                problems.append(
                    (loc, f"placeholder {{{name}}} is not a declared parameter (declared: {known})")
                )
        if problems:
            _fail(problems, value)
        return value

    @field_validator("approval")
    @classmethod
    def _writes_need_approval(cls, value: Any, info: ValidationInfo) -> Any:
        http = info.data.get("http")
        if value is None and isinstance(http, HttpSpec) and http.is_write:
            raise _custom(f"required for {http.method} tools (or write `approval: none`)")
        return value


class BuiltinToolRef(_Model):
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
        custom_error_type=_ERROR_TYPE,
        custom_error_message="expected a mapping: `use: <built-in tool>` or an HTTP tool",
    ),
]
_UNION_TAGS: Final = frozenset({"<builtin>", "<http>", "<policy>", "<none>"})


def _tool_key(item: Any) -> tuple[str, str] | None:
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


# --------------------------------------------------------------------------- MCP servers
#
# A skill may list MCP tool servers (``mcp:``). What the spec fixes: where the server is
# (a fixed URL or a command), which of its tools the model may call (the allow-list, by the
# server's names) and the approval policy of each. What only the server knows - each tool's
# JSON Schema and whether it is read-only (``readOnlyHint``) - is checked when its tool list
# is loaded (``skills.mcp``), which reports problems as ``SpecIssue`` with this file's lines.

MCP_TRANSPORTS: Final = ("streamable_http", "sse", "stdio")
McpServerName = Annotated[
    str, Field(max_length=32), _pattern_check(r"[a-z][a-z0-9_]*", "MCP server name")
]
McpRemoteName = Annotated[
    str, Field(max_length=128), _pattern_check(r"[A-Za-z0-9_.-]+", "MCP tool name")
]
_MODEL_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _mcp_tool_ref(value: Any) -> Any:
    """``- lookup_order`` is short for ``- {name: lookup_order}``."""
    return {"name": value} if isinstance(value, str) else value


class McpToolRef(_Model):
    """One allow-listed tool of an MCP server, by the server's name for it.

    ``approval`` is required (a policy, or ``none``) unless the server annotates the tool
    read-only; only the server can say, so that is checked when its tool list loads.
    """

    name: McpRemoteName
    approval: Approval | None = None

    @property
    def approval_policy(self) -> ApprovalPolicy | None:
        return self.approval if isinstance(self.approval, ApprovalPolicy) else None


class McpServerSpec(_Model):
    """An MCP tool server: ``streamable_http`` or ``sse`` at a fixed ``url`` (with
    ``headers``), or ``stdio``: a ``command`` started with only ``env`` (plus a minimal
    PATH/HOME set) in its environment. The model sees each tool as ``<server>_<tool>``."""

    name: McpServerName
    transport: Literal["streamable_http", "sse", "stdio"]
    url: NonEmptyStr | None = None
    headers: dict[HeaderName, ScalarStr] = Field(default_factory=dict)
    command: list[NonEmptyStr] = Field(default_factory=list)
    env: dict[ParamName, ScalarStr] = Field(default_factory=dict)
    timeout: Annotated[float, Field(gt=0)] | None = None
    tools: Annotated[
        list[Annotated[McpToolRef, BeforeValidator(_mcp_tool_ref)]], Field(min_length=1)
    ]

    # Set by the loader: values the environment supplied here, the text as written, and
    # the line of each ``tools`` entry (for issues found when the tool list loads).
    _secrets: frozenset[str] = PrivateAttr(default=frozenset())
    _templates: dict[Loc, str] = PrivateAttr(default_factory=dict)
    _lines: dict[Loc, int | None] = PrivateAttr(default_factory=dict)

    @property
    def secrets(self) -> frozenset[str]:
        """Values never to show, log or return: everything expanded from ``${ENV}`` here
        and literal values of credential-like headers."""
        found = set(self._secrets)
        found.update(
            value
            for name, value in self.headers.items()
            if _SENSITIVE_NAME.search(name) and ("headers", name) not in self._templates
        )
        return frozenset(value for value in found if value)

    @property
    def is_remote(self) -> bool:
        """Reached over the network (and so through the egress policy)."""
        return self.transport != "stdio"

    def model_name(self, tool: str) -> str:
        """The name the model sees for the server's tool ``tool``."""
        return f"{self.name}_{tool}"

    def line_of(self, loc: Loc) -> int | None:
        """The spec line of ``loc`` inside this entry (``("tools", 1)``), if known."""
        return self._lines.get(loc)

    def display_url(self) -> str:
        return redact_url(self._templates.get(("url",), self.url or ""))

    def describe(self) -> str:
        """One line for people: ``crm  streamable_http ${CRM_MCP}/mcp  tools: …``."""
        where = self.display_url() if self.is_remote else " ".join(self.command[:1]) + " …"
        tools = ", ".join(
            t.name + ("" if t.approval is None else f" (approval: {_mcp_approval(t)})")
            for t in self.tools
        )
        return f"{self.name}  {self.transport} {where}  tools: {tools}"

    def redacted_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "transport": self.transport}
        if self.url is not None:
            data["url"] = self.display_url()
        if self.headers:
            data["headers"] = {
                name: self._templates.get(("headers", name))
                or (_REDACTED if _SENSITIVE_NAME.search(name) else value)
                for name, value in self.headers.items()
            }
        if self.command:
            data["command"] = [
                self._templates.get(("command", i), part) for i, part in enumerate(self.command)
            ]
        if self.env:
            data["env"] = {k: self._templates.get(("env", k), _REDACTED) for k in self.env}
        if self.timeout is not None:
            data["timeout"] = self.timeout
        data["tools"] = [
            t.name
            if t.approval is None
            else {
                "name": t.name,
                "approval": t.approval
                if isinstance(t.approval, str)
                else t.approval.model_dump(mode="json"),
            }
            for t in self.tools
        ]
        return data

    @model_validator(mode="after")
    def _consistent(self) -> McpServerSpec:
        problems: list[tuple[Loc, str]] = []
        if self.is_remote:
            if self.url is None:
                problems.append((("url",), f"required for the {self.transport} transport"))
            else:
                parts = urlsplit(self.url)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    problems.append((("url",), "must be an absolute http:// or https:// URL"))
                elif "@" in parts.netloc:
                    problems.append(
                        (("url",), "credentials in the URL are not allowed; use `headers:`")
                    )
            for key in ("command", "env"):
                if getattr(self, key):
                    problems.append(((key,), "only for the stdio transport"))
        else:
            if not self.command:
                problems.append((("command",), "required for the stdio transport"))
            for key in ("url", "headers"):
                if getattr(self, key):
                    problems.append(((key,), "not used by the stdio transport"))
        seen: dict[str, int] = {}
        for index, tool in enumerate(self.tools):
            if tool.name in seen:
                problems.append(
                    (
                        ("tools", index),
                        f"duplicate tool {tool.name!r} (also tools[{seen[tool.name]}])",
                    )
                )
            seen.setdefault(tool.name, index)
            shown = self.model_name(tool.name)
            if not _MODEL_TOOL_NAME.fullmatch(shown):
                problems.append(
                    (
                        ("tools", index, "name"),
                        f"the model would see it as {shown!r}; names the model sees must be "
                        "1-64 letters, digits, _ or - (shorten the server name or pick "
                        "another tool)",
                    )
                )
        if problems:
            _fail(problems, self)
        return self


def _mcp_approval(tool: McpToolRef) -> str:
    policy = tool.approval_policy
    if policy is None:
        return "none"
    approvers = ", ".join([*policy.approvers.users, *policy.approvers.usergroups])
    return f"{policy.quorum} of {approvers}"


def _mcp_problems(expansion: _Expansion, data: Any) -> list[tuple[Loc, str]]:
    """Secrets in MCP server URLs: as for HTTP tools, a ``${VAR}`` may only start the URL."""
    problems: list[tuple[Loc, str]] = []
    servers = data.get("mcp") if isinstance(data, dict) else None
    for index, _server in enumerate(servers if isinstance(servers, list) else []):
        loc: Loc = ("mcp", index, "url")
        problems.extend(
            (
                loc,
                f"${{{ref.name}}} is expanded inside the URL; values from the environment are "
                "secrets and may only form the start of the URL - send this one in `headers:`",
            )
            for ref in expansion.references.get(loc, [])
            if ref.start > 0
        )
    return problems


def _mcp_attach(spec: SkillSpec, expansion: _Expansion, doc: LineMappedDocument) -> None:
    """Give each MCP server its secrets, its ``${VAR}`` texts and its lines."""
    for index, server in enumerate(spec.mcp):
        prefix: Loc = ("mcp", index)
        server._secrets = expansion.secrets_under(prefix)
        server._templates = {
            loc[len(prefix) :]: text
            for loc, text in expansion.templates.items()
            if loc[: len(prefix)] == prefix
        }
        server._lines = {(): doc.line_for(prefix)}
        for position in range(len(server.tools)):
            for loc in (("tools", position), ("tools", position, "name")):
                server._lines[loc] = doc.line_for((*prefix, *loc))
        server._lines[("tools",)] = doc.line_for((*prefix, "tools"))


#: What a skill does with a message that arrives while its turn runs (``concurrency:``).
Concurrency = Literal["enqueue", "interrupt", "reject"]


class SkillSpec(_Model):
    """One skill as declared in YAML. ``source`` is the file it came from, if any."""

    name: SkillName
    description: NonEmptyStr
    instructions: NonEmptyStr
    version: VersionStr | None = None
    """Recorded on every run; two files may share a ``name`` with different versions when
    the newer one has a ``rollout`` (a canary)."""
    rollout: Rollout | None = None
    model: NonEmptyStr | None = None
    access: Access = Field(default_factory=Access)
    tools: list[ToolSpec] = Field(default_factory=list)
    memory: Memory = Field(default_factory=Memory)
    budget: Budget | None = None
    examples: list[NonEmptyStr] = Field(default_factory=list, max_length=10)
    """Example prompts shown in App Home and as Assistant suggested prompts."""
    mcp: list[McpServerSpec] = Field(default_factory=list)
    """MCP tool servers whose allow-listed tools the model may call (see McpServerSpec)."""
    concurrency: Concurrency = "enqueue"
    """A message arriving while this skill's turn runs in the thread: ``enqueue`` waits
    (waiting messages of one person fold into one turn), ``interrupt`` cancels the running
    turn and answers both messages together, ``reject`` says "still working on your
    previous message" (only to the sender) and drops the new one."""

    _source: Path | None = PrivateAttr(default=None)
    _name_line: int | None = PrivateAttr(default=None)
    _version_line: int | None = PrivateAttr(default=None)
    # Path -> the string as written, for every string that had a ${VAR}; and the values
    # the environment supplied (each one a secret, wherever it ends up).
    _templates: dict[Loc, str] = PrivateAttr(default_factory=dict)
    _secrets: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def secrets(self) -> frozenset[str]:
        """Every value expanded from the environment anywhere in the spec."""
        return self._secrets

    def shown(self, loc: Loc, value: str) -> str:
        """``value`` (at ``loc``, e.g. ``("model",)``) as it may be shown: its ``${VAR}``
        text when it was expanded from the environment."""
        return self._templates.get(loc, value)

    @property
    def source(self) -> Path | None:
        """The file this spec was loaded from (None when built from text or in code)."""
        return self._source

    @property
    def http_tools(self) -> list[HttpToolSpec]:
        return [tool for tool in self.tools if isinstance(tool, HttpToolSpec)]

    @property
    def builtin_tools(self) -> list[str]:
        return [tool.use for tool in self.tools if isinstance(tool, BuiltinToolRef)]

    def tool(self, name: str) -> HttpToolSpec | None:
        """The HTTP tool called ``name``, if the skill has one."""
        return next((tool for tool in self.http_tools if tool.name == name), None)

    def describe_tools(self) -> list[str]:
        """One line per tool (and MCP server), secrets redacted (``skills show``)."""
        return [
            f"{tool.use}  (built-in)" if isinstance(tool, BuiltinToolRef) else tool.describe()
            for tool in self.tools
        ] + [f"mcp {server.describe()}" for server in self.mcp]

    def redacted_dict(self) -> dict[str, Any]:
        """The spec as plain data, secrets replaced by their ``${VAR}`` text: safe to print."""
        dumped = self.model_dump(mode="json", exclude_none=True, exclude={"tools", "mcp"})
        data: dict[str, Any] = self._with_templates(dumped, ())
        data["tools"] = [
            {"use": tool.use} if isinstance(tool, BuiltinToolRef) else tool.redacted_dict()
            for tool in self.tools
        ]
        if self.mcp:
            data["mcp"] = [server.redacted_dict() for server in self.mcp]
        return data

    @model_validator(mode="after")
    def _mcp_names_are_unique(self) -> SkillSpec:
        """Server names, and the names the model sees, may not clash with each other or
        with the skill's HTTP tools."""
        problems: list[tuple[Loc, str]] = []
        taken = {
            tool.name: f"tools[{i}]"
            for i, tool in enumerate(self.tools)
            if isinstance(tool, HttpToolSpec)
        }
        servers: dict[str, int] = {}
        for index, server in enumerate(self.mcp):
            if server.name in servers:
                problems.append(
                    (
                        ("mcp", index, "name"),
                        f"duplicate MCP server {server.name!r} (also mcp[{servers[server.name]}])",
                    )
                )
                continue
            servers[server.name] = index
            for position, tool in enumerate(server.tools):
                shown = server.model_name(tool.name)
                if shown in taken:
                    problems.append(
                        (
                            ("mcp", index, "tools", position),
                            f"the model would see it as {shown!r}, like {taken[shown]}",
                        )
                    )
                taken.setdefault(shown, f"mcp[{index}].tools[{position}]")
        if problems:
            _fail(problems, self)
        return self

    def _with_templates(self, value: Any, loc: Loc) -> Any:
        if isinstance(value, str):
            return self._templates.get(loc, value)
        if isinstance(value, dict):
            return {k: self._with_templates(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._with_templates(v, (*loc, i)) for i, v in enumerate(value)]
        return value

    @field_validator("tools", mode="wrap")
    @classmethod
    def _unique_tool_names(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        problems: list[tuple[Loc, str]] = []
        first_seen: dict[tuple[str, str], int] = {}
        for index, item in enumerate(value if isinstance(value, list) else []):
            key = _tool_key(item)
            if key is None:
                continue
            if key in first_seen:
                problems.append(
                    ((index, key[0]), f"duplicate tool {key[1]!r} (also tools[{first_seen[key]}])")
                )
            else:
                first_seen[key] = index
        try:
            tools = handler(value)
        except ValidationError as exc:
            if problems:
                _reraise_with(exc, problems, value)
            raise
        if problems:
            _fail(problems, value)
        return tools


# --------------------------------------------------------------------------- ${ENV} expansion

_ENV_RE: Final = re.compile(
    r"\$\$\{(?P<escaped>[^}]*)\}"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<bad>\$\{)"
)
# Text the model reads is never expanded, so a secret cannot end up in a prompt.
_LITERAL_SKILL_KEYS: Final = frozenset({"name", "description", "instructions", "version"})
_LITERAL_TOOL_KEYS: Final = frozenset({"name", "description", "parameters", "required", "use"})


@dataclass(frozen=True)
class _Reference:
    """Where one ``${NAME}`` landed in an expanded string, and whether the environment
    (rather than its ``:-default``) supplied the value."""

    name: str
    start: int
    end: int
    from_env: bool


@dataclass
class _Expansion:
    env: Mapping[str, str]
    templates: dict[Loc, str] = field(default_factory=dict)
    problems: list[tuple[Loc, str]] = field(default_factory=list)
    unresolved_strings: set[str] = field(default_factory=set)
    references: dict[Loc, list[_Reference]] = field(default_factory=dict)
    # Every non-empty value the environment supplied: secret wherever it shows up.
    secrets: dict[Loc, set[str]] = field(default_factory=dict)

    def skill(self, data: dict[Any, Any]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, value in data.items():
            if key in _LITERAL_SKILL_KEYS:
                out[key] = value
            elif key == "tools" and isinstance(value, list):
                out[key] = [self._tool(item, ("tools", i)) for i, item in enumerate(value)]
            else:
                out[key] = self._tree(value, (key,), call_template=False)
        return out

    def secrets_under(self, prefix: Loc) -> frozenset[str]:
        return frozenset(
            value
            for loc, values in self.secrets.items()
            if loc[: len(prefix)] == prefix
            for value in values
        )

    def _tool(self, item: Any, loc: Loc) -> Any:
        if not isinstance(item, dict):
            return item
        return {
            key: value
            if key in _LITERAL_TOOL_KEYS
            else self._tree(value, (*loc, key), call_template=key == "http")
            for key, value in item.items()
        }

    def _tree(self, value: Any, loc: Loc, *, call_template: bool) -> Any:
        if isinstance(value, str):
            return self._string(value, loc, call_template=call_template)
        if isinstance(value, dict):
            return {
                k: self._tree(v, (*loc, k), call_template=call_template) for k, v in value.items()
            }
        if isinstance(value, list):
            return [
                self._tree(v, (*loc, i), call_template=call_template) for i, v in enumerate(value)
            ]
        return value

    def _string(self, text: str, loc: Loc, *, call_template: bool) -> str:
        if "${" not in text:
            return text
        escape = _escape_braces if call_template else (lambda s: s)
        problems_before = len(self.problems)
        out: list[str] = []
        length = 0
        position = 0
        for match in _ENV_RE.finditer(text):
            piece = text[position : match.start()]
            out.append(piece)
            length += len(piece)
            position = match.end()
            value, reference = self._replacement(match, loc)
            piece = escape(value)
            if reference is not None:
                name, from_env = reference
                self.references.setdefault(loc, []).append(
                    _Reference(name, length, length + len(piece), from_env)
                )
                if from_env and value:
                    self.secrets.setdefault(loc, set()).add(value)
            out.append(piece)
            length += len(piece)
        out.append(text[position:])
        expanded = "".join(out)
        if len(self.problems) > problems_before:
            self.unresolved_strings.add(expanded)
        self.templates[loc] = text
        return expanded

    def _replacement(self, match: re.Match[str], loc: Loc) -> tuple[str, tuple[str, bool] | None]:
        """The text for one ``${...}`` and, for a variable, (its name, whether the
        environment supplied the value)."""
        if match.group("escaped") is not None:
            return "${" + match.group("escaped") + "}", None
        if match.group("bad") is not None:
            self.problems.append(
                (
                    loc,
                    "malformed ${...}: write ${NAME}, ${NAME:-default}, or $${...} for a literal",
                )
            )
            return "", None
        name, default = match.group("name"), match.group("default")
        value = self.env.get(name)
        if default is not None and not value:
            return default, (name, False)
        if value is None:
            self.problems.append((loc, f"environment variable {name} is not set"))
            return "", (name, False)
        return value, (name, True)


def _url_problems(expansion: _Expansion, data: Any) -> list[tuple[Loc, str]]:
    """Secrets in URLs: a ``${VAR}`` may only start the URL (a base URL), never carry
    credentials, and a URL's own query string may not hold credential-like parameters.

    Values from the environment are secrets; in a URL path they end up in logs, proxies
    and the target's access logs, where header and ``query:`` values are redacted.
    """
    problems: list[tuple[Loc, str]] = []
    tools = data.get("tools") if isinstance(data, dict) else None
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        http = tool.get("http") if isinstance(tool, dict) else None
        url = http.get("url") if isinstance(http, dict) else None
        if not isinstance(url, str):
            continue
        loc: Loc = ("tools", index, "http", "url")
        for ref in expansion.references.get(loc, []):
            if ref.start > 0:
                problems.append(
                    (
                        loc,
                        f"${{{ref.name}}} is expanded inside the URL; values from the "
                        "environment are secrets and may only form the start of the URL "
                        "(scheme, host, port and a path prefix) - send this one in `headers:` "
                        "or `query:`",
                    )
                )
        try:
            sample = "".join(s if isinstance(s, str) else "x" for s in _parse_template(url))
        except ValueError:
            continue  # the model validation reports it
        parts = urlsplit(sample)
        if "@" in parts.netloc:
            problems.append(
                (
                    loc,
                    "credentials in the URL (user:password@host) are not allowed; send them "
                    "in an Authorization header",
                )
            )
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if _SENSITIVE_NAME.search(name) and value:
                problems.append(
                    (
                        loc,
                        f"the URL's query parameter {name!r} looks like a credential; move it "
                        f'to `query: {{{name}: "${{...}}"}}`, where it is redacted',
                    )
                )
    return problems


# --------------------------------------------------------------------------- loading


def builtin_dir() -> Path:
    """The folder of the YAML skills that ship with Switchboard."""
    return Path(__file__).resolve().parent / "builtin"


def load_spec_text(text: str, *, filename: str | Path, env: Mapping[str, str]) -> SkillSpec:
    """Load one spec from YAML text; ``filename`` is only used in error messages.

    Raises ``SpecValidationError`` listing every problem found.
    """
    return _load_text(text, filename=str(filename), env=env, source=None)


def load_spec_file(path: Path, *, env: Mapping[str, str]) -> SkillSpec:
    """Load one spec file; the spec's ``source`` is ``path``.

    Raises ``SpecValidationError`` (also when the file cannot be read).
    """
    return _load_text(_read(path), filename=str(path), env=env, source=path)


@dataclass
class LoadResult:
    """Specs that loaded, by name, and the issues of those that did not."""

    specs: dict[str, SkillSpec] = field(default_factory=dict)
    issues: list[SpecIssue] = field(default_factory=list)
    #: Canary versions by name: a second file with the same ``name``, another
    #: ``version`` and a ``rollout`` (``specs`` holds the version it is rolled out beside).
    canaries: dict[str, SkillSpec] = field(default_factory=dict)
    #: Every spec file read, valid or not (``skills validate`` says how many).
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def load_spec_dirs(
    dirs: Sequence[Path], *, env: Mapping[str, str], include_builtin: bool = True
) -> LoadResult:
    """Load every spec under ``dirs`` (recursively), built-ins first unless excluded.

    Files ending in ``.eval.yaml`` are evaluation datasets and are skipped. A skill name
    defined twice is an issue naming both files; the first definition is kept.
    """
    folders = [builtin_dir(), *dirs] if include_builtin else list(dirs)
    issues: list[SpecIssue] = []
    files: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            files.extend(_spec_files(folder))
        else:
            issues.append(SpecIssue(str(folder), None, "", "not a directory"))
    result = _load_files(files, env=env)
    result.issues[:0] = issues
    return result


def validate_paths(paths: Sequence[Path], *, env: Mapping[str, str]) -> list[SpecIssue]:
    """Check spec files and folders for ``switchboard skills validate``; [] means all good."""
    return check_paths(paths, env=env).issues


def check_paths(paths: Sequence[Path], *, env: Mapping[str, str]) -> LoadResult:
    """Load spec files and folders as ``switchboard skills validate`` does: the result says
    which files were read (``files``) and every problem (``issues``)."""
    issues: list[SpecIssue] = []
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(_spec_files(path))
        elif path.is_file():
            if not _is_eval_dataset(path):
                files.append(path)
        else:
            issues.append(SpecIssue(str(path), None, "", "no such file or directory"))
    result = _load_files(files, env=env)
    result.issues[:0] = issues
    return result


def _load_files(files: Sequence[Path], *, env: Mapping[str, str]) -> LoadResult:
    result = LoadResult()
    seen: set[Path] = set()
    for path in files:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        result.files.append(path)
        try:
            spec = load_spec_file(path, env=env)
        except SpecValidationError as exc:
            result.issues.extend(exc.issues)
            continue
        earlier = result.specs.get(spec.name)
        if earlier is None:
            result.specs[spec.name] = spec
            continue
        problem = _twin_problem(earlier, spec, result.canaries.get(spec.name))
        if problem is None:
            stable, canary = (earlier, spec) if spec.rollout is not None else (spec, earlier)
            result.specs[spec.name] = stable
            result.canaries[spec.name] = canary
            continue
        field_name, message = problem
        line = spec._version_line if field_name == "version" else spec._name_line
        result.issues.append(SpecIssue(str(path), line or spec._name_line, field_name, message))
    return result


def _where(spec: SkillSpec) -> str:
    return f"{spec.source}:{spec._name_line}" if spec._name_line else str(spec.source)


def _twin_problem(
    earlier: SkillSpec, spec: SkillSpec, canary: SkillSpec | None
) -> tuple[str, str] | None:
    """Why ``spec`` may not share its name with ``earlier`` (None: it is a valid second
    version). Two versions may run side by side: both have a ``version``, they differ, and
    exactly one - the new one - has a ``rollout``."""
    if canary is not None:
        return (
            "name",
            f"skill {spec.name!r} already has two versions ({_where(earlier)} and "
            f"{_where(canary)}); a third cannot run beside them",
        )
    if (earlier.rollout is None) == (spec.rollout is None):
        return (
            "name",
            f"skill {spec.name!r} is already defined in {_where(earlier)} (to run a new version "
            "beside it, give both a `version:` and the new one `rollout: {canary: 10%}`)",
        )
    if earlier.version is None or spec.version is None or earlier.version == spec.version:
        return (
            "version",
            f"skill {spec.name!r} is also defined in {_where(earlier)}: two versions side by "
            "side need two different `version:` values",
        )
    return None


def _spec_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix in (".yaml", ".yml")
        and path.is_file()
        and not _is_eval_dataset(path)
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _is_eval_dataset(path: Path) -> bool:
    return path.name.endswith((".eval.yaml", ".eval.yml"))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecValidationError(
            [SpecIssue(str(path), None, "", f"not UTF-8 text ({exc.reason})")]
        ) from None
    except OSError as exc:
        raise SpecValidationError(
            [SpecIssue(str(path), None, "", f"cannot read: {exc.strerror}")]
        ) from None


def _load_text(
    text: str, *, filename: str, env: Mapping[str, str], source: Path | None
) -> SkillSpec:
    try:
        doc = load_yaml(text)
    except YamlSyntaxError as exc:
        raise SpecValidationError([SpecIssue(filename, exc.line, "", exc.message)]) from None

    issues = [SpecIssue(filename, p.line, _format_loc(p.path), p.message) for p in doc.problems]
    if not isinstance(doc.data, dict):
        issues.append(
            SpecIssue(
                filename,
                doc.line_for(()) or 1,
                "",
                "expected a mapping with name, description, instructions…",
            )
        )
        raise SpecValidationError(issues)

    expansion = _Expansion(env)
    data = expansion.skill(doc.data)
    for loc, message in [
        *expansion.problems,
        *_url_problems(expansion, data),
        *_mcp_problems(expansion, data),
    ]:
        issues.append(SpecIssue(filename, doc.line_for(loc), _format_loc(loc), message))

    spec: SkillSpec | None = None
    try:
        spec = SkillSpec.model_validate(
            data, context={_UNRESOLVED_URLS: expansion.unresolved_strings}
        )
    except ValidationError as exc:
        env_locs = [loc for loc, _ in expansion.problems]
        for error in exc.errors():
            loc = _clean_loc(error["loc"])
            # An unset variable already explains whatever its empty value broke.
            if any(loc[: len(bad)] == bad for bad in env_locs):
                continue
            issues.append(
                SpecIssue(filename, doc.line_for(loc), _format_loc(loc), _message(error, loc, doc))
            )

    if issues or spec is None:
        raise SpecValidationError(sorted(issues, key=lambda i: (i.line or 0, i.field)))

    spec._source = source
    spec._name_line = doc.line_for(("name",))
    spec._version_line = doc.line_for(("version",))
    spec._templates = dict(expansion.templates)
    spec._secrets = expansion.secrets_under(())
    for index, tool in enumerate(spec.tools):
        if isinstance(tool, HttpToolSpec):
            prefix = ("tools", index, "http")
            tool.http._templates = {
                loc[len(prefix) :]: text
                for loc, text in expansion.templates.items()
                if loc[: len(prefix)] == prefix
            }
            tool.http._secrets = expansion.secrets_under(prefix)
    _mcp_attach(spec, expansion, doc)
    return spec


# --------------------------------------------------------------------------- error messages

_TYPE_MESSAGES: Final = {
    "missing": "required",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
}


def _clean_loc(loc: tuple[str | int, ...]) -> Loc:
    return tuple(part for part in loc if part not in _UNION_TAGS and part != "[key]")


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _message(error: ErrorDetails, loc: Loc, doc: LineMappedDocument) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_key_message(loc, doc)
    if kind in _TYPE_MESSAGES:
        message = _TYPE_MESSAGES[kind]
        got = _describe_input(error["input"])
        return f"{message} (got {got})" if got and kind != "missing" else message
    message = error["msg"].removeprefix("Value error, ")
    return message[:1].lower() + message[1:] if message[1:2].islower() else message


def _describe_input(value: Any) -> str:
    # Never echo strings: they may be expanded secrets.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _unknown_key_message(loc: Loc, doc: LineMappedDocument) -> str:
    model = _model_at(loc[:-1], doc)
    if model is None:
        return "unknown key"
    allowed = [info.alias or name for name, info in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return "unknown key; expected one of: " + ", ".join(allowed)


def _model_at(loc: Loc, doc: LineMappedDocument) -> type[BaseModel] | None:
    shape = tuple("*" if isinstance(part, int) else part for part in loc)
    if shape == ("tools", "*"):
        item = _get(doc.data, loc)
        return BuiltinToolRef if isinstance(item, dict) and "use" in item else HttpToolSpec
    return _MODELS_BY_SHAPE.get(shape)


_MODELS_BY_SHAPE: Final[dict[tuple[str, ...], type[BaseModel]]] = {
    (): SkillSpec,
    ("access",): Access,
    ("memory",): Memory,
    ("budget",): Budget,
    ("tools", "*", "http"): HttpSpec,
    ("tools", "*", "approval"): ApprovalPolicy,
    ("tools", "*", "approval", "approvers"): Approvers,
    ("mcp", "*"): McpServerSpec,
    ("mcp", "*", "tools", "*"): McpToolRef,
    ("mcp", "*", "tools", "*", "approval"): ApprovalPolicy,
    ("mcp", "*", "tools", "*", "approval", "approvers"): Approvers,
}


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


# --------------------------------------------------------------------------- rendering


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
        headers = dict.fromkeys(self.headers, _REDACTED)
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
    for segment in _parse_template(template):
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
    for segment in _parse_template(template):
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
    segments = _parse_template(template)
    if len(segments) == 1 and isinstance(segments[0], _Placeholder):
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
