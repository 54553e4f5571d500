"""Where a worker's CPU goes per answer, with the zero-latency model (issue #14 item 5).

The production topology of bench/load.py (private PostgreSQL and Redis, one receiver, the
fake Slack Web API and the OpenAI-compatible fake model), with ONE ``switchboard worker``
run under cProfile. The profiler is switched on by SIGUSR1 after a warm-up (imports, pool
connections and first-call caches are not an answer's cost) and off, and dumped, by a
second SIGUSR1 once every profiled mention is answered. The flat profile (``tottime``) is
then grouped by where the code lives — graph, checkpoint, SQL, queue, Redis, Slack client,
model client, logging, event loop, our own code — and printed as ms per answer, with the
top entries.

The profiler counts CPU time (``time.process_time``), so other load on the machine does not
land in it; it still slows every Python call, so its totals are above bench/load.py's
unprofiled CPU ms per answer: the shares are what to read.

    .venv/bin/python bench/profile_turn.py [--answers 300] [--out FILE.prof] [--role receiver]

``--plain --rate 10`` runs the same topology without the profiler and prints the
unprofiled CPU per answer with the Slack calls and PostgreSQL transactions per answer; run
it against another checkout with ``--code DIR`` (a git worktree), alternating, to compare
two commits (docs/perf.md, third round).

``--role receiver`` profiles the receiver (``switchboard serve`` with no in-process
workers) instead, per acked mention: verify, dedupe, rate limits, store, wake, ack.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import load  # noqa: E402

from switchboard.openai_fake import FakeOpenAIServer, echo  # noqa: E402

# The wrapper a profiled worker runs: the real CLI, with the profiler toggled by SIGUSR1
# (on, then off and dumped; a worker's SIGUSR2 logs its asyncio tasks).
_WORKER = """
import cProfile, signal, sys, time
profile = cProfile.Profile(time.process_time)  # CPU time: the machine may be busy
out = sys.argv.pop(1)
state = {"on": False}
def _toggle(*_):
    if out == "-":  # --plain: no profiler, the unprofiled cost
        return
    if not state["on"]:
        profile.enable()
    else:
        profile.disable()
        profile.dump_stats(out)
    state["on"] = not state["on"]
