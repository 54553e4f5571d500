"""Online evaluation, the scoring half: a job grades a sampled production turn.

`skills.sampling.TurnSampler` keeps a share of turns (and every 👎) with their masked
request and answer and queues a :data:`~skills.sampling.SCORE_KIND` job. A worker runs
:meth:`OnlineScorer.handle`: it grades the answer with the judge against each rubric of
the skill's dataset (``online: rubrics:`` in ``<skill>.eval.yaml``, beside the spec; a
skill without any is graded on :data:`DEFAULT_RUBRICS`) and stores one score per rubric
with the run record (`storage.scores`). A judge failure is retried by the queue; on the
last attempt the sample is closed as ``failed``. Without a judge model (unset, or the
offline model, which cannot judge) samples are closed as ``unscored`` — counted, not graded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evals.dataset import DatasetError, OnlineRubric, discover_datasets, load_dataset
from evals.judge import Judge, JudgeError
from storage.runqueue import JobInfo, Retryable
from storage.scores import Score, ScoreStore

__all__ = [
    "DEFAULT_RUBRICS",
    "DatasetRubrics",
    "OnlineScorer",
    "ScoreObserver",
    "Verdict",
]

log = logging.getLogger(f"switchboard.{__name__}")

#: What a skill whose dataset names no ``online`` rubric is graded on.
DEFAULT_RUBRICS: tuple[OnlineRubric, ...] = (
    OnlineRubric(
        name="helpful",
        rubric=(
            "The answer addresses what was asked, directly and briefly. It does not invent "
            "facts, numbers or people the request and the tool results do not give, says so "
            "when it cannot help, and never claims an action (a refund, a message) it did "
            "not take. Personal data stays masked."
        ),
        threshold=0.7,
    ),
)

Verdict = Literal["pass", "fail", "error"]
#: Told of each graded sample: ``(skill, verdict, scores)`` — ``pass`` when every rubric
#: passed, ``fail`` otherwise, ``error`` when the judge failed for good (no scores).
ScoreObserver = Callable[[str, Verdict, Sequence[Score]], None]


class DatasetRubrics:
    """The ``online`` rubrics of each skill's datasets under ``folders``, read again when
    a file changes (a dataset is edited beside its spec, like the spec itself)."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self._folders = list(folders)
        self._cache: dict[Path, tuple[float, str, tuple[OnlineRubric, ...]]] = {}

    def __call__(self, skill: str) -> tuple[OnlineRubric, ...]:
        found: dict[str, OnlineRubric] = {}
        for path in discover_datasets(self._folders):
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            cached = self._cache.get(path)
            if cached is None or cached[0] != mtime:
                try:
                    dataset = load_dataset(path)
                except DatasetError as exc:
                    log.warning("online rubrics of %s not read: %s", path, exc.issues[0])
                    self._cache[path] = (mtime, "", ())
                    continue
                cached = (mtime, dataset.skill, tuple(dataset.online.rubrics))
                self._cache[path] = cached
            if cached[1] == skill:
                for rubric in cached[2]:
                    found.setdefault(rubric.name, rubric)
        return tuple(found.values()) or DEFAULT_RUBRICS


@dataclass(frozen=True, slots=True)
class _Graded:
    rubric: OnlineRubric
    score: float
    reason: str


class OnlineScorer:
    """Grades sampled turns; :meth:`handle` is the run queue's work handler."""

    def __init__(
        self,
        *,
        store: ScoreStore,
        judge: Judge | None,
        rubrics: Callable[[str], Sequence[OnlineRubric]],
        observers: Iterable[ScoreObserver] = (),
    ) -> None:
        self._store = store
        self._judge = judge
        self._rubrics = rubrics
        self._observers = list(observers)

    async def handle(self, payload: Mapping[str, Any], job: JobInfo) -> None:
        """Score the sampled run ``payload["run_id"]`` (once: a scored sample is skipped)."""
        run_id = str(payload.get("run_id") or "")
        sample = await self._store.get(run_id)
        if sample is None or sample.status != "pending":
            return  # unknown, or already graded by an earlier attempt
        if self._judge is None:
            await self._store.close(
                run_id, status="unscored", detail="no judge model: set SWITCHBOARD_JUDGE_MODEL"
            )
            return
        rubrics = list(self._rubrics(sample.skill))
        graded: list[_Graded] = []
        for rubric in rubrics:
            try:
                verdict = await self._judge.grade(
                    rubric=rubric.rubric,
                    request=sample.request,
                    answer=sample.answer,
                    trajectory="",
                )
            except JudgeError as exc:
                if not job.final_attempt:
                    raise Retryable(exc.detail) from exc
                log.warning("run %s not scored: %s", run_id, exc.detail)
                await self._store.close(run_id, status="failed", detail=exc.detail)
                self._notify(sample.skill, "error", [])
                return
            graded.append(_Graded(rubric, verdict.score, verdict.reason))
        scores = await self._store.record(
            run_id,
            scores=[
                (g.rubric.name, g.score, g.score >= g.rubric.threshold, g.reason or None)
                for g in graded
            ],
            judge_model=self._judge.model_name,
        )
        outcome: Verdict = "pass" if scores and all(s.passed for s in scores) else "fail"
        self._notify(sample.skill, outcome, scores)
        log.info("run scored", extra={"run_id": run_id, "skill": sample.skill, "verdict": outcome})

    def _notify(self, skill: str, verdict: Verdict, scores: Sequence[Score]) -> None:
        for observer in self._observers:
            try:
                observer(skill, verdict, scores)
            except Exception:  # metrics must never fail a job
                log.exception("score observer failed")
