"""OpenTelemetry traces of whole turns, exported over OTLP/HTTP to a local receiver.

A signed mention goes through the real app; the exporter sends protobuf to
``tests/fakes/otlp_receiver.py``, which decodes it the way a collector would. The tests
check the span tree a person would look at, the GenAI attributes, and that a card number
typed by the user appears nowhere in what left the process - with content recording off
(no content at all) and on (content, masked).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skills import tracing
from skills.context import HttpPolicy
from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget
from tests.fakes.otlp_receiver import OtlpReceiver, ReceivedSpan

PAN = "4111 1111 1111 1111"
SECRET_PHRASE = "the purple elephant order"

SKILL = """\
name: orders
description: Look up orders in the CRM.
instructions: Look up orders for the support team.
tools:
  - name: lookup_order
    description: Fetch an order by id.
    http:
      method: GET
      url: "${CRM_URL}/orders/{order_id}"
    parameters:
      order_id: {type: string}
"""


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.fixture
def crm() -> Iterator[HttpTarget]:
    with HttpTarget() as target:
        target.route("GET", "/orders/42", json={"id": "42", "status": "paid", "card": PAN})
        yield target


def traced(receiver: OtlpReceiver, *, content: bool) -> tracing.Tracing:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "switchboard-test",
        "SWITCHBOARD_TRACE_CONTENT": "true" if content else "false",
    }
    handle = tracing.setup_tracing(env, set_global=False)
    assert handle is not None
    return handle


async def mention(
    make_bot: BotFactory, tmp_path: Path, crm: HttpTarget
) -> tuple[BotEnv, ScriptedChatModel]:
    folder = tmp_path / "skills"
    folder.mkdir()
    (folder / "orders.yaml").write_text(SKILL)
    model = ScriptedChatModel(
        [tool_call("lookup_order", order_id="42"), reply("Order 42 is paid.")]
    )
    port = crm.base_url.rsplit(":", 1)[1]
    env = await make_bot(
        {"offline": model},
        skills_env={"CRM_URL": crm.base_url},
        runtime={"http_policy": HttpPolicy(allowed_hosts=(f"127.0.0.1:{port}",))},
        SWITCHBOARD_SKILLS_DIR=str(folder),
    )
    await env.mention(f"orders where is {SECRET_PHRASE} 42? I paid with {PAN}")
    await env.idle()
    return env, model


def collect(handle: tracing.Tracing, receiver: OtlpReceiver, count: int) -> list[ReceivedSpan]:
    assert handle.flush()
    deadline = time.monotonic() + 5
    while len(receiver.spans) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return receiver.spans


def by_name(spans: list[ReceivedSpan], prefix: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


async def test_one_trace_per_turn_from_receiver_to_slack_post(
    make_bot: BotFactory, tmp_path: Path, crm: HttpTarget, receiver: OtlpReceiver
) -> None:
    handle = traced(receiver, content=False)
    try:
        env, _model = await mention(make_bot, tmp_path, crm)
        spans = collect(handle, receiver, 6)
    finally:
        tracing.uninstall()
        handle.shutdown()
    print("\n" + receiver.tree())

    [root] = by_name(spans, "slack.receive")
    assert root.name == "slack.receive event:app_mention" and root.parent_id == ""
    assert root.service == "switchboard-test"
    assert {s.trace_id for s in spans} == {root.trace_id}, "one trace for the whole turn"
    [agent] = by_name(spans, "invoke_agent")
    assert agent.name == "invoke_agent orders" and agent.parent_id == root.span_id
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["switchboard.run_id"]

    chats = by_name(spans, "chat ")
    assert len(chats) == 2 and all(c.parent_id == agent.span_id for c in chats)
    for chat in chats:
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.request.model"]
        assert chat.attributes["gen_ai.provider.name"]
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        assert "gen_ai.usage.output_tokens" in chat.attributes
        assert chat.events == []  # no content unless SWITCHBOARD_TRACE_CONTENT=true
    [tool] = by_name(spans, "execute_tool")
    assert tool.name == "execute_tool lookup_order" and tool.parent_id == agent.span_id
    assert tool.attributes["gen_ai.tool.name"] == "lookup_order"
    assert chats[0].start < tool.start < chats[1].start

    # A queued turn posts its "working on it…" placeholder first, then chat.update's it
    # with the answer: the answer's call comes after the agent, in the same trace.
    posts = [s for s in spans if s.name in {"slack chat.postMessage", "slack chat.update"}]
    assert posts and all(p.parent_id == root.span_id for p in posts)
    answer = max(posts, key=lambda p: p.start)
    assert answer.name == "slack chat.update" and answer.start > agent.start

    raw = b"".join(receiver.bodies)
    for needle in (PAN, PAN.replace(" ", ""), SECRET_PHRASE, "1111 1111"):
        assert needle.encode() not in raw, f"{needle!r} left the process in a span"
    assert env.replies("C0GENERAL", env.slack.messages("C0GENERAL")[0]["ts"])


async def test_content_is_recorded_only_masked(
    make_bot: BotFactory, tmp_path: Path, crm: HttpTarget, receiver: OtlpReceiver
) -> None:
    handle = traced(receiver, content=True)
    try:
        await mention(make_bot, tmp_path, crm)
        spans = collect(handle, receiver, 6)
    finally:
        tracing.uninstall()
        handle.shutdown()

    [first, _second] = by_name(spans, "chat ")
    events = dict(first.events)
    prompt = events["gen_ai.client.inference.input"]["gen_ai.input.messages"]
    assert SECRET_PHRASE in prompt  # content is on: the prompt is there ...
    assert "****1111" in prompt  # ... with the card masked
    [tool] = by_name(spans, "execute_tool")
    result = dict(tool.events)["gen_ai.tool.output"]["gen_ai.tool.call.result"]
    assert '"status": "paid"' in result and "****1111" in result
    raw = b"".join(receiver.bodies)
    for needle in (PAN, PAN.replace(" ", ""), "1111 1111"):
        assert needle.encode() not in raw, f"{needle!r} left the process in a span"


async def test_errors_are_recorded_by_type_with_a_masked_message(receiver: OtlpReceiver) -> None:
    handle = traced(receiver, content=False)
    try:
        with (
            pytest.raises(ValueError, match="card"),
            tracing.receive_span("event_callback", transport="http"),
        ):
            raise ValueError(f"bad card {PAN}")
        spans = collect(handle, receiver, 1)
    finally:
        tracing.uninstall()
        handle.shutdown()
    [span] = spans
    assert span.status_code == 2
    [(name, attributes)] = span.events
    assert name == "exception" and attributes["exception.type"] == "ValueError"
    assert "****1111" in attributes["exception.message"]
    assert PAN.encode() not in b"".join(receiver.bodies)


def test_tracing_is_off_without_an_endpoint() -> None:
    assert tracing.setup_tracing({"OTEL_SERVICE_NAME": "x"}) is None
    assert tracing.current() is None
    with tracing.receive_span("event_callback", transport="http") as span:
        assert span is None
