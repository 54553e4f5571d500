"""Unbounded consumption: past its capacity a process stores work instead of piling it up.

Every message used to become a background task, however many were already waiting; then
a cap (``SWITCHBOARD_MAX_BACKGROUND_TASKS``) answered "busy". With the run queue, a
message is a row in SQL, not a task in memory: with ``SWITCHBOARD_WORKER_CONCURRENCY=2``
and two turns in flight (waiting for busy threads), a third message is acked and stored,
and nothing starts for it — no task, no model call — until a slot frees; then it is
answered. Through the app, on both backends.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from skills.context import ThreadRef
from tests.bot.conftest import TEAM, BotFactory
from tests.fakes.chat import ScriptedChatModel


async def test_bounded_background_tasks_a_full_worker_stores_and_waits(
    make_bot: BotFactory,
) -> None:
    model = ScriptedChatModel([], default="Answer.")
    env = await make_bot(
        {"offline": model},
        SWITCHBOARD_WORKER_CONCURRENCY="2",
        SWITCHBOARD_MAX_CONCURRENT_RUNS="2",
        SWITCHBOARD_USER_RATE="off",
        SWITCHBOARD_CHANNEL_RATE="off",
    )
    leases = []
    for user in ("U0DEV", "U0CAROL"):
        root = env.slack.add_message("C0GENERAL", "busy thread", user=user)
        thread = ThreadRef(team=TEAM, channel="C0GENERAL", thread_ts=root)
        lease = await env.services.locks.acquire(
            f"thread:{thread.thread_id}", ttl=timedelta(seconds=30), holder="elsewhere"
        )
        assert lease is not None
        leases.append(lease)
        await env.mention("ask anything new?", thread_ts=root, user=user)
    queue = env.services.queue
    for _ in range(100):
        if queue.worker_stats().running == 2:
            break
        await asyncio.sleep(0.05)
    assert queue.worker_stats().running == 2

    response, ts = await env.mention("ask what time is it?", user="U0SAM")
    assert response.status_code == 200
    await asyncio.sleep(0.5)
    backlog = await env.services.inbox.backlog()
    assert backlog.pending == 1  # stored, waiting for a slot
    assert queue.worker_stats().running == 2  # nothing more started
    assert env.bot.worker.pending == 0  # and no task per message
    assert len(model.calls) == 0

    # positive control: once the work drains, the stored message is answered
    for lease in leases:
        await env.services.locks.release(lease)
    await env.idle()
    assert env.answered_replies("C0GENERAL", ts)
    assert len(model.calls) == 3
