"""What the schedule stores hand out: frozen records, never ORM rows.

The JSON columns (``trigger_json``, ``options_json``) are parsed into mappings here and
built here; nobody outside ``storage/`` sees their text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

from storage import models

RunStatus = Literal["running", "ok", "failed", "missed", "skipped"]
FINAL_STATUSES = frozenset({"ok", "failed", "missed", "skipped"})

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring automation: run ``skill`` on ``input_text`` and post to ``channel_id``.

    ``trigger`` is ``scheduler.triggers.Trigger.to_dict()``; ``options`` the stand-up
    options (``kind == "standup"``). ``last_fire_at`` is the latest scheduled instant
    already handled; ``version`` grows with every change so a resync can tell what moved.
    """

    id: str
    team_id: str
    kind: str
    skill: str
    input_text: str
    channel_id: str
    trigger: Mapping[str, Any]
    tz: str
    grace_seconds: int
    owner: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    paused_reason: str | None = None
    next_run_at: datetime | None = None
    last_fire_at: datetime | None = None
    last_status: str | None = None
    failure_streak: int = 0
    failure_notified: bool = False
    run_requested_at: datetime | None = None
    version: int = 1


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    """One firing of a schedule (``kind`` is ``scheduled`` or ``manual``)."""

    id: int
    schedule_id: str
    scheduled_for: datetime
    kind: str
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    message_ts: str | None = None
    run_id: str | None = None
    fence: int | None = None


@dataclass(frozen=True, slots=True)
class StandupSession:
    """One stand-up: prompts went out at ``opens_at``; answers count until ``closes_at``."""

    id: str
    schedule_id: str
    scheduled_for: datetime
    team_id: str
    channel_id: str
    usergroup: str
    prompt: str
    opens_at: datetime
    closes_at: datetime
    status: str
    summary_ts: str | None = None


@dataclass(frozen=True, slots=True)
class StandupAnswer:
    """A member asked in a stand-up, with what they replied in their DM (PII-masked)."""

    id: int
    session_id: str
    user_id: str
    answer: str
    dm_channel: str | None = None
    prompt_ts: str | None = None
    answered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FiringResult:
    """What finishing a firing did to its schedule's failure streak.

    ``notify`` is True for the first failure of a streak (tell the owner once);
    ``paused`` is True when this failure reached the limit and paused the schedule.
    """

    schedule: Schedule | None
    streak: int
    notify: bool
    paused: bool


@dataclass(frozen=True, slots=True)
class PlannedFiring:
    """A firing to record ahead of its instant: the schedule's state before and after.

    ``previous_fire_at`` is the schedule's ``last_fire_at`` when it was planned; recording
    only succeeds if it is still older than ``scheduled_for``, and releasing the firing
    (:meth:`FiringStore.release_firings`) puts it back.
    """

    schedule_id: str
    scheduled_for: datetime
    next_run_at: datetime | None
    previous_fire_at: datetime | None


@dataclass(frozen=True, slots=True)
class StandupReply:
    """A captured stand-up answer: the session it went to; ``first`` for a first answer."""

    session_id: str
    user_id: str
    first: bool


def dumps(data: Mapping[str, Any]) -> str:
    """The JSON stored in ``trigger_json`` / ``options_json``."""
    return json.dumps(dict(data), sort_keys=True, separators=(",", ":"))


def loads(text: str | None) -> Mapping[str, Any]:
    value = json.loads(text or "{}")
    return MappingProxyType(value) if isinstance(value, dict) else _EMPTY


def schedule(row: models.Schedule) -> Schedule:
    return Schedule(
        id=row.id,
        team_id=row.team_id,
        kind=row.kind,
        skill=row.skill,
        input_text=row.input_text,
        channel_id=row.channel_id,
        trigger=loads(row.trigger_json),
        tz=row.tz,
        grace_seconds=row.grace_seconds,
        options=loads(row.options_json),
        owner=row.owner,
        enabled=row.enabled,
        paused_reason=row.paused_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        next_run_at=row.next_run_at,
        last_fire_at=row.last_fire_at,
        last_status=row.last_status,
        failure_streak=row.failure_streak,
        failure_notified=row.failure_notified,
        run_requested_at=row.run_requested_at,
        version=row.version,
    )


def schedule_run(row: models.ScheduleRun) -> ScheduleRun:
    return ScheduleRun(
        id=row.id,
        schedule_id=row.schedule_id,
        scheduled_for=row.scheduled_for,
        kind=row.kind,
        status=row.status,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        message_ts=row.message_ts,
        run_id=row.run_id,
        fence=row.fence,
    )


def standup_session(row: models.StandupSession) -> StandupSession:
    return StandupSession(
        id=row.id,
        schedule_id=row.schedule_id,
        scheduled_for=row.scheduled_for,
        team_id=row.team_id,
        channel_id=row.channel_id,
        usergroup=row.usergroup,
        prompt=row.prompt,
        opens_at=row.opens_at,
        closes_at=row.closes_at,
        status=row.status,
        summary_ts=row.summary_ts,
    )


def standup_answer(row: models.StandupAnswer) -> StandupAnswer:
    return StandupAnswer(
        id=row.id,
        session_id=row.session_id,
        user_id=row.user_id,
        answer=row.answer,
        dm_channel=row.dm_channel,
        prompt_ts=row.prompt_ts,
        answered_at=row.answered_at,
    )
