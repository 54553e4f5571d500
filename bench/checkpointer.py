"""Per-turn cost of the Redis checkpointer beside LangGraph's in-memory, SQLite and Postgres savers.

A *turn* is what the runtime does for one Slack message: ``aget_tuple`` (load the
thread), ``aput`` (store the next checkpoint) and ``aput_writes`` (store a task's writes).
Each timed turn runs on a thread that already holds 1, 50 or 200 turns; the checkpoint
carries a fixed window of real LangChain messages, so its size stays constant while the
thread grows. The turn's new messages are built before the clock starts (they are the
model's work, not the saver's), so the timings are the savers' own cost. Savers are timed
round-robin within each repetition (order rotated every time) so machine noise hits all
of them alike.

    .venv/bin/python bench/checkpointer.py [--quick]
    env: BENCH_REDIS_URL (redis://127.0.0.1:6379/15), BENCH_POSTGRES_URL
         (postgresql://postgres@127.0.0.1:5432/test; tables go in a throwaway schema)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver

from storage.checkpoint import RedisCheckpointSaver
from storage.keys import Keys
from storage.redis import create_redis

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
LENGTHS = (1, 50, 200)
WINDOW = 8  # messages kept in the checkpoint: realistic size, constant across lengths
OURS = "redis (ours)"
REUSE = 4  # timed turns per pre-grown thread of length > 1


def _messages(step: int) -> list[BaseMessage]:
    question = f"Order {100000 + step}: customer says the refund has not arrived. " * 3
    answer = f"I checked order {100000 + step}; the refund was issued on day {step}. " * 4
    return [HumanMessage(question, id=str(uuid.uuid4())), AIMessage(answer, id=str(uuid.uuid4()))]


class TurnInput:
    """What a turn brings in from outside the saver (the user's and the model's messages)."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.new_messages = _messages(step)
        self.task_id = str(uuid.uuid4())


