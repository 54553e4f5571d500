"""The base of chat models answered in this process: offline, scripted and played ones.

Provider models turn the tools they are bound to into the provider's tool schemas; these
models read the same OpenAI-style schemas from their call's keyword arguments (``tools``,
``tool_choice``), so every local model binds tools here, one way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool


class LocalChatModel(BaseChatModel):
    """A chat model whose answers are computed here; subclasses implement ``_generate``."""

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
