"""Evaluation datasets: ``<skill>.eval.yaml`` files beside the skills they test.

A dataset names the skill under test, the fixed moment the sample Slack workspace is built
around, the HTTP fixtures its tools may call, and a list of cases. A case is one message
(with optional earlier turns, actor, channel and Slack history) and what should happen::

    skill: refunds
    http:
      CRM_URL:                                 # the variable the skill's URLs use
        - {method: GET, path: /orders/1001, json: {id: "1001", total: 80}}
    cases:
      - id: lookup
        message: refunds lookup_order order_id=1001
        expect:
          trajectory: [{name: lookup_order, args: {order_id: "1001"}}]
          approval: false
          answer: {contains: ["1001"], no_pii: true}

Loading is line-aware (``skills._yaml``): every problem is reported as
``refunds.eval.yaml:14 cases[2].expect.trajectory.mode: …``, like skill spec errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import jsonschema
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from skills._yaml import YamlSyntaxError, load_yaml
from skills.spec import SpecIssue

__all__ = [
    "DEFAULT_NOW",
    "AccessOverride",
    "AnswerChecks",
    "ArgMatcher",
    "Case",
    "Dataset",
    "DatasetError",
    "Expect",
    "ExpectedCall",
    "HttpRoute",
    "Online",
    "OnlineRubric",
    "Script",
    "ScriptCall",
    "ScriptStep",
    "SimulationStep",
    "SlackMessageSpec",
    "Trajectory",
    "TrajectoryMode",
    "Turn",
    "discover_datasets",
    "load_dataset",
    "load_dataset_text",
]

DEFAULT_NOW: Final = datetime(2025, 5, 14, 12, 0, tzinfo=UTC)
"""The moment datasets are evaluated at unless they say otherwise (the sample workspace's
messages are placed relative to it, so answers are the same every run)."""

DATASET_SUFFIXES: Final = (".eval.yaml", ".eval.yml")
TrajectoryMode = Literal["exact", "in_order", "any_order", "subset", "superset"]
_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MATCHER_KEYS: Final = frozenset({"equals", "regex", "any"})


class DatasetError(Exception):
    """A dataset failed to load; ``issues`` lists every problem (file, line, field)."""

    def __init__(self, issues: Sequence[SpecIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


def _as_list(value: Any) -> Any:
    """A single string where a list is expected is a one-item list (``contains: "x"``)."""
    return [value] if isinstance(value, str) else value


StrList = Annotated[list[str], BeforeValidator(_as_list)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- expectations


@dataclass(frozen=True, slots=True)
class ArgMatcher:
    """How one expected argument is compared: ``equals`` a value, a ``regex`` search on its
    text (JSON for non-strings), or ``any`` value as long as the argument is present."""

    kind: Literal["equals", "regex", "any"]
    value: Any = None

    @classmethod
    def parse(cls, raw: Any) -> ArgMatcher:
        """A plain value means ``equals``; ``{regex: …}``, ``{any: true}``, ``{equals: …}``
        (a mapping with exactly one of those keys) choose another matcher."""
        if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in _MATCHER_KEYS:
            kind, value = next(iter(raw.items()))
            if kind == "regex":
                if not isinstance(value, str):
                    raise ValueError("regex must be a string")
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ValueError(f"invalid regex: {exc}") from None
            if kind == "any" and value is not True:
                raise ValueError("write `any: true`")
            return cls(kind=kind, value=value)
        return cls(kind="equals", value=raw)

    def matches(self, present: bool, actual: Any) -> bool:
        if not present:
            return False
        if self.kind == "any":
            return True
        if self.kind == "regex":
            text = actual if isinstance(actual, str) else json.dumps(actual, sort_keys=True)
            return re.search(str(self.value), text) is not None
        return _loosely_equal(actual, self.value)

    def describe(self) -> str:
        if self.kind == "any":
            return "<any>"
        if self.kind == "regex":
            return f"/{self.value}/"
        return json.dumps(self.value, sort_keys=True, default=str)


def _loosely_equal(actual: Any, expected: Any) -> bool:
    """Equality where ``25`` and ``25.0`` agree (models send numbers either way)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected if isinstance(expected, bool) else actual == expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return float(actual) == float(expected)
    return bool(actual == expected)


