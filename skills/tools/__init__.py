"""Tools agents can call: the built-ins (Slack reading, the clock) and spec HTTP tools.

Built-in tools are keyed by their spec name (``slack.read_thread``); the name the model
sees must match ``^[a-zA-Z0-9_-]+$`` for every provider, so it is ``slack_read_thread``.
All of them read what they need from ``ToolRuntime.context`` (a `RunContext`).
"""

from __future__ import annotations

from typing import Final

from langchain_core.tools import BaseTool

from skills.tools.clock import clock_tools
from skills.tools.http import IdempotencyKeyFn, host_matches, http_tool, tool_call_idempotency_key
from skills.tools.slack import format_transcript, normalize_channel, slack_tools

__all__ = [
    "BUILTIN_TOOL_NAMES",
    "IdempotencyKeyFn",
    "builtin_tools",
    "format_transcript",
    "host_matches",
    "http_tool",
    "normalize_channel",
    "tool_call_idempotency_key",
]

BUILTIN_TOOL_NAMES: Final = {
    "slack.read_thread": "slack_read_thread",
    "slack.read_channel": "slack_read_channel",
    "slack.user_info": "slack_user_info",
    "time.now": "time_now",
}
"""Spec name → the tool name the model sees."""


def builtin_tools() -> dict[str, BaseTool]:
    """Fresh instances of every built-in tool, keyed by spec name (``slack.read_thread`` …)."""
    return {**slack_tools(), **clock_tools()}
