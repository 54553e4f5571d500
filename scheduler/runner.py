"""Running one recorded firing: the skill through the runtime, or a stand-up step.

The leader decides *whether* a firing runs (claim + run record, in ``service.py``); this
module does the work and closes the record: post the answer to the target channel, or
record the failure, DM the owner on the first failure of a streak, and pause the schedule
(saying so) after ``max_failures`` failures in a row.

A firing acts as the schedule's owner. Before it runs, the owner must still be a member of
the channel it posts to (asked of Slack, uncached); the skill then reads Slack as the
owner, so a digest of a channel the owner has left is refused, and a firing with any
refused read fails instead of posting (the owner is told why, and nothing read is posted).
A schedule created at the CLI (owner ``cli``) reads only its own channel.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from scheduler.manage import STANDUP, StandupOptions
from scheduler.ports import (
    ActorResolver,
    DropNotice,
    GroupMembers,
    PostDeferred,
    Poster,
    PostFailed,
    ScheduleWords,
)
from scheduler.triggers import format_run_time
from skills.access import decide
from skills.context import (
    ConversationAccess,
    Principal,
    SlackReader,
    SlackReaderError,
    ThreadRef,
)
from skills.errors import RunFailed, SkillError
from skills.outcomes import ApprovalRequest, Refusal, Reply
from skills.runtime import Runtime
from storage.errors import StorageError
from storage.runqueue import Superseded
from storage.schedules import FiringResult, Schedule, ScheduleRun, ScheduleStore, StandupSession

log = logging.getLogger(f"switchboard.{__name__}")

OnStandupOpened = Callable[[StandupSession], None]
#: Raises when the caller no longer owns the firing (a queued job re-claimed elsewhere).
Fence = Callable[[], Awaitable[None]]


class _Failed(Exception):
    """A firing failed for a reason the owner can act on (shown in the DM and the list)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


_OWNER_PROBLEMS = {
    "not_member": "is no longer a member of",
    "not_your_dm": "does not own the DM",
    "unknown": "can no longer see",
}


def _is_user(owner: str) -> bool:
    return owner[:1] in ("U", "W")


async def _plain_actor(user_id: str) -> Principal:
    return Principal(user_id=user_id)


