"""Helpers for attack tests: skills written to disk, scripted resolvers, a loopback fence."""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpcore
from langchain_core.messages import BaseMessage, ToolMessage

from tests.bot.conftest import make_bot, slack_api  # noqa: F401 - scenario fixtures
from tests.fakes.chat import ScriptedChatModel

CRM_TOKEN = "crm-t0ken-9f8e7d6c5b4a"

ORDERS_SKILL = """\
name: orders
description: Look up orders in the CRM.
instructions: Look up orders for the support team.
tools:
  - name: lookup_order
    description: Fetch an order by id.
    http:
      method: GET
      url: "${CRM_URL}/orders/{order_id}"
      headers: {Authorization: "Bearer ${CRM_TOKEN}"}
    parameters:
      order_id: {type: string}
"""


def write_skill(folder: Path, text: str, name: str = "skill.yaml") -> Path:
    """Write a skill spec into ``folder`` (for ``SWITCHBOARD_SKILLS_DIR``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def tool_results(model: ScriptedChatModel) -> list[ToolMessage]:
    """The tool results the model was shown, over all its calls."""
    seen: dict[str, ToolMessage] = {}
    for call in model.calls:
        for message in call:
            if isinstance(message, ToolMessage):
                seen[message.tool_call_id] = message
    return list(seen.values())


def model_text(model: ScriptedChatModel) -> str:
    """Everything every model request contained, as one string."""
    return "\n".join(_text(m) for call in model.calls for m in call)


def _text(message: BaseMessage) -> str:
    return f"{message.content} {getattr(message, 'tool_calls', '')}"


class ScriptedResolver:
    """A resolver that answers from a table (or a sequence of answers per name) and
    records every question, so tests can aim names at addresses without DNS."""

    def __init__(self, answers: dict[str, Sequence[str] | list[Sequence[str]]]) -> None:
        self._answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append((host, port))
        answer = self._answers.get(host)
        if answer is None:
            raise OSError(f"no such host {host}")
        if answer and isinstance(answer[0], list | tuple):
            sequence: list[Sequence[str]] = answer  # type: ignore[assignment]
            index = sum(1 for name, _ in self.calls if name == host) - 1
            return sequence[min(index, len(sequence) - 1)]
        return answer  # type: ignore[return-value]


class LoopbackOnlyBackend(httpcore.AnyIOBackend):
    """A network backend that connects to loopback only and records every attempt.

    Tests that aim tools at non-loopback internal ranges use it as a fence: were the egress
    check broken, the attempt is recorded and fails here instead of leaving the machine.
    """

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.attempts.append((host, port))
        if not ipaddress.ip_address(host).is_loopback:
            raise httpcore.ConnectError(f"test fence: refusing to connect to {host}")
        return await super().connect_tcp(host, port, *args, **kwargs)


def joined(texts: Iterable[str]) -> str:
    return "\n".join(texts)
