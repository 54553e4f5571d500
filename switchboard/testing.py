"""Test doubles shared by the tests and the benchmarks (bench/ never imports tests/).

`ScriptedChatModel`: a chat model that plays back a script, for runtime tests.

Modelled on langgraph's `tests/fake_chat.py` and langchain's `GenericFakeChatModel`,
with what our runtime tests need on top: tool binding, every call recorded, latency,
scripted failures (for retry and fallback tests) and usage numbers.

    model = ScriptedChatModel([tool_call("lookup_order", order_id="42"), reply("Paid.")])
    agent = create_agent(model=model, tools=[lookup_order])
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolCall
from pydantic import PrivateAttr

from skills.models.local import LocalChatModel
from skills.models.offline import usage_for

__all__ = ["ScriptExhaustedError", "ScriptedChatModel", "Step", "reply", "tool_call"]

Step = (
    AIMessage
    | str
    | Callable[[list[BaseMessage]], AIMessage | str]
    | BaseException
    | type[BaseException]
)
"""One scripted answer: a message, its text, a function of the messages, or an error."""


class ScriptExhaustedError(AssertionError):
    """The model was called more often than the test scripted."""

    def __init__(self, calls: int, scripted: int) -> None:
        super().__init__(
            f"ScriptedChatModel was called {calls} times but only {scripted} "
            "responses were scripted"
        )


def reply(text: str) -> AIMessage:
    """A plain final answer."""
    return AIMessage(content=text)


def tool_call(name: str, /, **args: Any) -> AIMessage:
    """An answer that calls one tool; the call id is derived from name and arguments."""
    seed = json.dumps([name, args], sort_keys=True, default=str)
    call_id = "call_" + hashlib.sha256(seed.encode()).hexdigest()[:16]
    return AIMessage(
        content="", tool_calls=[ToolCall(name=name, args=args, id=call_id, type="tool_call")]
    )


class ScriptedChatModel(LocalChatModel):
    """Returns its scripted responses in order and records what it was sent.

    A step that is an exception (instance or class) is raised instead of answering. When
    the script runs out, `default` is returned if set, else `ScriptExhaustedError` is
    raised. `delay` seconds pass before each answer (`asyncio.sleep` on the async path).
    Safe to call from several threads or tasks at once.
    """

    responses: list[Any]
    delay: float = 0.0
    default: AIMessage | str | None = None

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _position: int = PrivateAttr(default=0)
    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _bound: list[list[str]] = PrivateAttr(default_factory=list)

    def __init__(self, responses: Sequence[Step] = (), /, **kwargs: Any) -> None:
        if isinstance(kwargs.get("default"), str):
            kwargs["default"] = AIMessage(content=kwargs["default"])
        super().__init__(responses=list(responses), **kwargs)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[list[BaseMessage]]:
        """The messages of every call so far, oldest first."""
        with self._lock:
            return [list(messages) for messages in self._calls]

    @property
    def bound_tools(self) -> list[list[str]]:
        """The tool names of every `bind_tools` call so far."""
        with self._lock:
            return [list(names) for names in self._bound]

    @property
    def remaining(self) -> int:
        """How many scripted responses have not been used yet."""
        with self._lock:
            return max(0, len(self.responses) - self._position)

    def _tools_bound(self, tools: list[dict[str, Any]]) -> None:
        with self._lock:
            self._bound.append([tool["function"]["name"] for tool in tools])

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        with self._lock:
            self._calls.append(list(messages))
            position = self._position
            self._position += 1
        if position < len(self.responses):
            step = self.responses[position]
        elif self.default is not None:
            step = self.default
        else:
            raise ScriptExhaustedError(position + 1, len(self.responses))
        if isinstance(step, BaseException) or (
            isinstance(step, type) and issubclass(step, BaseException)
        ):
            raise step
        if callable(step) and not isinstance(step, AIMessage):
            step = step(list(messages))
        message = AIMessage(content=step) if isinstance(step, str) else step.model_copy(deep=True)
        if message.usage_metadata is None:
            message.usage_metadata = usage_for(messages, message)
        message.response_metadata = {"model_name": "scripted", **message.response_metadata}
        return message

    def _delay(self) -> float:
        return self.delay

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        return self._next(messages)
