"""Online evaluation records: sampled production turns and their judge scores.

A turn is *sampled* (``run_samples``) with its PII-masked request and answer when it ends
(a share of turns) or when someone gives its answer a 👎 (always); a job scores it later
and stores one ``run_scores`` row per rubric. Both hang off the run record. Callers get
dataclasses, never ORM rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Feedback, Run, RunSample, RunScore, utcnow

__all__ = [
    "QualityRow",
    "Sample",
    "SampleReason",
    "SampleStatus",
    "Score",
    "ScoreStore",
]

SampleReason = Literal["share", "feedback"]
SampleStatus = Literal["pending", "scored", "unscored", "failed"]
Period = Literal["day", "week"]

_TEXT_LIMIT = 8000


@dataclass(frozen=True, slots=True)
class Sample:
    """A sampled turn, as stored."""

    run_id: str
    skill: str
    reason: SampleReason
    thumbs_down: bool
    request: str
    answer: str
    status: SampleStatus
    detail: str | None
    sampled_at: datetime
    scored_at: datetime | None


@dataclass(frozen=True, slots=True)
class Score:
    """One rubric's verdict on a sampled run."""

    run_id: str
    rubric: str
    score: float
    passed: bool
    judge_model: str
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class QualityRow:
    """Online quality of one skill in one period (a day ``2026-12-01`` or an ISO week
    ``2026-W49``): turns sampled and scored, the share of scored turns that passed every
    rubric, the mean score over all rubric verdicts, and 👎 given in the period."""

    skill: str
    period: str
    sampled: int
    scored: int
    passed: int
    mean_score: float | None
    thumbs_down: int

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.scored if self.scored else None


def _sample(row: RunSample) -> Sample:
    return Sample(
        run_id=row.run_id,
        skill=row.skill,
        reason=row.reason,  # type: ignore[arg-type]  # written only by this store
        thumbs_down=row.thumbs_down,
        request=row.request,
        answer=row.answer,
        status=row.status,  # type: ignore[arg-type]
        detail=row.detail,
        sampled_at=row.sampled_at,
        scored_at=row.scored_at,
    )


def _score(row: RunScore) -> Score:
    return Score(
        run_id=row.run_id,
        rubric=row.rubric,
        score=row.score,
        passed=row.passed,
        judge_model=row.judge_model,
        reason=row.reason,
        created_at=row.created_at,
    )


def period_of(moment: datetime, period: Period) -> str:
    """``2026-12-01`` (day) or ``2026-W49`` (ISO week) of a UTC moment."""
    moment = moment.astimezone(UTC)
    if period == "day":
        return moment.date().isoformat()
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