async def turn(
    saver: BaseCheckpointSaver[Any], thread_id: str, step: int, given: TurnInput | None = None
) -> None:
    """One conversation turn, exactly as timed: load, store checkpoint, store writes."""
    given = given or TurnInput(step)
    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    current = await saver.aget_tuple(config)
    previous_version = None
    if current is not None:
        history = current.checkpoint["channel_values"].get("messages", [])
        previous_version = current.checkpoint["channel_versions"].get("messages")
        config = current.config
    else:
        # A new thread starts with a full window (earlier context), so the checkpoint has
        # the same size at every length. (Never timed: timed turns run on grown threads.)
        history = [m for k in range(1, WINDOW // 2) for m in _messages(-k)]
    new_messages = given.new_messages
    version = saver.get_next_version(previous_version, None)
    checkpoint = Checkpoint(
        v=4,
        id=str(uuid6(clock_seq=step)),
        ts=datetime.now(UTC).isoformat(),
        channel_values={"messages": [*history, *new_messages][-WINDOW:]},
        channel_versions={"messages": version},
        versions_seen={"agent": {"messages": previous_version or version}},
        updated_channels=["messages"],
    )
    metadata: Any = {"source": "loop", "step": step, "parents": {}, "run_id": thread_id}
    stored = await saver.aput(config, checkpoint, metadata, {"messages": version})
    await saver.aput_writes(stored, [("messages", new_messages[-1:])], given.task_id, "~agent")


# -- savers -----------------------------------------------------------------------------------


@asynccontextmanager
async def redis_saver() -> AsyncIterator[BaseCheckpointSaver[Any]]:
    redis = create_redis(REDIS_URL)
    keys = Keys(prefix=f"sbbench-{uuid.uuid4().hex[:8]}")
    try:
        yield RedisCheckpointSaver(redis=redis, keys=keys)
    finally:
        doomed = [k async for k in redis.scan_iter(match=f"{keys.prefix}:*", count=1000)]
        for start in range(0, len(doomed), 500):
            await redis.delete(*doomed[start : start + 500])
        await redis.aclose()


@asynccontextmanager
async def memory_saver() -> AsyncIterator[BaseCheckpointSaver[Any]]:
    yield InMemorySaver()


@asynccontextmanager
async def sqlite_saver() -> AsyncIterator[BaseCheckpointSaver[Any]]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncSqliteSaver.from_conn_string(str(Path(tmp) / "bench.db")) as saver:
            await saver.setup()
            yield saver


@asynccontextmanager
async def postgres_saver() -> AsyncIterator[BaseCheckpointSaver[Any]]:
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            sep = "&" if "?" in POSTGRES_URL else "?"
            url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
            async with AsyncPostgresSaver.from_conn_string(url) as saver:
                await saver.setup()
                yield saver
        finally:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


FACTORIES: dict[str, Callable[[], Any]] = {
    OURS: redis_saver,
    "in-memory": memory_saver,
    "sqlite": sqlite_saver,
    "postgres": postgres_saver,
}


# -- driver -----------------------------------------------------------------------------------


async def _timed(op: Awaitable[None]) -> float:
    start = time.perf_counter_ns()
    await op
    return (time.perf_counter_ns() - start) / 1000


async def run(reps: int) -> dict[tuple[str, int], list[float]]:
    async with AsyncExitStack() as stack:
        savers: dict[str, BaseCheckpointSaver[Any]] = {}
        for name, factory in FACTORIES.items():
            savers[name] = await stack.enter_async_context(factory())

        # Setup (untimed): threads grown to each length. A length-1 thread serves one timed
        # turn; longer threads serve REUSE timed turns (in different repetitions), so they
        # are timed at length L .. L+REUSE-1, which is the same cost for this purpose.
        pools: dict[tuple[str, int], list[str]] = {}
        for name, saver in savers.items():
            for length in LENGTHS:
                uses = 1 if length == 1 else REUSE
                pool = []
                for _ in range(-(-(reps + 1) // uses)):  # +1: an unrecorded warm-up repetition
                    thread_id = f"T1:C1:{uuid.uuid4()}"
                    for step in range(length):
                        await turn(saver, thread_id, step)
                    pool.extend([thread_id] * uses)
                pools[name, length] = pool
            print(f"  grew the threads on {name}", file=sys.stderr)

        samples: dict[tuple[str, int], list[float]] = {
            (n, length): [] for n in savers for length in LENGTHS
        }
        names = list(savers)
        steps: dict[str, int] = {}
        for rep in range(reps + 1):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for length in LENGTHS:
                for name in order:
                    thread_id = pools[name, length][rep]
                    step = steps[thread_id] = steps.get(thread_id, length)
                    steps[thread_id] += 1
                    given = TurnInput(step)  # built untimed: the same shape for every saver
                    micros = await _timed(turn(savers[name], thread_id, step, given))
                    if rep > 0:
                        samples[name, length].append(micros)
        return samples


def report(samples: dict[tuple[str, int], list[float]], reps: int) -> None:
    med = {key: statistics.median(values) for key, values in samples.items()}
    names = list(FACTORIES)
    print(f"\nper-turn cost (aget_tuple + aput + aput_writes), median of {reps} turns, µs\n")
    header = f"{'saver':<14}" + "".join(f"{f'len {n}':>11}" for n in LENGTHS) + f"{'200/1':>9}"
    print(header)
    print("-" * len(header))
    for name in names:
        row = "".join(f"{med[name, n]:>11.0f}" for n in LENGTHS)
        print(f"{name:<14}{row}{med[name, 200] / med[name, 1]:>9.2f}")
    print()
    ratio = med[OURS, 200] / med[OURS, 1]
    verdict = "ok" if ratio <= 1.2 else "MISSED"
    print(f"ours 200 turns / 1 turn: {ratio:.2f}x  (target <= 1.2x: {verdict})")
    for n in LENGTHS:
        speedup = med["postgres", n] / med[OURS, n]
        verdict = "ok" if speedup >= 2 else "MISSED"
        print(f"postgres / ours at {n:>3} turns: {speedup:.2f}x  (target >= 2x: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, for a smoke test")
    parser.add_argument("--reps", type=int, default=None, help="timed turns per saver and length")
    args = parser.parse_args()
    reps = args.reps or (10 if args.quick else 80)
    started = time.perf_counter()
    samples = asyncio.run(run(reps))
    report(samples, reps)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
