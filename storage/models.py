"""SQL tables, as SQLAlchemy 2 typed models.

The schema is owned by the Alembic migrations in ``storage/migrations``; a test checks that
these models and the migrated schema never drift apart.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; pass an aware datetime in UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    """One run of a skill: who asked, which model, how long, how many tokens, what came out."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_skill_started_at", "skill", "started_at"),
        Index("ix_runs_thread_id", "thread_id"),
        Index("ix_runs_started_at", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    skill: Mapped[str] = mapped_column(String(64))
    thread_id: Mapped[str] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str | None] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(32), default="message")
    model: Mapped[str] = mapped_column(String(255))
    #: The skill spec's ``version:`` the run ran on (None: the spec has none).
    skill_version: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # US dollars from the price table (skills.pricing); None: a model without a price.
    cost_usd: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(32), default="running")
    error: Mapped[str | None] = mapped_column(Text)
    error_ref: Mapped[str | None] = mapped_column(String(32))


class Feedback(Base):
    """A 👍/👎 on an agent answer; one per person per message (a second click updates it)."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("channel_id", "message_ts", "user_id", name="uq_feedback_message_user"),
        Index("ix_feedback_skill_created_at", "skill", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    skill: Mapped[str] = mapped_column(String(64))
    thread_id: Mapped[str] = mapped_column(String(255))
    channel_id: Mapped[str] = mapped_column(String(64))
    message_ts: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(8))  # "up" | "down"
    comment: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(32))
    # The request the answer was given to, PII-masked (drafts cases once memory expired).
    request: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class RunSample(Base):
    """A production turn picked for online evaluation: its masked request and answer.

    Picked by share (``SWITCHBOARD_EVAL_SAMPLE``) when the turn ends, or because someone
    gave the answer a 👎 (always). ``status`` goes ``pending`` → ``scored`` (its
    ``run_scores`` rows written), ``unscored`` (no judge or no rubric) or ``failed``.
    """

    __tablename__ = "run_samples"
    __table_args__ = (Index("ix_run_samples_skill_sampled_at", "skill", "sampled_at"),)

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    skill: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))  # "share" | "feedback"
    thumbs_down: Mapped[bool] = mapped_column(Boolean, default=False)
    request: Mapped[str] = mapped_column(Text)  # PII-masked, as the model saw it
    answer: Mapped[str] = mapped_column(Text)  # PII-masked, as the person saw it
    status: Mapped[str] = mapped_column(String(16), default="pending")
    detail: Mapped[str | None] = mapped_column(Text)
    sampled_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RunScore(Base):
    """One judge rubric's verdict on a sampled run (one row per run and rubric)."""

    __tablename__ = "run_scores"
    __table_args__ = (
        UniqueConstraint("run_id", "rubric", name="uq_run_scores_run_id_rubric"),
        Index("ix_run_scores_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"))
    rubric: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(Boolean)
    judge_model: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ChannelDefault(Base):
    """The skill a channel's messages go to when nothing else picks one."""

    __tablename__ = "channel_defaults"

    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    skill: Mapped[str] = mapped_column(String(64))
    set_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ThreadSkill(Base):
    """Which skill a conversation thread belongs to, so follow-ups stay with it."""

    __tablename__ = "thread_skills"

    thread_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    skill: Mapped[str] = mapped_column(String(64))
    #: The skill version the conversation runs on, kept for its life (canary rollouts).
    skill_version: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApprovalRequestRow(Base):
    """A gated tool call waiting for (or past) human approval.

    ``args_hash`` binds the request to the exact action: sha256 of the tool name and the
    canonical JSON of its (masked) arguments. An edit supersedes the row with a new one
    (``edited_from`` the old row, ``edited_by`` who typed the new arguments).
    """

    __tablename__ = "approval_requests"
    __table_args__ = (
        Index("ix_approval_requests_status_expires_at", "status", "expires_at"),
        Index("ix_approval_requests_thread_id", "thread_id"),
        Index("ix_approval_requests_requester", "requester"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    skill: Mapped[str] = mapped_column(String(64))
    thread_id: Mapped[str] = mapped_column(String(255))
    channel_id: Mapped[str] = mapped_column(String(64))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    requester: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(128))
    args_json: Mapped[str] = mapped_column(Text)
    args_hash: Mapped[str] = mapped_column(String(64))
    interrupt_id: Mapped[str] = mapped_column(String(128))
    tool_call_id: Mapped[str] = mapped_column(String(128))
    policy_json: Mapped[str] = mapped_column(Text)
    quorum: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    edited_from: Mapped[str | None] = mapped_column(String(32))
    edited_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    card_channel: Mapped[str | None] = mapped_column(String(64))
    card_ts: Mapped[str | None] = mapped_column(String(32))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result_summary: Mapped[str | None] = mapped_column(Text)


class ApprovalVote(Base):
    """One person's approval of one request; the unique key makes a double click count once."""

    __tablename__ = "approval_votes"
    __table_args__ = (
        UniqueConstraint("request_id", "approver", name="uq_approval_votes_request_approver"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(32), ForeignKey("approval_requests.id"))
    approver: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ToolExecution(Base):
    """The execution of an approved tool call, recorded before and after the HTTP call."""

    __tablename__ = "tool_executions"

    request_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))  # started | succeeded | failed
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """Append-only audit log of approval events, chained with a keyed MAC (storage.audit).

    ``hash_alg`` is ``hmac-sha256`` for rows signed with the audit key named by ``key_id``;
    ``sha256`` marks rows from before keyed chaining (migration 0006), which carry a bare
    hash until ``switchboard audit adopt-legacy`` re-chains them.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_request_id", "request_id"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(32))
    args_hash: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text, default="")
    # Unique: two writers that read the same head cannot both append after it.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str | None] = mapped_column(String(16))
    # A row written without saying how it was chained counts as unkeyed: fails verify.
    hash_alg: Mapped[str] = mapped_column(String(16), server_default="sha256")


class Schedule(Base):
    """A recurring automation: run ``skill`` on ``input_text`` and post to ``channel_id``.

    ``trigger_json`` is ``scheduler.triggers.Trigger.to_dict()``. ``last_fire_at`` is the
    latest scheduled instant already handled (run, missed or skipped), from which the leader
    plans what is due; ``version`` grows with every change so a resync can tell what moved.
    ``kind`` is ``skill`` or ``standup`` (``options_json`` then holds the user group, the
    answer window and the prompt).
    """

    __tablename__ = "schedules"
    __table_args__ = (
        Index("ix_schedules_channel_id", "channel_id"),
        Index("ix_schedules_owner", "owner"),
        Index("ix_schedules_enabled_next_run_at", "enabled", "next_run_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="skill")
    skill: Mapped[str] = mapped_column(String(64))
    input_text: Mapped[str] = mapped_column(Text, default="")
    channel_id: Mapped[str] = mapped_column(String(64))
    trigger_json: Mapped[str] = mapped_column(Text)
    tz: Mapped[str] = mapped_column(String(64))
    grace_seconds: Mapped[int] = mapped_column(Integer, default=600)
    options_json: Mapped[str] = mapped_column(Text, default="{}")
    owner: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[str | None] = mapped_column(String(16))
    failure_streak: Mapped[int] = mapped_column(Integer, default=0)
    failure_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    run_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)


class ScheduleRun(Base):
    """One firing of a schedule; the unique (schedule, scheduled time) key backs the Redis
    claim, so a firing is recorded - and run - at most once."""

    __tablename__ = "schedule_runs"
    __table_args__ = (
        UniqueConstraint(
            "schedule_id", "scheduled_for", name="uq_schedule_runs_schedule_id_scheduled_for"
        ),
        Index("ix_schedule_runs_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("schedules.id", ondelete="CASCADE")
    )
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16), default="scheduled")  # scheduled | manual
    status: Mapped[str] = mapped_column(String(16))  # running | ok | failed | missed | skipped
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    message_ts: Mapped[str | None] = mapped_column(String(32))
    run_id: Mapped[str | None] = mapped_column(String(32))
    fence: Mapped[int | None] = mapped_column(Integer)


class StandupSession(Base):
    """One stand-up: prompts went out at ``opens_at``; answers count until ``closes_at``."""

    __tablename__ = "standup_sessions"
    __table_args__ = (
        UniqueConstraint(
            "schedule_id", "scheduled_for", name="uq_standup_sessions_schedule_id_scheduled_for"
        ),
        Index("ix_standup_sessions_status_closes_at", "status", "closes_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    schedule_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("schedules.id", ondelete="CASCADE")
    )
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime())
    team_id: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(64))
    usergroup: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text)
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | closing | closed
    summary_ts: Mapped[str | None] = mapped_column(String(32))


class StandupAnswer(Base):
    """A member asked in a stand-up, with what they replied in their DM (PII-masked)."""

    __tablename__ = "standup_answers"
    __table_args__ = (
        UniqueConstraint("session_id", "user_id", name="uq_standup_answers_session_id_user_id"),
        Index("ix_standup_answers_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("standup_sessions.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(String(64))
    dm_channel: Mapped[str | None] = mapped_column(String(64))
    prompt_ts: Mapped[str | None] = mapped_column(String(32))
    answer: Mapped[str] = mapped_column(Text, default="")
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SkillSwitch(Base):
    """An admin's kill switch for one skill: while ``enabled`` is false nobody can start it.

    No row means enabled. Every replica reads the table (cached for a few seconds), so a
    switch flipped on one replica holds on all of them shortly after.
    """

    __tablename__ = "skill_switches"

    skill: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    reason: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class InboxMessage(Base):
    """A message acked to Slack and not yet answered: the run queue's durable inbox.

    The receiver writes the row (``dedupe_key`` unique: one row per Slack message, whichever
    event or replica brought it) and then wakes the thread's queue job. The job claims the
    thread's pending rows, posts one placeholder per turn (``placeholder_ts``) and updates it
    with the answer; a re-claimed job finds ``placeholder_ts`` and updates the same message.
    """

    __tablename__ = "run_inbox"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_run_inbox_dedupe_key"),
        Index("ix_run_inbox_thread_key_status", "thread_key", "status"),
        Index("ix_run_inbox_status_created_at", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dedupe_key: Mapped[str] = mapped_column(String(255))
    thread_key: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # JSON, built and parsed in storage.runqueue
    status: Mapped[str] = mapped_column(String(16), default="pending")
    job_id: Mapped[int | None] = mapped_column(Integer)
    placeholder_ts: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(32))
