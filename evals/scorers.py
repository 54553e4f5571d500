"""Deterministic scorers: what happened in a run (an `Observation`) against a case's `Expect`.

Each check yields a `CheckResult` with a short ``detail`` a person can act on ("expected
lookup_order(order_id="1001"), got issue_refund(...)"). The LLM judge lives in
`evals.judge`; these run first and need no model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema

from evals.dataset import AnswerChecks, Expect, ExpectedCall, Trajectory
from skills.pii import find_pii

__all__ = [
    "CallStatus",
    "CheckResult",
    "Observation",
    "ToolCallRecord",
    "call_matches",
    "check_answer",
    "check_trajectory",
    "score",
]

CallStatus = Literal["ok", "error", "gated", "pending"]
"""``ok``/``error``: the tool ran; ``gated``: it paused for approval and did not run;
``pending``: the model asked for it but no result was recorded."""

OutcomeKind = Literal["reply", "approval", "refusal", "error"]


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool call the run made, in order."""

    name: str
    args: dict[str, Any]
    status: CallStatus = "ok"

    @property
    def executed(self) -> bool:
        return self.status in ("ok", "error")

    def describe(self) -> str:
        args = ", ".join(
            f"{k}={json.dumps(v, sort_keys=True, default=str)}" for k, v in self.args.items()
        )
        suffix = "" if self.status == "ok" else f" [{self.status}]"
        return f"{self.name}({args}){suffix}"


