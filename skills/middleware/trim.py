"""Agent middleware that bounds what one tool result may add to the model's prompt.

An HTTP tool may return up to ``max_response_bytes`` (1 MB by default), and a run may make
twenty tool calls: without a bound, one chatty API fills the context window, costs a
fortune in input tokens and pushes the instructions out. `ToolResultTrimMiddleware` keeps
the first ``max_chars`` characters of each tool result the model sees and ends it with a
marker saying how much was cut, so the model can ask for less (a filter, a page) instead
of guessing.

Only the model's view is trimmed: the tool itself still returns the whole result, so an
approved call's ledger entry (``skills.tools.http``) and anything else recorded below this
middleware keep the full text for audit.

Placement: outside ``PiiMiddleware`` (earlier in the list), so the text is masked before it
is cut - a card number split at the cut would otherwise escape detection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from langchain.agents.middleware.types import AgentMiddleware, AgentState
from langchain_core.messages import ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

__all__ = ["DEFAULT_MAX_CHARS", "ToolResultTrimMiddleware", "trim_text"]

DEFAULT_MAX_CHARS = 24_000


def trim_text(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters plus a marker line, or unchanged."""
    if len(text) <= max_chars:
        return text
    cut = len(text) - max_chars
    return (
        f"{text[:max_chars]}\n[tool result trimmed: showing the first {max_chars:,} of "
        f"{len(text):,} characters; {cut:,} cut. Ask for less (a filter, a page) if the rest "
        "matters.]"
    )


class ToolResultTrimMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Trims each tool result the model sees to ``max_chars`` characters (see module doc)."""

    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        super().__init__()
        if max_chars < 1:
            raise ValueError("max_chars must be at least 1")
        self.max_chars = max_chars

    def _trim_message(self, message: ToolMessage) -> ToolMessage:
        content = message.content
        if isinstance(content, str):
            trimmed = trim_text(content, self.max_chars)
            return (
                message if trimmed is content else message.model_copy(update={"content": trimmed})
            )
        if isinstance(content, list):
            budget = self.max_chars
            blocks: list[Any] = []
            changed = False
            for block in content:
                text = block if isinstance(block, str) else None
                if isinstance(block, dict) and block.get("type") == "text":
                    text = str(block.get("text", ""))
                if text is None:
                    blocks.append(block)
                    continue
                new = trim_text(text, max(budget, 0)) if budget < len(text) else text
                budget -= len(text)
                changed = changed or new != text
                blocks.append(new if isinstance(block, str) else {**block, "text": new})
            if changed:
                return message.model_copy(update={"content": blocks})
        return message

    def _trim(self, result: ToolMessage | Command[Any]) -> ToolMessage | Command[Any]:
        if isinstance(result, ToolMessage):
            return self._trim_message(result)
        update = result.update
        if not isinstance(update, dict) or "messages" not in update:
            return result
        messages = [
            self._trim_message(m) if isinstance(m, ToolMessage) else m for m in update["messages"]
        ]
        return replace(result, update={**update, "messages": messages})

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Run the tool; trim what the model will see of its result."""
        return self._trim(handler(request))

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async `wrap_tool_call`."""
        return self._trim(await handler(request))
