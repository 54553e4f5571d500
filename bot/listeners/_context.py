"""What listeners need, passed in by the app factory (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.conversations import Conversations
from bot.metrics import Metrics
from bot.worker import Worker
from storage.feedback import FeedbackStore
from storage.locks import RedisLocks


@dataclass(slots=True)
class BotContext:
    conversations: Conversations
    worker: Worker
    locks: RedisLocks
    feedback: FeedbackStore
    metrics: Metrics
    # Filled by later features (approvals, schedules) to extend /switchboard and App Home.
    subcommands: dict[str, object] = field(default_factory=dict)
