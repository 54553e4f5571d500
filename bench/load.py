"""Production topology under load: one receiver, two workers, PostgreSQL, Redis.

Processes, all on 127.0.0.1:

- ``receiver``: ``switchboard serve`` with ``SWITCHBOARD_INPROCESS_WORKERS=0`` (verify,
  dedupe, authorize, enqueue, ack — no agent work);
- ``worker-N``: ``switchboard worker`` under ``nice -n 10`` (a stand-in for separate pods);
- ``bare bolt``: a Bolt ``AsyncApp`` that only acks (bench/ack.py's), the baseline;
- in this process: the Slack Web API (the sandbox's workspace emulator, on its own thread)
  and the fake OpenAI-compatible model server (switchboard/openai_fake.py, ``latency`` per
  call). bench/ never imports tests/.

Tables: ack p50/p99 at 50/100/200 mentions/s (every mention answered) beside bare Bolt;
a burst of 300 threads with a 1 s model; 1,000 threads with a 5 s model (none lost, none
twice); CPU ms per answer of the workers (zero-latency model); answers/s with 1, 2, 4
workers. Loads are bounded in count and time.

    .venv/bin/python bench/load.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ack as ackbench  # noqa: E402
import asyncpg  # noqa: E402
import httpx  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Mount  # noqa: E402

from sandbox import workspace as workspace_api  # noqa: E402
from sandbox.workspace import Emulator, RateLimit  # noqa: E402
from storage.runqueue import ensure_queue_schema, libpq_dsn  # noqa: E402
from storage.sql import upgrade  # noqa: E402
from switchboard.openai_fake import FakeOpenAIServer, echo  # noqa: E402

PG_ADMIN = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CHANNELS = [f"C0LOAD{i:02d}" for i in range(32)]
# Names its skill, so each answer is one model call (no routing call).
ackbench.TEXT = "<@U0BOT> ask what did we decide about the launch date?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Workspace:
    """The Slack Web API for the processes under test: the sandbox's workspace emulator
    served by uvicorn on its own thread and event loop. The emulator is not thread-safe,
    so its Web API calls and the load generator's seeding and reads share one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # No per-channel write limit: the bench measures the apps, not Slack's rate limits.
        self.emulator = Emulator(
            token=ackbench.TOKEN,
            team_id=ackbench.TEAM,
            bot_user_id=ackbench.BOT_USER,
            rate_limit=RateLimit(per_second=1e9, burst=10**9),
        )
        call = self.emulator.call

        def locked_call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return call(*args, **kwargs)

        self.emulator.call = locked_call  # type: ignore[method-assign]
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/api/"
        app = Starlette(routes=[Mount("/api", routes=workspace_api.routes(self.emulator))])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="slack-api", daemon=True)

    def __enter__(self) -> Workspace:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Slack Web API emulator did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def add_user(self, user: str, name: str, **kwargs: Any) -> None:
        with self._lock:
            self.emulator.add_user(user, name, **kwargs)

    def add_channel(self, channel: str, name: str, **kwargs: Any) -> None:
        with self._lock:
            self.emulator.add_channel(channel, name, **kwargs)

    def add_message(self, channel: str, text: str, *, user: str) -> str:
        with self._lock:
            return str(self.emulator.add_message(channel, text, user=user)["ts"])

    def messages(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Copies of one thread's messages, root first."""
        with self._lock:
            return [
                dict(m)
                for m in self.emulator.messages.get(channel, [])
                if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
            ]


def pct(values: Sequence[float], q: int) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class Topology:
    def __init__(
        self, *, database_url: str, slack: Workspace, model: FakeOpenAIServer, tmp: Path
    ) -> None:
        self.database_url = database_url
        self.slack = slack
        self.model = model
        self.tmp = tmp
        self.prefix = f"load-{uuid.uuid4().hex[:8]}"
        self.procs: list[Proc] = []

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "SLACK_"))}
        return {
            **base,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": REDIS_URL,
            "SWITCHBOARD_REDIS_PREFIX": self.prefix,
            "SLACK_API_URL": self.slack.base_url,
            "SLACK_BOT_TOKEN": ackbench.TOKEN,
            "SLACK_SIGNING_SECRET": ackbench.SECRET,
            "SWITCHBOARD_PII_KEY": "load-pii-key",
            "SWITCHBOARD_AUDIT_KEY": "load-bench-audit-key-0123456789abcdef",
            "SWITCHBOARD_MODEL": "openai:gpt-fake",
            "OPENAI_BASE_URL": self.model.base_url,
            "OPENAI_API_KEY": "sk-fake",
            "SWITCHBOARD_SCHEDULER": "0",
            "SWITCHBOARD_USER_RATE": "1000000/1m",
            "SWITCHBOARD_CHANNEL_RATE": "1000000/1m",
            "SWITCHBOARD_LOG_LEVEL": "WARNING",
            "HOST": "127.0.0.1",
            **extra,
        }

    def _start(
        self, name: str, command: list[str], env: dict[str, str], port: int, probe: str
    ) -> Proc:
        log = (self.tmp / f"{name}.log").open("wb")
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
        proc = Proc(name, process, port)
        self.procs.append(proc)
        # nice -n 10 on a loaded machine: start-up can take minutes.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.tmp / (name + '.log')}")
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.request(
                        "GET" if probe != "/slack/events" else "POST", proc.url + probe, timeout=0.5
                    ).status_code
                    < 500
                ):
                    return proc
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not start")

    def receiver(self) -> Proc:
        port = free_port()
        env = self.env(PORT=str(port), SWITCHBOARD_INPROCESS_WORKERS="0")
        return self._start(
            "receiver",
            [sys.executable, "-c", "from switchboard.cli import main; main()", "serve"],
            env,
            port,
            "/healthz",
        )

    def worker(self, n: int, *, concurrency: int = 64) -> Proc:
        port = free_port()
        env = self.env(PORT=str(port))
        command = [
            "nice",
            "-n",
            "10",
            sys.executable,
            "-c",
            "from switchboard.cli import main; main()",
            "worker",
            "--concurrency",
            str(concurrency),
        ]
        return self._start(f"worker-{n}", command, env, port, "/healthz")

    def bare(self) -> Proc:
        port = free_port()
        command = [sys.executable, str(Path(__file__)), "--bare", str(port), self.slack.base_url]
        return self._start("bare-bolt", command, self.env(), port, "/slack/events")

    def stop(self, names: Sequence[str] | None = None) -> None:
        for proc in list(self.procs):
            if names is None or proc.name in names:
                proc.stop()
                self.procs.remove(proc)


