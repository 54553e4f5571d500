"""Online evaluation in the small: the sampling decision, the setting, the dataset's online
rubrics, the scorer's retries and failures, and ``switchboard eval stats``."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from evals.cli import eval_app
from evals.dataset import DatasetError, OnlineRubric, load_dataset_text
from evals.judge import JudgeError, JudgeVerdict
from evals.online import DEFAULT_RUBRICS, DatasetRubrics, OnlineScorer
from skills.sampling import SCORE_KIND, SampledTurn, TurnSampler, picks
from storage.feedback import FeedbackStore
from storage.runqueue import JobInfo, Retryable
from storage.runs import RunStore
from storage.scores import ScoreStore
from storage.sql import create_engine, session_factory, upgrade
from switchboard.cli import eval_host
from switchboard.settings import ConfigError, Settings

# --------------------------------------------------------------------------- sampling


def test_the_share_decides_by_run_id() -> None:
    ids = [uuid.uuid4().hex for _ in range(4000)]
    picked = [run_id for run_id in ids if picks(run_id, 0.25)]
    assert 0.22 < len(picked) / len(ids) < 0.28
    assert [run_id for run_id in ids if picks(run_id, 0.25)] == picked  # stable
    assert not any(picks(run_id, 0.0) for run_id in ids)
    assert all(picks(run_id, 1.0) for run_id in ids)
    assert set(picked) <= {run_id for run_id in ids if picks(run_id, 0.5)}  # nested shares


@pytest.mark.parametrize(
    ("value", "share"), [("0.05", 0.05), ("5%", 0.05), ("", 0.0), ("1", 1.0), ("100%", 1.0)]
)
def test_eval_sample_setting(value: str, share: float) -> None:
    assert Settings.from_env({"SWITCHBOARD_EVAL_SAMPLE": value}).eval_sample == share
    assert Settings.from_env({}).eval_sample == 0.0  # default: only 👎


@pytest.mark.parametrize("value", ["2", "-0.1", "150%", "often"])
def test_a_bad_eval_sample_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SWITCHBOARD_EVAL_SAMPLE": value})
    assert str(caught.value).startswith("SWITCHBOARD_EVAL_SAMPLE: invalid value")


class _Queue:
    def __init__(self, fail: bool = False) -> None:
        self.jobs: list[tuple[str, dict[str, Any], str | None]] = []
        self.fail = fail

    async def defer(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        lock: str | None = None,
        queueing_lock: str | None = None,
        delay: timedelta | None = None,
    ) -> int | None:
        if self.fail:
            raise OSError("queue down")
        self.jobs.append((kind, dict(payload), queueing_lock))
        return len(self.jobs)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'online.db'}"
    await upgrade(url)
    engine = create_engine(url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def _run(sessions: async_sessionmaker[AsyncSession], skill: str = "ask") -> str:
    return await RunStore(sessions=sessions).start(
        skill=skill, thread_id="T1:C1:1.0", actor="U1", channel_id="C1", model="m",
        trigger="message",
    )  # fmt: skip


async def test_offer_keeps_the_share_in_the_background_and_thumbs_down_always(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ScoreStore(sessions=sessions)
    queue = _Queue()
    seen: list[tuple[str, str]] = []
    sampler = TurnSampler(
        store=store, queue=queue, share=0.5, observers=[lambda s, r: seen.append((s, r))]
    )
    runs = [await _run(sessions) for _ in range(40)]
    offered = [sampler.offer(SampledTurn(run_id, "ask", "q", "a")) for run_id in runs]
    assert offered == [picks(run_id, 0.5) for run_id in runs] and 0 < sum(offered) < 40
    await sampler.idle()
    kept = [run_id for run_id, yes in zip(runs, offered, strict=True) if yes]
    assert sorted(job[1]["run_id"] for job in queue.jobs) == sorted(kept)
    assert all(job[0] == SCORE_KIND and job[2] == f"{SCORE_KIND}:{job[1]['run_id']}"
               for job in queue.jobs)  # fmt: skip

    skipped = next(run_id for run_id, yes in zip(runs, offered, strict=True) if not yes)
    assert await sampler.thumbs_down(SampledTurn(skipped, "ask", "q", "a"))
    assert not await sampler.thumbs_down(SampledTurn(kept[0], "ask", "q", "a"))  # marked only
    marked = await store.get(kept[0])
    assert marked is not None and marked.thumbs_down and marked.reason == "share"
    assert seen.count(("ask", "feedback")) == 1 and seen.count(("ask", "share")) == len(kept)


async def test_a_sample_whose_job_was_not_queued_is_queued_at_recovery(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ScoreStore(sessions=sessions)
    run_id = await _run(sessions)
    down = TurnSampler(store=store, queue=_Queue(fail=True), share=1.0)
    assert not await down.thumbs_down(SampledTurn(run_id, "ask", "q", "a"))  # queue down
    sample = await store.get(run_id)
    assert sample is not None and sample.status == "pending"
    queue = _Queue()
    assert await TurnSampler(store=store, queue=queue).recover(older_than=timedelta(0)) == 1
    assert queue.jobs == [(SCORE_KIND, {"run_id": run_id}, f"{SCORE_KIND}:{run_id}")]


# --------------------------------------------------------------------------- rubrics

DATASET = """\
skill: {skill}
online:
  rubrics:
    - {{name: polite, rubric: Polite., threshold: 0.5}}
    - {{name: short, rubric: Short.}}
cases:
  - {{id: one, message: hello}}
