"""What listeners need, passed in by the app factory (no globals)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncRespond
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations import Conversations
from bot.metrics import Metrics
from bot.worker import Worker
from skills.context import Actor
from storage.feedback import FeedbackStore
from storage.locks import RedisLocks

#: ``/switchboard <word> <args>`` added by a feature: ``(body, ack, respond, client, args)``.
Subcommand = Callable[
    [dict[str, Any], AsyncAck, AsyncRespond, AsyncWebClient, str], Awaitable[None]
]
#: Sees each new DM first ``(team, channel, user, text, ts)``; True = handled, no answer.
DmHook = Callable[[str, str, str, str, str], Awaitable[bool]]
#: A section of the App Home tab added by a feature, for one person.
HomeSection = Callable[[Actor], Awaitable[list[Block]]]


@dataclass(slots=True)
class BotContext:
    conversations: Conversations
    worker: Worker
    locks: RedisLocks
    feedback: FeedbackStore
    metrics: Metrics
    # Features (approvals, schedules) extend /switchboard, its help, and App Home here.
    subcommands: dict[str, Subcommand] = field(default_factory=dict)
    help_lines: list[str] = field(default_factory=list)
    home_sections: list[HomeSection] = field(default_factory=list)
    dm_hooks: list[DmHook] = field(default_factory=list)
