"""The approval wait as a span: from the pause to the decision, in the resuming turn."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from skills import tracing
from skills.catalog import load_registry
from skills.context import Actor, HttpPolicy, ThreadRef
from skills.outcomes import ApprovalRequest, Decision, Reply
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget
from tests.skills.conftest import RuntimeKit

SAM = Actor(user_id="U0SAM", name="sam")
THREAD = ThreadRef(team="T0", channel="C0SUPPORT", thread_ts="1700000000.000500")


@pytest.fixture
def crm() -> Iterator[HttpTarget]:
    with HttpTarget() as target:
        target.route("POST", "/refunds", json={"refund_id": "RF-1", "status": "processed"})
        yield target


async def test_resume_records_the_approval_wait(kit: RuntimeKit, crm: HttpTarget) -> None:
    exporter = InMemorySpanExporter()
    handle = tracing.setup_tracing({}, exporter=exporter, set_global=False)
    assert handle is not None
    try:
        model = ScriptedChatModel(
            [tool_call("issue_refund", order_id="1001", amount=25), reply("Refunded.")]
        )
        registry = load_registry([], env={"CRM_URL": crm.base_url, "CRM_TOKEN": "t"}).registry
        policy = HttpPolicy(allowed_hosts=(httpx.URL(crm.base_url).netloc.decode(),))
        runtime = kit.runtime({"offline": model}, registry=registry, http_policy=policy)
        paused = await runtime.run(thread=THREAD, message="refunds refund 25", actor=SAM)
        assert isinstance(paused, ApprovalRequest)
        decision = Decision(type="approve", interrupt_id=paused.interrupt_id, actor="U0CAROL")
        done = await runtime.resume(thread=THREAD, decision=decision, actor=SAM)
        assert isinstance(done, Reply)
        assert handle.flush()
    finally:
        tracing.uninstall()
        handle.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    wait = spans["approval_wait issue_refund"]
    assert wait.attributes is not None
    assert wait.attributes["switchboard.approval.decision"] == "approve"
    assert wait.attributes["switchboard.approval.approver"] == "U0CAROL"
    resumed = [s for s in exporter.get_finished_spans() if s.name == "invoke_agent refunds"]
    assert len(resumed) == 2  # the paused turn and the resumed one
    assert wait.parent is not None and wait.parent.span_id == resumed[-1].context.span_id
    assert wait.start_time is not None and wait.end_time is not None
    assert wait.start_time <= wait.end_time
    assert "execute_tool issue_refund" in spans