@dataclass(frozen=True, slots=True)
class Observation:
    """What a case's run did, as the scorers see it."""

    outcome: OutcomeKind
    route: str | None
    answer: str
    calls: tuple[ToolCallRecord, ...] = ()
    approval_tool: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: its kind (``route``, ``trajectory``, ``contains``…), a label, the verdict."""

    kind: str
    name: str
    passed: bool
    detail: str = ""
    skipped: bool = False
    score: float | None = None  # the judge's score, for ``rubric``
    extra: dict[str, Any] = field(default_factory=dict)


def score(observation: Observation, expect: Expect, *, route: str | None) -> list[CheckResult]:
    """Every deterministic check ``expect`` asks for (``route``: the expected skill)."""
    results: list[CheckResult] = []
    if observation.outcome == "error":
        results.append(CheckResult("error", "run", False, observation.error or "the run failed"))
    if route is not None:
        results.append(
            CheckResult(
                "route",
                f"route {route}",
                observation.route == route,
                f"answered by {observation.route or 'no skill'}",
            )
        )
    refused = observation.outcome == "refusal"
    results.append(
        CheckResult(
            "refusal",
            "refused" if expect.refusal else "not refused",
            refused == expect.refusal,
            observation.answer if refused else f"outcome: {observation.outcome}",
        )
    )
    if expect.approval is not None:
        results.append(_check_approval(observation, expect.approval))
    if expect.trajectory is not None:
        results.append(check_trajectory(observation.calls, expect.trajectory))
    for tool in expect.forbidden_tools:
        ran = [c for c in observation.calls if c.name == tool and c.executed]
        results.append(
            CheckResult(
                "forbidden_tool",
                f"{tool} never runs",
                not ran,
                "ran: " + "; ".join(c.describe() for c in ran) if ran else "did not run",
            )
        )
    results.extend(check_answer(observation.answer, expect.answer))
    return results


def _check_approval(observation: Observation, expected: bool | str) -> CheckResult:
    asked = observation.outcome == "approval"
    got = f"approval for {observation.approval_tool}" if asked else f"{observation.outcome}"
    if isinstance(expected, str):
        ok = asked and observation.approval_tool == expected
        return CheckResult("approval", f"approval requested for {expected}", ok, got)
    name = "approval requested" if expected else "no approval requested"
    return CheckResult("approval", name, asked == expected, got)


# --------------------------------------------------------------------------- trajectory


def call_matches(actual: ToolCallRecord, expected: ExpectedCall) -> bool:
    """Same tool name and every listed argument matches (and no others, with exact_args)."""
    if actual.name != expected.name:
        return False
    for key, matcher in expected.matchers.items():
        if not matcher.matches(key in actual.args, actual.args.get(key)):
            return False
    return not (expected.exact_args and set(actual.args) - set(expected.matchers))


def _assignable(
    items: Sequence[Any], pool: Sequence[Any], fits: Callable[[Any, Any], bool]
) -> bool:
    """Whether every item can take a distinct member of ``pool`` it fits (backtracking;
    trajectories are short)."""
    used = [False] * len(pool)

    def place(index: int) -> bool:
        if index == len(items):
            return True
        for j, candidate in enumerate(pool):
            if not used[j] and fits(items[index], candidate):
                used[j] = True
                if place(index + 1):
                    return True
                used[j] = False
        return False

    return place(0)


def check_trajectory(calls: Sequence[ToolCallRecord], expected: Trajectory) -> CheckResult:
    """Compare the calls made with the expected trajectory (see `Trajectory` for modes)."""
    want = expected.calls
    mode = expected.mode
    if mode == "exact":
        ok = len(calls) == len(want) and all(map(call_matches, calls, want))
    elif mode == "in_order":
        position = 0
        for call in calls:
            if position < len(want) and call_matches(call, want[position]):
                position += 1
        ok = position == len(want)
    elif mode == "any_order":
        ok = len(calls) == len(want) and _assignable(want, calls, lambda w, c: call_matches(c, w))
    elif mode == "subset":
        ok = _assignable(calls, want, call_matches)
    else:  # superset
        ok = _assignable(want, calls, lambda w, c: call_matches(c, w))
    expected_text = ", ".join(c.describe() for c in want) or "no calls"
    actual_text = ", ".join(c.describe() for c in calls) or "no calls"
    return CheckResult(
        "trajectory",
        f"trajectory ({mode.replace('_', '-')}): {expected_text}",
        ok,
        f"got {actual_text}",
    )


# --------------------------------------------------------------------------- answer


def check_answer(answer: str, checks: AnswerChecks) -> list[CheckResult]:
    """The answer-text checks: contains, not_contains, regex, not_regex, json_schema,
    max_length and no_pii."""
    results: list[CheckResult] = []
    flags = 0 if checks.case_sensitive else re.IGNORECASE
    haystack = answer if checks.case_sensitive else answer.casefold()
    for needle in checks.contains:
        found = (needle if checks.case_sensitive else needle.casefold()) in haystack
        results.append(
            CheckResult("contains", f"contains {needle!r}", found, "" if found else "not found")
        )
    for needle in checks.not_contains:
        found = (needle if checks.case_sensitive else needle.casefold()) in haystack
        results.append(
            CheckResult(
                "not_contains", f"does not contain {needle!r}", not found, "found" if found else ""
            )
        )
    for pattern in checks.regex:
        match = re.search(pattern, answer, flags)
        results.append(
            CheckResult(
                "regex",
                f"matches /{pattern}/",
                match is not None,
                f"matched {match.group(0)!r}" if match else "no match",
            )
        )
    for pattern in checks.not_regex:
        match = re.search(pattern, answer, flags)
        results.append(
            CheckResult(
                "not_regex",
                f"does not match /{pattern}/",
                match is None,
                f"matched {match.group(0)!r}" if match else "",
            )
        )
    if checks.json_schema is not None:
        results.append(_check_json(answer, checks.json_schema))
    if checks.max_length is not None:
        results.append(
            CheckResult(
                "max_length",
                f"at most {checks.max_length} characters",
                len(answer) <= checks.max_length,
                f"{len(answer)} characters",
            )
        )
    if checks.no_pii:
        pii = find_pii(answer)
        kinds = sorted({m.kind for m in pii})
        results.append(
            CheckResult(
                "no_pii",
                "no personal data",
                not pii,
                f"found {len(pii)}: {', '.join(kinds)}" if pii else "",
            )
        )
    return results


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(?P<body>.*?)\n\s*```\s*$", re.DOTALL)


def _check_json(answer: str, schema: dict[str, Any]) -> CheckResult:
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group("body")
    try:
        value = json.loads(text)
    except ValueError as exc:
        return CheckResult("json_schema", "valid JSON for the schema", False, f"not JSON: {exc}")
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path)
    )
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(root)"
        return CheckResult(
            "json_schema", "valid JSON for the schema", False, f"{where}: {first.message}"
        )
    return CheckResult("json_schema", "valid JSON for the schema", True)