class Load:
    """Sends mentions and counts answers in the fake workspace."""

    def __init__(self, slack: Workspace) -> None:
        self.slack = slack
        self.sent: list[tuple[str, str]] = []
        self.failed = 0
        self._n = 0

    def new_message(self) -> tuple[str, str]:
        self._n += 1
        channel = CHANNELS[self._n % len(CHANNELS)]
        ts = self.slack.add_message(channel, ackbench.TEXT, user=ackbench.USER)
        return channel, ts

    async def blast(
        self, client: httpx.AsyncClient, url: str, *, rate: float, count: int, track: bool
    ) -> list[float]:
        latencies: list[float] = []

        async def one(channel: str, ts: str) -> None:
            body, headers = ackbench.mention_request(channel, ts)
            started = time.perf_counter()
            try:
                response = await client.post(url + "/slack/events", content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            latencies.append(time.perf_counter() - started)
            if status != 200:
                self.failed += 1  # not acked: Slack would deliver it again
                if track:
                    self.sent.remove((channel, ts))

        tasks = []
        start = time.perf_counter()
        for k in range(count):
            channel, ts = self.new_message()
            if track:
                self.sent.append((channel, ts))
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(channel, ts)))
        await asyncio.gather(*tasks)
        return latencies

    def _bot_messages(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The bot's messages in the thread of mention ``ts``."""
        return [
            m
            for m in self.slack.messages(channel, ts)
            if m.get("user") == "U0BOT" or m.get("bot_id")
        ]

    def counts(self) -> tuple[int, int, int]:
        """(answered, duplicates, unanswered) over the tracked mentions."""
        answered = duplicates = unanswered = 0
        for channel, ts in self.sent:
            bot = self._bot_messages(channel, ts)
            final = [m for m in bot if not str(m.get("text", "")).startswith("Working on it")]
            if final:
                answered += 1
                duplicates += len(bot) - 1
            else:
                unanswered += 1
        return answered, duplicates, unanswered

    def duplicated(self) -> list[str]:
        """One line per tracked mention with more than one bot message in its thread: what
        each says, so a run that finds a duplicate also shows which kind it was."""
        lines = []
        for channel, ts in self.sent:
            bot = self._bot_messages(channel, ts)
            if len(bot) > 1:
                said = "; ".join(
                    f"{m.get('ts')} {str(m.get('text', ''))[:50]!r}"
                    + (" (edited)" if m.get("edited") else "")
                    for m in bot
                )
                lines.append(f"  duplicate in {channel} thread {ts}: {said}")
        return lines

    async def wait_answered(self, timeout: float) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.counts()[2] == 0:
                return time.perf_counter() - started
            await asyncio.sleep(0.1)
        return float("inf")


@contextlib.contextmanager
def private_services(tmp: Path) -> Iterator[tuple[str, str]]:
    """A PostgreSQL cluster (initdb, its own port, max_connections 300) and a redis-server
    of the bench's own, so a run neither borrows a shared server's connection budget (a
    receiver and four workers hold up to ~150 connections) nor is slowed by others' load
    on it. Yields (admin database URL, Redis URL); both are stopped at the end."""
    data = tmp / "pg"
    data.mkdir()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import shutil

        shutil.chown(tmp, "postgres")
        shutil.chown(data, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    pg_port, redis_port = free_port(), free_port()
    subprocess.run(
        [*as_postgres, "initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {pg_port} -k {tmp} -c listen_addresses=127.0.0.1 -c max_connections=300 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    subprocess.run(
        [
            *as_postgres,
            "pg_ctl",
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(tmp / "pg.log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield (
            f"postgresql+asyncpg://postgres@127.0.0.1:{pg_port}/postgres",
            f"redis://127.0.0.1:{redis_port}/0",
        )
    finally:
        redis.terminate()
        redis.wait(10)
        subprocess.run(
            [*as_postgres, "pg_ctl", "-D", str(data), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )


async def fresh_database() -> str:
    name = f"sbload_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    await upgrade(url)
    await ensure_queue_schema(libpq_dsn(url))
    return url


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.contextmanager
def fake_slack() -> Iterator[Workspace]:
    with Workspace() as slack:
        slack.add_user(ackbench.USER, "sam", real_name="Sam")
        for channel in CHANNELS:
            slack.add_channel(channel, channel.lower(), members=[ackbench.USER, ackbench.BOT_USER])
        yield slack


def machine_line(when: str) -> str:
    """Load average and cores: the machine is shared, so figures come with its load."""
    one, five, fifteen = os.getloadavg()
    return f"{when}: load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def revision() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return "unknown"


async def run(quick: bool, logs: Path | None = None) -> None:
    rates = (50, 100, 200)
    seconds = 2.0 if quick else 4.0
    url = await fresh_database()
    rows = _Rows()
    rows.append(
        f"bench/load.py{' --quick' if quick else ''} at "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, revision {revision()}"
    )
    rows.append(machine_line("start"))
    try:
        with (
            fake_slack() as slack,
            FakeOpenAIServer(default=echo) as model,
            tempfile.TemporaryDirectory() as scratch,
        ):
            tmp = logs or Path(scratch)  # the processes' logs go here
            topo = Topology(database_url=url, slack=slack, model=model, tmp=tmp)
            try:
                receiver = topo.receiver()
                bare = topo.bare()
                workers = [topo.worker(1), topo.worker(2)]
                load = Load(slack)
                async with httpx.AsyncClient(
                    timeout=30, limits=httpx.Limits(max_connections=400)
                ) as client:
                    # warm-up
                    await load.blast(client, receiver.url, rate=20, count=20, track=True)
                    await load.wait_answered(60)
                    rows.append("ack latency (ms); all answered; 2 workers; model 0 s")
                    rows.append(
                        f"{'rate/s':>7} {'bolt p50':>9} {'bolt p99':>9} {'sb p50':>8} "
                        f"{'sb p99':>8} {'p99 ratio':>9} {'answered in':>11} "
                        f"{'CPU ms/ack bolt':>15} {'sb':>6}"
                    )
                    for rate in rates:
                        count = int(rate * seconds)
                        cpu = cpu_seconds(bare.process.pid)
                        base = await load.blast(
                            client, bare.url, rate=rate, count=count, track=False
                        )
                        bare_cpu = (cpu_seconds(bare.process.pid) - cpu) / count
                        cpu = cpu_seconds(receiver.process.pid)
                        ours = await load.blast(
                            client, receiver.url, rate=rate, count=count, track=True
                        )
                        # each process's CPU per ack, idle loops included (the blast
                        # returns once every request was answered)
                        our_cpu = (cpu_seconds(receiver.process.pid) - cpu) / count
                        drained = await load.wait_answered(120)
                        rows.append(
                            f"{rate:>7} {pct(base, 50) * 1000:>9.1f} {pct(base, 99) * 1000:>9.1f} "
                            f"{pct(ours, 50) * 1000:>8.1f} {pct(ours, 99) * 1000:>8.1f} "
                            f"{pct(ours, 99) / pct(base, 99):>8.2f}x {drained:>10.1f}s "
                            f"{bare_cpu * 1000:>15.2f} {our_cpu * 1000:>6.2f}"
                        )
                    answered, dups, missing = load.counts()
                    rows.append(
                        f"  answered={answered} duplicates={dups} unanswered={missing} "
                        f"not acked (non-2xx, Slack redelivers)={load.failed}"
                    )
                    for line in load.duplicated():
                        rows.append(line)

                    # CPU per answer, zero-latency model
                    before = sum(cpu_seconds(w.process.pid) for w in workers)
                    load.sent.clear()
                    n = 200 if quick else 400
                    await load.blast(client, receiver.url, rate=100, count=n, track=True)
                    await load.wait_answered(120)
                    after = sum(cpu_seconds(w.process.pid) for w in workers)
                    rows.append(
                        f"CPU per answer (2 workers, model 0 s): "
                        f"{(after - before) / n * 1000:.1f} ms over {n} answers"
                    )

                    # bursts
                    for threads, latency in ((300, 1.0), (100 if quick else 1000, 5.0)):
                        model.latency = latency
                        load.sent.clear()
                        refused = load.failed
                        started = time.perf_counter()
                        await load.blast(client, receiver.url, rate=1000, count=threads, track=True)
                        waited = await load.wait_answered(300)
                        total = time.perf_counter() - started
                        answered, dups, missing = load.counts()
                        outcome = (
                            f"all acked mentions answered in {total:.1f} s"
                            if waited != float("inf")
                            else f"NOT all answered after {total:.1f} s"
                        )
                        rows.append(
                            f"burst {threads} threads, model {latency:.0f} s, 2 workers: {outcome} "
                            f"(target {latency + 1.5:.1f} s at 1 model call per answer), "
                            f"{answered / total:.1f} answers/s; acked={len(load.sent)} "
                            f"not acked={load.failed - refused} answered={answered} "
                            f"duplicates={dups} unanswered={missing}"
                        )
                        rows.append(machine_line("  after the burst"))
                    model.latency = 0.0

                    # throughput by worker count
                    rows.append(
                        f"{'workers':>7} {'answers/s':>10} {'CPU ms/answer':>14}"
                        "   (300 mentions sent at once, model 0 s)"
                    )
                    topo.stop([w.name for w in workers])
                    for count in (1, 2, 4):
                        ws = [topo.worker(10 + i) for i in range(count)]
                        load.sent.clear()
                        before = sum(cpu_seconds(w.process.pid) for w in ws)
                        started = time.perf_counter()
                        await load.blast(client, receiver.url, rate=2000, count=300, track=True)
                        waited = await load.wait_answered(300)
                        elapsed = time.perf_counter() - started
                        spent = sum(cpu_seconds(w.process.pid) for w in ws) - before
                        answered = load.counts()[0]
                        note = "" if waited != float("inf") else "  (not all answered in 300 s)"
                        rows.append(
                            f"{count:>7} {answered / elapsed:>10.1f} "
                            f"{spent / max(answered, 1) * 1000:>14.1f}   "
                            f"answered {answered} of {len(load.sent)} acked{note}"
                        )
                        topo.stop([w.name for w in ws])
                    rows.append(machine_line("end"))
            finally:
                topo.stop()
    finally:
        await drop_database(url)


def bare_bolt(port: int, slack_url: str) -> None:
    """The baseline: a Bolt AsyncApp whose ``app_mention`` listener does nothing."""
    import uvicorn
    from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    bolt = AsyncApp(
        signing_secret=ackbench.SECRET,
        client=AsyncWebClient(token=ackbench.TOKEN, base_url=slack_url),
        process_before_response=True,
    )

    @bolt.event("app_mention")
    async def ack_only() -> None:
        return None

    handler = AsyncSlackRequestHandler(bolt)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    app = Starlette(routes=[Route("/slack/events", events, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


class _Rows(list[str]):
    """Table lines, printed as they are measured (a run cut short still reports)."""

    def append(self, line: str) -> None:
        super().append(line)
        print(line, flush=True)


def main() -> None:
    global PG_ADMIN, REDIS_URL
    # SIGTERM unwinds like Ctrl-C: processes, the database and private servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter steps, smaller bursts")
    parser.add_argument(
        "--shared-services",
        action="store_true",
        help="use TEST_DATABASE_URL / TEST_REDIS_URL instead of a private PostgreSQL "
        "cluster and redis-server",
    )
    parser.add_argument(
        "--logs", type=Path, help="keep every process's log in this directory (it must exist)"
    )
    parser.add_argument("--bare", nargs=2, metavar=("PORT", "SLACK_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_bolt(int(args.bare[0]), args.bare[1])
        return
    if args.shared_services:
        asyncio.run(run(args.quick, args.logs))
        return
    with (
        tempfile.TemporaryDirectory(prefix="sb-load-") as tmp,
        private_services(Path(tmp)) as (admin_url, redis_url),
    ):
        PG_ADMIN, REDIS_URL = admin_url, redis_url
        print(f"private PostgreSQL and Redis: {PG_ADMIN} {REDIS_URL}", flush=True)
        asyncio.run(run(args.quick, args.logs))


if __name__ == "__main__":
    main()
