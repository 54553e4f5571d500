"""The runner drives the real runtime: scripted models, HTTP fixtures, approvals, judges."""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage

from evals.judge import RubricJudge
from evals.runner import EvalStores
from tests.evals.conftest import dataset, runner
from tests.fakes.chat import ScriptedChatModel, Step, reply, tool_call

REFUNDS = """\
skill: refunds
http:
  CRM_URL:
    - {method: GET, path: /orders/1001, json: {id: "1001", total: 80, status: paid}}
    - {method: POST, path: /refunds, json: {refund_id: RF-7, status: processed}}
cases:
  - id: lookup
    message: refunds look up order 1001
    expect:
      trajectory: [{name: lookup_order, args: {order_id: "1001"}}]
      approval: false
      forbidden_tools: [issue_refund]
      answer: {contains: ["paid"]}
"""


async def test_a_scripted_run_passes_with_trajectory_tokens_and_fixture(
    stores: EvalStores,
) -> None:
    seen: list[str] = []

    def answer(messages: list[BaseMessage]) -> AIMessage:
        seen.append(str(messages[-1].content))
        return AIMessage(content="Order 1001 is paid (80 EUR).")

    model = ScriptedChatModel([tool_call("lookup_order", order_id="1001"), answer])
    run = await runner(stores, model).run([dataset(REFUNDS)])
    (case,) = run.cases
    attempt = case.attempts[0]
    assert case.passed, attempt.failed_checks
    assert attempt.calls == [{"name": "lookup_order", "args": {"order_id": "1001"}, "status": "ok"}]
    assert '"status": "paid"' in seen[0] or '"status":"paid"' in seen[0]  # the fixture answered
    assert attempt.input_tokens > 0 and attempt.output_tokens > 0
    assert attempt.route == "refunds" and attempt.outcome == "reply"


async def test_a_wrong_trajectory_fails(stores: EvalStores) -> None:
    model = ScriptedChatModel(
        [tool_call("lookup_order", order_id="2002"), reply("Order 2002 is paid.")]
    )
    run = await runner(stores, model).run([dataset(REFUNDS)])
    (case,) = run.cases
    assert not case.passed
    assert [c.kind for c in case.attempts[0].failed_checks] == ["trajectory"]
    assert run.failures == [case]


async def test_gated_calls_are_not_approved_unless_the_case_says_so(stores: EvalStores) -> None:
    text = """\
    skill: refunds
    http:
      CRM_URL:
        - {method: POST, path: /refunds, json: {refund_id: RF-7, status: processed}}
    cases:
      - id: gated
        message: refunds refund 25 on 1001
        expect:
          approval: issue_refund
          trajectory: [{name: issue_refund, args: {amount: 25}}]
          forbidden_tools: [issue_refund]
      - id: approved
        message: refunds refund 25 on 1001
        approve: true
        expect:
          approval: false
          trajectory: [{name: issue_refund, args: {amount: 25}}]
          answer: {contains: ["RF-7"]}
    """

    def refund() -> AIMessage:
        return tool_call("issue_refund", order_id="1001", amount=25)

    model = ScriptedChatModel(
        [refund(), refund(), lambda m: AIMessage(content=f"Done: {m[-1].content}")]
    )
    run = await runner(stores, model).run([dataset(text)])
    gated, approved = run.cases
    assert gated.passed, gated.attempts[0].failed_checks
    assert gated.attempts[0].calls[0]["status"] == "gated"
    assert approved.passed, approved.attempts[0].failed_checks
    assert approved.attempts[0].calls[0]["status"] == "ok"


async def test_refusal_and_history_turns(stores: EvalStores) -> None:
    text = """\
    skill: refunds
    access:
      refunds: {channels: [C0PAYMENTS]}
    cases:
      - id: refused
        channel: C0SUPPORT
        message: refunds lookup_order order_id=1
        expect: {refusal: true, trajectory: []}
      - id: follow-up
        channel: C0PAYMENTS
        history: ["refunds hello"]
        message: and now?
        expect:
          route: refunds
          trajectory: []
          answer: {contains: ["second"], not_contains: ["first"]}
    """
    model = ScriptedChatModel([reply("first"), reply("second")])
    run = await runner(stores, model).run([dataset(text)])
    refused, follow_up = run.cases
    assert refused.passed and refused.attempts[0].outcome == "refusal"
    assert follow_up.passed, follow_up.attempts[0].failed_checks
    assert model.remaining == 0


