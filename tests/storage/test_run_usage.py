"""``RunStore.usage``: the usage report's SQL, on SQLite and on PostgreSQL.

One table of runs, grouped three ways. The promises: the window starts at ``since``
(inclusive), failed runs are counted, a run that used tokens without a known cost is
*unpriced* (a run still going, with no tokens yet, is not), runs without a channel group
under None, the most expensive rows come first (then the most tokens), and ``limit`` cuts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.runs import RunStore, Usage, UsageRow
from storage.sql import session_factory

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


async def _run(
    runs: RunStore,
    *,
    skill: str,
    user: str,
    channel: str | None,
    at: datetime,
    tokens: tuple[int, int] | None,
    cost: float | None,
    outcome: str = "reply",
) -> None:
    run_id = await runs.start(
        skill=skill,
        thread_id=f"T1:{channel}:{at.timestamp()}",
        actor=user,
        channel_id=channel,
        model="m",
        trigger="message",
        started_at=at,
    )
    if tokens is not None:  # None: still running
        usage = Usage(tokens[0], tokens[1], sum(tokens))
        await runs.finish(run_id, outcome=outcome, usage=usage, cost_usd=cost)


async def test_usage_groups_counts_and_orders(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    runs = RunStore(sessions=sessions)
    day = timedelta(days=1)
    await _run(runs, skill="ask", user="U1", channel="C1", at=NOW, tokens=(100, 10), cost=0.01)
    await _run(
        runs, skill="ask", user="U2", channel="C1", at=NOW, tokens=(50, 5), cost=None
    )  # unpriced
    await _run(
        runs, skill="refunds", user="U1", channel="C2", at=NOW - day, tokens=(1000, 100),
        cost=0.5, outcome="error",
    )  # fmt: skip
    await _run(runs, skill="digest", user="U3", channel=None, at=NOW, tokens=(10, 1), cost=0.0)
    await _run(runs, skill="digest", user="U3", channel=None, at=NOW, tokens=None, cost=None)
    # Outside the window: one second before it starts.
    since = NOW - 2 * day
    await _run(
        runs, skill="ask", user="U1", channel="C1", at=since - timedelta(seconds=1),
        tokens=(9999, 9999), cost=99.0,
    )  # fmt: skip
    # On its first instant: inside.
    await _run(runs, skill="ask", user="U4", channel="C1", at=since, tokens=(1, 1), cost=0.001)

    by_skill = await runs.usage(since=since, by="skill")
    assert [r.key for r in by_skill] == ["refunds", "ask", "digest"]  # most expensive first
    refunds, ask, digest = by_skill
    assert refunds == UsageRow("refunds", 1, 1, 1000, 100, pytest.approx(0.5), 0)  # type: ignore[arg-type]
    assert (ask.runs, ask.errors, ask.input_tokens, ask.output_tokens) == (3, 0, 151, 16)
    assert ask.cost_usd == pytest.approx(0.011) and ask.unpriced_runs == 1
    # The run still going counts as a run but is not unpriced (no tokens yet).
    assert (digest.runs, digest.cost_usd, digest.unpriced_runs) == (2, 0.0, 0)

    by_user = {r.key: r for r in await runs.usage(since=since, by="user")}
    assert set(by_user) == {"U1", "U2", "U3", "U4"}
    assert by_user["U1"].runs == 2 and by_user["U1"].cost_usd == pytest.approx(0.51)
    assert by_user["U2"].unpriced_runs == 1 and by_user["U2"].cost_usd == 0.0

    by_channel = await runs.usage(since=since, by="channel")
    assert {r.key for r in by_channel} == {"C1", "C2", None}
    assert next(r for r in by_channel if r.key is None).runs == 2

    top = await runs.usage(since=since, by="user", limit=1)
    assert [r.key for r in top] == ["U1"]
    assert await runs.usage(since=NOW + day, by="skill") == []


async def test_equal_cost_orders_by_tokens(sessions: async_sessionmaker[AsyncSession]) -> None:
    runs = RunStore(sessions=sessions)
    await _run(runs, skill="a", user="U1", channel="C1", at=NOW, tokens=(10, 0), cost=None)
    await _run(runs, skill="b", user="U1", channel="C1", at=NOW, tokens=(500, 0), cost=None)
    rows = await runs.usage(since=NOW - timedelta(hours=1), by="skill")
    assert [r.key for r in rows] == ["b", "a"]
    assert all(r.cost_usd == 0.0 and r.unpriced_runs == 1 for r in rows)
