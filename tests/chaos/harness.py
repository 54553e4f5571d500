"""A production-shaped deployment on this machine: one receiver (in the test process,
``SWITCHBOARD_INPROCESS_WORKERS=0``), ``switchboard worker`` subprocesses, PostgreSQL,
Redis, the fake Slack Web API and the fake OpenAI-compatible model server.

Tests send signed mentions through the receiver's real HTTP app, kill or stop workers with
real signals, and count what people see in the fake workspace: answers per message,
duplicates, placeholders left unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bot.http import create_http_app
from bot.slack.client import create_web_client
from bot.views.runs import WORKING_TEXT, busy_text
from switchboard.serve import build_bot
from switchboard.services import open_services
from switchboard.settings import Settings
from tests.bot.conftest import SIGNING_SECRET, TEAM, sign
from tests.conftest import _unavailable
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_api import FakeSlackApi
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PrivateRedis:
    """A ``redis-server`` of one test, on a free port of its own: SIGKILL it and start it
    again on the same port while the deployment runs. Never the shared Redis.

    No persistence (``save ""``, no AOF), like a basic managed Redis: what it held is gone
    after a kill, so the test also shows that nothing the answer path needs lives only
    there.
    """

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.dir = tmp / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--protected-mode", "no",
            "--maxclients", "1000",
        ]  # fmt: skip
        with (self.dir / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()[-2000:]}")
            if _accepts(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not come up: {self.log()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; clients see their connections reset."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


def find_initdb() -> str | None:
    """PostgreSQL's ``initdb``: on PATH, else the newest Debian ``/usr/lib/postgresql``."""
    found = shutil.which("initdb")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return candidates[-1] if candidates else None


class PrivatePostgres:
    """A PostgreSQL cluster of one test: ``initdb`` in a temporary directory, trust auth,
    its own port and socket directory, so it can be restarted under traffic without
    touching the shared server. As root, the server runs as the ``postgres`` OS user
    (PostgreSQL refuses to run as root)."""

    def __init__(self, initdb: str) -> None:
        self.bin = Path(initdb).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sb-chaos-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")
        self.dir.chmod(0o700)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        result = subprocess.run(
            [*self._as, *args], capture_output=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')[-2000:]}\n{self.log()[-2000:]}"
            )

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D", str(self.data),
            "-U", "postgres",
            "--auth=trust",
            "--no-sync",
            "-E", "UTF8",
        )  # fmt: skip

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            action,
            "-D", str(self.data),
            "-l", str(self.logfile),
            "-o", options,
            "-w", "-t", "60",
            *extra,
        )  # fmt: skip

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: clients are disconnected, in-flight transactions abort."""
        self._pg_ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivatePostgres]:
    """A started :class:`PrivatePostgres`, destroyed afterwards; unavailable (a skip, or a
    failure under CI) when ``initdb`` is not installed."""
    initdb = find_initdb()
    if initdb is None:
        _unavailable("a private PostgreSQL cluster", "initdb is not installed")
    assert initdb is not None
    cluster = PrivatePostgres(initdb)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def task_dump(self) -> str:
        """The last asyncio task dump (``SIGUSR2``, :func:`switchboard.serve.dump_tasks`)
        in this worker's log, up to the next log line; "" when there is none."""
        text = self.output()
        start = text.rfind(TASK_DUMP_MARKER)
        if start < 0:
            return ""
        start = text.rfind("\n", 0, start) + 1
        lines = text[start:].splitlines()
        end = next((i for i, line in enumerate(lines[1:], 1) if _LOG_LINE.match(line)), len(lines))
        return "\n".join(lines[:end])


@dataclass(frozen=True)
class Ack:
    """How the receiver answered one delivery, and how long it took."""

    status: int
    seconds: float
    event_id: str
    ts: str


