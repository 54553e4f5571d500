"""The base of chat models answered in this process: offline, scripted and played ones.

Provider models turn the tools they are bound to into the provider's tool schemas; these
models read the same OpenAI-style schemas from their call's keyword arguments (``tools``,
``tool_choice``), so every local model binds tools here, one way. A subclass says only how
it answers (:meth:`LocalChatModel._reply`) and, optionally, how long that takes
(:meth:`LocalChatModel._delay`); generating and streaming (word by word, tool calls on the
last chunk) are the same for all of them.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolCallChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool


class LocalChatModel(BaseChatModel):
    """A chat model whose answers are computed here; subclasses implement ``_reply``."""

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        """The answer to ``messages``; ``kwargs`` are the call's (``tools``, ...)."""
        raise NotImplementedError

    def _delay(self) -> float:
        """Seconds to wait before each answer (a slow provider, in tests)."""
        return 0.0

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if delay := self._delay():
            time.sleep(delay)
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, kwargs))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if delay := self._delay():
            await asyncio.sleep(delay)
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if delay := self._delay():
            time.sleep(delay)
        for chunk in message_chunks(self._reply(messages, kwargs)):
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
        if delay := self._delay():
            await asyncio.sleep(delay)
        for chunk in message_chunks(self._reply(messages, kwargs)):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools as OpenAI tool schemas; ``tool_choice`` is passed on when given."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        self._tools_bound(formatted)
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _tools_bound(self, tools: list[dict[str, Any]]) -> None:
        """Called with the schemas of every ``bind_tools`` (a scripted model records them)."""


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
