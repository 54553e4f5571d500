"""Every Redis key Switchboard writes, built in one place.

Keys look like ``{prefix}:{kind}:{part}:{part}``. The prefix is configurable
(``SWITCHBOARD_REDIS_PREFIX``) so several deployments can share one Redis. Each kind has a
default TTL here, so no key lives forever by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class KeyKind(StrEnum):
    CHECKPOINT = "cp"  # conversation checkpoints (LangGraph saver)
    CLAIM = "claim"  # idempotency claims (event ids, schedule firings)
    LEASE = "lease"  # lease locks with fencing tokens
    FENCE = "fence"  # monotonically increasing fencing counters
    CACHE = "cache"  # short-lived caches (user groups, user info)
    CHANNEL = "chan"  # pub/sub channels
    RATE = "rate"  # token buckets of the per-user and per-channel rate limits


DEFAULT_TTLS: dict[KeyKind, timedelta] = {
    KeyKind.CHECKPOINT: timedelta(days=7),
    KeyKind.CLAIM: timedelta(minutes=15),
    KeyKind.LEASE: timedelta(seconds=30),
    KeyKind.FENCE: timedelta(days=30),
    KeyKind.CACHE: timedelta(minutes=5),
    # The bucket script sets each key's TTL to when it would be full again; this is the
    # longest a bucket of the slowest configurable rate can need.
    KeyKind.RATE: timedelta(days=1),
}


def _check_part(part: str) -> str:
    if not part:
        raise ValueError("Redis key parts must not be empty")
    return part


class ScheduleChange(StrEnum):
    """What a message on the schedule change channel (:meth:`Keys.schedule_changes`) says.

    A message is ``"<kind> <ident>"``: ``changed <schedule id>`` after a schedule was
    added, paused, resumed, deleted or asked to run; ``released <holder>`` when a
    scheduler leader steps down.
    """

    CHANGED = "changed"
    RELEASED = "released"


def schedule_change(kind: str, ident: str = "") -> str:
    """The text published on the schedule change channel."""
    return f"{kind} {ident}".strip()


def parse_schedule_change(text: str) -> tuple[str, str]:
    """``(kind, ident)`` of a message on the schedule change channel."""
    kind, _, ident = text.partition(" ")
    return kind, ident


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds namespaced keys: ``Keys("sb").key(KeyKind.CLAIM, "event", "Ev1")``."""

    prefix: str = "sb"

    def key(self, kind: KeyKind, *parts: str) -> str:
        return ":".join([self.prefix, kind.value, *(_check_part(p) for p in parts)])

    def schedule_changes(self) -> str:
        """The pub/sub channel of schedule changes (messages: :class:`ScheduleChange`)."""
        return self.key(KeyKind.CHANNEL, "schedules")

    def ttl(self, kind: KeyKind) -> timedelta:
        return DEFAULT_TTLS[kind]


def ttl_ms(ttl: timedelta) -> int:
    """A TTL in whole milliseconds, at least 1 (Redis rejects 0)."""
    return max(1, int(ttl.total_seconds() * 1000))
