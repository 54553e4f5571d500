"""Skill versions in storage, on both SQL backends: the version a run ran on, and the one
a thread stays on (canary rollouts, migration 0010)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.runs import RunStore, ThreadOwner, ThreadSkills
from storage.sql import session_factory


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


async def test_a_run_records_its_skill_version(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    runs = RunStore(sessions=sessions)
    versioned = await runs.start(
        skill="notes",
        thread_id="T:C:1.0",
        actor="U1",
        channel_id="C",
        model="offline",
        trigger="mention",
        skill_version="2",
    )
    plain = await runs.start(
        skill="ask",
        thread_id="T:C:1.0",
        actor="U1",
        channel_id="C",
        model="offline",
        trigger="mention",
    )
    got = {r.id: r.skill_version for r in await runs.for_thread("T:C:1.0")}
    assert got == {versioned: "2", plain: None}


async def test_a_thread_keeps_the_version_it_was_claimed_with(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    owners = ThreadSkills(sessions=sessions)
    # two replicas race for a new thread: one claim wins, with its version
    claims = await asyncio.gather(
        owners.claim("T:C:2.0", "notes", version="1"),
        owners.claim("T:C:2.0", "notes", version="2"),
    )
    assert claims == ["notes", "notes"]
    owner = await owners.owner("T:C:2.0")
    assert owner is not None and owner.skill == "notes" and owner.version in {"1", "2"}
    # a later claim never changes it
    await owners.claim("T:C:2.0", "notes", version="9")
    assert await owners.owner("T:C:2.0") == owner

    await owners.assign("T:C:2.0", "ask")  # handed to a skill without versions
    assert await owners.owner("T:C:2.0") == ThreadOwner("ask", None)
    await owners.assign("T:C:2.0", "notes", version="3")
    assert await owners.owner("T:C:2.0") == ThreadOwner("notes", "3")
    assert await owners.get("T:C:2.0") == "notes"
    assert await owners.owner("T:C:nobody") is None
