"""Redis and PostgreSQL go away under traffic; every acked message is still answered once.

Each test runs on stores of its own (a private ``redis-server``, a private PostgreSQL
cluster), kills or restarts them while a receiver takes mentions and two ``switchboard
worker`` processes answer them, and prints what it counted (run with ``-s``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.chaos.harness import Deployment, PrivatePostgres, PrivateRedis, receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SETTLE = 3.0  # seconds to keep watching after the last answer, for late duplicates


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return False


def logs(deployment: Deployment, *, tasks: bool = False) -> str:
    """The tail of each worker's log; with ``tasks``, first every live worker's asyncio
    task dump (SIGUSR2), which shows the ``await`` a turn that never finished is parked on."""
    dump = deployment.dump_tasks() + "\n" if tasks else ""
    return dump + "\n".join(f"--- {w.name}\n{w.output()[-3000:]}" for w in deployment.workers)


async def test_redis_sigkill_and_restart_under_traffic_answers_every_message_once(
    own_stores: Deployment, private_redis: PrivateRedis
) -> None:
    """8 mentions before, 8 while Redis is dead (SIGKILL, ~5 s), 8 after it is back (empty:
    no persistence). The receiver acks all 24 (the inbox is in SQL); turns that met the
    outage are retried, not apologised for; every message gets exactly one answer."""
    deployment = own_stores
    async with receiver(deployment):
        deployment.start_workers("a", "b", concurrency=16)
        statuses = [(await deployment.mention(f"ask before {n}"))[0] for n in range(8)]
        await wait_until(lambda: len(deployment.model.requests) >= 4, 20)
        private_redis.kill()
        killed_at = time.monotonic()
        during_from = len(deployment.acks)
        for n in range(8):
            statuses.append((await deployment.mention(f"ask during {n}"))[0])
            await asyncio.sleep(0.25)
        during = deployment.acks[during_from:]
        await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - killed_at)))
        private_redis.start()
        back_at = time.monotonic()
        for n in range(8):
            statuses.append((await deployment.mention(f"ask after {n}"))[0])
        done = await wait_until(lambda: deployment.count().answered == 24, 90)
        recovered = time.monotonic() - back_at
        await asyncio.sleep(SETTLE)
        counts = deployment.count()
        state = await deployment.diagnose()
    print(
        f"\nRedis SIGKILL + restart: {counts}; outage {back_at - killed_at:.1f} s; "
        f"acks while down: {sorted({a.status for a in during})}, slowest "
        f"{max(a.seconds for a in during):.2f} s; all answered {recovered:.1f} s after "
        f"Redis came back; model calls={len(deployment.model.requests)}"
    )
    assert set(statuses) == {200}, statuses  # SQL took every message: all acked
    assert done, state + logs(deployment, tasks=True)
    assert counts.clean, state + logs(deployment)


async def test_a_message_no_store_can_take_is_not_acked_and_its_redelivery_is_answered(
    own_stores: Deployment, private_redis: PrivateRedis, private_postgres: PrivatePostgres
) -> None:
    """Redis killed and PostgreSQL stopped: the receiver cannot store the message, so it
    answers non-2xx (quickly, inside Slack's 3 s) and Slack delivers it again. Once the
    stores are back the redelivery is acked and answered, once."""
    deployment = own_stores
    async with receiver(deployment):
        deployment.start_worker("a", concurrency=8)
        status, ts = await deployment.mention("ask warm up")
        assert status == 200
        assert await wait_until(lambda: deployment.count().answered == 1, 30), logs(deployment)
        private_redis.kill()
        private_postgres.stop()
        status, ts = await deployment.mention("ask nobody can store me")
        refused = deployment.acks[-1]
        private_postgres.start()
        private_redis.start()
        back_at = time.monotonic()
        retried, _ = await deployment.mention(
            "ask nobody can store me", redeliver=(ts, refused.event_id, 1)
        )
        done = await wait_until(lambda: deployment.count().answered == 2, 60)
        recovered = time.monotonic() - back_at
        await asyncio.sleep(SETTLE)
        counts = deployment.count()
    print(
        f"\nno store: first delivery HTTP {refused.status} in {refused.seconds:.2f} s; "
        f"redelivery HTTP {retried}; {counts}; answered {recovered:.1f} s after the stores "
        "came back"
    )
    assert refused.status == 503  # "unavailable, try again": Slack redelivers
    assert refused.seconds < 3.0  # Slack gives up on an ack after 3 s
    assert retried == 200
    assert done, logs(deployment)
    assert counts.clean, logs(deployment)


async def test_postgres_restart_under_traffic_answers_every_message_once(
    own_stores: Deployment, private_postgres: PrivatePostgres
) -> None:
    """PostgreSQL (queue and inbox) stopped for ~3 s and started again while mentions keep
    coming and turns are in flight. A mention that arrives while it is down gets a non-2xx
    and is delivered again, as Slack does; workers reconnect; every message is answered
    exactly once, none with an apology."""
    deployment = own_stores
    async with receiver(deployment):
        deployment.start_workers("a", "b", concurrency=16)
        statuses = [(await deployment.mention(f"ask before {n}"))[0] for n in range(8)]
        await wait_until(lambda: len(deployment.model.requests) >= 4, 20)
        stopped_at = time.monotonic()

        async def outage() -> None:
            await asyncio.to_thread(private_postgres.stop)
            await asyncio.sleep(3.0)
            await asyncio.to_thread(private_postgres.start)

        restart = asyncio.create_task(outage())
        during_from = len(deployment.acks)
        for n in range(8):
            statuses.append((await deployment.mention_as_slack_would(f"ask during {n}"))[0])
            await asyncio.sleep(0.25)
        await restart
        back_at = time.monotonic()
        during = deployment.acks[during_from:]
        for n in range(8):
            statuses.append((await deployment.mention_as_slack_would(f"ask after {n}"))[0])
        done = await wait_until(lambda: deployment.count().answered == 24, 75)
        recovered = time.monotonic() - back_at
        await asyncio.sleep(SETTLE)
        counts = deployment.count()
        state = await deployment.diagnose()
    refused = [a for a in during if a.status >= 300]
    print(
        f"\nPostgreSQL stop/start: {counts}; outage {back_at - stopped_at:.1f} s; "
        f"deliveries while down/starting {len(during)}, refused (Slack redelivers) "
        f"{len(refused)} with {sorted({a.status for a in refused})}, slowest ack "
        f"{max(a.seconds for a in during):.2f} s; all answered {recovered:.1f} s after "
        f"PostgreSQL came back; model calls={len(deployment.model.requests)}"
    )
    assert set(statuses) == {200}, statuses  # each message acked in the end
    assert done, state + logs(deployment, tasks=True)
    assert counts.clean, state + logs(deployment)
