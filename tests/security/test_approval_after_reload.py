"""A decision that arrives after the skill was changed under the waiting call.

A call waits for approval; a hot reload then removes the tool's approval (or the tool).
Resuming the new graph with the old decision would run the call whatever was decided:
before the fix, a *rejected* refund was POSTed to the CRM. The runtime now closes such a
call unrun, says so, and the thread goes on."""

from __future__ import annotations

from pathlib import Path

from skills.outcomes import ApprovalRequest, Decision, Refusal, Reply
from skills.registry import Skill
from skills.spec import builtin_dir, load_spec_text
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget
from tests.skills import conftest as runtime_fixtures
from tests.skills import test_runtime_approvals as approvals
from tests.skills.conftest import RuntimeKit

# The runtime kit over both backends and the fake CRM, as the approval tests use them.
kit = runtime_fixtures.kit
crm = approvals.crm
SAM, THREAD, _runtime, _tool_results = (
    approvals.SAM,
    approvals.THREAD,
    approvals._runtime,
    approvals._tool_results,
)


async def test_a_reload_that_ungates_the_waiting_tool_runs_nothing_on_the_old_decision(
    kit: RuntimeKit, crm: HttpTarget
) -> None:
    """A call waits for approval; the skill is then changed so that the tool no longer needs
    one. The decision that arrives later must not run the call on a graph that no longer
    asks (a reject would otherwise execute it): it gets a clear refusal, the call a "not
    run" result, and the thread goes on."""
    model = ScriptedChatModel(
        [tool_call("issue_refund", order_id="1001", amount=25), reply("Back to you.")]
    )
    env = {"CRM_URL": crm.base_url, "CRM_TOKEN": "s3cret"}
    runtime = _runtime(kit, crm, model)
    outcome = await runtime.run(thread=THREAD, message="refunds refund 25 on 1001", actor=SAM)
    assert isinstance(outcome, ApprovalRequest)

    source = (Path(builtin_dir()) / "refunds.yaml").read_text()
    start = source.index("    approval:\n      approvers:")
    end = source.index("      allow_edit: true", start)
    end = source.index("\n", end) + 1
    ungated = source[:start] + "    approval: none\n" + source[end:]
    edited = load_spec_text(ungated, filename="refunds.yaml", env=env)
    registry = runtime.registry
    registry.replace([*(s for s in registry if s.name != "refunds"), Skill.from_spec(edited)])
    runtime.forget_stale()

    decision = Decision(type="reject", interrupt_id=outcome.interrupt_id, actor="U0CAROL")
    done = await runtime.resume(thread=THREAD, decision=decision, actor=SAM)
    assert isinstance(done, Refusal)
    assert "`issue_refund` is no longer offered with an approval" in done.reason
    assert crm.requests == []  # neither the rejected call nor anything else ran
    assert await runtime.pending_approval(THREAD) is None  # the thread is not stuck

    after = await runtime.run(thread=THREAD, message="refunds anything else?", actor=SAM)
    assert isinstance(after, Reply) and after.text == "Back to you."
    results = _tool_results(model)
    assert any("Not run: the skill was changed" in text for text in results)
    assert crm.requests == []
