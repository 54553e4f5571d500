"""PiiMiddleware inside a real ``create_agent`` graph with a scripted tool-calling model."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, InjectedToolCallId, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import Field

from skills.middleware import PiiMiddleware
from skills.pii import CipherSealer, InMemorySealer, VaultSealer

KEY = b"middleware-test-key-0123456789ab"
PAN = "4111111111111111"
PAN_TYPED = "4111 1111 1111 1111"
IBAN = "GB82WEST12345698765432"
IBAN_TYPED = "GB82 WEST 1234 5698 7654 32"
EMAIL = "jane.doe@example.com"
SUPPORT_EMAIL = "help@pay.example"
TOOL_PAN = "5555555555554444"  # only ever appears in a tool result
MODEL_PAN = "4012888888881881"  # the model makes it up in its reply

Turn = Callable[[list[BaseMessage]], AIMessage]


class ScriptedChatModel(BaseChatModel):
    """Plays one scripted turn per call and records every message list it was sent."""

    script: list[Turn]
    received: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.received.append(list(messages))
        turn = self.script[len(self.received) - 1]
        return ChatResult(generations=[ChatGeneration(message=turn(list(messages)))])

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self


def _token(kind: str, text: str) -> str:
    match = re.search(rf"\[{kind} [^\]]*#pii:[0-9a-f]+\]", text)
    assert match, f"no {kind} token in {text!r}"
    return match.group()


def _last_human(messages: list[BaseMessage]) -> str:
    return next(m for m in reversed(messages) if isinstance(m, HumanMessage)).text


def call_tools_with_tokens(messages: list[BaseMessage]) -> AIMessage:
    """The model does what a real one would: passes the tokens it saw to the tools."""
    text = _last_human(messages)
    return AIMessage(
        content="Charging the card.",
        tool_calls=[
            {
                "name": "charge_card",
                "args": {"card": _token("card", text), "email": _token("email", text)},
                "id": "call-1",
            },
            {"name": "payout", "args": {"iban": _token("iban", text)}, "id": "call-2"},
        ],
    )


def answer_with_tool_results(messages: list[BaseMessage]) -> AIMessage:
    results = " | ".join(m.text for m in messages if isinstance(m, ToolMessage))
    return AIMessage(content=f"Done: {results}. Backup card {MODEL_PAN}.")


def flatten(message: BaseMessage) -> str:
    """Everything about a message a model provider would receive."""
    parts = [json.dumps(message.content)]
    if isinstance(message, AIMessage):
        parts.append(json.dumps(message.tool_calls))
    return " ".join(parts)


def squeeze(text: str) -> str:
    return re.sub(r"[\s\-]", "", text)


def assert_no_raw_values(text: str) -> None:
    for secret in (PAN, IBAN, TOOL_PAN, MODEL_PAN):
        assert secret not in squeeze(text), secret
    for secret in (EMAIL, SUPPORT_EMAIL, "bob@example.org"):
        assert secret not in text, secret


class Recorder:
    """Tools that record the arguments they were called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

        @tool
        def charge_card(card: str, email: str) -> str:
            """Charge a card and e-mail the receipt."""
            self.calls.append(("charge_card", {"card": card, "email": email}))
            return f"charged {card}; receipt to bob@example.org; fallback {TOOL_PAN}"

        @tool
        def payout(iban: str) -> dict[str, Any]:
            """Send a payout to a bank account."""
            self.calls.append(("payout", {"iban": iban}))
            return {"status": "sent", "iban": iban}

        self.tools = [charge_card, payout]

    def args(self, name: str) -> list[dict[str, Any]]:
        return [args for tool_name, args in self.calls if tool_name == name]


def build_agent(
    model: ScriptedChatModel,
    recorder: Recorder,
    *,
    sealer: VaultSealer | None = None,
    saver: InMemorySaver | None = None,
    keep_masked_tools: Sequence[str] = (),
) -> tuple[Any, PiiMiddleware[Any, Any], InMemorySaver]:
    middleware: PiiMiddleware[Any, Any] = PiiMiddleware(
        key=KEY, sealer=sealer or InMemorySealer(), keep_masked_tools=keep_masked_tools
    )
    checkpointer = saver or InMemorySaver()
    agent = create_agent(
        model=model,
        tools=recorder.tools,
        system_prompt=f"You help the payments team. Escalate to {SUPPORT_EMAIL}.",
        middleware=[middleware],
        checkpointer=checkpointer,
    )
    return agent, middleware, checkpointer


USER_TEXT = f"Charge {PAN_TYPED}, receipt to {EMAIL}, pay out to {IBAN_TYPED}."