"""


def test_online_rubrics_come_from_the_skill_dataset(tmp_path: Path) -> None:
    (tmp_path / "ask.eval.yaml").write_text(DATASET.format(skill="ask"))
    (tmp_path / "other.eval.yaml").write_text(DATASET.format(skill="refunds"))
    rubrics = DatasetRubrics([tmp_path])
    assert [(r.name, r.threshold) for r in rubrics("ask")] == [("polite", 0.5), ("short", 0.7)]
    assert rubrics("digest") == DEFAULT_RUBRICS  # no dataset: the default rubric
    path = tmp_path / "ask.eval.yaml"
    path.write_text(DATASET.format(skill="ask").replace("Polite.", "Very polite."))
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    assert rubrics("ask")[0].rubric == "Very polite."  # read again when the file changes


def test_online_rubric_names_are_checked() -> None:
    text = DATASET.format(skill="ask").replace("name: short", "name: polite")
    with pytest.raises(DatasetError, match="used twice"):
        load_dataset_text(text, filename="ask.eval.yaml")
    with pytest.raises(DatasetError, match=r"online\.rubrics\[0\]\.name"):
        load_dataset_text(DATASET.format(skill="ask").replace("polite", "Bad Name"), filename="x")


# --------------------------------------------------------------------------- scorer


class _Judge:
    model_name = "fake-judge"

    def __init__(self, *verdicts: float | Exception) -> None:
        self.verdicts = list(verdicts)
        self.requests: list[tuple[str, str, str]] = []

    async def grade(
        self, *, rubric: str, request: str, answer: str, trajectory: str
    ) -> JudgeVerdict:
        self.requests.append((rubric, request, answer))
        verdict = self.verdicts.pop(0)
        if isinstance(verdict, Exception):
            raise verdict
        return JudgeVerdict(score=verdict, reason=f"scored {verdict}")


RUBRICS = (OnlineRubric(name="polite", rubric="Polite."), OnlineRubric(name="short", rubric="S."))


def _job(final: bool = False) -> JobInfo:
    return JobInfo(id=1, attempt=5 if final else 0, final_attempt=final)


async def test_scorer_retries_a_failing_judge_then_gives_up(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ScoreStore(sessions=sessions)
    verdicts: list[tuple[str, str, list[str]]] = []
    run_id = await _run(sessions)
    await store.sample(run_id=run_id, skill="ask", reason="share", request="q", answer="a")
    judge = _Judge(0.9, JudgeError("timeout"), 0.9, JudgeError("timeout again"))
    scorer = OnlineScorer(
        store=store,
        judge=judge,
        rubrics=lambda _skill: RUBRICS,
        observers=[lambda s, v, scores: verdicts.append((s, v, [x.rubric for x in scores]))],
    )
    with pytest.raises(Retryable, match="timeout"):
        await scorer.handle({"run_id": run_id}, _job())
    await scorer.handle({"run_id": run_id}, _job(final=True))
    sample = await store.get(run_id)
    assert sample is not None and (sample.status, sample.detail) == ("failed", "timeout again")
    assert await store.scores(run_id) == [] and verdicts == [("ask", "error", [])]

    second = await _run(sessions)
    await store.sample(run_id=second, skill="ask", reason="share", request="q2", answer="a2")
    good = OnlineScorer(store=store, judge=_Judge(0.9, 0.4), rubrics=lambda _s: RUBRICS)
    await good.handle({"run_id": second}, _job())
    await good.handle({"run_id": second}, _job())  # a duplicate job: nothing graded twice
    assert [(s.rubric, s.passed) for s in await store.scores(second)] == [
        ("polite", True),
        ("short", False),
    ]
    await good.handle({"run_id": "unknown"}, _job())  # no such sample: nothing to do


# --------------------------------------------------------------------------- eval stats


async def _seed(url: str) -> None:
    await upgrade(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    store = ScoreStore(sessions=sessions)
    base = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, ISO week 2026-W48
    plan = [("refunds", 0, 0.95), ("refunds", 0, 0.4), ("refunds", 1, 0.9), ("ask", 8, 0.8)]
    for skill, day, score in plan:
        run_id = await _run(sessions, skill)
        at = base + timedelta(days=day)
        await store.sample(
            run_id=run_id, skill=skill, reason="share", request="q", answer="a", now=at
        )
        await store.record(
            run_id, scores=[("helpful", score, score >= 0.7, None)], judge_model="j", now=at
        )
    await FeedbackStore(sessions=sessions).record(
        skill="refunds", thread_id="T1:C1:1.0", channel_id="C1", message_ts="1.1",
        user_id="U1", value="down",
    )  # fmt: skip
    await engine.dispose()


def test_eval_stats_shows_online_quality(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'stats.db'}"
    asyncio.run(_seed(url))
    cli = CliRunner()
    evals = eval_app(eval_host())
    daily = cli.invoke(evals, ["stats", "--database", url, "--by", "day"], env={})
    assert daily.exit_code == 0, daily.output
    lines = [" ".join(line.replace("│", " ").split()) for line in daily.output.splitlines()]
    assert "Online quality per skill and day" in daily.output
    assert "refunds 2026-11-23 2 2 50% 0.68 0" in lines
    assert "refunds 2026-11-24 1 1 100% 0.90 0" in lines
    assert "ask 2026-12-01 1 1 100% 0.80 0" in lines
    weekly = cli.invoke(evals, ["stats", "--database", url], env={})
    lines = [" ".join(line.replace("│", " ").split()) for line in weekly.output.splitlines()]
    assert "refunds 2026-W48 3 3 67% 0.75 0" in lines
    assert any(line.startswith("refunds") and line.endswith(" 1") for line in lines)  # the 👎
    bad = cli.invoke(evals, ["stats", "--database", url, "--by", "month"], env={})
    assert bad.exit_code == 2 and "--by: expected day or week" in bad.output
