"""Slack feedback becomes draft cases (valid datasets, PII-masked) and weekly stats."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from evals.dataset import AnswerChecks, load_dataset_text
from evals.feedback import draft_cases, render_drafts, weekly_stats
from evals.scorers import check_answer
from storage.feedback import FeedbackStore
from storage.models import Feedback, Run
from storage.sql import create_engine, session_factory, upgrade

MONDAY = datetime(2025, 5, 12, 9, 0, tzinfo=UTC)  # ISO week 2025-W20
THREAD = "T0PAYCO:C0SUPPORT:1747040000.000100"


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fb.db'}"
    await upgrade(url)
    engine = create_engine(url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def _seed(sessions: async_sessionmaker[AsyncSession]) -> None:
    rows = [
        # (skill, value, created, comment, run id)
        ("refunds", "down", MONDAY + timedelta(hours=1), "refunded the wrong order", "r1"),
        ("refunds", "up", MONDAY + timedelta(hours=2), None, None),
        ("refunds", "up", MONDAY + timedelta(days=7), None, None),  # next week
        ("ask", "down", MONDAY + timedelta(days=1), "mail me at sam@example.com", None),
        ("ask", "down", MONDAY - timedelta(days=30), "too old", None),
    ]
    async with sessions.begin() as session:
        session.add(
            Run(id="r1", skill="refunds", thread_id=THREAD, actor="U0LEO", channel_id="C0SUPPORT",
                model="offline", started_at=MONDAY)
        )  # fmt: skip
        for index, (skill, value, created, comment, run_id) in enumerate(rows):
            session.add(
                Feedback(
                    skill=skill,
                    thread_id=THREAD if skill == "refunds" else "T0PAYCO:D0SAM:-",
                    channel_id="C0SUPPORT" if skill == "refunds" else "D0SAM",
                    message_ts=f"1747040000.{index:06d}",
                    user_id="U0SAM",
                    value=value,
                    comment=comment,
                    run_id=run_id,
                    created_at=created,
                    updated_at=created,
                )
            )


async def _history(thread_id: str) -> Sequence[BaseMessage]:
    if thread_id != THREAD:
        return []  # memory expired
    return [
        HumanMessage("refunds lookup_order order_id=1001"),
        AIMessage("Order 1001 is paid."),
        HumanMessage("refund it, the card was 4111 1111 1111 1111"),
        AIMessage("", tool_calls=[{"name": "issue_refund", "args": {}, "id": "c1"}]),
        AIMessage("Refunded order 1002 to jane.doe@example.com"),
    ]


async def test_import_feedback_makes_valid_masked_drafts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _seed(sessions)
    since = MONDAY - timedelta(days=1)
    rows = await FeedbackStore(sessions=sessions).rows(since=since, value="down")
    assert [(r.skill, r.requester) for r in rows] == [("refunds", "U0LEO"), ("ask", None)]

    drafts = await draft_cases(rows, history=_history)
    assert [d.skill for d in drafts] == ["refunds", "ask"]
    for skill in ("refunds", "ask"):
        text = render_drafts(skill, drafts, since=since)
        dataset = load_dataset_text(text, filename=f"{skill}.feedback.eval.yaml")
        assert dataset.skill == skill and len(dataset.cases) == 1
        (case,) = dataset.cases
        assert "draft" in case.tags and dataset.expected_route(case) == skill
        pii = check_answer(text, AnswerChecks(no_pii=True))
        assert [r.passed for r in pii] == [True], text

    refunds = load_dataset_text(render_drafts("refunds", drafts, since=since), filename="r")
    (case,) = refunds.cases
    assert case.message.startswith("refund it, the card was [card ****1111]")
    assert case.history[0].text == "refunds lookup_order order_id=1001"
    assert case.actor == "U0LEO" and case.channel == "C0SUPPORT"
    assert "refunded the wrong order" in case.notes and "Refunded order 1002" in case.notes

    ask = load_dataset_text(render_drafts("ask", drafts, since=since), filename="a")
    assert "no longer in memory" in ask.cases[0].notes


async def test_weekly_stats(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _seed(sessions)
    stats = weekly_stats(
        await FeedbackStore(sessions=sessions).rows(since=MONDAY - timedelta(days=1))
    )
    table = [(s.skill, s.week, s.up, s.down) for s in stats]
    assert table == [
        ("ask", "2025-W20", 0, 1),
        ("refunds", "2025-W20", 1, 1),
        ("refunds", "2025-W21", 1, 0),
    ]
    assert stats[1].up_rate == 0.5
