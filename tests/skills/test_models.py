"""The chat-model layer: the offline model, the loader, and the fakes other tests rely on."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain.agents import create_agent
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver

from skills.models import (
    MaskedChatModel,
    MissingCredentialsError,
    MissingProviderPackageError,
    ModelConfigError,
    ModelInitError,
    OfflineChatModel,
    UnknownModelSpecError,
    keyword_route,
    load_chat_model,
    model_label,
    unmasked,
)
from tests.fakes.chat import ScriptedChatModel, ScriptExhaustedError, reply, tool_call
from tests.fakes.openai_server import FakeOpenAIServer, Reply

# -- tools ---------------------------------------------------------------------------------


def make_tools() -> tuple[list[BaseTool], list[dict[str, Any]]]:
    """Two payments tools and the list of calls they received."""
    received: list[dict[str, Any]] = []

    @tool
    def lookup_order(order_id: str) -> dict[str, Any]:
        """Fetch an order by id."""
        received.append({"tool": "lookup_order", "order_id": order_id})
        return {"order_id": order_id, "status": "paid", "amount": 125.5}

    @tool
    def issue_refund(
        order_id: str, amount: float, quantity: int = 1, note: str = "", notify: bool = False
    ) -> str:
        """Refund an order."""
        received.append(
            {
                "order_id": order_id,
                "amount": amount,
                "quantity": quantity,
                "note": note,
                "notify": notify,
            }
        )
        return f"refund of {amount} issued for order {order_id}"

    return [lookup_order, issue_refund], received


def bound(model: OfflineChatModel, tools: list[BaseTool]) -> Any:
    return model.bind_tools(tools)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


# -- offline model: replies ----------------------------------------------------------------


def test_plain_reply_is_labelled_and_explains_how_to_call_tools() -> None:
    tools, _ = make_tools()
    answer = bound(OfflineChatModel(), tools).invoke([HumanMessage("what can you do?")])

    assert answer.text.startswith("(offline model)")
    assert "what can you do?" in answer.text
    assert "lookup_order" in answer.content and "issue_refund" in answer.text
    assert "lookup_order order_id=..." in answer.text
    assert answer.tool_calls == []


def test_plain_reply_without_tools_says_so() -> None:
    answer = OfflineChatModel().invoke("hello")

    assert answer.text.startswith("(offline model)")
    assert "no tools" in answer.text


def test_command_becomes_tool_call_with_values_typed_by_schema() -> None:
    tools, _ = make_tools()
    text = (
        "<@U0BOT> please issue_refund order_id=42 amount=10.5 quantity=3 "
        'note="two words" notify=yes'
    )

    answer = bound(OfflineChatModel(), tools).invoke([HumanMessage(text)])

    assert answer.content == ""
    assert len(answer.tool_calls) == 1
    call = answer.tool_calls[0]
    assert call["name"] == "issue_refund"
    assert call["args"] == {
        "order_id": "42",  # the schema says string: digits stay a string
        "amount": 10.5,
        "quantity": 3,
        "note": "two words",
        "notify": True,
    }
    assert call["id"] and call["id"].startswith("call_")


def test_naming_a_tool_without_arguments_is_not_a_call() -> None:
    tools, _ = make_tools()

    answer = bound(OfflineChatModel(), tools).invoke([HumanMessage("what does issue_refund do?")])

    assert answer.tool_calls == []
    assert answer.text.startswith("(offline model)")


def test_reply_after_tool_result_quotes_the_result_truncated() -> None:
    long_result = '{"order_id": "42", "status": "paid", "history": "' + "x" * 2000 + '"}'
    messages: list[BaseMessage] = [
        HumanMessage("lookup_order order_id=42"),
        AIMessage(
            "", tool_calls=[{"name": "lookup_order", "args": {"order_id": "42"}, "id": "call_1"}]
        ),
        ToolMessage(long_result, tool_call_id="call_1"),
    ]

    answer = OfflineChatModel().invoke(messages)

    # a JSON object reads as fields, each value cut to fit
    assert answer.text.startswith("(offline model) lookup_order returned:\n• order_id: 42\n")
    assert "• status: paid" in answer.text
    assert len(answer.text) < 400
    assert answer.text.endswith("…")


def test_rejected_tool_call_is_reported_as_rejected() -> None:
    messages: list[BaseMessage] = [
        HumanMessage("issue_refund order_id=42 amount=10"),
        AIMessage(
            "",
            tool_calls=[
                {"name": "issue_refund", "args": {"order_id": "42", "amount": 10}, "id": "call_9"}
            ],
        ),
        ToolMessage(
            "User rejected the tool call for `issue_refund` with reason: too large",
            tool_call_id="call_9",
            status="error",
        ),
    ]

    answer = OfflineChatModel().invoke(messages)

    assert "issue_refund was rejected" in answer.text
    assert "too large" in answer.text


def test_same_input_gives_same_output_and_repeats_get_new_call_ids() -> None:
    tools, _ = make_tools()
    model = bound(OfflineChatModel(), tools)
    first = [HumanMessage("lookup_order order_id=7")]

    a, b = model.invoke(first), model.invoke(first)
    assert (a.content, a.tool_calls) == (b.content, b.tool_calls)
    assert model.invoke([HumanMessage("hi")]).content == model.invoke([HumanMessage("hi")]).content
    streamed = "".join(chunk.text for chunk in model.stream([HumanMessage("hi")]))
    assert streamed == model.invoke([HumanMessage("hi")]).text

    later = [
        *first,
        a,
        ToolMessage("{}", tool_call_id=a.tool_calls[0]["id"]),
        AIMessage("done"),
        HumanMessage("lookup_order order_id=7"),
    ]
    again = model.invoke(later)
    assert again.tool_calls[0]["args"] == {"order_id": "7"}
    assert again.tool_calls[0]["id"] != a.tool_calls[0]["id"]


def test_usage_is_estimated_from_text_length() -> None:
    answer = OfflineChatModel().invoke([HumanMessage("x" * 400)])

    usage = answer.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == 100
    assert usage["output_tokens"] == len(answer.text) // 4
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


TRANSCRIPT = """\
[09:01] alice: Morning all.
[09:02] bob: The settlement batch for EU merchants failed at 03:00 because the bank \
rejected the file. We re-sent it at 08:30 and it was accepted.
[09:05] carol: ok
[09:07] alice: Finance needs the corrected totals before noon. Dave owns that.
[09:09] <@U0DAVE>: I will post the corrected totals in this channel by 11:00. They are \
being reconciled now.
"""


def test_summary_request_gets_an_extractive_summary() -> None:
    messages: list[BaseMessage] = [
        SystemMessage("Summarize the conversation for someone who missed it."),
        HumanMessage(TRANSCRIPT),
    ]

    answer = OfflineChatModel(summary_lines=3).invoke(messages)

    lines = answer.text.splitlines()
    assert lines[0].startswith("(offline model) Summary of 5 messages from 4 participants")
    assert lines[1:] == [
        "• bob: The settlement batch for EU merchants failed at 03:00 because the bank "
        "rejected the file.",
        "• alice: Finance needs the corrected totals before noon.",
        "• <@U0DAVE>: I will post the corrected totals in this channel by 11:00.",
    ]


def test_summary_of_a_thread_read_by_a_tool() -> None:
    thread = (
        '[{"user": "U1", "text": "Deploy of payments-api 2.3 is blocked by a failing test."},'
        ' {"user": "U2", "text": "Fixed the test, redeploying now."},'
        ' {"user": "U1", "text": "thanks"}]'
    )
    messages: list[BaseMessage] = [
        SystemMessage("You write a daily digest of the channel."),
        HumanMessage("slack_read_thread channel=C1"),
        AIMessage(
            "",
            tool_calls=[{"name": "slack_read_thread", "args": {"channel": "C1"}, "id": "call_t"}],
        ),
        ToolMessage(thread, tool_call_id="call_t"),
    ]

    answer = OfflineChatModel().invoke(messages)

    assert answer.text.startswith("(offline model) Summary of 3 messages from 2 participants")
    assert "• U1: Deploy of payments-api 2.3 is blocked by a failing test." in answer.text


def test_message_lines_are_not_summarised_unless_asked() -> None:
    answer = OfflineChatModel().invoke(
        [SystemMessage("Tone: friendly\nScope: payments"), HumanMessage("hello")]
    )

    assert "Summary" not in answer.text
    assert "hello" in answer.text


def test_structured_output_points_to_keyword_route() -> None:
    with pytest.raises(NotImplementedError, match="keyword_route"):
        OfflineChatModel().with_structured_output(dict)


# -- offline model inside a real agent -----------------------------------------------------


async def test_offline_model_drives_create_agent_through_a_tool_call() -> None:
    tools, received = make_tools()
    agent = create_agent(model=OfflineChatModel(), tools=tools, checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "thread-1"}}

    result = await agent.ainvoke(
        {"messages": [user("issue_refund order_id=42 amount=10 notify=true")]}, config
    )

    assert received == [
        {"order_id": "42", "amount": 10.0, "quantity": 1, "note": "", "notify": True}
    ]
    final = result["messages"][-1]
    assert final.content == (
        "(offline model) issue_refund returned refund of 10.0 issued for order 42"
    )
    assert final.usage_metadata["total_tokens"] > 0

    second = await agent.ainvoke({"messages": [user("thanks")]}, config)
    assert len(second["messages"]) == 6  # the thread remembers the first turn
    assert second["messages"][-1].content.startswith("(offline model) I understood: “thanks”")


async def test_offline_agent_streams_messages() -> None:
    tools, received = make_tools()
    agent = create_agent(model=OfflineChatModel(), tools=tools, checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "thread-2"}}

    chunks = [
        chunk
        async for chunk, _meta in agent.astream(
            {"messages": [user("lookup_order order_id=77")]}, config, stream_mode="messages"
        )
        if isinstance(chunk, AIMessageChunk)
    ]

    assert received == [{"tool": "lookup_order", "order_id": "77"}]
    assert chunks[0].tool_call_chunks[0]["name"] == "lookup_order"
    text_chunks = [c.text for c in chunks[1:] if c.text]
    assert len(text_chunks) > 3
    assert "".join(text_chunks).startswith("(offline model) lookup_order returned")


# -- keyword routing -----------------------------------------------------------------------

SKILLS = {
    "refunds": "Look up orders and refund them after approval.",
    "summarize": "Summarize a Slack thread or channel for people who missed it.",
    "digest": "Post a daily digest of a channel's activity.",
    "oncall": "Help the on-call engineer triage incidents and pages.",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("can you refund order 42, the customer was charged twice", "refunds"),
        ("<@U0BOT> summarise this thread please", "summarize"),
        ("what did I miss? give me a summary", "summarize"),
        ("we got paged, the incident is still open", "oncall"),
        ("digest please", "digest"),
        ("use digest for the refund orders", "digest"),  # named outright wins
        ("good morning", None),
        ("", None),
    ],
)
def test_keyword_route(text: str, expected: str | None) -> None:
    assert keyword_route(text, SKILLS) == expected


def test_keyword_route_ties_do_not_depend_on_load_order() -> None:
    candidates = {"beta": "handle orders", "alpha": "handle orders"}

    assert keyword_route("orders", candidates) == "alpha"
    assert keyword_route("orders", dict(reversed(candidates.items()))) == "alpha"


# -- loader --------------------------------------------------------------------------------

SECRET = "sk-test-DO-NOT-LEAK-0123456789"


def test_offline_spec_loads_the_offline_model() -> None:
    model = load_chat_model(" offline ")

    assert isinstance(model, MaskedChatModel)  # every loaded model masks its input
    assert isinstance(unmasked(model), OfflineChatModel)
    assert model_label(model) == "offline"
    assert model_label(model.bind_tools([])) == "offline"


@pytest.mark.parametrize(
    ("spec", "module", "package", "install"),
    [
        (
            "ollama:llama3",
            "langchain_ollama",
            "langchain-ollama",
            "pip install 'switchboard[ollama]'",
        ),
        (
            "anthropic:claude-sonnet-4-5",
            "langchain_anthropic",
            "langchain-anthropic",
            "pip install 'switchboard[anthropic]'",
        ),
        (
            "google_vertexai:gemini-2.5-flash",
            "langchain_google_vertexai",
            "langchain-google-vertexai",
            "pip install 'switchboard[vertexai]'",
        ),
    ],
)
def test_missing_provider_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, spec: str, module: str, package: str, install: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail

    with pytest.raises(MissingProviderPackageError) as caught:
        load_chat_model(spec, env={"ANTHROPIC_API_KEY": SECRET})

    assert str(caught.value) == f"model {spec!r} needs the package {package}: {install}"


@pytest.mark.parametrize("spec", ["nonsense", "nonsense:model", "gpt-4.1-mini", "openai:", ""])
def test_unknown_or_malformed_spec_lists_accepted_forms(spec: str) -> None:
    with pytest.raises(UnknownModelSpecError) as caught:
        load_chat_model(spec, env={})

    message = str(caught.value)
    assert "'offline'" in message and "'provider:model'" in message
    assert "openai, anthropic, google_vertexai, ollama" in message
    assert "\n" not in message


def test_missing_openai_key_reads_the_given_env_not_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    with pytest.raises(MissingCredentialsError) as caught:
        load_chat_model("openai:gpt-4.1-mini", env={})

    assert str(caught.value) == (
        "model 'openai:gpt-4.1-mini' has no API key: "
        "set OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server)"
    )


def test_missing_anthropic_key() -> None:
    with pytest.raises(ModelConfigError, match=r"set ANTHROPIC_API_KEY$"):
        load_chat_model("anthropic:claude-sonnet-4-5", env={"OPENAI_API_KEY": SECRET})


def test_rejected_settings_are_reported_without_the_key() -> None:
    with pytest.raises(ModelInitError) as caught:
        load_chat_model(
            "anthropic:claude-sonnet-4-5", env={"ANTHROPIC_API_KEY": SECRET}, max_tokens="lots"
        )

    assert "max_tokens" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None  # the original error (and its inputs) is dropped


def test_openai_settings_come_from_env_mapping() -> None:
    model = load_chat_model(
        "openai:gpt-4.1-mini",
        timeout=7.5,
        env={"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
    )

    assert model_label(model) == "openai:gpt-4.1-mini"
    settings = unmasked(model).model_dump()
    assert settings["openai_api_base"] == "http://127.0.0.1:9/v1"
    assert settings["request_timeout"] == 7.5
    assert settings["max_retries"] == 0
    assert SECRET not in repr(model)


# -- OpenAI provider end to end, against a local server -------------------------------------


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def openai_model(server: FakeOpenAIServer, **kwargs: Any) -> Any:
    return load_chat_model(
        "openai:gpt-4.1-mini", env={"OPENAI_BASE_URL": server.base_url}, **kwargs
    )


async def test_openai_model_runs_an_agent_with_a_tool(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Reply.tool("lookup_order", order_id="42"), Reply.text("Order 42 is paid."))
    tools, received = make_tools()
    agent = create_agent(
        model=openai_model(openai_server),
        tools=tools,
        system_prompt="You help the payments team.",
        checkpointer=InMemorySaver(),
    )

    result = await agent.ainvoke(
        {"messages": [user("status of order 42?")]}, {"configurable": {"thread_id": "t"}}
    )

    assert result["messages"][-1].content == "Order 42 is paid."
    assert result["messages"][-1].usage_metadata["total_tokens"] > 0
    assert received == [{"tool": "lookup_order", "order_id": "42"}]
    first, second = openai_server.requests
    assert first.body["model"] == "gpt-4.1-mini"
    assert first.tool_names == ["lookup_order", "issue_refund"]
    assert first.messages[0] == {"role": "system", "content": "You help the payments team."}
    assert first.headers["authorization"] == "Bearer not-needed"
    assert second.messages[-1]["role"] == "tool"
    assert '"status": "paid"' in second.messages[-1]["content"]


async def test_openai_model_streams_text_and_tool_calls(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(
        Reply.text("Hello there from the fake server"), Reply.tool("lookup_order", order_id="9")
    )
    model = openai_model(openai_server, stream_usage=True)

    chunks = [chunk async for chunk in model.astream("hi")]
    assert len(chunks) > 3
    assert "".join(str(c.content) for c in chunks) == "Hello there from the fake server"
    assert openai_server.requests[0].stream

    tools, _ = make_tools()
    merged: AIMessageChunk | None = None
    async for chunk in model.bind_tools(tools).astream("look up order 9"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    assert merged.tool_calls[0]["name"] == "lookup_order"
    assert merged.tool_calls[0]["args"] == {"order_id": "9"}
    assert merged.usage_metadata is not None and merged.usage_metadata["total_tokens"] > 0


async def test_openai_retries_follow_max_retries(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Reply.fail(503), Reply.text("second time lucky"), Reply.fail(500))

    answer = await openai_model(openai_server, max_retries=1).ainvoke("hi")
    assert answer.content == "second time lucky"

    with pytest.raises(openai.InternalServerError):
        await openai_model(openai_server).ainvoke("hi")  # max_retries defaults to 0
    assert len(openai_server.requests) == 3


# -- ScriptedChatModel ---------------------------------------------------------------------


async def test_scripted_model_drives_an_agent_and_records_calls() -> None:
    tools, received = make_tools()
    model = ScriptedChatModel([tool_call("lookup_order", order_id="5"), reply("It is paid.")])
    agent = create_agent(model=model, tools=tools)

    result = await agent.ainvoke({"messages": [user("order 5?")]})

    assert result["messages"][-1].content == "It is paid."
    assert received == [{"tool": "lookup_order", "order_id": "5"}]
    assert model.bound_tools[0] == ["lookup_order", "issue_refund"]
    assert [len(call) for call in model.calls] == [1, 3]
    assert isinstance(model.calls[1][-1], ToolMessage)
    assert model.remaining == 0
    assert model_label(model) == "scripted"


async def test_scripted_model_steps_can_compute_fail_and_run_out() -> None:
    model = ScriptedChatModel(
        [lambda messages: f"you sent {len(messages)} message(s)", TimeoutError("slow"), "last"]
    )

    assert (await model.ainvoke("a")).content == "you sent 1 message(s)"
    with pytest.raises(TimeoutError):
        await model.ainvoke("b")
    assert (await model.ainvoke("c")).content == "last"
    with pytest.raises(ScriptExhaustedError, match="called 4 times but only 3"):
        await model.ainvoke("d")
    assert len(model.calls) == 4


async def test_scripted_model_streams_with_delay_and_usage() -> None:
    model = ScriptedChatModel(["one two three"], delay=0.05)

    started = time.monotonic()
    chunks = [chunk async for chunk in model.astream("go")]

    assert time.monotonic() - started >= 0.05
    assert [c.content for c in chunks if c.content] == ["one", " ", "two", " ", "three"]
    assert chunks[-1].usage_metadata is not None


async def test_scripted_model_is_safe_under_concurrent_calls() -> None:
    model = ScriptedChatModel([str(i) for i in range(20)], delay=0.01)

    answers = await asyncio.gather(*(model.ainvoke(f"q{i}") for i in range(20)))

    assert sorted(int(a.text) for a in answers) == list(range(20))
    assert len(model.calls) == 20


# -- offline model: the first hour (issue 12) ----------------------------------------------


def slack_tools() -> list[BaseTool]:
    """Stand-ins with the built-in Slack and clock tools' names and optional arguments."""

    @tool
    def slack_read_thread(channel: str | None = None, thread_ts: str | None = None) -> str:
        """Read a Slack thread."""
        return ""

    @tool
    def slack_read_channel(channel: str | None = None, hours: float = 24) -> str:
        """Read a channel."""
        return ""

    @tool
    def time_now(tz: str | None = None) -> str:
        """The current time."""
        return ""

    return [slack_read_thread, slack_read_channel, time_now]


