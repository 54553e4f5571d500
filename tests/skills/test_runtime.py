"""The runtime API end to end: routing, access, memory, ordering, run records, errors."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from skills.context import Actor, ThreadRef
from skills.errors import RunFailed
from skills.models.offline import LABEL, OfflineChatModel
from skills.outcomes import ApprovalRequest, Refusal, Reply
from skills.registry import Access, Skill, SkillRegistry
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.skills.conftest import RuntimeKit

CAROL = Actor(user_id="U0CAROL", name="carol", tz="Europe/Lisbon")
SAM = Actor(user_id="U0SAM", name="sam", tz="America/New_York")


def thread(ts: str = "1700000000.000100", channel: str = "C0GENERAL") -> ThreadRef:
    return ThreadRef(team="T0", channel=channel, thread_ts=ts)


def texts(messages: list[BaseMessage]) -> list[str]:
    return [str(m.text) for m in messages if isinstance(m, HumanMessage | AIMessage)]


async def test_reply_is_recorded_with_tokens_and_latency(kit: RuntimeKit) -> None:
    model = ScriptedChatModel([reply("Hello Carol.")])
    runtime = kit.runtime({"offline": model})
    outcome = await runtime.run(thread=thread(), message="ask hi there", actor=CAROL)
    assert isinstance(outcome, Reply)
    assert outcome.text == "Hello Carol."
    assert outcome.skill == "ask"
    assert texts(model.calls[0])[-1] == "hi there"  # the skill name is not sent as text

    record = await kit.runs().get(outcome.run_id)
    assert record is not None
    assert record.skill == "ask" and record.actor == "U0CAROL" and record.outcome == "reply"
    assert record.thread_id == "T0:C0GENERAL:1700000000.000100"
    assert record.total_tokens > 0 and record.input_tokens > 0
    assert record.latency_ms is not None and record.latency_ms >= 0
    assert record.finished_at is not None


async def test_memory_survives_a_new_runtime_on_the_same_redis(kit: RuntimeKit) -> None:
    first = kit.runtime({"offline": ScriptedChatModel([reply("Noted: order 1001.")])})
    await first.run(thread=thread(), message="ask remember order 1001", actor=CAROL)

    model = ScriptedChatModel([reply("It was order 1001.")])
    second = kit.runtime({"offline": model})  # a restart, or another replica
    outcome = await second.run(thread=thread(), message="which order?", actor=CAROL)
    assert isinstance(outcome, Reply) and outcome.skill == "ask"  # the thread stays with ask
    seen = texts(model.calls[0])
    assert seen[-3:] == ["remember order 1001", "Noted: order 1001.", "which order?"]


async def test_threads_do_not_share_memory(kit: RuntimeKit) -> None:
    model = ScriptedChatModel([reply("one"), reply("two")])
    runtime = kit.runtime({"offline": model})
    await runtime.run(thread=thread("1.1"), message="ask secret plan A", actor=CAROL)
    await runtime.run(thread=thread("2.2"), message="ask what plan?", actor=CAROL)
    assert "secret plan A" not in " ".join(texts(model.calls[1]))


async def test_two_messages_on_one_thread_run_in_order(kit: RuntimeKit) -> None:
    model = ScriptedChatModel([reply("first answer"), reply("second answer")], delay=0.3)
    runtime = kit.runtime({"offline": model})
    first = asyncio.create_task(
        runtime.run(thread=thread(), message="ask first question", actor=CAROL)
    )
    await asyncio.sleep(0.05)
    second = asyncio.create_task(
        runtime.run(thread=thread(), message="ask second question", actor=SAM)
    )
    one, two = await asyncio.gather(first, second)
    assert isinstance(one, Reply) and one.text == "first answer"
    assert isinstance(two, Reply) and two.text == "second answer"
    # The second call saw the first turn complete: nothing interleaved, nothing lost.
    assert texts(model.calls[1])[-3:] == ["first question", "first answer", "second question"]


async def test_different_threads_run_in_parallel(kit: RuntimeKit) -> None:
    model = ScriptedChatModel(default="ok", delay=0.4)
    runtime = kit.runtime({"offline": model})
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(
        *(runtime.run(thread=thread(f"{i}.0"), message="ask hi", actor=CAROL) for i in range(5))
    )
    assert loop.time() - start < 5 * 0.4  # not serialised


async def test_reset_forgets_the_thread(kit: RuntimeKit) -> None:
    model = ScriptedChatModel([reply("Noted."), reply("I don't know.")])
    runtime = kit.runtime({"offline": model})
    await runtime.run(thread=thread(), message="ask my code word is tulip", actor=CAROL)
    await runtime.reset(thread())
    await runtime.run(thread=thread(), message="ask what is my code word?", actor=CAROL)
    assert "tulip" not in " ".join(texts(model.calls[1]))
    assert await runtime.history(thread()) != []


# -- routing ---------------------------------------------------------------------------


def _registry() -> SkillRegistry:
    from skills.catalog import load_registry

    base = list(load_registry([], env={}).registry)
    extra = [
        Skill(
            name="payments",
            description="Chargebacks, refunds status and payment failures for merchants",
            access=Access(channels=frozenset({"C0PAYMENTS"})),
            spec=next(s for s in base if s.name == "ask").spec,
        ),
    ]
    return SkillRegistry([*base, *extra])


@pytest.mark.parametrize(
    ("message", "channel", "expected"),
    [
        ("summarize this thread please", "C0GENERAL", "summarize"),  # first word names it
        ("digest #C0PAYALERTS 24h", "C0GENERAL", "digest"),
        ("what's the capital of Portugal?", "C0GENERAL", "ask"),  # nothing matches: fallback
        ("why did the chargeback payment fail for this merchant", "C0PAYMENTS", "payments"),
        ("why did the chargeback payment fail for this merchant", "C0GENERAL", "ask"),
    ],
)
async def test_routing_table(kit: RuntimeKit, message: str, channel: str, expected: str) -> None:
    runtime = kit.runtime(registry=_registry())
    route = await runtime.router.route(
        thread_id=f"T0:{channel}:1.0",
        channel=channel,
        text=message,
        candidates=runtime.available_skills(CAROL, channel),
    )
    assert route.skill == expected


async def test_channel_default_and_thread_ownership(kit: RuntimeKit) -> None:
    runtime = kit.runtime(registry=_registry())
    await runtime.channels.set("C0PAYMENTS", "summarize", set_by="U0CAROL")
    candidates = runtime.available_skills(CAROL, "C0PAYMENTS")
    route = await runtime.router.route(
        thread_id="T0:C0PAYMENTS:9.9", channel="C0PAYMENTS", text="hello", candidates=candidates
    )
    assert (route.skill, route.reason) == ("summarize", "channel")

    outcome = await runtime.run(
        thread=thread("5.5", "C0PAYMENTS"), message="ask hello", actor=CAROL
    )
    assert isinstance(outcome, Reply) and outcome.skill == "ask"
    route = await runtime.router.route(
        thread_id=thread("5.5", "C0PAYMENTS").thread_id,
        channel="C0PAYMENTS",
        text="and then?",
        candidates=candidates,
    )
    assert (route.skill, route.reason) == ("ask", "thread")


async def test_access_refusal_lists_allowed_skills(kit: RuntimeKit) -> None:
    model = ScriptedChatModel([])
    runtime = kit.runtime({"offline": model}, registry=_registry())
    outcome = await runtime.run(thread=thread(), message="payments why?", actor=CAROL)
    assert isinstance(outcome, Refusal)
    assert outcome.skill == "payments"
    assert "payments" not in outcome.allowed_skills and "ask" in outcome.allowed_skills
    assert model.calls == []  # nothing ran
    assert await kit.runs().count() == 0


async def test_usergroup_access(kit: RuntimeKit) -> None:
    ask = next(s for s in _registry() if s.name == "ask")
    leads_only = Skill(
        name="limits",
        description="Change merchant limits",
        access=Access(usergroups=frozenset({"S0LEADS"})),
        spec=ask.spec,
    )
    runtime = kit.runtime(registry=SkillRegistry([ask, leads_only]))
    lead = Actor(user_id="U0DEV", usergroups=frozenset({"S0LEADS"}))
    assert isinstance(await runtime.run(thread=thread(), message="limits x", actor=SAM), Refusal)
    outcome = await runtime.run(thread=thread("8.8"), message="limits x", actor=lead)
    assert isinstance(outcome, Reply)


# -- failures ----------------------------------------------------------------------------


async def test_model_error_is_a_typed_failure_with_a_reference(kit: RuntimeKit) -> None:
    model = ScriptedChatModel([RuntimeError("provider said: key sk-secret is invalid")] * 3)
    runtime = kit.runtime({"offline": model})
    with pytest.raises(RunFailed) as info:
        await runtime.run(thread=thread(), message="ask hi", actor=CAROL)
    assert "sk-secret" not in str(info.value)
    records = await kit.runs().for_thread(thread().thread_id)
    assert [r.outcome for r in records] == ["error"]
    assert records[0].error_ref == info.value.ref


async def test_transient_model_errors_are_retried(kit: RuntimeKit) -> None:
    model = ScriptedChatModel([TimeoutError("slow"), reply("after a retry")])
    runtime = kit.runtime({"offline": model})
    outcome = await runtime.run(thread=thread(), message="ask hi", actor=CAROL)
    assert isinstance(outcome, Reply) and outcome.text == "after a retry"


async def test_fallback_model_answers_when_the_primary_fails(kit: RuntimeKit) -> None:
    primary = ScriptedChatModel([ConnectionError("down")] * 10)
    backup = ScriptedChatModel([reply("from the backup")])
    runtime = kit.runtime(
        {"offline": primary, "backup": backup}, fallback_models=("backup",), model_retries=1
    )
    outcome = await runtime.run(thread=thread(), message="ask hi", actor=CAROL)
    assert isinstance(outcome, Reply) and outcome.text == "from the backup"


async def test_runaway_tool_loop_ends_with_a_clear_message(kit: RuntimeKit) -> None:
    model = ScriptedChatModel(default=tool_call("time_now"))
    runtime = kit.runtime({"offline": model}, model_call_limit=4)
    outcome = await runtime.run(thread=thread(), message="ask loop forever", actor=CAROL)
    assert isinstance(outcome, Reply)
    assert "limit" in outcome.text.lower()
    assert len(model.calls) == 4


# -- the offline model drives every path -------------------------------------------------


async def test_offline_model_reply(kit: RuntimeKit) -> None:
    runtime = kit.runtime({"offline": OfflineChatModel()})
    outcome = await runtime.run(thread=thread(), message="ask hello there", actor=CAROL)
    assert isinstance(outcome, Reply) and outcome.text.startswith(LABEL)


async def test_offline_model_tool_call(kit: RuntimeKit) -> None:
    runtime = kit.runtime({"offline": OfflineChatModel()})
    outcome = await runtime.run(thread=thread(), message="ask time_now", actor=CAROL)
    assert isinstance(outcome, Reply)
    assert "time_now" in outcome.text and "Europe/Lisbon" in outcome.text


async def test_offline_model_reaches_an_approval(kit: RuntimeKit) -> None:
    runtime = kit.runtime({"offline": OfflineChatModel()})
    outcome = await runtime.run(
        thread=thread(), message="refunds issue_refund order_id=1001 amount=25", actor=SAM
    )
    assert isinstance(outcome, ApprovalRequest)
    assert outcome.tool == "issue_refund"
    assert outcome.args == {"order_id": "1001", "amount": 25}
    assert outcome.requester == "U0SAM"
    assert outcome.policy.quorum >= 1 and outcome.policy.four_eyes
    assert await runtime.pending_approval(thread()) is not None


async def test_streaming_passes_the_answer_on_as_it_is_generated(kit: RuntimeKit) -> None:
    model = ScriptedChatModel([reply("The settlement job ran at 06:00 and finished cleanly.")])
    runtime = kit.runtime({"offline": model})
    pieces: list[str] = []

    async def sink(text: str) -> None:
        pieces.append(text)

    outcome = await runtime.run(thread=thread(), message="ask status?", actor=CAROL, on_text=sink)
    assert isinstance(outcome, Reply)
    assert len(pieces) > 1  # really streamed, not one final blob
    assert "".join(pieces).strip() == outcome.text


async def test_streaming_run_can_still_pause_for_approval(kit: RuntimeKit) -> None:
    model = ScriptedChatModel([tool_call("issue_refund", order_id="1", amount=2)])
    runtime = kit.runtime({"offline": model})

    async def sink(text: str) -> None:
        pass

    outcome = await runtime.run(
        thread=thread(), message="refunds refund 2 on order 1", actor=SAM, on_text=sink
    )
    assert isinstance(outcome, ApprovalRequest) and outcome.tool == "issue_refund"