async def run(agent: Any, payload: dict[str, Any], thread: str, mode: str) -> dict[str, Any]:
    config = {"configurable": {"thread_id": thread}}
    if mode == "async":
        result: dict[str, Any] = await agent.ainvoke(payload, config)
    else:
        result = agent.invoke(payload, config)
    return result


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_model_sees_only_tokens_and_tools_get_real_values(mode: str) -> None:
    model = ScriptedChatModel(script=[call_tools_with_tokens, answer_with_tool_results])
    recorder = Recorder()
    agent, _, _ = build_agent(model, recorder)

    result = await run(agent, {"messages": [HumanMessage(USER_TEXT)]}, "t1", mode)

    # The model never received a raw value: not the user's, the system prompt's or a tool's.
    assert len(model.received) == 2
    for call in model.received:
        for message in call:
            assert_no_raw_values(flatten(message))
    assert "[email ***@pay.example #pii:" in model.received[0][0].text
    # Tools got the real values behind the tokens the model passed.
    assert recorder.args("charge_card") == [{"card": PAN, "email": EMAIL}]
    assert recorder.args("payout") == [{"iban": IBAN}]
    # The tool results were tokenized before the model saw them.
    tool_texts = [m.text for m in model.received[1] if isinstance(m, ToolMessage)]
    assert any("[card ****4444 #pii:" in text for text in tool_texts)
    assert any("[iban GB** ****5432 #pii:" in text for text in tool_texts)
    # The reply (with a number the model made up) is tokenized too, and the vault is private.
    assert "[card ****1881 #pii:" in result["messages"][-1].text
    assert "pii_vault" not in result


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_checkpointed_state_holds_no_raw_values(mode: str) -> None:
    model = ScriptedChatModel(script=[call_tools_with_tokens, answer_with_tool_results])
    agent, _, _ = build_agent(model, Recorder())

    await run(agent, {"messages": [HumanMessage(USER_TEXT)]}, "t1", mode)

    state = agent.get_state({"configurable": {"thread_id": "t1"}}).values
    assert state["pii_vault"], "the vault is kept with the thread"
    assert_no_raw_values(" ".join(flatten(m) for m in state["messages"]))
    assert_no_raw_values(json.dumps(state["pii_vault"]))
    assert state["messages"][0].text.startswith("Charge [card ****1111 #pii:")


async def test_prepared_input_keeps_every_checkpoint_free_of_raw_values() -> None:
    model = ScriptedChatModel(script=[call_tools_with_tokens, answer_with_tool_results])
    recorder = Recorder()
    agent, middleware, saver = build_agent(model, recorder)

    await agent.ainvoke(middleware.prepare_input(USER_TEXT), {"configurable": {"thread_id": "t"}})

    stored = repr(saver.storage) + repr(saver.blobs) + repr(saver.writes)
    assert_no_raw_values(stored)
    assert recorder.args("charge_card") == [{"card": PAN, "email": EMAIL}]