@dataclass
class Deployment:
    database_url: str
    redis_url: str
    redis_prefix: str
    slack: FakeSlackApi
    model: FakeOpenAIServer
    tmp: Path
    http: httpx.AsyncClient | None = None
    workers: list[Worker] = field(default_factory=list)
    sent: dict[str, str] = field(default_factory=dict)  # root ts -> text asked
    acks: list[Ack] = field(default_factory=list)
    startup_timeout: float = 120.0  # a loaded CI machine imports slowly

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SWITCHBOARD_REDIS_PREFIX": self.redis_prefix,
            "SLACK_API_URL": self.slack.base_url,
            "SLACK_BOT_TOKEN": self.slack.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SWITCHBOARD_PII_KEY": "chaos-pii-key",
            "SWITCHBOARD_AUDIT_KEY": "chaos-audit-key-0123456789abcdef-0123",
            "SWITCHBOARD_MODEL": "openai:gpt-fake",
            "OPENAI_BASE_URL": self.model.base_url,
            "OPENAI_API_KEY": "sk-fake",
            "SWITCHBOARD_INPROCESS_WORKERS": "0",
            "SWITCHBOARD_SCHEDULER": "0",
            "SWITCHBOARD_USER_RATE": "100000/1m",
            "SWITCHBOARD_CHANNEL_RATE": "100000/1m",
            "SWITCHBOARD_LOG_LEVEL": "INFO",
            **extra,
        }

    def start_worker(
        self, name: str, *, concurrency: int = 32, drain: float = 30.0, nice: int = 0
    ) -> Worker:
        """Start ``switchboard worker`` and wait until it serves ``/healthz``."""
        worker = self.spawn_worker(name, concurrency=concurrency, drain=drain, nice=nice)
        self.wait_ready(worker)
        return worker

    def start_workers(self, *names: str, concurrency: int = 32) -> list[Worker]:
        """Start several workers at once (their imports overlap), then wait for each."""
        workers = [self.spawn_worker(name, concurrency=concurrency) for name in names]
        for worker in workers:
            self.wait_ready(worker)
        return workers

    def spawn_worker(
        self, name: str, *, concurrency: int = 32, drain: float = 30.0, nice: int = 0
    ) -> Worker:
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "SLACK_"))},
            **self.env(
                PORT=str(port), HOST="127.0.0.1", SWITCHBOARD_WORKER_DRAIN_SECONDS=str(drain)
            ),
        }
        log = self.tmp / f"{name}.log"
        command = [
            sys.executable,
            "-c",
            "from switchboard.cli import main; main()",
            "worker",
            "--concurrency",
            str(concurrency),
        ]
        if nice:
            command = ["nice", "-n", str(nice), *command]
        with log.open("wb") as out:
            process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)
        worker = Worker(name=name, process=process, port=port, log=log)
        self.workers.append(worker)
        return worker

    def wait_ready(self, worker: Worker, timeout: float | None = None) -> None:
        """Until ``/healthz`` answers (imports take long on a loaded machine)."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker {worker.name} exited: {worker.output()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                url = f"http://127.0.0.1:{worker.port}/healthz"
                if httpx.get(url, timeout=0.5).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"worker {worker.name} did not come up: {worker.output()[-2000:]}")

    async def mention(
        self,
        text: str,
        *,
        channel: str = "C0GENERAL",
        user: str = "U0SAM",
        thread_ts: str | None = None,
        redeliver: tuple[str, str, int] | None = None,
    ) -> tuple[int, str]:
        """Post a mention in the fake workspace and deliver its signed event to the
        receiver; (HTTP status, message ts). ``thread_ts``: a reply in that thread.
        ``redeliver=(ts, event_id, retry_num)``: Slack's redelivery of an event that got no
        2xx, for the same message. Ack times are kept in :attr:`acks`."""
        assert self.http is not None
        if redeliver is None:
            ts = self.slack.add_message(channel, f"<@U0BOT> {text}", user=user, thread_ts=thread_ts)
            event_id, retry_num = f"Ev{uuid.uuid4().hex[:10].upper()}", 0
        else:
            ts, event_id, retry_num = redeliver
        event: dict[str, object] = {
            "type": "app_mention",
            "user": user,
            "text": f"<@U0BOT> {text}",
            "ts": ts,
            "event_ts": ts,
            "channel": channel,
            "team": TEAM,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        payload = {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": "A0FAKE",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": event,
        }
        body = json.dumps(payload)
        headers = {"content-type": "application/json", **sign(body)}
        if retry_num:
            headers |= {"x-slack-retry-num": str(retry_num), "x-slack-retry-reason": "http_error"}
        started = time.monotonic()
        response = await self.http.post("/slack/events", content=body, headers=headers)
        self.acks.append(Ack(response.status_code, time.monotonic() - started, event_id, ts))
        if thread_ts is None:
            self.sent[ts] = text
        return response.status_code, ts

    async def mention_as_slack_would(
        self, text: str, *, retries: int = 3, gap: float = 3.0, channel: str = "C0GENERAL"
    ) -> tuple[int, str]:
        """A mention that Slack delivers again (same event id, ``X-Slack-Retry-Num``) while
        the receiver answers non-2xx, up to ``retries`` times, ``gap`` seconds apart (Slack
        waits longer; the test has no minutes to spare). The last status and the ts."""
        status, ts = await self.mention(text, channel=channel)
        event_id = self.acks[-1].event_id
        for retry in range(1, retries + 1):
            if status < 300:
                break
            await asyncio.sleep(gap)
            status, ts = await self.mention(text, channel=channel, redeliver=(ts, event_id, retry))
        return status, ts

    def count(self, channel: str = "C0GENERAL") -> Counts:
        """What people see: per message asked, the bot's messages in its thread."""
        answered = duplicates = unanswered = wrong = apologies = 0
        for ts, text in self.sent.items():
            bot = [
                m
                for m in self.slack.messages(channel, ts)
                if m.get("user") == "U0BOT" or m.get("bot_id")
            ]
            finals = [m for m in bot if m.get("text") not in PENDING_TEXTS]
            apologies += sum(1 for m in finals if _apology(str(m.get("text"))))
            if not finals:
                unanswered += 1
                continue
            answered += 1
            duplicates += len(bot) - 1
            if not all(text.removeprefix("ask ") in str(m.get("text")) for m in finals):
                wrong += 1
        return Counts(len(self.sent), answered, duplicates, unanswered, wrong, apologies)

    def thread_answers(self, root: str, channel: str = "C0GENERAL") -> list[str]:
        """The bot's messages in one thread, in the order Slack shows them."""
        return [
            str(m.get("text"))
            for m in self.slack.messages(channel, root)
            if m.get("user") == "U0BOT" or m.get("bot_id")
        ]

    def unanswered(self, channel: str = "C0GENERAL") -> list[str]:
        """Root ts of the messages with no final answer yet."""
        return [
            ts
            for ts in self.sent
            if not [
                m
                for m in self.slack.messages(channel, ts)
                if (m.get("user") == "U0BOT" or m.get("bot_id"))
                and m.get("text") not in PENDING_TEXTS
            ]
        ]

    async def diagnose(self) -> str:
        """Inbox rows still open and the queue's jobs, for a failing test's message."""
        import asyncpg

        dsn = self.database_url.replace("postgresql+asyncpg://", "postgresql://")
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            return f"(database not readable: {exc})"
        try:
            rows = await conn.fetch(
                "SELECT thread_key, status, job_id, attempts, placeholder_ts, outcome "
                "FROM run_inbox WHERE status <> 'done' ORDER BY created_at"
            )
            jobs = await conn.fetch(
                "SELECT id, status, attempts, lock, worker_id FROM procrastinate_jobs "
                "WHERE status <> 'succeeded' ORDER BY id"
            )
        finally:
            await conn.close()
        lines = [f"unanswered: {self.unanswered()}", "open inbox rows:"]
        lines += [f"  {dict(r)}" for r in rows]
        lines.append("jobs not succeeded:")
        lines += [f"  {dict(j)}" for j in jobs]
        return "\n".join(lines)

    def dump_tasks(self, timeout: float = 5.0) -> str:
        """SIGUSR2 to every live worker, then each one's asyncio task dump (the ``await``
        every task is parked on), for a test whose turn never finishes."""
        live = [w for w in self.workers if w.process.poll() is None]
        before = {w.name: w.output().count(TASK_DUMP_MARKER) for w in live}
        for worker in live:
            worker.signal(signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            w.output().count(TASK_DUMP_MARKER) <= before[w.name] for w in live
        ):
            time.sleep(0.1)
        return "\n".join(
            f"=== task dump of worker {w.name} (pid {w.process.pid})\n"
            f"{w.task_dump() or '(none logged)'}"
            for w in live
        )

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.signal(signal.SIGKILL)
                worker.wait(10)


