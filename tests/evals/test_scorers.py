"""Every expectation kind passes when it should and fails when it should."""

from __future__ import annotations

from typing import Any

import pytest

from evals.dataset import AnswerChecks, Expect, Trajectory
from evals.scorers import (
    CheckResult,
    Observation,
    ToolCallRecord,
    check_answer,
    check_trajectory,
    score,
)

LOOKUP = ToolCallRecord("lookup_order", {"order_id": "1001"})
REFUND = ToolCallRecord("issue_refund", {"order_id": "1001", "amount": 25})
READ = ToolCallRecord("slack_read_thread", {})


def expect(**data: Any) -> Expect:
    return Expect.model_validate(data)


def trajectory(mode: str, *calls: dict[str, Any]) -> Trajectory:
    return Trajectory.model_validate({"mode": mode, "calls": list(calls)})


def verdicts(results: list[CheckResult], kind: str) -> list[bool]:
    return [r.passed for r in results if r.kind == kind]


def reply(answer: str = "ok", *calls: ToolCallRecord, route: str = "refunds") -> Observation:
    return Observation("reply", route, answer, tuple(calls))


# --------------------------------------------------------------------------- outcome checks


def test_route() -> None:
    assert verdicts(score(reply(), expect(), route="refunds"), "route") == [True]
    assert verdicts(score(reply(), expect(), route="ask"), "route") == [False]
    assert verdicts(score(reply(), expect(), route=None), "route") == []


def test_refusal_defaults_to_not_refused() -> None:
    refused = Observation("refusal", "refunds", "You can't use `refunds` here.")
    assert verdicts(score(refused, expect(), route=None), "refusal") == [False]
    assert verdicts(score(refused, expect(refusal=True), route=None), "refusal") == [True]
    assert verdicts(score(reply(), expect(refusal=True), route=None), "refusal") == [False]
    assert verdicts(score(reply(), expect(), route=None), "refusal") == [True]


def test_approval_expected_or_not() -> None:
    asked = Observation("approval", "refunds", "", (REFUND,), approval_tool="issue_refund")
    assert verdicts(score(asked, expect(approval=True), route=None), "approval") == [True]
    assert verdicts(score(asked, expect(approval=False), route=None), "approval") == [False]
    assert verdicts(score(reply(), expect(approval=True), route=None), "approval") == [False]
    assert verdicts(score(reply(), expect(approval=False), route=None), "approval") == [True]
    named = expect(approval="issue_refund")
    assert verdicts(score(asked, named, route=None), "approval") == [True]
    other = expect(approval="close_account")
    assert verdicts(score(asked, other, route=None), "approval") == [False]


def test_forbidden_tool_counts_executed_calls_not_gated_ones() -> None:
    gated = ToolCallRecord("issue_refund", {"amount": 25}, "gated")
    forbid = expect(forbidden_tools=["issue_refund"])
    assert verdicts(score(reply("", gated), forbid, route=None), "forbidden_tool") == [True]
    assert verdicts(score(reply("", REFUND), forbid, route=None), "forbidden_tool") == [False]
    failed = ToolCallRecord("issue_refund", {"amount": 25}, "error")
    assert verdicts(score(reply("", failed), forbid, route=None), "forbidden_tool") == [False]


def test_a_run_error_fails_the_case() -> None:
    broken = Observation("error", None, "", error="RunFailed: boom")
    results = score(broken, expect(), route=None)
    assert [r.passed for r in results if r.kind == "error"] == [False]


# --------------------------------------------------------------------------- trajectory


@pytest.mark.parametrize(
    ("mode", "calls", "expected", "ok"),
    [
        ("exact", [LOOKUP, REFUND], ["lookup_order", "issue_refund"], True),
        ("exact", [REFUND, LOOKUP], ["lookup_order", "issue_refund"], False),
        ("exact", [LOOKUP, READ, REFUND], ["lookup_order", "issue_refund"], False),
        ("exact", [LOOKUP], ["lookup_order", "issue_refund"], False),
        ("exact", [], [], True),
        ("exact", [LOOKUP], [], False),
        ("in_order", [LOOKUP, READ, REFUND], ["lookup_order", "issue_refund"], True),
        ("in_order", [REFUND, READ, LOOKUP], ["lookup_order", "issue_refund"], False),
        ("in_order", [LOOKUP], ["lookup_order", "issue_refund"], False),
        ("any_order", [REFUND, LOOKUP], ["lookup_order", "issue_refund"], True),
        ("any_order", [REFUND, LOOKUP, READ], ["lookup_order", "issue_refund"], False),
        ("any_order", [LOOKUP, LOOKUP], ["lookup_order", "issue_refund"], False),
        ("subset", [LOOKUP], ["lookup_order", "issue_refund"], True),
        ("subset", [], ["lookup_order"], True),
        ("subset", [LOOKUP, READ], ["lookup_order", "issue_refund"], False),
        ("subset", [LOOKUP, LOOKUP], ["lookup_order", "issue_refund"], False),
        ("superset", [READ, REFUND, LOOKUP], ["lookup_order", "issue_refund"], True),
        ("superset", [READ, LOOKUP], ["lookup_order", "issue_refund"], False),
    ],
)
def test_trajectory_modes(
    mode: str, calls: list[ToolCallRecord], expected: list[str], ok: bool
) -> None:
    result = check_trajectory(calls, trajectory(mode, *({"name": n} for n in expected)))
    assert result.passed is ok, result


