"""Wiring mode: scripted model turns through the real runtime, and what makes it fail."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage

from evals.dataset import Script, ScriptStep
from evals.runner import EvalRunner, EvalStores
from evals.wiring import ScriptError, ScriptPlayer
from skills.models.offline import OfflineChatModel
from switchboard.runtime import eval_runtimes
from switchboard.settings import Settings
from tests.evals.conftest import dataset

REFUNDS = """\
skill: refunds
http:
  CRM_URL:
    - {method: GET, path: /orders/1001, json: {id: "1001", customer: Bluebird Cafe, total: 80}}
    - {method: POST, path: /refunds, json: {refund_id: RF-7, status: processed}}
cases:
%s
"""


def wiring(stores: EvalStores) -> EvalRunner:
    return EvalRunner(
        stores=stores,
        runtimes=eval_runtimes(Settings.from_env({})),
        model_factory=lambda name: OfflineChatModel(),
        mode="wiring",
        concurrency=2,
    )


async def _one(stores: EvalStores, case: str) -> tuple[bool, dict[str, str], object]:
    run = await wiring(stores).run([dataset(REFUNDS % case)])
    (result,) = run.cases
    attempt = result.attempts[0]
    return result.passed, {c.kind: c.detail for c in attempt.failed_checks}, attempt


async def test_a_script_plays_through_the_runtime_and_the_fixture_answers(
    stores: EvalStores,
) -> None:
    passed, failed, attempt = await _one(
        stores,
        """\
  - id: lookup
    message: where is order 1001?
    script:
      - {call: lookup_order, args: {order_id: "1001"}}
      - {reply: "Order 1001 is paid.", sees: ['"customer": "Bluebird Cafe"']}
    expect:
      trajectory: [{name: lookup_order, args: {order_id: "1001"}}]
""",
    )
    assert passed, failed
    assert attempt.route == "refunds" and attempt.input_tokens > 0  # type: ignore[attr-defined]


async def test_what_the_model_did_not_see_fails_the_script_check(stores: EvalStores) -> None:
    passed, failed, _ = await _one(
        stores,
        """\
  - id: lookup
    message: where is order 1001?
    script:
      - {call: lookup_order, args: {order_id: "1001"}}
      - {reply: "Order 1001 is paid.", sees: ["Harbour Books"]}
""",
    )
    assert not passed
    assert "turn 2 expected the model to see 'Harbour Books'" in failed["script"]


async def test_unplayed_and_missing_turns_fail(stores: EvalStores) -> None:
    # gated: the answer after approval is never asked for
    passed, failed, _ = await _one(
        stores,
        """\
  - id: gated
    message: refund 25 euros on order 1001
    script:
      - {call: issue_refund, args: {order_id: "1001", amount: 25}}
      - "Refunded."
    expect: {approval: issue_refund}
""",
    )
    assert not passed and "1 scripted turn(s) never played" in failed["script"]
    # the runtime asks for an answer the script does not have
    passed, failed, attempt = await _one(
        stores,
        """\
  - id: short
    message: where is order 1001?
    script:
      - {call: lookup_order, args: {order_id: "1001"}}
""",
    )
    assert not passed and attempt.outcome == "error"  # type: ignore[attr-defined]
    assert "called 2 time(s) but the script has 1 turn(s)" in failed["script"]


async def test_a_scripted_router_answer_is_checked_and_the_actual_skill_reported(
    stores: EvalStores,
) -> None:
    passed, failed, attempt = await _one(
        stores,
        """\
  - id: misrouted
    message: where is order 1001?
    script:
      route: summarize
      turns: ["I can summarize threads."]
""",
    )
    assert not passed and attempt.route == "summarize"  # type: ignore[attr-defined]
    assert failed["route"] == "answered by summarize"


async def test_a_router_choice_the_person_may_not_use_falls_back(stores: EvalStores) -> None:
    """The script's router says refunds, but refunds is not offered in this channel: the
    production router refuses a skill it did not offer, so ask answers."""
    text = (
        REFUNDS
        % """\
  - id: elsewhere
    channel: C0PAYALERTS
    message: where is order 1001?
    script: {route: refunds, turns: ["I can't look orders up here."]}
    expect: {route: ask}
"""
    ).replace("cases:", "access:\n  refunds: {channels: [C0SUPPORT]}\ncases:")
    run = await wiring(stores).run([dataset(text)])
    (result,) = run.cases
    assert result.passed, result.attempts[0].failed_checks
    assert result.attempts[0].route == "ask"


def test_the_player_flags_personal_data_sent_to_a_model() -> None:
    player = ScriptPlayer(case="x/y")
    player.load(Script(turns=[ScriptStep(reply="ok")]), label="message")
    player.answer([HumanMessage("card [card ****1111] is masked")])
    assert player.finish() == []  # a masked value is fine (positive control)
    player.load(Script(turns=[ScriptStep(reply="ok")]), label="message")
    player.answer([HumanMessage("card 4111 1111 1111 1111")])
    (problem,) = player.finish()
    assert "unmasked personal data (card)" in problem
    with pytest.raises(ScriptError, match="called 1 time"):
        player.answer([HumanMessage("more")])


async def test_a_simulated_conversation_runs_end_to_end(stores: EvalStores) -> None:
    passed, failed, attempt = await _one(
        stores,
        """\
  - id: sim
    persona: Sam, terse.
    goal: Get 25 EUR refunded on order 1001, sent for approval.
    max_turns: 3
    simulation:
      - user: a customer wants money back
        script: ["Which order and how much?"]
      - user: 1001, 25 euros, card 4111 1111 1111 1111
        script:
          - {call: lookup_order, args: {order_id: "1001"}}
          - {call: issue_refund, args: {order_id: "1001", amount: 25}, sees: [Bluebird Cafe]}
      - {done: the refund waits for an approver}
    expect:
      approval: issue_refund
      trajectory: [{name: lookup_order}, {name: issue_refund, args: {amount: 25}}]
      answer: {no_pii: true}
""",
    )
    assert passed, failed
    assert attempt.turns == 2  # type: ignore[attr-defined]
    conversation = attempt.conversation  # type: ignore[attr-defined]
    assert conversation[0]["assistant"] == "Which order and how much?"
    assert "4111 1111 1111 1111" not in conversation[1]["user"]  # masked in the report too
    assert conversation[1]["assistant"].startswith("approval requested: issue_refund")


async def test_a_simulation_that_misses_its_goal_or_runs_out_fails(stores: EvalStores) -> None:
    passed, failed, _ = await _one(
        stores,
        """\
  - id: gave-up
    goal: Get a refund.
    simulation:
      - user: refund please
        script: ["I can't help with that."]
      - {done: the assistant could not help, goal_reached: false}
""",
    )
    assert not passed and failed["goal"].startswith("not reached after 1 message(s)")
    passed, failed, _ = await _one(
        stores,
        """\
  - id: endless
    goal: Get a refund.
    max_turns: 1
    simulation:
      - user: refund please
        script: ["Which order?"]
""",
    )
    assert not passed and "not reached after 1 message(s)" in failed["goal"]