class ExpectedCall(_Model):
    """One tool call of the expected trajectory. Only the listed arguments are compared
    unless ``exact_args`` is set, in which case the call may carry no others."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    exact_args: bool = False
    _matchers: dict[str, ArgMatcher] = PrivateAttr(default_factory=dict)

    @field_validator("args")
    @classmethod
    def _matchers_are_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, raw in value.items():
            try:
                ArgMatcher.parse(raw)
            except ValueError as exc:
                raise ValueError(f"argument {key!r}: {exc}") from None
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._matchers = {key: ArgMatcher.parse(raw) for key, raw in self.args.items()}

    @property
    def matchers(self) -> Mapping[str, ArgMatcher]:
        return self._matchers

    def describe(self) -> str:
        args = ", ".join(f"{k}={m.describe()}" for k, m in self._matchers.items())
        return f"{self.name}({args})"


def _calls_shorthand(value: Any) -> Any:
    """``trajectory: [call, …]`` is ``trajectory: {mode: exact, calls: [call, …]}``."""
    return {"mode": "exact", "calls": value} if isinstance(value, list) else value


class Trajectory(_Model):
    """The tool calls expected, and how strictly they are compared:

    * ``exact`` — these calls, in this order, nothing else;
    * ``in_order`` — these calls in this order, other calls allowed in between;
    * ``any_order`` — these calls in any order, nothing else;
    * ``subset`` — every call made is one of these (nothing unexpected was called);
    * ``superset`` — every one of these was made, in any order, others allowed.

    A call that paused for approval counts as made (it was *gated*).
    """

    mode: TrajectoryMode = "exact"
    calls: list[ExpectedCall] = Field(default_factory=list)


class AnswerChecks(_Model):
    """Deterministic checks on the answer text (a reply, a refusal's reason, or for an
    approval request ``approval requested: tool {args}``)."""

    contains: StrList = Field(default_factory=list)
    not_contains: StrList = Field(default_factory=list)
    regex: StrList = Field(default_factory=list)
    not_regex: StrList = Field(default_factory=list)
    json_schema: dict[str, Any] | None = None
    max_length: int | None = Field(default=None, gt=0)
    no_pii: bool = False
    case_sensitive: bool = False

    @field_validator("regex", "not_regex")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
        return value

    @field_validator("json_schema")
    @classmethod
    def _is_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"invalid JSON Schema: {exc.message}") from None
        return value


class Expect(_Model):
    """What should happen. Unset expectations are not checked, except ``refusal``, which
    defaults to *not refused*, and ``route``, which defaults to the dataset's skill
    (write ``route: false`` to skip it)."""

    route: str | Literal[False] | None = None
    refusal: bool = False
    approval: bool | str | None = None  # true, false, or the tool that must be gated
    trajectory: Annotated[Trajectory | None, BeforeValidator(_calls_shorthand)] = None
    forbidden_tools: StrList = Field(default_factory=list)
    answer: AnswerChecks = Field(default_factory=AnswerChecks)
    rubric: str | None = None
    rubric_threshold: float = Field(default=0.7, ge=0, le=1)
    goal_reached: bool = True  # user simulation: the simulated user says the goal was met


# --------------------------------------------------------------------------- cases


class SlackMessageSpec(_Model):
    """A message placed in the case's Slack workspace before the run."""

    user: str
    text: str
    minutes_ago: float = Field(default=5, ge=0)
    channel: str | None = None  # default: the case's channel


class ScriptCall(_Model):
    """A tool call the scripted model makes: ``{call: lookup_order, args: {order_id: "1"}}``."""

    call: str
    args: dict[str, Any] = Field(default_factory=dict)


def _step(value: Any) -> Any:
    """A bare string is a final answer: ``- "Order 1001 is paid."``."""
    return {"reply": value} if isinstance(value, str) else value


class ScriptStep(_Model):
    """One answer of the skill's model in wiring mode: tool call(s), text, or both.

    ``sees`` lists text the model's input must contain at that point (a tool result that
    reached it, say); it makes a script check the wiring instead of only replaying it.
    """

    reply: str = ""
    call: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    calls: list[ScriptCall] = Field(default_factory=list)
    sees: StrList = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_shape(self) -> ScriptStep:
        if self.call is not None and self.calls:
            raise ValueError("use `call` (one tool call) or `calls` (several), not both")
        if self.args and self.call is None:
            raise ValueError("`args` needs `call`")
        return self

    @property
    def tool_calls(self) -> list[ScriptCall]:
        if self.call is not None:
            return [ScriptCall(call=self.call, args=self.args)]
        return list(self.calls)


def _script(value: Any) -> Any:
    """``script: [step, …]`` is ``script: {turns: [step, …]}``."""
    return {"turns": value} if isinstance(value, list) else value


