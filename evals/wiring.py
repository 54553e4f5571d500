"""Wiring mode's scripted models: a case's ``script:`` played through the real runtime.

In wiring mode no provider is called. Each attempt gets a :class:`ScriptPlayer` holding
the turns of the message being run (``Script.turns``) and the router's answer
(``Script.route``); the runtime asks its model factory for models as production does,
and every name gets a :class:`PlayedChatModel` over that player. So the route, the
access checks, the middleware (PII tokens, untrusted content, limits), the approval
ledger and the HTTP tools run for real; only what the model says is fixed.

The player also watches what the models were sent: every input is checked for raw
personal data (the PII middleware must have masked it), a step's ``sees`` must appear in
the input it answers, and turns left over at the end (the run stopped earlier than the
script expected) are reported. Those findings become the attempt's ``script`` check.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolCall
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk
from pydantic import PrivateAttr

from evals.dataset import Script, ScriptStep
from skills.models.local import LocalChatModel
from skills.models.offline import usage_for
from skills.pii import find_pii

__all__ = ["WIRING_MODEL", "WIRING_ROUTER", "PlayedChatModel", "ScriptError", "ScriptPlayer"]

WIRING_MODEL = "wiring"
"""The model name run records show for wiring-mode runs (the script plays the model)."""
WIRING_ROUTER = "wiring-router"


class ScriptError(Exception):
    """The runtime asked the model for more than the case's script holds."""

    def __init__(self, case: str, detail: str) -> None:
        self.case = case
        self.detail = detail
        super().__init__(f"{case}: {detail}")


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(
        str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
    )


def _input_text(messages: Sequence[BaseMessage]) -> str:
    parts: list[str] = []
    for message in messages:
        parts.append(_text(message))
        for call in getattr(message, "tool_calls", None) or []:
            parts.append(json.dumps(call.get("args") or {}, sort_keys=True, default=str))
    return "\n".join(parts)


@dataclass(slots=True)
class ScriptPlayer:
    """The scripted turns of one attempt and what the models were sent (see the module
    docstring). ``load`` gives it the script of the next message the runner sends."""

    case: str
    default_route: str | None = None
    _turns: list[ScriptStep] = field(default_factory=list)
    _route: str | None = None
    _position: int = 0
    _label: str = "message"
    _problems: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    calls: int = 0

    def load(self, script: Script | None, *, label: str) -> None:
        """Play ``script`` for the next message (``label`` names it in findings)."""
        with self._lock:
            self._leftovers()
            self._turns = list(script.turns) if script is not None else []
            self._route = script.route if script is not None else None
            self._position = 0
            self._label = label

    def finish(self) -> list[str]:
        """What went wrong with the script over the attempt (empty: it played cleanly)."""
        with self._lock:
            self._leftovers()
            self._turns = []
            self._position = 0
            return list(self._problems)

    def _leftovers(self) -> None:
        unused = len(self._turns) - self._position
        if unused > 0:
            self._problems.append(
                f"{self._label}: {unused} scripted turn(s) never played (the run stopped "
                f"after {self._position} model call(s))"
            )

    def _watch(self, messages: Sequence[BaseMessage]) -> str:
        seen = _input_text(messages)
        found = find_pii(seen)
        if found:
            kinds = ", ".join(sorted({m.kind for m in found}))
            problem = f"{self._label}: the model was sent unmasked personal data ({kinds})"
            if problem not in self._problems:
                self._problems.append(problem)
        return seen

    def route(self, messages: Sequence[BaseMessage]) -> str:
        """The router model's answer: the script's ``route``, else the expected route."""
        with self._lock:
            self.calls += 1
            self._watch(messages)
            choice = self._route or self.default_route
        if choice is None:
            raise ScriptError(self.case, "the router was consulted and the script has no route")
        return choice

    def answer(self, messages: Sequence[BaseMessage]) -> AIMessage:
        """The next scripted answer of the skill's model."""
        with self._lock:
            self.calls += 1
            seen = self._watch(messages)
            if self._position >= len(self._turns):
                detail = (
                    f"{self._label}: the model was called {self._position + 1} time(s) but "
                    f"the script has {len(self._turns)} turn(s)"
                )
                if detail not in self._problems:
                    self._problems.append(detail)  # the runtime reports only "run failed"
                raise ScriptError(self.case, detail)
            step = self._turns[self._position]
            self._position += 1
            number = self._position
            for needle in step.sees:
                if needle.casefold() not in seen.casefold():
                    self._problems.append(
                        f"{self._label}: turn {number} expected the model to see {needle!r}"
                    )
        calls = [
            ToolCall(name=c.call, args=dict(c.args), id=_call_id(self.case, number, i, c.call))
            for i, c in enumerate(step.tool_calls)
        ]
        return AIMessage(content=step.reply, tool_calls=calls)


def _call_id(case: str, turn: int, index: int, name: str) -> str:
    seed = f"{case}|{turn}|{index}|{name}"
    return "call_" + hashlib.sha256(seed.encode()).hexdigest()[:16]


class PlayedChatModel(LocalChatModel):
    """A chat model whose answers come from a :class:`ScriptPlayer`.

    Binds tools like a provider model. A forced call of one tool whose schema has a
    ``skill`` field (``with_structured_output``, as the router asks) gets the player's
    route; the router still refuses a skill it did not offer, as in production.
    """

    name_: str = WIRING_MODEL
    _player: ScriptPlayer = PrivateAttr()

    def __init__(self, player: ScriptPlayer, *, name: str = WIRING_MODEL) -> None:
        super().__init__(name_=name)
        self._player = player

    @property
    def _llm_type(self) -> str:
        return "wiring-script"

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        tools = kwargs.get("tools") or []
        forced = kwargs.get("tool_choice") not in (None, "auto", "none") and len(tools) == 1
        if forced and "skill" in tools[0]["function"].get("parameters", {}).get("properties", {}):
            # with_structured_output's forced tool call: the router asking for a skill
            name = tools[0]["function"]["name"]
            choice = self._player.route(messages)
            message = AIMessage(
                content="",
                tool_calls=[ToolCall(name=name, args={"skill": choice}, id="call_route")],
            )
        else:
            message = self._player.answer(messages)
        message.usage_metadata = usage_for(messages, message)
        message.response_metadata = {"model_name": self.name_}
        return message

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield _whole_chunk(self._reply(messages, kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        yield _whole_chunk(self._reply(messages, kwargs))


def _whole_chunk(message: AIMessage) -> ChatGenerationChunk:
    """The answer as one streamed chunk, its response metadata (the model's name) kept."""
    usage: UsageMetadata | None = message.usage_metadata
    chunk = AIMessageChunk(
        content=message.content,
        tool_call_chunks=[
            {
                "name": c["name"],
                "args": json.dumps(c["args"]),
                "id": c["id"],
                "index": i,
                "type": "tool_call_chunk",
            }
            for i, c in enumerate(message.tool_calls)
        ],
        usage_metadata=usage,
        response_metadata=message.response_metadata,
    )
    return ChatGenerationChunk(message=chunk)
