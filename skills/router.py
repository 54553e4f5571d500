"""Which skill answers a message.

In order: the first word names a skill (``digest #payments-alerts``); the thread already
belongs to a skill; the channel has a default skill; a router model picks one from the
skills' names and descriptions (the offline model scores keywords); otherwise ``ask``.
Only skills the person may use are candidates; naming a forbidden skill is refused by the
runtime, not silently re-routed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from skills.models.masked import unmasked
from skills.models.offline import OfflineChatModel, keyword_route
from skills.pii import mask_text
from skills.registry import Skill, SkillRegistry
from storage.runs import ChannelDefaults, ThreadSkills

log = logging.getLogger(f"switchboard.{__name__}")

FALLBACK_SKILL = "ask"
RouteReason = Literal["explicit", "thread", "channel", "router", "fallback"]

_FIRST_WORD = re.compile(r"^\s*(?:<@[A-Z0-9]+>\s*)*([a-z][a-z0-9_-]*)\b[:,]?\s*(.*)$", re.S)

ROUTER_PROMPT = (
    "You route requests to skills. Pick the one skill whose description fits the request "
    "best. If none fits clearly, pick '{fallback}'.\n\nSkills:\n{skills}"
)


@dataclass(frozen=True, slots=True)
class Route:
    skill: str
    text: str
    reason: RouteReason


class _Choice(BaseModel):
    skill: str = Field(description="the name of the chosen skill")


def explicit_skill(text: str, names: Sequence[str]) -> tuple[str, str] | None:
    """``("digest", "#c 24h")`` when the message's first word is a skill name."""
    match = _FIRST_WORD.match(text)
    if match and match.group(1) in names:
        return match.group(1), match.group(2).strip()
    return None


class Router:
    """Picks a skill for a message; see the module docstring for the order."""

    def __init__(
        self,
        *,
        registry: SkillRegistry,
        threads: ThreadSkills,
        channels: ChannelDefaults,
        router_model: Callable[[], BaseChatModel],
        fallback: str = FALLBACK_SKILL,
    ) -> None:
        self._registry = registry
        self._threads = threads
        self._channels = channels
        self._router_model = router_model
        self._fallback = fallback

    async def route(
        self, *, thread_id: str, channel: str | None, text: str, candidates: Sequence[Skill]
    ) -> Route:
        named = explicit_skill(text, self._registry.names())
        if named is not None:
            return Route(skill=named[0], text=named[1] or text, reason="explicit")
        owner = await self._threads.get(thread_id)
        if owner is not None and owner in self._registry:
            return Route(skill=owner, text=text, reason="thread")
        if channel is not None:
            default = await self._channels.get(channel)
            if default is not None and default in self._registry:
                return Route(skill=default, text=text, reason="channel")
        allowed = [s for s in candidates if s.name != self._fallback]
        choice = await self._ask_model(text, allowed) if allowed else None
        if choice is not None:
            return Route(skill=choice, text=text, reason="router")
        return Route(skill=self._fallback, text=text, reason="fallback")

    async def _ask_model(self, text: str, candidates: Sequence[Skill]) -> str | None:
        names = {s.name: s.description for s in candidates}
        model = self._router_model()
        if isinstance(unmasked(model), OfflineChatModel):
            return keyword_route(mask_text(text), names)
        listing = "\n".join(f"- {name}: {desc}" for name, desc in names.items())
        prompt = ROUTER_PROMPT.format(fallback=self._fallback, skills=listing)
        try:
            structured = model.with_structured_output(_Choice)
            result = await structured.ainvoke([SystemMessage(prompt), HumanMessage(text)])
        except Exception as exc:  # a routing failure must not fail the message
            log.warning("router model failed (%s); using %s", type(exc).__name__, self._fallback)
            return None
        skill = result.skill if isinstance(result, _Choice) else None
        return skill if skill in names else None