@pytest.mark.parametrize(
    ("request_text", "name", "args"),
    [
        ("summarize this thread", "slack_read_thread", {}),
        ("Explain this thread in two sentences.", "slack_read_thread", {}),
        ("this thread", "slack_read_thread", {}),
        (
            "summarize <#C0PAYALERTS|payments-alerts> for the last 12 hours",
            "slack_read_channel",
            {"channel": "C0PAYALERTS", "hours": 12},
        ),
        ("What time is it for Dev in Dubai?", "time_now", {"tz": "Asia/Dubai"}),
        ("what's the time?", "time_now", {}),
    ],
)
def test_plain_requests_become_the_tool_call_a_real_model_would_make(
    request_text: str, name: str, args: dict[str, Any]
) -> None:
    answer = bound(OfflineChatModel(), slack_tools()).invoke([HumanMessage(request_text)])

    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [(name, args)]


def test_a_channel_named_but_not_linked_is_not_read_as_this_thread() -> None:
    # "#payments-alerts" as typed (Slack would have made it a link): the offline model
    # cannot look names up, so it must not summarise the wrong conversation instead.
    answer = bound(OfflineChatModel(), slack_tools()).invoke(
        [HumanMessage("summarize #payments-alerts for the last 12 hours")]
    )

    assert answer.tool_calls == []
    assert answer.text.startswith("(offline model) I understood")


