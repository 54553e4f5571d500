"""Approval-gated tools: the run pauses, and resumes with approve, reject or edit."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from langchain_core.messages import ToolMessage

from skills.catalog import load_registry
from skills.context import Actor, HttpPolicy, ThreadRef
from skills.errors import NothingToResume
from skills.outcomes import ApprovalRequest, Decision, Refusal, Reply
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget
from tests.skills.conftest import RuntimeKit

SAM = Actor(user_id="U0SAM", name="sam")
THREAD = ThreadRef(team="T0", channel="C0SUPPORT", thread_ts="1700000000.000200")


@pytest.fixture
def crm() -> Iterator[HttpTarget]:
    with HttpTarget() as target:
        target.route("GET", "/orders/1001", json={"id": "1001", "total": 80, "status": "paid"})
        target.route("POST", "/refunds", json={"refund_id": "RF-1", "status": "processed"})
        yield target


def _runtime(kit: RuntimeKit, crm: HttpTarget, model: ScriptedChatModel):  # type: ignore[no-untyped-def]
    registry = load_registry([], env={"CRM_URL": crm.base_url, "CRM_TOKEN": "s3cret"}).registry
    # The CRM listens on loopback, an internal address: HTTP tools need it allow-listed.
    policy = HttpPolicy(allowed_hosts=(httpx.URL(crm.base_url).netloc.decode(),))
    return kit.runtime({"offline": model}, registry=registry, http_policy=policy)


def _tool_results(model: ScriptedChatModel) -> list[str]:
    return [str(m.content) for m in model.calls[-1] if isinstance(m, ToolMessage)]


async def test_approve_runs_the_tool_once(kit: RuntimeKit, crm: HttpTarget) -> None:
    model = ScriptedChatModel(
        [tool_call("issue_refund", order_id="1001", amount=25), reply("Refunded 25 EUR.")]
    )
    runtime = _runtime(kit, crm, model)
    outcome = await runtime.run(thread=THREAD, message="refunds refund 25 on 1001", actor=SAM)
    assert isinstance(outcome, ApprovalRequest)
    assert outcome.args == {"order_id": "1001", "amount": 25}
    assert crm.requests == []  # nothing ran before the decision
    assert outcome.parameters_schema["properties"]["amount"]["maximum"] == 5000

    decision = Decision(type="approve", interrupt_id=outcome.interrupt_id, actor="U0CAROL")
    done = await runtime.resume(thread=THREAD, decision=decision, actor=SAM)
    assert isinstance(done, Reply) and done.text == "Refunded 25 EUR."
    posts = [r for r in crm.requests if r.method == "POST"]
    assert len(posts) == 1
    assert posts[0].json() == {"order_id": "1001", "amount": 25}
    assert posts[0].headers["authorization"] == "Bearer s3cret"
    assert posts[0].headers["idempotency-key"].startswith("sb-")
    assert any("RF-1" in text for text in _tool_results(model))

    with pytest.raises(NothingToResume):  # a second click resumes nothing
        await runtime.resume(thread=THREAD, decision=decision, actor=SAM)
    assert len([r for r in crm.requests if r.method == "POST"]) == 1


async def test_reject_tells_the_model_and_calls_nothing(kit: RuntimeKit, crm: HttpTarget) -> None:
    model = ScriptedChatModel(
        [tool_call("issue_refund", order_id="1001", amount=25), reply("OK, not refunded.")]
    )
    runtime = _runtime(kit, crm, model)
    outcome = await runtime.run(thread=THREAD, message="refunds refund it", actor=SAM)
    assert isinstance(outcome, ApprovalRequest)
    decision = Decision(
        type="reject", interrupt_id=outcome.interrupt_id, actor="U0CAROL", reason="duplicate"
    )
    done = await runtime.resume(thread=THREAD, decision=decision, actor=SAM)
    assert isinstance(done, Reply) and done.text == "OK, not refunded."
    assert crm.requests == []
    assert any("duplicate" in text for text in _tool_results(model))


async def test_edit_runs_with_the_edited_arguments(kit: RuntimeKit, crm: HttpTarget) -> None:
    model = ScriptedChatModel(
        [tool_call("issue_refund", order_id="1001", amount=250), reply("Refunded 20.")]
    )
    runtime = _runtime(kit, crm, model)
    outcome = await runtime.run(thread=THREAD, message="refunds refund it", actor=SAM)
    assert isinstance(outcome, ApprovalRequest)
    decision = Decision(
        type="edit",
        interrupt_id=outcome.interrupt_id,
        actor="U0CAROL",
        args={"order_id": "1001", "amount": 20},
    )
    await runtime.resume(thread=THREAD, decision=decision, actor=SAM)
    posts = [r for r in crm.requests if r.method == "POST"]
    assert [p.json()["amount"] for p in posts] == [20]


async def test_new_message_while_waiting_is_refused(kit: RuntimeKit, crm: HttpTarget) -> None:
    model = ScriptedChatModel([tool_call("issue_refund", order_id="1001", amount=5)])
    runtime = _runtime(kit, crm, model)
    assert isinstance(
        await runtime.run(thread=THREAD, message="refunds go", actor=SAM), ApprovalRequest
    )
    outcome = await runtime.run(thread=THREAD, message="and another thing", actor=SAM)
    assert isinstance(outcome, Refusal) and "waiting for approval" in outcome.reason


async def test_switching_skills_then_approving(kit: RuntimeKit, crm: HttpTarget) -> None:
    """A thread started with `ask` and then handed to `refunds` resumes in `refunds`."""
    model = ScriptedChatModel(
        [reply("hi"), tool_call("issue_refund", order_id="1001", amount=5), reply("done")]
    )
    runtime = _runtime(kit, crm, model)
    await runtime.run(thread=THREAD, message="hello", actor=SAM)
    outcome = await runtime.run(thread=THREAD, message="refunds refund 5", actor=SAM)
    assert isinstance(outcome, ApprovalRequest)
    decision = Decision(type="approve", interrupt_id=outcome.interrupt_id, actor="U0CAROL")
    done = await runtime.resume(thread=THREAD, decision=decision, actor=SAM)
    assert isinstance(done, Reply) and done.skill == "refunds" and done.text == "done"
    assert len([r for r in crm.requests if r.method == "POST"]) == 1


async def test_pii_in_arguments_reaches_the_tool_but_not_the_model(
    kit: RuntimeKit, crm: HttpTarget
) -> None:
    """The user types a card number; the model sees a token; the tool gets the original."""
    pan = "4111 1111 1111 1111"

    def call_with_token(messages):  # type: ignore[no-untyped-def]
        human = str(messages[-1].content)
        token = human[human.index("[card") : human.index("]", human.index("[card")) + 1]
        return tool_call("lookup_order", order_id="1001", note=token)

    crm.route("GET", "/orders/1001", json={"id": "1001", "card": pan})
    model = ScriptedChatModel([call_with_token, reply("Found it.")])
    runtime = _runtime(kit, crm, model)
    await runtime.run(thread=THREAD, message=f"refunds is order 1001 paid with {pan}?", actor=SAM)
    sent_to_model = " ".join(str(m.content) for call in model.calls for m in call)
    assert "4111" not in sent_to_model.replace("****1111", "")
    assert "1111 1111 1111 1111" not in sent_to_model