async def test_repeat_gives_pass_at_k_and_consistency(stores: EvalStores) -> None:
    text = """\
    skill: ask
    cases:
      - id: flaky
        message: ask say yes
        expect: {answer: {contains: ["yes"]}}
    """
    model = ScriptedChatModel([reply("yes"), reply("no"), reply("yes")])
    run = await runner(stores, model, repeat=3).run([dataset(text)])
    (case,) = run.cases
    assert [a.passed for a in case.attempts] == [True, False, True]
    assert case.passed_any and not case.passed
    summary = run.overall()
    assert summary.pass_at_k == 1.0 and summary.pass_rate == 0.0
    assert abs(summary.attempt_pass_rate - 2 / 3) < 1e-9


async def test_a_crashing_case_is_a_failure_not_a_crash(stores: EvalStores) -> None:
    text = """\
    skill: ask
    cases:
      - {id: boom, message: ask hi}
      - {id: fine, message: ask hi again, expect: {answer: {contains: ["fine"]}}}
    """

    def answer(messages: list[BaseMessage]) -> AIMessage:
        if "again" not in str(messages[-1].content):
            raise RuntimeError("provider down")
        return AIMessage(content="fine")

    model = ScriptedChatModel([answer] * 6)
    run = await runner(stores, model).run([dataset(text)])
    boom, fine = run.cases
    assert not boom.passed and boom.attempts[0].outcome == "error"
    assert "RunFailed" in (boom.attempts[0].error or "")
    assert fine.passed


# --------------------------------------------------------------------------- judge

JUDGED = """\
skill: ask
cases:
  - id: judged
    message: ask draft a reply
    expect:
      rubric: Polite and short.
      rubric_threshold: 0.7
"""


def judge(*steps: Step) -> RubricJudge:
    return RubricJudge(model=ScriptedChatModel(list(steps)), model_name="scripted-judge")


async def test_judge_scores_pass_and_fail(stores: EvalStores) -> None:
    good = judge(tool_call("score", reasoning="Polite and brief.", score=0.9))
    run = await runner(stores, ScriptedChatModel(default="Sure, thanks!"), judge=good).run(
        [dataset(JUDGED)]
    )
    (case,) = run.cases
    (rubric,) = case.attempts[0].check("rubric")
    assert case.passed and rubric.score == 0.9 and rubric.detail == "Polite and brief."
    assert run.overall().judge_score == 0.9 and run.judge_model == "scripted-judge"

    bad = judge(tool_call("score", reasoning="Rude.", score=0.2))
    run = await runner(stores, ScriptedChatModel(default="No."), judge=bad).run([dataset(JUDGED)])
    (case,) = run.cases
    assert not case.passed
    assert [c.kind for c in case.attempts[0].failed_checks] == ["rubric"]


async def test_judge_prompt_carries_rubric_request_and_answer(stores: EvalStores) -> None:
    model = ScriptedChatModel([tool_call("score", reasoning="ok", score=1.0)])
    grader = RubricJudge(model=model, model_name="scripted-judge")
    verdict = await grader.grade(
        rubric="Mentions RF-7.", request="refund it", answer="Refunded: RF-7", trajectory=""
    )
    assert verdict.score == 1.0
    prompt = str(model.calls[0][-1].content)
    assert "Mentions RF-7." in prompt and "refund it" in prompt and "Refunded: RF-7" in prompt


async def test_a_broken_judge_fails_the_check(stores: EvalStores) -> None:
    broken = judge(reply("I think it's fine"))  # no structured score at all
    run = await runner(stores, ScriptedChatModel(default="hello"), judge=broken).run(
        [dataset(JUDGED)]
    )
    (rubric,) = run.cases[0].attempts[0].check("rubric")
    assert not rubric.passed and "judge failed" in rubric.detail


async def test_without_a_judge_rubrics_are_skipped(stores: EvalStores) -> None:
    run = await runner(stores, ScriptedChatModel(default="hello")).run([dataset(JUDGED)])
    (case,) = run.cases
    (rubric,) = [c for c in case.attempts[0].checks if c.kind == "rubric"]
    assert rubric.skipped and case.passed and run.overall().judge_score is None