def test_a_skills_instructions_never_turn_a_message_into_a_summary() -> None:
    messages: list[BaseMessage] = [
        SystemMessage("Summarise the order for the agent before you refund anything."),
        HumanMessage("The order 1001 arrived late."),
        AIMessage("(offline model) noted"),
        HumanMessage("The customer wants 25 EUR back."),
        AIMessage("(offline model) noted"),
        HumanMessage("hello"),
    ]

    answer = OfflineChatModel().invoke(messages)

    assert "Summary of" not in answer.text
    assert "“hello”" in answer.text
    # ...while the person asking for it does get one of the same conversation.
    asked = OfflineChatModel().invoke([*messages[:-1], HumanMessage("summarize this")])
    assert asked.text.startswith("(offline model) Summary of 2 messages")


def test_canned_reply_suggests_what_works_here_and_how_to_switch() -> None:
    answer = bound(OfflineChatModel(), slack_tools()).invoke([HumanMessage("tell me a joke")])

    assert "Try replying `slack_read_thread` here" in answer.text
    # no ids a person cannot see, no placeholders to fill in
    assert "=..." not in answer.text and "thread_ts" not in answer.text
    hint = answer.text.splitlines()[-1]
    assert "SWITCHBOARD_MODEL=openai:" in hint and "OPENAI_BASE_URL" in hint