class Script(_Model):
    """What the models say in wiring mode for one message (see docs/evals.md).

    ``turns``: the skill's model answers, in call order, across an approval (the answer
    after the approved call comes last). ``route``: what the router model answers when the
    runtime consults it (default: the case's expected route).
    """

    route: str | None = None
    turns: list[Annotated[ScriptStep, BeforeValidator(_step)]] = Field(default_factory=list)


ScriptField = Annotated[Script | None, BeforeValidator(_script)]


_NO_MESSAGE: Final = "\x00no message"


def _turn(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else value


class Turn(_Model):
    """An earlier message on the case's thread, run through the runtime before the case."""

    text: str
    user: str | None = None  # default: the case's actor
    skill: str | None = None
    script: ScriptField = None  # wiring mode: the model turns for this message


class SimulationStep(_Model):
    """One move of the simulated user in wiring mode: say ``user`` (and the skill's model
    answers with ``script``), or end the conversation with ``done`` (the reason) and
    whether the goal was reached."""

    user: str | None = None
    script: ScriptField = None
    done: str | None = None
    goal_reached: bool = True

    @model_validator(mode="after")
    def _say_or_stop(self) -> SimulationStep:
        if (self.user is None) == (self.done is None):
            raise ValueError("give `user` (what the person says) or `done` (why they stop)")
        return self


class Case(_Model):
    """One evaluation case; see the module docstring."""

    id: str
    description: str = ""
    message: str = ""
    skill: str | None = None  # force this skill (as an explicit pick); default: routed
    actor: str | None = None
    channel: str | None = None
    history: list[Annotated[Turn, BeforeValidator(_turn)]] = Field(default_factory=list)
    thread: list[SlackMessageSpec] = Field(default_factory=list)
    channel_history: list[SlackMessageSpec] = Field(default_factory=list)
    approve: bool = False
    tags: StrList = Field(default_factory=list)
    known_issue: str | None = None
    notes: str = ""
    expect: Expect = Field(default_factory=Expect)
    script: ScriptField = None  # wiring mode: what the models say for `message`
    # User simulation: a simulated person pursues `goal` for up to `max_turns` messages.
    goal: str | None = None
    persona: str = ""
    max_turns: int = Field(default=5, ge=1, le=20)
    simulation: list[SimulationStep] = Field(default_factory=list)  # wiring mode's moves
    _line: int | None = PrivateAttr(default=None)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("use letters, digits, '.', '_' and '-' (starting with a letter)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _flag_missing_message(cls, data: Any) -> Any:
        # Neither given: let `message` report it (with every other field's problems).
        if isinstance(data, dict) and "message" not in data and "goal" not in data:
            return {**data, "message": _NO_MESSAGE}
        return data

    @field_validator("message")
    @classmethod
    def _message_given(cls, value: str) -> str:
        if value == _NO_MESSAGE:
            raise ValueError("required (or `goal` and `persona` for a simulated user)")
        return value

    @model_validator(mode="after")
    def _message_or_goal(self) -> Case:
        if self.goal is None:
            if not self.message.strip():
                raise ValueError("give `message` (one request) or `goal` (a simulated user)")
            if self.simulation:
                raise ValueError("`simulation` needs `goal`")
            return self
        if self.message:
            raise ValueError("give `message` or `goal`, not both")
        if self.script is not None:
            raise ValueError("a simulated case scripts each move under `simulation`")
        said = [s for s in self.simulation if s.user is not None]
        if len(said) > self.max_turns:
            raise ValueError(
                f"`simulation` says {len(said)} messages; max_turns is {self.max_turns}"
            )
        return self

    @property
    def simulated(self) -> bool:
        return self.goal is not None

    @property
    def request(self) -> str:
        """What reports show as the input: the message, or the simulated user's goal."""
        return self.message if self.goal is None else f"[simulated user] goal: {self.goal}"

    @property
    def line(self) -> int | None:
        return self._line


class HttpRoute(_Model):
    """A recorded response: ``method path`` (query string ignored) answers with it."""

    method: str = "GET"
    path: str
    status: int = Field(default=200, ge=100, le=599)
    json_body: Any = Field(default=None, alias="json")
    text: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


class AccessOverride(_Model):
    """Allow-lists a skill is evaluated with (as it is deployed, say), replacing its own."""

    channels: StrList = Field(default_factory=list)
    users: StrList = Field(default_factory=list)
    usergroups: StrList = Field(default_factory=list)


class OnlineRubric(_Model):
    """A judge rubric for the skill's production turns (online evaluation): it grades any
    answer of the skill, so it says what every good answer does, not one case's facts."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    rubric: str = Field(min_length=1)
    threshold: float = Field(default=0.7, ge=0, le=1)


class Online(_Model):
    """``online:`` — how sampled production turns of the skill are scored
    (``SWITCHBOARD_EVAL_SAMPLE``; docs/evals.md "Online evaluation")."""

    rubrics: list[OnlineRubric] = Field(default_factory=list)

    @field_validator("rubrics")
    @classmethod
    def _unique_names(cls, value: list[OnlineRubric]) -> list[OnlineRubric]:
        names = [r.name for r in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"rubric name {name!r} is used twice")
        return value


class Dataset(_Model):
    """A skill's evaluation dataset (see the module docstring)."""

    skill: str
    description: str = ""
    now: datetime = DEFAULT_NOW
    actor: str = "U0SAM"
    channel: str = "C0SUPPORT"
    env: dict[str, str] = Field(default_factory=dict)
    http: dict[str, list[HttpRoute]] = Field(default_factory=dict)
    access: dict[str, AccessOverride] = Field(default_factory=dict)
    online: Online = Field(default_factory=Online)
    cases: list[Case] = Field(min_length=1)
    _path: Path | None = PrivateAttr(default=None)

    @field_validator("now")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    @field_validator("http")
    @classmethod
    def _env_names(cls, value: dict[str, list[HttpRoute]]) -> dict[str, list[HttpRoute]]:
        for name in value:
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> Dataset:
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise ValueError(f"case id {case.id!r} is used twice")
            seen.add(case.id)
        return self

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def name(self) -> str:
        """How reports refer to the dataset: its file name, or the skill."""
        return self._path.name if self._path is not None else f"{self.skill}.eval.yaml"

    def expected_route(self, case: Case) -> str | None:
        """The skill the case should be routed to; None when the route is not checked."""
        route = case.expect.route
        if route is False:
            return None
        return route if isinstance(route, str) else (case.skill or self.skill)


# --------------------------------------------------------------------------- loading


def load_dataset(path: Path) -> Dataset:
    """Load and validate one dataset file; raises `DatasetError` listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError([SpecIssue(str(path), None, "", f"cannot read: {exc}")]) from None
    return load_dataset_text(text, filename=path, path=path)


def load_dataset_text(text: str, *, filename: str | Path, path: Path | None = None) -> Dataset:
    """Load a dataset from YAML text; ``filename`` appears in error messages."""
    name = str(filename)
    try:
        doc = load_yaml(text)
    except YamlSyntaxError as exc:
        raise DatasetError([SpecIssue(name, exc.line, "", exc.message)]) from None
    issues = [SpecIssue(name, p.line, _format_loc(p.path), p.message) for p in doc.problems]
    if not isinstance(doc.data, dict):
        issues.append(SpecIssue(name, doc.line_for(()) or 1, "", "expected a mapping"))
        raise DatasetError(issues)
    try:
        dataset = Dataset.model_validate(doc.data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _clean_loc(error["loc"], doc.data)
            issues.append(SpecIssue(name, doc.line_for(loc), _format_loc(loc), _message(error)))
        raise DatasetError(sorted(issues, key=lambda i: (i.line or 0, i.field))) from None
    if issues:
        raise DatasetError(issues)
    dataset._path = path
    for index, case in enumerate(dataset.cases):
        case._line = doc.line_for(("cases", index))
    return dataset


def discover_datasets(folders: Iterable[Path]) -> list[Path]:
    """Every ``*.eval.yaml`` under ``folders`` (recursively; hidden folders skipped)."""
    found: list[Path] = []
    for folder in folders:
        if folder.is_file() and folder.name.endswith(DATASET_SUFFIXES):
            found.append(folder)
            continue
        if not folder.is_dir():
            continue
        found.extend(
            sorted(
                p
                for p in folder.rglob("*")
                if p.name.endswith(DATASET_SUFFIXES)
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            )
        )
    return found


def _clean_loc(loc: tuple[str | int, ...], data: Any) -> tuple[str | int, ...]:
    """Drop pydantic's union and validator tags: keep the parts that exist in the data
    (and a final missing key, which is what a "required" error points at)."""
    kept: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        child = _child(node, part)
        if child is not _MISSING:
            kept.append(part)
            node = child
        elif index == len(loc) - 1 and isinstance(part, str) and isinstance(node, dict):
            kept.append(part)
    return tuple(kept)


_MISSING: Final = object()


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _MISSING


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:] if message[1:2].islower() else message