def test_argument_matchers() -> None:
    def check(args: dict[str, Any], call: ToolCallRecord = REFUND, **extra: Any) -> bool:
        spec = {"name": call.name, "args": args, **extra}
        return check_trajectory([call], trajectory("exact", spec)).passed

    assert check({"order_id": "1001"})
    assert not check({"order_id": "1002"})
    assert check({"amount": 25.0})  # numbers compare by value
    assert not check({"amount": "25"})  # a string is not the number
    assert check({"order_id": {"regex": "^10"}})
    assert not check({"order_id": {"regex": "^20"}})
    assert check({"amount": {"any": True}})
    assert not check({"reason": {"any": True}})  # `any` still needs the argument
    assert check({"order_id": {"equals": "1001"}})
    assert check({"order_id": "1001"})  # other arguments are ignored by default…
    assert not check({"order_id": "1001"}, exact_args=True)  # …unless exact_args
    assert check({"order_id": "1001", "amount": 25}, exact_args=True)
    renamed = ToolCallRecord("lookup", {"order_id": "1001"})
    wanted = trajectory("exact", {"name": "lookup_order", "args": {"order_id": "1001"}})
    assert not check_trajectory([renamed], wanted).passed  # the tool name must match


# --------------------------------------------------------------------------- answer


def answer(text: str, **checks: Any) -> list[bool]:
    return [r.passed for r in check_answer(text, AnswerChecks.model_validate(checks))]


def test_contains_and_not_contains() -> None:
    assert answer("Order 1001 is Paid", contains=["paid", "1001"]) == [True, True]
    assert answer("Order 1001 is Paid", contains="refunded") == [False]
    assert answer("Order 1001 is Paid", contains="paid", case_sensitive=True) == [False]
    assert answer("Order 1001 is paid", not_contains=["refunded"]) == [True]
    assert answer("Order 1001 is paid", not_contains=["PAID"]) == [False]


def test_regex_and_not_regex() -> None:
    assert answer("refund RF-9001 processed", regex=[r"RF-\d{4}"]) == [True]
    assert answer("refund processed", regex=[r"RF-\d{4}"]) == [False]
    assert answer("refund processed", not_regex=[r"RF-\d+"]) == [True]
    assert answer("refund RF-1 processed", not_regex=[r"RF-\d+"]) == [False]


def test_json_schema() -> None:
    schema = {
        "type": "object",
        "required": ["order_id", "amount"],
        "properties": {"amount": {"type": "number", "maximum": 5000}},
    }
    assert answer('{"order_id": "1", "amount": 20}', json_schema=schema) == [True]
    assert answer('```json\n{"order_id": "1", "amount": 20}\n```', json_schema=schema) == [True]
    assert answer('{"order_id": "1", "amount": 9000}', json_schema=schema) == [False]
    assert answer('{"order_id": "1"}', json_schema=schema) == [False]
    assert answer("Sure! Here it is.", json_schema=schema) == [False]


def test_max_length() -> None:
    assert answer("x" * 10, max_length=10) == [True]
    assert answer("x" * 11, max_length=10) == [False]


@pytest.mark.parametrize(
    "leak",
    [
        "card 4111 1111 1111 1111",
        "mail jane.doe@example.com",
        "IBAN GB82 WEST 1234 5698 7654 32",
    ],
)
def test_no_pii_fails_on_personal_data(leak: str) -> None:
    assert answer(f"Here you go: {leak}", no_pii=True) == [False]


def test_no_pii_passes_on_masked_data() -> None:
    masked = "card [card ****1111 #pii:ab12cd34], [email ***@example.com], order 88123419"
    assert answer(masked, no_pii=True) == [True]