def test_a_thread_read_with_only_the_request_says_there_is_nothing_yet() -> None:
    messages: list[BaseMessage] = [
        HumanMessage("summarize this thread"),
        AIMessage("", tool_calls=[{"name": "slack_read_thread", "args": {}, "id": "call_1"}]),
        ToolMessage(
            "Thread in C1, 0 replies:\n[09:00] sam: summarize this thread", tool_call_id="call_1"
        ),
    ]

    answer = OfflineChatModel().invoke(messages)

    assert "only one message there so far" in answer.text
    assert "returned" not in answer.text


def test_the_edit_note_for_the_model_never_reaches_the_reply() -> None:
    note = (
        "Note: a human reviewer replaced this tool call before it ran. The call recorded in "
        "your message is the one you produced, not the one that executed. This was "
        "intentional and authorized. Do not re-issue your original call. Executed instead: "
        'issue_refund with arguments {"order_id": "1001", "amount": 20}.\n\nTool response:\n'
    )
    messages: list[BaseMessage] = [
        HumanMessage("issue_refund order_id=1001 amount=25"),
        AIMessage(
            "",
            tool_calls=[
                {"name": "issue_refund", "args": {"order_id": "1001", "amount": 25}, "id": "c1"}
            ],
        ),
        ToolMessage(note + '{"refund_id": "RF-0001", "amount": 20}', tool_call_id="c1"),
    ]

    answer = OfflineChatModel().invoke(messages)

    assert "reviewer replaced" not in answer.text and "re-issue" not in answer.text
    assert answer.text == (
        "(offline model) issue_refund (as edited by the reviewer) returned:\n"
        "• refund_id: RF-0001\n• amount: 20"
    )


def test_understands_tells_which_examples_work_offline() -> None:
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from skills.models.offline import understands

    tools = [convert_to_openai_tool(t) for t in slack_tools()]
    assert understands("What time is it for Dev in Dubai?", tools)
    assert understands("Explain this thread in two sentences.", tools)
    assert not understands("Draft a polite reply declining the meeting.", tools)
    assert not understands("summarize #payments-alerts for the last 12 hours", tools)