async def test_multi_part_human_content_is_tokenized() -> None:
    seen: list[str] = []

    def look(messages: list[BaseMessage]) -> AIMessage:
        human = next(m for m in messages if isinstance(m, HumanMessage))
        seen.append(json.dumps(human.content))
        return AIMessage(content="ok")

    model = ScriptedChatModel(script=[look])
    agent, _, _ = build_agent(model, Recorder())
    content: list[str | dict[str, Any]] = [
        {"type": "text", "text": f"card {PAN_TYPED}"},
        f"mail {EMAIL}",
        {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"},
    ]

    await agent.ainvoke(
        {"messages": [HumanMessage(content=content)]}, {"configurable": {"thread_id": "t"}}
    )

    assert_no_raw_values(seen[0])
    assert "[card ****1111 #pii:" in seen[0] and "[email ***@example.com #pii:" in seen[0]
    assert "iVBORw0KGgo=" in seen[0]


async def test_tokens_resolve_on_a_later_turn_after_a_restart_with_a_cipher() -> None:
    sealer = CipherSealer(cipher=_XorTestCipher())
    saver = InMemorySaver()
    config = {"configurable": {"thread_id": "t"}}
    first_turn = ScriptedChatModel(script=[lambda _: AIMessage(content="Noted.")])
    agent, _, _ = build_agent(first_turn, Recorder(), sealer=sealer, saver=saver)
    await agent.ainvoke({"messages": [HumanMessage(USER_TEXT)]}, config)

    # A new process: fresh middleware and agent, same key, same checkpointer.
    later = Recorder()

    def reuse_first_message(messages: list[BaseMessage]) -> AIMessage:
        return call_tools_with_tokens([messages[1]])  # tokens from the first turn

    second_turn = ScriptedChatModel(script=[reuse_first_message, answer_with_tool_results])
    agent, _, _ = build_agent(
        second_turn, later, sealer=CipherSealer(cipher=_XorTestCipher()), saver=saver
    )
    await agent.ainvoke({"messages": [HumanMessage("Now charge it.")]}, config)

    assert later.args("charge_card") == [{"card": PAN, "email": EMAIL}]


async def test_in_memory_originals_do_not_survive_a_restart() -> None:
    saver = InMemorySaver()
    config = {"configurable": {"thread_id": "t"}}
    first_turn = ScriptedChatModel(script=[lambda _: AIMessage(content="Noted.")])
    agent, _, _ = build_agent(first_turn, Recorder(), saver=saver)
    await agent.ainvoke({"messages": [HumanMessage(USER_TEXT)]}, config)

    later = Recorder()
    second_turn = ScriptedChatModel(
        script=[lambda m: call_tools_with_tokens([m[1]]), answer_with_tool_results]
    )
    agent, _, _ = build_agent(second_turn, later, saver=saver)  # new InMemorySealer
    await agent.ainvoke({"messages": [HumanMessage("Now charge it.")]}, config)

    (args,) = later.args("charge_card")
    assert args["card"].startswith("[card ****1111 #pii:")  # fails safe: still masked


async def test_a_token_from_another_thread_does_not_resolve() -> None:
    first = ScriptedChatModel(script=[lambda _: AIMessage(content="Noted.")])
    agent, _, saver = build_agent(first, Recorder())
    await agent.ainvoke(
        {"messages": [HumanMessage(USER_TEXT)]}, {"configurable": {"thread_id": "a"}}
    )
    leaked_tokens = first.received[0][1].text  # what the model saw in thread "a"

    other = Recorder()
    model = ScriptedChatModel(script=[call_tools_with_tokens, answer_with_tool_results])
    agent, _, _ = build_agent(model, other, saver=saver)
    await agent.ainvoke(
        {"messages": [HumanMessage(leaked_tokens)]}, {"configurable": {"thread_id": "b"}}
    )

    (args,) = other.args("charge_card")
    assert args["card"].startswith("[card ****1111 #pii:")
    assert other.args("payout")[0]["iban"].startswith("[iban GB** ****5432 #pii:")


async def test_keep_masked_tools_receive_tokens() -> None:
    model = ScriptedChatModel(script=[call_tools_with_tokens, answer_with_tool_results])
    recorder = Recorder()
    agent, _, _ = build_agent(model, recorder, keep_masked_tools=["payout"])

    await agent.ainvoke(
        {"messages": [HumanMessage(USER_TEXT)]}, {"configurable": {"thread_id": "t"}}
    )

    assert recorder.args("charge_card") == [{"card": PAN, "email": EMAIL}]
    assert recorder.args("payout")[0]["iban"].startswith("[iban GB** ****5432 #pii:")


async def test_tool_returning_a_command_has_its_messages_tokenized() -> None:
    @tool
    def lookup(order_id: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> Command[Any]:
        """Look up an order."""
        message = ToolMessage(
            content=f"order {order_id} paid with {TOOL_PAN}", tool_call_id=tool_call_id
        )
        return Command(update={"messages": [message]})

    def call_lookup(_: list[BaseMessage]) -> AIMessage:
        return AIMessage(
            content="", tool_calls=[{"name": "lookup", "args": {"order_id": "42"}, "id": "c"}]
        )

    model = ScriptedChatModel(script=[call_lookup, answer_with_tool_results])
    middleware: PiiMiddleware[Any, Any] = PiiMiddleware(key=KEY, sealer=InMemorySealer())
    agent = create_agent(
        model=model, tools=[lookup], middleware=[middleware], checkpointer=InMemorySaver()
    )

    await agent.ainvoke(
        {"messages": [HumanMessage("order 42?")]}, {"configurable": {"thread_id": "t"}}
    )

    tool_text = next(m.text for m in model.received[1] if isinstance(m, ToolMessage))
    assert tool_text.startswith("order 42 paid with [card ****4444 #pii:")


class _XorTestCipher:
    """Test double standing in for Fernet; not encryption."""

    def encrypt(self, data: bytes, /) -> bytes:
        return bytes(b ^ 0x5A for b in data)

    def decrypt(self, token: bytes, /) -> bytes:
        return bytes(b ^ 0x5A for b in token)