signal.signal(signal.SIGUSR1, _toggle)
from switchboard.cli import main
sys.argv[0] = "switchboard"
main()
"""

# (category, path fragments): first match wins, so specific before general.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("checkpoint", ("storage/checkpoint", "langgraph/checkpoint", "ormsgpack", "msgpack")),
    ("graph", ("langgraph/", "langchain/", "langchain_core/", "skills/middleware")),
    ("model client", ("langchain_openai/", "openai/", "httpx/", "httpcore/", "h11/")),
    ("queue", ("procrastinate/", "psycopg/", "psycopg_pool/", "storage/runqueue", "bot/queueing")),
    ("SQL", ("sqlalchemy/", "asyncpg/", "greenlet", "storage/")),
    ("Redis", ("redis/",)),
    ("Slack client", ("slack_sdk/", "aiohttp/", "yarl/", "multidict/", "bot/slack")),
    ("logging", ("logging/", "switchboard/logs", "skills/pii")),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("event loop", ("asyncio/", "selectors", "uvloop")),
    ("our code", ("bot/", "skills/", "switchboard/", "scheduler/")),
]


def category(filename: str) -> str:
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"
    for name, fragments in CATEGORIES:
        if any(fragment in filename for fragment in fragments):
            return name
    return "other"


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/", "python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def report(stats: pstats.Stats, answers: int, top: int) -> list[str]:
    raw = stats.stats  # type: ignore[attr-defined]  # {(file, line, func): (cc, nc, tt, ct, callers)}
    by_category: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _line, _func), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        by_category[category(filename)] += tottime
        total += tottime
    lines = [
        f"profiled CPU (cProfile, inflated): {total / answers * 1000:.1f} ms per answer "
        f"over {answers} answers",
        f"{'where':<14} {'ms/answer':>9} {'share':>6}",
    ]
    for name, seconds in sorted(by_category.items(), key=lambda kv: -kv[1]):
        lines.append(f"{name:<14} {seconds / answers * 1000:>9.2f} {seconds / total:>6.1%}")
    lines.append(f"top {top} functions by own time (ms per answer, calls per answer):")
    ranked = sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]
    for (filename, line, func), (_cc, calls, tottime, _ct, _callers) in ranked:
        lines.append(
            f"  {tottime / answers * 1000:>6.2f} {calls / answers:>7.1f}  "
            f"[{category(filename)}] {_short(filename)}:{line} {func}"
        )
    lines.append("most called of our functions per answer (calls, cumulative ms):")
    ours = [
        (key, value)
        for key, value in raw.items()
        if any(f"{ROOT}/{pkg}/" in key[0] for pkg in ("storage", "skills", "bot", "switchboard"))
    ]
    for (filename, line, func), (_cc, calls, _tt, cumtime, _callers) in sorted(
        ours, key=lambda kv: -kv[1][3]
    )[:top]:
        lines.append(
            f"  {calls / answers:>6.1f} {cumtime / answers * 1000:>7.2f}  "
            f"{_short(filename)}:{line} {func}"
        )
    return lines


async def run(
    answers: int, out: Path, top: int, role: str = "worker", *, plain: bool = False, rate: int = 50
) -> None:
    counted = 0
    url = await load.fresh_database()
    try:
        with (
            load.fake_slack() as slack,
            FakeOpenAIServer(default=echo) as model,
            tempfile.TemporaryDirectory() as tmp,
        ):
            topo = load.Topology(database_url=url, slack=slack, model=model, tmp=Path(tmp))
            try:
                port = load.free_port()
                if role == "receiver":
                    receiver = profiled = topo._start(
                        "receiver-profiled",
                        [sys.executable, "-c", _WORKER, "-" if plain else str(out), "serve"],
                        topo.env(PORT=str(port), SWITCHBOARD_INPROCESS_WORKERS="0"),
                        port,
                        "/healthz",
                    )
                    topo.worker(1)
                else:
                    receiver = topo.receiver()
                    profiled = topo._start(
                        "worker-profiled",
                        [
                            sys.executable,
                            "-c",
                            _WORKER,
                            "-" if plain else str(out),
                            "worker",
                            "--concurrency",
                            "64",
                        ],
                        topo.env(PORT=str(port)),
                        port,
                        "/healthz",
                    )
                traffic = load.Load(slack)
                async with httpx.AsyncClient(timeout=30) as client:
                    await traffic.blast(client, receiver.url, rate=20, count=40, track=True)
                    await traffic.wait_answered(120)
                    traffic.sent.clear()
                    calls = _count_calls(slack)
                    transactions = await _transactions(url)
                    before = load.cpu_seconds(profiled.process.pid)
                    profiled.process.send_signal(signal.SIGUSR1)
                    started = time.perf_counter()
                    await traffic.blast(client, receiver.url, rate=rate, count=answers, track=True)
                    await traffic.wait_answered(300)
                    elapsed = time.perf_counter() - started
                    profiled.process.send_signal(signal.SIGUSR1)
                    spent = load.cpu_seconds(profiled.process.pid) - before
                    await asyncio.sleep(1.0)  # the statistics collector flushes every 0.5 s
                    transactions = await _transactions(url) - transactions
                    per = max(len(traffic.sent), 1)
                    print(
                        "Slack Web API calls per answer: "
                        + ", ".join(f"{m} {n / per:.2f}" for m, n in calls.most_common()),
                        flush=True,
                    )
                    print(
                        f"PostgreSQL transactions per answer (receiver and worker): "
                        f"{transactions / per:.1f}",
                        flush=True,
                    )
                deadline = time.monotonic() + (0 if plain else 60)
                while not out.exists() and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                answered, duplicates, missing = traffic.counts()
                counted = answered
                print(load.machine_line("after"), flush=True)
                print(
                    f"{answered} answered ({duplicates} duplicates, {missing} unanswered) in "
                    f"{elapsed:.1f} s; {role} CPU {'' if plain else 'under the profiler '}"
                    f"{spent / max(answered, 1) * 1000:.1f} ms per answer",
                    flush=True,
                )
            finally:
                topo.stop()
    finally:
        await load.drop_database(url)
    if plain:
        return
    for line in report(pstats.Stats(str(out)), max(counted, 1), top):
        print(line)


def _count_calls(slack: load.Workspace) -> Counter[str]:
    """Counts the Web API calls the workspace emulator answers, by method, from now on."""
    counts: Counter[str] = Counter()
    call = slack.emulator.call

    def counting(method: str, *args: Any, **kwargs: Any) -> Any:
        counts[method] += 1
        return call(method, *args, **kwargs)

    slack.emulator.call = counting  # type: ignore[method-assign]
    return counts


async def _transactions(url: str) -> int:
    """Commits and rollbacks PostgreSQL counted in the bench's database so far."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        value = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return int(value)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--role",
        choices=("worker", "receiver"),
        default="worker",
        help="the process to profile: a worker (per answer) or the receiver (per ack)",
    )
    parser.add_argument("--out", type=Path, default=None, help="keep the .prof file here")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="no profiler: the unprofiled CPU per answer, with the Slack calls and SQL "
        "transactions per answer (run it in two checkouts to compare them)",
    )
    parser.add_argument("--rate", type=int, default=50, help="mentions per second")
    parser.add_argument(
        "--code",
        type=Path,
        help="run the receiver and the worker from this checkout instead (a git worktree "
        "of the commit to compare against); the bench itself stays this one",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="PROF",
        help="only print the report of a kept .prof file (--answers: how many it answered)",
    )
    args = parser.parse_args()
    if args.report:
        for line in report(pstats.Stats(str(args.report)), args.answers, args.top):
            print(line)
        return
    if args.code:
        load.ROOT = args.code.resolve()  # the processes' working directory
        os.environ["PYTHONPATH"] = str(load.ROOT)
    print(load.machine_line("start"), flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="sb-profile-") as tmp,
        load.private_services(Path(tmp)) as (admin_url, redis_url),
    ):
        load.PG_ADMIN, load.REDIS_URL = admin_url, redis_url
        out = args.out or Path(tmp) / "worker.prof"
        if out.exists():
            os.unlink(out)
        asyncio.run(run(args.answers, out, args.top, args.role, plain=args.plain, rate=args.rate))


if __name__ == "__main__":
    main()