class ScoreStore:
    """Samples and scores of online evaluation (see the module docstring)."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def sample(
        self,
        *,
        run_id: str,
        skill: str,
        reason: SampleReason,
        request: str,
        answer: str,
        thumbs_down: bool = False,
        now: datetime | None = None,
    ) -> bool:
        """Keep a turn for scoring; True when it is new and waits to be scored (the caller
        then queues the job). A turn sampled before is not sampled twice: a 👎 on it only
        marks it (``thumbs_down``), and False is returned. Also False when the run record
        does not exist (no sample without its run). The sample is filed under the run's
        own skill; ``skill`` (what a feedback button said) is only a fallback."""
        try:
            async with self._sessions.begin() as session:
                existing = await session.get(RunSample, run_id)
                if existing is not None:
                    if thumbs_down and not existing.thumbs_down:
                        existing.thumbs_down = True
                    return False
                run = await session.get(Run, run_id)
                if run is None:
                    return False
                session.add(
                    RunSample(
                        run_id=run_id,
                        skill=run.skill or skill,
                        reason=reason,
                        thumbs_down=thumbs_down,
                        request=request[:_TEXT_LIMIT],
                        answer=answer[:_TEXT_LIMIT],
                        status="pending",
                        sampled_at=now or utcnow(),
                    )
                )
        except IntegrityError:
            # Another writer sampled it first, or there is no such run.
            if thumbs_down:
                await self._mark_down(run_id)
            return False
        return True

    async def _mark_down(self, run_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(RunSample).where(RunSample.run_id == run_id).values(thumbs_down=True)
            )

    async def get(self, run_id: str) -> Sample | None:
        async with self._sessions() as session:
            row = await session.get(RunSample, run_id)
            return _sample(row) if row is not None else None

    async def record(
        self,
        run_id: str,
        *,
        scores: Sequence[tuple[str, float, bool, str | None]],
        judge_model: str,
        now: datetime | None = None,
    ) -> list[Score]:
        """Store the verdicts ``(rubric, score, passed, reason)`` of a sampled run and mark
        it scored. Idempotent: a rubric already scored for the run keeps its first verdict
        (a retried job writes nothing twice). Returns the run's scores."""
        moment = now or utcnow()
        async with self._sessions.begin() as session:
            have = set(
                await session.scalars(select(RunScore.rubric).where(RunScore.run_id == run_id))
            )
            for rubric, value, passed, reason in scores:
                if rubric in have:
                    continue
                session.add(
                    RunScore(
                        run_id=run_id,
                        rubric=rubric[:64],
                        score=float(value),
                        passed=bool(passed),
                        judge_model=judge_model[:255],
                        reason=reason[:4000] if reason else None,
                        created_at=moment,
                    )
                )
                have.add(rubric)
            await session.execute(
                update(RunSample)
                .where(RunSample.run_id == run_id)
                .values(status="scored", scored_at=moment, detail=None)
            )
        return await self.scores(run_id)

    async def close(
        self, run_id: str, *, status: SampleStatus, detail: str, now: datetime | None = None
    ) -> None:
        """End a sample without scores (``unscored``: no judge or rubric; ``failed``)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(RunSample)
                .where(RunSample.run_id == run_id)
                .values(status=status, detail=detail[:2000], scored_at=now or utcnow())
            )

    async def scores(self, run_id: str) -> list[Score]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(RunScore).where(RunScore.run_id == run_id).order_by(RunScore.rubric)
            )
            return [_score(row) for row in rows]

    async def pending(self, *, older_than: timedelta = timedelta(0), limit: int = 100) -> list[str]:
        """Run ids of samples still waiting to be scored (oldest first), sampled at least
        ``older_than`` ago: what to queue again after a lost job."""
        cutoff = utcnow() - older_than
        async with self._sessions() as session:
            rows = await session.scalars(
                select(RunSample.run_id)
                .where(RunSample.status == "pending", RunSample.sampled_at <= cutoff)
                .order_by(RunSample.sampled_at)
                .limit(limit)
            )
            return list(rows)

    async def quality(
        self, *, since: datetime | None = None, period: Period = "day"
    ) -> list[QualityRow]:
        """Online quality per skill and period (see :class:`QualityRow`), ordered by skill
        then period. A sample counts in the period it was sampled in; a 👎 in the period
        it was given."""
        samples = select(RunSample.run_id, RunSample.skill, RunSample.sampled_at, RunSample.status)
        downs = select(Feedback.skill, Feedback.created_at).where(Feedback.value == "down")
        verdicts = select(
            RunScore.run_id,
            func.count(),
            func.sum(RunScore.score),
            func.sum(case((RunScore.passed, 0), else_=1)),  # rubrics failed
        ).group_by(RunScore.run_id)
        if since is not None:
            samples = samples.where(RunSample.sampled_at >= since)
            downs = downs.where(Feedback.created_at >= since)
            verdicts = verdicts.join(RunSample, RunSample.run_id == RunScore.run_id).where(
                RunSample.sampled_at >= since
            )
        async with self._sessions() as session:
            sample_rows = (await session.execute(samples)).all()
            down_rows = (await session.execute(downs)).all()
            verdict_rows = {row[0]: row for row in (await session.execute(verdicts)).all()}
        cells: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0, 0])
        for run_id, skill, sampled_at, status in sample_rows:
            cell = cells[(skill, period_of(sampled_at, period))]
            cell[0] += 1
            verdict = verdict_rows.get(run_id)
            if status == "scored" and verdict is not None and verdict[1]:
                cell[1] += 1
                cell[2] += 1 if not verdict[3] else 0
                cell[3] += float(verdict[2] or 0.0)
                cell[4] += int(verdict[1])
        for skill, created_at in down_rows:
            cells[(skill, period_of(created_at, period))][5] += 1
        return [
            QualityRow(
                skill=skill,
                period=key,
                sampled=int(cell[0]),
                scored=int(cell[1]),
                passed=int(cell[2]),
                mean_score=cell[3] / cell[4] if cell[4] else None,
                thumbs_down=int(cell[5]),
            )
            for (skill, key), cell in sorted(cells.items())
        ]