class FiringRunner:
    """Executes recorded firings. One per process; safe to share between tasks."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        runtime: Runtime,
        poster: Poster,
        words: ScheduleWords,
        slack: SlackReader | None = None,
        actor_for: ActorResolver | None = None,
        group_members: GroupMembers | None = None,
        max_failures: int = 5,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        access: ConversationAccess | None = None,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self._store = store
        self._runtime = runtime
        self._poster = poster
        self._words = words
        self._slack = slack
        self._actor_for = actor_for or _plain_actor
        self._group_members = group_members
        self._access = access
        self.max_failures = max_failures
        self._clock = clock

    async def execute(
        self,
        schedule: Schedule,
        run: ScheduleRun,
        *,
        on_standup_opened: OnStandupOpened | None = None,
        fence: Fence | None = None,
    ) -> FiringResult:
        """Do the firing recorded as ``run`` and close its record.

        ``fence`` (a queued firing's ownership check) runs right before anything is posted
        and raises :class:`~storage.runqueue.Superseded` when another worker took the
        firing over; the record is then left to that worker."""
        message_ts: str | None = None
        skill_run: str | None = None
        try:
            if schedule.kind == STANDUP:
                opened = await self._open_standup(schedule, run, fence=fence)
                if opened is not None and on_standup_opened is not None:
                    on_standup_opened(opened)
            else:
                message_ts, skill_run = await self._run_skill(
                    schedule, scheduled_for=run.scheduled_for, fence=fence
                )
        except Superseded:
            raise
        except _Failed as failure:
            return await self._failed(schedule, run, failure.reason)
        except (StorageError, SkillError) as exc:
            log.warning("schedule %s firing failed: %s", schedule.id, exc)
            return await self._failed(schedule, run, str(exc))
        except Exception:
            ref = uuid.uuid4().hex[:10]
            log.exception("schedule %s firing failed ref=%s", schedule.id, ref)
            return await self._failed(schedule, run, f"an internal error (reference {ref})")
        return await self._store.firings.finish(
            run.id,
            status="ok",
            finished_at=self._clock(),
            message_ts=message_ts,
            skill_run_id=skill_run,
            max_failures=self.max_failures,
        )

    # -- skills ---------------------------------------------------------------------------

    async def _owner_may_post(self, schedule: Schedule) -> Principal:
        """The owner as a principal, after checking they are still in the target channel."""
        owner = await self._actor_for(schedule.owner)
        if self._access is None or not _is_user(schedule.owner):
            return owner  # no port: the run can read only its own channel anyway
        try:
            verdict = await decide(owner, schedule.channel_id, current=None, access=self._access)
        except SlackReaderError as exc:
            where = self._words.channel(schedule.channel_id)
            raise _Failed(f"could not check {where} ({exc.error})") from exc
        if verdict.refusal is not None:
            problem = _OWNER_PROBLEMS.get(verdict.refusal, "may not use")
            raise _Failed(
                f"the schedule acts as its owner {self._words.user(schedule.owner)}, who "
                f"{problem} {self._words.channel(schedule.channel_id)}"
            )
        return owner

    async def _run_skill(
        self, schedule: Schedule, *, scheduled_for: datetime, fence: Fence | None
    ) -> tuple[str | None, str]:
        actor = await self._owner_may_post(schedule)
        # One conversation per schedule, started afresh each time: a firing never sees
        # the previous firing's messages, and memory does not grow with every run.
        thread = ThreadRef(
            team=schedule.team_id, channel=schedule.channel_id, thread_ts=f"schedule-{schedule.id}"
        )
        await self._runtime.reset(thread)
        try:
            outcome = await self._runtime.run(
                thread=thread,
                message=schedule.input_text or schedule.skill,
                actor=actor,
                skill=schedule.skill,
                slack=self._slack,
                access=self._access,
                trigger="schedule",
            )
        except RunFailed as exc:
            raise _Failed(f"the run failed (reference {exc.ref})") from exc
        if isinstance(outcome, Refusal):
            raise _Failed(f"the skill refused: {outcome.reason}")
        if isinstance(outcome, ApprovalRequest):
            raise _Failed(
                f"the skill asked for approval to use `{outcome.tool}`; scheduled runs "
                "cannot wait for approvals"
            )
        assert isinstance(outcome, Reply)
        if outcome.refused_reads:
            where = ", ".join(self._words.channel(c) for c in outcome.refused_reads)
            raise _Failed(
                f"the schedule acts as its owner {self._words.user(schedule.owner)}, who may "
                f"not read {where}"
            )
        if fence is not None:
            await fence()
        dropped = None
        if _is_user(schedule.owner):  # told if the answer is queued and then can't be posted
            when = format_run_time(scheduled_for, schedule.tz, now=self._clock())
            dropped = DropNotice(schedule.owner, self._words.answer_dropped(schedule, when=when))
        try:
            posted = await self._poster.answer(
                schedule.channel_id,
                outcome.text,
                skill=outcome.skill,
                run_id=outcome.run_id,
                dropped=dropped,
            )
        except PostDeferred as exc:
            # The answer is done and queued: a firing Slack rate-limits is not a failure
            # (it would count toward pausing the schedule), and it is not run again.
            log.warning("schedule %s: answer queued: %s", schedule.id, exc)
            return None, outcome.run_id
        except PostFailed as exc:
            where = self._words.channel(schedule.channel_id)
            raise _Failed(f"could not post in {where} ({exc.error})") from exc
        return posted.ts, outcome.run_id

    # -- stand-ups ------------------------------------------------------------------------

    async def _open_standup(
        self, schedule: Schedule, run: ScheduleRun, *, fence: Fence | None
    ) -> StandupSession | None:
        await self._owner_may_post(schedule)  # the summary goes where the owner must be
        options = StandupOptions.from_dict(dict(schedule.options))
        if self._group_members is None:
            raise _Failed("this process cannot read user groups")
        try:
            members = sorted(await self._group_members(options.usergroup))
        except SlackReaderError as exc:
            raise _Failed(f"could not read the user group ({exc.error})") from exc
        if fence is not None:
            await fence()
        now = self._clock()
        session = await self._store.standups.open(
            schedule_id=schedule.id,
            scheduled_for=run.scheduled_for,
            team_id=schedule.team_id,
            channel_id=schedule.channel_id,
            usergroup=options.usergroup,
            prompt=options.prompt,
            opens_at=now,
            closes_at=max(run.scheduled_for, now) + options.window,
            members=members,
        )
        if session is None:
            return None
        reached = 0
        for member in members:
            try:
                posted = await self._poster.notice(
                    member, self._words.standup_prompt(session, tz=schedule.tz)
                )
            except PostFailed as exc:
                log.warning("stand-up prompt to %s failed: %s", member, exc.error)
                continue
            reached += 1
            await self._store.standups.prompted(
                session.id, member, dm_channel=posted.channel, ts=posted.ts
            )
        if members and not reached:
            raise _Failed("none of the stand-up prompts could be delivered")
        return session

    async def close_standup(self, session_id: str, *, tz: str = "UTC") -> bool:
        """Post the summary of a stand-up whose window ended; True if this call posted it
        (or queued it, when Slack rate-limits the workspace: it is posted once Slack takes
        it)."""
        session = await self._store.standups.close(session_id)
        if session is None:
            return False
        answers = await self._store.standups.answers(session_id)
        ts: str | None = None
        try:
            posted = await self._poster.notice(
                session.channel_id,
                self._words.standup_summary(session, answers, tz=tz),
                later=True,  # everyone's answers: never lost to a rate limit
            )
            ts = posted.ts
        except PostDeferred as exc:
            log.warning("stand-up summary for %s queued: %s", session_id, exc)
            await self._store.standups.closed(session_id, summary_ts=None)
            return True
        except PostFailed as exc:
            log.warning("stand-up summary for %s not posted: %s", session_id, exc.error)
        await self._store.standups.closed(session_id, summary_ts=ts)
        return ts is not None

    # -- failures -------------------------------------------------------------------------

    async def _failed(self, schedule: Schedule, run: ScheduleRun, reason: str) -> FiringResult:
        now = self._clock()
        result = await self._store.firings.finish(
            run.id,
            status="failed",
            finished_at=now,
            error=reason,
            max_failures=self.max_failures,
            pause_reason=f"paused itself after {self.max_failures} failures in a row",
        )
        if not _is_user(schedule.owner):
            return result
        when = format_run_time(run.scheduled_for, schedule.tz, now=now)
        text: str | None = None
        if result.paused:
            text = self._words.schedule_paused(
                schedule, when=when, reason=reason, streak=result.streak
            )
        elif result.notify:
            text = self._words.firing_failed(
                schedule, when=when, reason=reason, max_failures=self.max_failures
            )
        if text is not None:
            try:
                await self._poster.notice(schedule.owner, text)
            except PostFailed as exc:
                log.warning(
                    "could not DM %s about schedule %s: %s", schedule.owner, schedule.id, exc.error
                )
        return result


#: How long an unanswered manual run request stays valid.
RUN_REQUEST_TTL = timedelta(hours=1)