#: How :func:`switchboard.serve.dump_tasks` starts its log message.
TASK_DUMP_MARKER = " asyncio tasks:"
#: A log line's start (logfmt: ISO timestamp, level), as opposed to a dump's stack line.
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")

#: What a placeholder says before the answer replaces it.
PENDING_TEXTS = frozenset({WORKING_TEXT}) | {busy_text(n) for n in range(1, 1000)}

#: Markers of the short error messages people get instead of an answer (bot/views).
_APOLOGY_MARKERS = ("reference `", "Sorry", "try again")


def _apology(text: str) -> bool:
    return any(marker in text for marker in _APOLOGY_MARKERS)


@dataclass(frozen=True)
class Counts:
    sent: int
    answered: int
    duplicates: int
    unanswered: int
    wrong: int
    apologies: int = 0

    @property
    def clean(self) -> bool:
        """Every message answered once, with its own answer, and no apology anywhere."""
        return (
            self.answered == self.sent
            and self.duplicates == 0
            and self.unanswered == 0
            and self.wrong == 0
            and self.apologies == 0
        )

    def __str__(self) -> str:
        return (
            f"sent={self.sent} answered={self.answered} duplicates={self.duplicates} "
            f"unanswered={self.unanswered} mismatched={self.wrong} apologies={self.apologies}"
        )


@contextlib.asynccontextmanager
async def receiver(deployment: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    """``switchboard serve``'s app in this process, receive-only."""
    settings = Settings.from_env(deployment.env())
    async with open_services(settings) as services:
        client = create_web_client(
            token=deployment.slack.token, base_url=deployment.slack.base_url, backoff=0.05
        )
        bot = build_bot(services, client=client, signing_secret=SIGNING_SECRET)
        app = create_http_app(bot, signing_secret=SIGNING_SECRET, services=services)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://receiver"
        ) as http:
            deployment.http = http
            try:
                yield http
            finally:
                deployment.http = None
                await bot.worker.drain(5.0)
