"""The `offline` model: a deterministic stand-in that needs no network.

It lets a fresh install, the sandbox and the test-suite run whole skills end to end:

- `issue_refund order_id=42 amount=10` (a bound tool's name followed by `key=value`
  arguments) becomes a tool call, with values coerced to the types the tool's JSON schema
  asks for;
- once the tool answers, it replies with a short summary quoting the (truncated) result,
  and says so when the call was rejected or failed;
- a request for a summary/digest over conversation lines found in the prompt or a tool
  result gets an extractive summary: message count and the first sentences of the
  longest messages;
- anything else gets a plain reply that is clearly labelled as offline, echoes what it
  understood and explains how to call the bound tools.

Routing needs no model call offline: the runtime calls `keyword_route` instead of
`with_structured_output`, which this model does not support.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from skills.middleware.untrusted import unwrap
from skills.models._text import (
    ToolSpec,
    TranscriptLine,
    estimate_tokens,
    extract_transcript,
    find_tool_command,
    first_sentence,
    keyword_scores,
    truncate,
)

__all__ = ["LABEL", "OfflineChatModel", "keyword_route", "message_chunks", "usage_for"]

LABEL = "(offline model)"
"""Every reply of the offline model starts with this, so nobody mistakes it for a real one."""

_REJECTED = re.compile(r"\b(reject\w*|denied|deny|declined|not approved)\b", re.IGNORECASE)
_ASKS_FOR_SUMMARY = re.compile(
    r"\b(summar\w*|digest\w*|recap\w*|tl;?dr|catch(?:ing)? (?:me )?up|highlights?"
    r"|stand-?ups?|what did i miss|what happened)",
    re.IGNORECASE,
)


def keyword_route(text: str, candidates: Mapping[str, str]) -> str | None:
    """Choose the skill whose name and description best match `text`, without a model.

    `candidates` maps skill names to their descriptions. Returns `None` when nothing in
    the text relates to any candidate. Ties go to the alphabetically first name, so the
    choice does not depend on the order skills were loaded in.
    """
    scores = keyword_scores(text, candidates)
    ranked = sorted((-score, name) for name, score in scores.items() if score > 0)
    return ranked[0][1] if ranked else None


def usage_for(messages: Sequence[BaseMessage], reply: AIMessage) -> UsageMetadata:
    """Token counts estimated from text length (4 characters a token)."""
    prompt = sum(estimate_tokens(str(m.text)) for m in messages)
    produced = str(reply.text) + "".join(
        tc["name"] + json.dumps(tc["args"], sort_keys=True) for tc in reply.tool_calls
    )
    completion = estimate_tokens(produced)
    return UsageMetadata(
        input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion
    )


def message_chunks(message: AIMessage) -> Iterator[ChatGenerationChunk]:
    """Split a finished message into streaming chunks, word by word.

    Tool calls and usage ride on the last chunk, which is marked `chunk_position="last"`
    so that aggregating the stream yields parsed `tool_calls` again.
    """
    content = message.content if isinstance(message.content, str) else str(message.text)
    tokens = [t for t in re.split(r"(\s+)", content) if t]
    for token in tokens:
        yield ChatGenerationChunk(message=AIMessageChunk(content=token, id=message.id))
    tool_call_chunks = [
        ToolCallChunk(
            name=tc["name"],
            args=json.dumps(tc["args"]),
            id=tc["id"],
            index=index,
            type="tool_call_chunk",
        )
        for index, tc in enumerate(message.tool_calls)
    ]
    yield ChatGenerationChunk(
        message=AIMessageChunk(
            content="",
            id=message.id,
            tool_call_chunks=tool_call_chunks,
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
            chunk_position="last",
        )
    )


class OfflineChatModel(BaseChatModel):
    """A deterministic chat model that needs no network (the `offline` model string).

    Same messages and tools in, same reply out. See the module docstring for what it
    understands. Works with `langchain.agents.create_agent`, including streaming.
    """

    model_name: str = "offline"
    summary_lines: int = 5
    """How many messages an extractive summary quotes."""
    result_chars: int = 300
    """How much of a tool result a reply quotes."""

    @property
    def _llm_type(self) -> str:
        return "offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; their JSON schemas drive command parsing and type coercion."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Not supported: the offline model routes with `keyword_route` instead."""
        raise NotImplementedError(
            "the offline model has no structured output; "
            "route with skills.models.offline.keyword_route instead"
        )

    # ------------------------------------------------------------------ generation

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self.respond(messages, tools=kwargs.get("tools"))
        return ChatResult(generations=[ChatGeneration(message=reply)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, None, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in message_chunks(self.respond(messages, tools=kwargs.get("tools"))):
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in message_chunks(self.respond(messages, tools=kwargs.get("tools"))):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def respond(
        self,
        messages: Sequence[BaseMessage],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> AIMessage:
        """The reply to `messages` given OpenAI-format `tools` (what `bind_tools` stores)."""
        specs = [ToolSpec.from_openai(tool) for tool in tools or ()]
        reply = self._reply(messages, specs)
        reply.usage_metadata = usage_for(messages, reply)
        reply.response_metadata = {"model_name": self.model_name, "model_provider": "offline"}
        return reply

    def _reply(self, messages: Sequence[BaseMessage], tools: Sequence[ToolSpec]) -> AIMessage:
        conversation = [m for m in messages if not isinstance(m, SystemMessage)]
        if conversation and isinstance(conversation[-1], ToolMessage):
            return AIMessage(content=self._after_tools(messages))
        request = next(
            (str(m.text) for m in reversed(conversation) if isinstance(m, HumanMessage)), ""
        )
        command = find_tool_command(request, tools)
        if command is not None:
            tool, args = command
            return AIMessage(content="", tool_calls=[_tool_call(tool.name, args, messages)])
        context = [str(m.text) for m in messages if isinstance(m, SystemMessage)]
        earlier = [
            TranscriptLine(speaker=m.name or "someone", text=str(m.text))
            for m in conversation[:-1]
            if isinstance(m, HumanMessage) and str(m.text).strip()
        ]
        summary = self._summary(messages, [*context, request], fallback=earlier)
        if summary is not None:
            return AIMessage(content=summary)
        return AIMessage(content=_plain_reply(request, tools))

    def _after_tools(self, messages: Sequence[BaseMessage]) -> str:
        """Summarise the tool results that follow the last tool-calling AI message."""
        results: list[ToolMessage] = []
        names: dict[str, str] = {}
        for message in reversed(messages):
            if isinstance(message, ToolMessage):
                results.insert(0, message)
            elif isinstance(message, AIMessage):
                names = {tc["id"] or "": tc["name"] for tc in message.tool_calls}
                break
        # Tool results reach models inside untrusted-data delimiters; this model reads them
        # as data anyway, so it looks at the content.
        summary = self._summary(messages, [unwrap(str(r.text)) for r in results])
        if summary is not None:
            return summary
        parts = []
        for result in results:
            name = result.name or names.get(result.tool_call_id) or "the tool"
            text = truncate(unwrap(str(result.text)), self.result_chars)
            if _REJECTED.search(text):
                parts.append(f"{name} was rejected: {text}")
            elif result.status == "error":
                parts.append(f"{name} failed: {text}")
            else:
                parts.append(f"{name} returned {text}")
        return f"{LABEL} " + "; ".join(parts)

    def _summary(
        self,
        messages: Sequence[BaseMessage],
        sources: Sequence[str],
        *,
        fallback: Sequence[TranscriptLine] = (),
    ) -> str | None:
        """An extractive summary when one is asked for and there is a conversation to summarise.

        The conversation is the message lines found in `sources`, else `fallback` (earlier
        messages of the thread) when it holds at least two messages.
        """
        asks = [str(m.text) for m in messages if isinstance(m, SystemMessage | HumanMessage)]
        if not any(_ASKS_FOR_SUMMARY.search(text) for text in asks):
            return None
        lines = extract_transcript(sources) or (list(fallback) if len(fallback) >= 2 else [])
        if not lines:
            return None
        return _extractive_summary(lines, self.summary_lines)


def _tool_call(name: str, args: dict[str, Any], messages: Sequence[BaseMessage]) -> ToolCall:
    # The id depends on the whole conversation so far: stable for the same input, yet
    # different when the same command is repeated later in a thread.
    seed = json.dumps(
        [name, args, [[m.type, str(m.text)] for m in messages]], sort_keys=True, default=str
    )
    call_id = "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]
    return ToolCall(name=name, args=args, id=call_id, type="tool_call")


def _extractive_summary(lines: Sequence[TranscriptLine], limit: int) -> str:
    speakers = sorted({line.speaker for line in lines})
    ranked = sorted(range(len(lines)), key=lambda i: (-len(lines[i].text), i))[:limit]
    picked = [lines[i] for i in sorted(ranked)]
    header = (
        f"{LABEL} Summary of {_plural(len(lines), 'message')} from "
        f"{_plural(len(speakers), 'participant')}; the longest points, in order:"
    )
    bullets = [f"• {line.speaker}: {first_sentence(line.text)}" for line in picked]
    return "\n".join([header, *bullets])


def _plain_reply(request: str, tools: Sequence[ToolSpec]) -> str:
    understood = (
        f"I understood: “{truncate(request, 200)}”." if request.strip() else "I got no text."
    )
    if tools:
        how = (
            f"Tools available: {', '.join(t.name for t in tools)}. To call one, write its name "
            f"followed by key=value arguments, e.g. `{tools[0].usage()}`."
        )
    else:
        how = "This skill has no tools."
    return (
        f"{LABEL} {understood} {how} I am the built-in offline model and cannot answer "
        "questions; set SWITCHBOARD_MODEL to a real model for real answers."
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
