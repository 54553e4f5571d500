"""What each part of an answer costs on its own: the CPU floor of one turn, per operation.

bench/load.py measures a worker's CPU per answer as a whole (issue #14 asks for at most
8 ms with a zero-latency model). This bench measures, in one process and one run, the
CPU of each kind of operation a turn is made of, each against the same local servers the
load bench uses, so the whole can be read as a sum:

- the agent graph alone: langchain's ``create_agent`` with an in-process fake model, no
  tools, no middleware, an in-memory checkpointer (the framework's own floor);
- one chat-model call through ``langchain_openai.ChatOpenAI`` to the OpenAI-compatible
  fake (switchboard/openai_fake.py): the openai SDK, httpx, message conversion;
- one Slack Web API call through ``slack_sdk``'s ``AsyncWebClient`` to the workspace
  emulator (``chat.postMessage``);
- one SQL transaction through our engine (``storage.sql.create_engine``: SQLAlchemy 2
  async, asyncpg): a Core INSERT of one row, and a read;
- one queue query through the run queue's psycopg pool (``storage.runqueue``'s connector
  settings: autocommit, idle check);
- one Redis command through redis-py asyncio (``SET NX EX``).

CPU is the *calling thread's* (``time.thread_time``): the fake servers run on other
threads and processes and are not counted. Each operation runs 10 at a time, after a
warm-up. ``per answer`` multiplies by how often a turn does it (counted with one worker
and the zero-latency model on 2026-12-02: docs/perf.md, "What one answer does"), so the
last column is the floor those operations put under CPU per answer.

    .venv/bin/python bench/turn_budget.py [--n 400]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ack as ackbench  # noqa: E402
import load  # noqa: E402

from storage.runqueue import _connector as queue_pool  # noqa: E402
from storage.runqueue import libpq_dsn  # noqa: E402
from storage.sql import create_engine  # noqa: E402
from switchboard.openai_fake import FakeOpenAIServer, echo  # noqa: E402

#: (operation, times per answer): counted per answer with one worker, zero-latency model
#: (docs/perf.md); Redis counts round trips from the client (scripts count once).
PER_ANSWER = {
    "agent graph (create_agent, fake model)": 1,
    "chat model call (ChatOpenAI -> fake)": 1,
    "Slack Web API call (slack_sdk)": 4,
    "SQL transaction (SQLAlchemy, 1 statement)": 7,
    "queue query (psycopg pool)": 7,
    "Redis command (redis-py)": 12,
}


async def measure(fn: Callable[[], Awaitable[Any]], n: int, concurrency: int = 10) -> float:
    """CPU ms of this thread per call of ``fn``, ``concurrency`` at a time."""
    for _ in range(20):
        await fn()
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await fn()

    started = time.thread_time()
    await asyncio.gather(*(one() for _ in range(n)))
    return (time.thread_time() - started) / n * 1000


async def graph_floor() -> Callable[[], Awaitable[Any]]:
    from langchain.agents import create_agent
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.memory import InMemorySaver

    class Fake(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

    model = Fake(messages=itertools.cycle([AIMessage("hello there")]))
    agent = create_agent(model, tools=[], checkpointer=InMemorySaver())

    async def call() -> None:
        config: RunnableConfig = {"configurable": {"thread_id": uuid.uuid4().hex}}
        await agent.ainvoke({"messages": [HumanMessage("hello")]}, config, durability="exit")

    return call


async def run(n: int, database_url: str, redis_url: str) -> list[str]:
    import redis.asyncio as aioredis
    from langchain_openai import ChatOpenAI
    from slack_sdk.web.async_client import AsyncWebClient
    from sqlalchemy import Column, MetaData, String, Table, insert, select

    rows: dict[str, float] = {}
    with load.fake_slack() as slack, FakeOpenAIServer(default=echo) as server:
        rows["agent graph (create_agent, fake model)"] = await measure(await graph_floor(), n)

        model = ChatOpenAI(
            model="gpt-fake", base_url=server.base_url, api_key="fake", max_retries=0
        )
        rows["chat model call (ChatOpenAI -> fake)"] = await measure(
            lambda: model.ainvoke("hello"), n
        )

        client = AsyncWebClient(token=ackbench.TOKEN, base_url=slack.base_url)
        rows["Slack Web API call (slack_sdk)"] = await measure(
            lambda: client.chat_postMessage(channel=load.CHANNELS[0], text="hi"), n
        )

        engine = create_engine(database_url)
        table = Table(
            f"budget_{uuid.uuid4().hex[:8]}",
            MetaData(),
            Column("id", String(32), primary_key=True),
            Column("value", String(64)),
        )
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)

        async def write() -> None:
            async with engine.begin() as conn:
                await conn.execute(insert(table).values(id=uuid.uuid4().hex, value="v"))

        async def read() -> None:
            async with engine.connect() as conn:
                await conn.execute(select(table.c.value).where(table.c.id == "x"))

        rows["SQL transaction (SQLAlchemy, 1 statement)"] = await measure(write, n)
        rows["  of which a read"] = await measure(read, n)
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.drop_all)
        await engine.dispose()

        pool = queue_pool.make_pool(
            conninfo=libpq_dsn(database_url), min_size=1, max_size=10, open=False
        )
        await pool.open(wait=True)

        async def query() -> None:
            async with pool.connection() as conn:
                await (await conn.execute("SELECT 1")).fetchone()

        rows["queue query (psycopg pool)"] = await measure(query, n)
        await pool.close()

        redis = aioredis.Redis.from_url(redis_url)
        key = f"budget:{uuid.uuid4().hex}"
        rows["Redis command (redis-py)"] = await measure(
            lambda: redis.set(key, "1", nx=True, ex=60), n
        )
        await redis.delete(key)
        await redis.aclose()

    lines = [f"{'operation':<44} {'CPU ms/op':>9} {'per answer':>10} {'ms/answer':>9}"]
    total = 0.0
    for name, ms in rows.items():
        times = PER_ANSWER.get(name)
        if times is None:
            lines.append(f"{name:<44} {ms:>9.2f}")
            continue
        total += ms * times
        lines.append(f"{name:<44} {ms:>9.2f} {times:>10} {ms * times:>9.2f}")
    lines.append(f"{'floor of these operations per answer':<65} {total:>9.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="calls per operation")
    args = parser.parse_args()
    print(load.machine_line("start"), flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="sb-budget-") as tmp,
        load.private_services(Path(tmp)) as (admin_url, redis_url),
    ):
        for line in asyncio.run(run(args.n, admin_url, redis_url)):
            print(line, flush=True)
    print(load.machine_line("end"), flush=True)
    print(f"pid {os.getpid()}; CPU is this thread's (time.thread_time)")


if __name__ == "__main__":
    main()
