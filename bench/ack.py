"""Ack latency and event→reply latency of ``POST /slack/events`` beside a bare Bolt app.

Every app runs in its own process, served by uvicorn on an ephemeral 127.0.0.1 port, and is
hit over real HTTP by an open-loop ``httpx.AsyncClient`` load generator in this process:

- ``switchboard``: the full stack on embedded defaults (SQLite in a temp dir, fakeredis),
  built as ``tests/bot/conftest.py`` builds a replica, with a zero-latency scripted model
  (the router is the offline keyword router, as in the tests). Each mention is acked and
  answered in the background, exactly as in production.
- ``bare bolt``: ``AsyncApp(process_before_response=True)`` behind Bolt's own Starlette
  adapter, with an ``app_mention`` listener that does nothing.
- ``sb ack path``: the same Switchboard process sent the same mentions, but written by another
  bot, so they are acked (signature, parsing, Bolt, event dedupe in Redis, the listener) and
  not answered: the ack path alone, without answers competing for the event loop.
- ``floor``: Starlette returning 200 without looking at the body; what uvicorn, HTTP and
  this client cost on their own, for reading the other rows.

One more process plays the Slack Web API (the sandbox's workspace emulator, the one Slack
fake, seeded with the mentioned messages and served by uvicorn), so its work is not charged
to the apps or to the load generator.
``CPU ms/req`` is each server process's CPU per acked request, background answers included:
the cost that decides how many mentions per second one process can take.

Ack: signed ``app_mention`` requests (unique ``event_id`` and ``ts``) at rising target rates;
latency is send → response, per request. Each rate step is split in two slices run ABBA-style
(app order rotated every step), so machine noise hits every app alike. After a Switchboard
slice the bench waits until every mention has been answered (``drain s``) before the next
slice starts, so background runs never overlap another app's measurement.

Event → reply: sequential mentions, alternating between Switchboard and a second bare Bolt
process whose listener posts a canned reply; latency is send → the fake Slack receiving
``chat.postMessage`` (its own CLOCK_MONOTONIC stamp, comparable across processes).

    .venv/bin/python bench/ack.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn
from langchain_core.language_models import BaseChatModel
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from bot.http import create_http_app
from bot.slack.client import create_web_client
from sandbox import workspace as workspace_api
from sandbox.workspace import ApiCall, Emulator, RateLimit
from skills.models.offline import OfflineChatModel
from switchboard.logs import configure_logging
from switchboard.serve import build_bot
from switchboard.services import open_services
from switchboard.settings import Settings
from switchboard.testing import ScriptedChatModel

SECRET = "bench-signing-secret"
TOKEN = "xoxb-fake-token"
TEAM = "T0FAKE"
USER = "U0SAM"
BOT_USER = "U0BOT"
CHANNELS = 32  # mentions are spread over channels so the fake's per-channel lists stay short
REPLY_CHANNEL = "C0REPLY"
ACK_TS_BASE = 1_700_000_000
REPLY_TS_BASE = 1_710_000_000
TEXT = "<@U0BOT> hello there, what did we decide about the launch date?"

OURS, OURS_ACK, BARE, FLOOR = "switchboard", "sb ack path", "bare bolt", "floor"
MAX_DRAIN = 30.0  # seconds of Switchboard CPU one rate step may queue up (keeps a run < 2 min)


# -- the Slack side: one seeded mention per request ---------------------------------------------


def ack_message(k: int) -> tuple[str, str]:
    """(channel, ts) of the ``k``-th mention used for ack load; seeded in the fake."""
    return f"C0BENCH{k % CHANNELS:02d}", f"{ACK_TS_BASE}.{k:06d}"


def reply_message(k: int) -> tuple[str, str]:
    """(channel, ts) of the ``k``-th mention used for event → reply."""
    return REPLY_CHANNEL, f"{REPLY_TS_BASE}.{k:06d}"


def mention_request(
    channel: str, ts: str, *, from_bot: bool = False
) -> tuple[bytes, dict[str, str]]:
    """A signed ``app_mention`` event_callback as Slack sends it (body, headers); with
    ``from_bot``, written by another bot, which Switchboard acks without answering."""
    event = {
        "type": "app_mention",
        "user": USER,
        "text": TEXT,
        "ts": ts,
        "event_ts": ts,
        "channel": channel,
        "team": TEAM,
        **({"bot_id": "B0OTHERBOT"} if from_bot else {}),
        "client_msg_id": str(uuid.uuid4()),
        "blocks": [
            {
                "type": "rich_text",
                "block_id": "b1",
                "elements": [
                    {
                        "type": "rich_text_section",
                        "elements": [
                            {"type": "user", "user_id": BOT_USER},
                            {"type": "text", "text": TEXT.split(">", 1)[1]},
                        ],
                    }
                ],
            }
        ],
    }
    payload = {
        "token": "legacy",
        "team_id": TEAM,
        "context_team_id": TEAM,
        "api_app_id": "A0FAKE",
        "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:12].upper()}",
        "event_time": int(time.time()),
        "authorizations": [
            {"team_id": TEAM, "user_id": BOT_USER, "is_bot": True, "is_enterprise_install": False}
        ],
        "is_ext_shared_channel": False,
        "event": event,
    }
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": "v0=" + digest.hexdigest(),
    }
    return body, headers


# -- child processes ------------------------------------------------------------------------------


def _exit_on_stdin_eof(stop: Callable[[], None]) -> None:
    """Call ``stop`` when the parent closes our stdin (or dies): no orphans either way."""

    def watch() -> None:
        sys.stdin.read()
        stop()

    threading.Thread(target=watch, name="stdin-eof", daemon=True).start()


async def _serve(app: Any, path: str = "") -> None:
    """Serve ``app`` with uvicorn on an ephemeral 127.0.0.1 port; print it once listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    _exit_on_stdin_eof(lambda: loop.call_soon_threadsafe(setattr, server, "should_exit", True))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    print(f"ready http://127.0.0.1:{sock.getsockname()[1]}/{path}", flush=True)
    await serving


def _slack_server(seed: int, reply_seed: int) -> None:
    """The Slack Web API (the sandbox's emulator), seeded; reports reply receipt times on
    stdout: ``reply <ts> <monotonic>`` when a reply lands in REPLY_CHANNEL, and counts the
    other replies for the ``bench.stats`` method."""
    # No per-channel write limit: the bench measures the apps, not Slack's rate limits.
    fake = Emulator(
        token=TOKEN,
        team_id=TEAM,
        bot_user_id=BOT_USER,
        rate_limit=RateLimit(per_second=1e9, burst=10**9),
    )
    fake.add_user(USER, "sam", real_name="Sam Whitaker", tz="America/New_York")
    fake.add_user("U0CAROL", "carol")
    fake.add_user("U0DEV", "dev")
    members = [USER, BOT_USER]
    for n in range(CHANNELS):
        fake.add_channel(ack_message(n)[0], f"bench-{n:02d}", members=members)
    fake.add_channel(REPLY_CHANNEL, "bench-reply", members=members)
    # The built-in refunds skill names this group; without it every answer would log a failed
    # (and uncached) usergroups.users.list.
    fake.add_usergroup("S0LEADS", "leads", "leads", ["U0CAROL", "U0DEV"])
    for k in range(seed):
        channel, ts = ack_message(k)
        fake.add_message(channel, TEXT, user=USER, ts=ts)
    for k in range(reply_seed):
        channel, ts = reply_message(k)
        fake.add_message(channel, TEXT, user=USER, ts=ts)
    posted = 0

    def on_call(call: ApiCall) -> None:
        nonlocal posted
        if call.method != "chat.postMessage" or not call.ok:
            return
        if call.args.get("channel") == REPLY_CHANNEL:
            # CLOCK_MONOTONIC: comparable across processes (stamped as the call is answered)
            print(f"reply {call.args.get('thread_ts')} {time.monotonic()!r}", flush=True)
        else:
            posted += 1

    fake.call_listeners.append(on_call)

    async def stats(_: Request) -> Response:
        return JSONResponse({"ok": True, "posted": posted})

    app = Starlette(
        routes=[
            Route("/api/bench.stats", stats, methods=["POST"]),
            Mount("/api", routes=workspace_api.routes(fake)),
        ]
    )
    asyncio.run(_serve(app, path="api/"))


async def _switchboard(slack_url: str, workdir: Path) -> None:
    """The full stack, assembled by the composition root's builders as in tests/bot/conftest.py,
    with the scripted model."""
    settings = Settings.from_env(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'switchboard.db'}",
            "SWITCHBOARD_AUDIT_KEY": "bench-audit-key-0123456789abcdef-0123",
            "SLACK_API_URL": slack_url,
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SWITCHBOARD_PII_KEY": "bench-pii-key",
            # One load-generating "person" sends every mention: per-person and per-channel
            # rate limits (on by default since #18) would refuse most of them.
            "SWITCHBOARD_USER_RATE": "off",
            "SWITCHBOARD_CHANNEL_RATE": "off",
        }
    )
    configure_logging(settings.log_level)  # as `switchboard serve` does (INFO by default)

    def models(name: str) -> BaseChatModel:
        # "router" is the keyword router (no model call), as in the bot tests.
        return OfflineChatModel() if name == "router" else ScriptedChatModel(default="canned reply")

    async with open_services(
        settings, model_factory=models, env={}, router_model="router"
    ) as services:
        client = create_web_client(token=TOKEN, base_url=slack_url)
        bot = build_bot(services, client=client, signing_secret=SECRET)
        await _serve(create_http_app(bot, signing_secret=SECRET, services=services))


async def _bare_bolt(slack_url: str, *, reply: bool) -> None:
    """Bolt and nothing else: ack only, or post a canned reply before acking."""
    # A client rather than token=: same token, but pointed at the fake instead of slack.com.
    bolt = AsyncApp(
        signing_secret=SECRET,
        client=AsyncWebClient(token=TOKEN, base_url=slack_url),
        process_before_response=True,
    )
    if reply:

        @bolt.event("app_mention")
        async def answer(event: dict[str, Any], client: AsyncWebClient) -> None:
            await client.chat_postMessage(
                channel=event["channel"], thread_ts=event["ts"], text="canned reply"
            )
    else:

        @bolt.event("app_mention")
        async def ack_only(event: dict[str, Any]) -> None:
            return None

    handler = AsyncSlackRequestHandler(bolt)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    await _serve(Starlette(routes=[Route("/slack/events", events, methods=["POST"])]))


async def _floor() -> None:
    async def events(request: Request) -> Response:
        await request.body()
        return Response(status_code=200)

    await _serve(Starlette(routes=[Route("/slack/events", events, methods=["POST"])]))


def child_main(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it stops us
    if args.role == "slack":
        _slack_server(args.seed, args.reply_seed)
    elif args.role == "ours":
        asyncio.run(_switchboard(args.slack_url, Path(args.workdir)))
    elif args.role in ("bare-ack", "bare-reply"):
        asyncio.run(_bare_bolt(args.slack_url, reply=args.role == "bare-reply"))
    elif args.role == "floor":
        asyncio.run(_floor())


@dataclass
class Child:
    """A child process that printed ``ready <url>``; stopped by closing its stdin."""

    role: str
    proc: asyncio.subprocess.Process
    url: str
    log: Path

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@contextlib.asynccontextmanager
async def child(role: str, tmp: Path, *extra: str) -> AsyncIterator[Child]:
    log = tmp / f"{role}.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--role",
            role,
            *extra,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    assert proc.stdout is not None
    running = Child(role=role, proc=proc, url="", log=log)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=90)
        if not line.startswith(b"ready "):
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{role} did not start:\n{tail}")
        running.url = line.decode().split()[1]
        # Never anything but this machine.
        assert running.url.startswith("http://127.0.0.1:"), running.url
        yield running
    finally:
        await running.stop()


class SlackWatch:
    """Reads the fake Slack's ``reply`` lines; answers "when did the reply to ts land?"."""

    def __init__(self, fake: Child, http: httpx.AsyncClient) -> None:
        self._fake = fake
        self._http = http
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._fake.proc.stdout is not None
        async for raw in self._fake.proc.stdout:
            parts = raw.decode().split()
            if len(parts) == 3 and parts[0] == "reply":
                waiter = self._waiting.pop(parts[1], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(float(parts[2]))

    def expect(self, ts: str) -> asyncio.Future[float]:
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[ts] = waiter
        return waiter

    async def posted(self) -> int:
        response = await self._http.post(
            self._fake.url + "bench.stats", headers={"authorization": f"Bearer {TOKEN}"}
        )
        return int(response.json()["posted"])

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump


# -- load -----------------------------------------------------------------------------------------


@dataclass
class Slice:
    """One app at one rate for one stretch of time."""

    latencies: list[float] = field(default_factory=list)  # seconds, ok responses only
    sent: int = 0
    errors: int = 0
    seconds: float = 0.0  # first scheduled send → last response
    cpu: float | None = None  # server process CPU seconds, background answers included
    drain: float | None = None  # Switchboard: seconds from the last ack to the last reply
    lost: int = 0  # Switchboard: acked, never answered


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Target:
    url: str  # its POST /slack/events
    pid: int


async def blast(
    http: httpx.AsyncClient, url: str, requests: Sequence[tuple[bytes, dict[str, str]]], rate: float
) -> Slice:
    """Send ``requests`` open-loop at ``rate`` per second; time each send → response."""
    result = Slice(sent=len(requests))

    async def one(body: bytes, headers: dict[str, str]) -> None:
        started = time.perf_counter()
        try:
            response = await http.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            result.errors += 1
            return
        if response.status_code == 200:
            result.latencies.append(time.perf_counter() - started)
        else:
            result.errors += 1

    tasks = []
    start = time.perf_counter() + 0.002
    for i, (body, headers) in enumerate(requests):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(body, headers)))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class Bench:
    http: httpx.AsyncClient
    slack: SlackWatch
    targets: dict[str, Target]  # the apps under ack load
    answered: int = 0  # Switchboard mentions acked so far (each is answered in the background)
    next_k: int = 0

    def requests(self, count: int, *, from_bot: bool) -> list[tuple[bytes, dict[str, str]]]:
        made = [
            mention_request(*ack_message(self.next_k + i), from_bot=from_bot) for i in range(count)
        ]
        self.next_k += count
        return made

    async def drained(self, stall: float = 15.0) -> tuple[float | None, int]:
        """(seconds until Switchboard has posted a reply to every mention it acked, 0), or
        (None, how many are missing) once replies stopped coming for ``stall`` seconds."""
        started = progress = time.perf_counter()
        seen = await self.slack.posted()
        while seen < self.answered:
            await asyncio.sleep(0.02)
            now_seen = await self.slack.posted()
            if now_seen > seen:
                seen, progress = now_seen, time.perf_counter()
            elif time.perf_counter() - progress > stall:
                lost, self.answered = self.answered - seen, seen  # counted once
                return None, lost
        return time.perf_counter() - started, 0

    async def run_slice(self, app: str, rate: float, seconds: float) -> Slice:
        target = self.targets[app]
        before = cpu_seconds(target.pid)
        requests = self.requests(int(rate * seconds), from_bot=app == OURS_ACK)
        piece = await blast(self.http, target.url, requests, rate)
        if app == OURS:
            self.answered += len(piece.latencies)
            piece.drain, piece.lost = await self.drained()
        after = cpu_seconds(target.pid)
        if before is not None and after is not None:
            piece.cpu = after - before
        return piece


@dataclass
class Step:
    """The slices of one app at one rate."""

    slices: list[Slice] = field(default_factory=list)
    skipped: str | None = None  # why this app did not run at this rate

    @property
    def latencies(self) -> list[float]:
        return [x for s in self.slices for x in s.latencies]

    @property
    def achieved(self) -> float:
        return len(self.latencies) / sum(s.seconds for s in self.slices)

    @property
    def cpu_per_request(self) -> float | None:
        """Server CPU ms per acked request (Switchboard: its background answer included)."""
        if any(s.cpu is None for s in self.slices) or not self.latencies:
            return None
        return 1000 * sum(s.cpu or 0.0 for s in self.slices) / len(self.latencies)


async def ack_phase(
    bench: Bench, rates: Sequence[int], seconds: float
) -> dict[tuple[int, str], Step]:
    """Each rate step, ABBA. Switchboard is skipped at a rate once it could not ack the
    previous one, or once answering the step's mentions would take over ``MAX_DRAIN`` seconds
    of its CPU (measured per mention at the previous rate): that only measures a queue."""
    apps = list(bench.targets)
    for app in apps:  # warm-up (imports, auth.test, compiled graphs, pools), not recorded
        await bench.run_slice(app, 50, min(1.0, seconds))
    steps: dict[tuple[int, str], Step] = {(r, a): Step() for r in rates for a in apps}
    skip: str | None = None
    for n, rate in enumerate(rates):
        if n > 0 and skip is None:
            ours = steps[rates[n - 1], OURS]
            cpu = ours.cpu_per_request
            if ours.achieved < 0.9 * rates[n - 1] or any(s.drain is None for s in ours.slices):
                skip = f"it could not keep up with {rates[n - 1]} req/s"
            elif cpu is not None and rate * seconds * cpu / 1000 > MAX_DRAIN:
                skip = (
                    f"answering {rate * seconds:.0f} mentions would take "
                    f"~{rate * seconds * cpu / 1000:.0f} s at {cpu:.0f} ms CPU each"
                )
        running = [a for a in apps if not (skip and a == OURS)]
        order = running[n % len(running) :] + running[: n % len(running)]
        for app in [*order, *reversed(order)]:  # ABBA: drift and noise hit every app alike
            steps[rate, app].slices.append(await bench.run_slice(app, rate, seconds / 2))
        if skip:
            steps[rate, OURS].skipped = skip
        print(f"  ack at {rate} req/s done", file=sys.stderr, flush=True)
    return steps


async def reply_phase(
    bench: Bench, targets: dict[str, Target], count: int
) -> dict[str, list[float]]:
    """Sequential mentions, alternating apps; latency = send → fake receives the reply."""
    samples: dict[str, list[float]] = {app: [] for app in targets}
    apps = list(targets)
    k = 0
    for i in range(count + 3):  # the first 3 rounds are warm-up
        for app in apps if i % 2 == 0 else reversed(apps):
            channel, ts = reply_message(k)
            k += 1
            body, headers = mention_request(channel, ts)
            landed = bench.slack.expect(ts)
            sent = time.monotonic()
            response = await bench.http.post(targets[app].url, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{app} answered {response.status_code}")
            received = await asyncio.wait_for(landed, timeout=15)
            if i >= 3:
                samples[app].append(received - sent)
            await asyncio.sleep(0.02)  # let trailing work (status reaction) finish
    return samples


# -- report ---------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: int) -> float:
    """The q-th percentile in ms (inclusive method: p99 of 150 samples is near the max)."""
    if len(values) < 2:
        return float("nan") if not values else values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def _cell(value: float | None, spec: str, width: int) -> str:
    return f"{'-' if value is None else format(value, spec):>{width}}"


def report(
    steps: dict[tuple[int, str], Step],
    rates: Sequence[int],
    seconds: float,
    replies: dict[str, list[float]],
    server_log: list[str],
) -> None:
    print(
        f"\nack latency of POST /slack/events (app_mention), open loop, {seconds:g} s per app "
        "per rate in two ABBA slices; ms\n"
    )
    header = (
        f"{'rate':>5}  {'app':<12}{'sent':>6}{'errors':>7}{'req/s':>8}{'p50':>9}{'p99':>9}"
        f"{'p99/bare':>10}{'CPU ms/req':>12}{'drain s':>9}"
    )
    print(header)
    print("-" * len(header))
    checks: list[tuple[str, float | None, float]] = []  # label, ours/bare, target
    limits: list[str] = []
    for rate in rates:
        bare_p99 = pct(steps[rate, BARE].latencies, 99)
        for app in (BARE, OURS, OURS_ACK, FLOOR):
            step = steps[rate, app]
            if not step.slices:
                print(f"{rate:>5}  {app:<12}  skipped: {step.skipped}")
                continue
            p99 = pct(step.latencies, 99)
            drains = [s.drain for s in step.slices]
            drain = (
                None
                if app != OURS or any(d is None for d in drains)
                else max(d or 0.0 for d in drains)
            )
            print(
                f"{rate:>5}  {app:<12}{sum(s.sent for s in step.slices):>6}"
                f"{sum(s.errors for s in step.slices):>7}{step.achieved:>8.1f}"
                f"{pct(step.latencies, 50):>9.2f}{p99:>9.2f}{p99 / bare_p99:>9.2f}x"
                f"{_cell(step.cpu_per_request, '.2f', 12)}{_cell(drain, '.1f', 9)}"
            )
        ours = steps[rate, OURS]
        ratio = pct(ours.latencies, 99) / bare_p99 if ours.slices else None
        if lost := sum(s.lost for s in ours.slices):
            limits.append(f"at {rate} req/s Switchboard acked {lost} mentions it never answered.")
        checks.append((f"ack p99 at {rate:>3} req/s", ratio, 1.5))
        if steps[rate, FLOOR].achieved < 0.9 * rate:
            limits.append(
                f"at {rate} req/s even the floor acked only {steps[rate, FLOOR].achieved:.0f}/s:"
                " the load generator or the machine, not the app, sets the pace there."
            )
    print(
        "\nreq/s: acks per second achieved. CPU ms/req: server process CPU per acked request,"
        "\nSwitchboard's background answer included. drain s: wait after Switchboard's slice"
        "\nuntil every mention was answered (the next slice starts only then)."
    )
    for line in limits:
        print(line)

    print("\nevent → reply (chat.postMessage received by the fake Slack), sequential; ms\n")
    header = f"{'app':<12}{'n':>5}{'p50':>9}{'p99':>9}{'p50/bare':>10}{'p99/bare':>10}"
    print(header)
    print("-" * len(header))
    bare50, bare99 = pct(replies[BARE], 50), pct(replies[BARE], 99)
    for app in (BARE, OURS):
        p50, p99 = pct(replies[app], 50), pct(replies[app], 99)
        print(
            f"{app:<12}{len(replies[app]):>5}{p50:>9.2f}{p99:>9.2f}"
            f"{p50 / bare50:>9.2f}x{p99 / bare99:>9.2f}x"
        )
    checks.append(("event → reply p50", pct(replies[OURS], 50) / bare50, 3.0))
    checks.append(("event → reply p99", pct(replies[OURS], 99) / bare99, 3.0))

    print()
    for label, ratio, target in checks:
        if ratio is None:
            print(f"{label}: not run, see the table  (target <= {target:g}x: MISSED)")
            continue
        verdict = "ok" if ratio <= target else "MISSED"
        print(f"{label}: ours/bare {ratio:5.2f}x  (target <= {target:g}x: {verdict})")
    if server_log:
        print("\nSwitchboard's warnings and errors during the run:")
        for line in server_log:
            print(f"  {line}")


def log_summary(path: Path, limit: int = 8) -> list[str]:
    """Switchboard's warning and error lines, counted by level, logger and message start."""
    counts: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split(" ", 3)  # time level logger message
        if len(parts) == 4 and parts[1] in ("warning", "error", "critical"):
            key = " ".join([parts[1], parts[2], *parts[3].split()[:6]])
            counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return [f"{n:>6} x {key}" for key, n in ranked[:limit]]


# -- driver ---------------------------------------------------------------------------------------


async def run(
    rates: Sequence[int], seconds: float, reply_count: int
) -> tuple[dict[tuple[int, str], Step], dict[str, list[float]], list[str]]:
    seed = int(sum(rates) * seconds * 4 + 50 * 4 + 200)  # all 4 apps, warm-ups, spare
    with tempfile.TemporaryDirectory(prefix="sb-bench-ack-") as name:
        tmp = Path(name)
        (tmp / "ours").mkdir()
        async with contextlib.AsyncExitStack() as stack:
            fake = await stack.enter_async_context(
                child("slack", tmp, "--seed", str(seed), "--reply-seed", str(2 * reply_count + 10))
            )
            url = ["--slack-url", fake.url]
            # Started together (Switchboard takes seconds to import); every one that came up
            # is on the stack before a failure is raised, so none is left running.
            started = await asyncio.gather(
                stack.enter_async_context(child("ours", tmp, *url, "--workdir", str(tmp / "ours"))),
                stack.enter_async_context(child("bare-ack", tmp, *url)),
                stack.enter_async_context(child("bare-reply", tmp, *url)),
                stack.enter_async_context(child("floor", tmp)),
                return_exceptions=True,
            )
            for outcome in started:
                if isinstance(outcome, BaseException):
                    raise outcome
            ours, bare, bare_reply, floor = (
                Target(url=c.url + "slack/events", pid=c.proc.pid)
                for c in started
                if isinstance(c, Child)
            )
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    timeout=30,
                    trust_env=False,  # no proxies: traffic stays on 127.0.0.1
                    limits=httpx.Limits(max_connections=512, max_keepalive_connections=512),
                )
            )
            watch = SlackWatch(fake, http)
            stack.push_async_callback(watch.close)
            print("  servers up", file=sys.stderr, flush=True)
            bench = Bench(
                http=http,
                slack=watch,
                targets={OURS: ours, OURS_ACK: ours, BARE: bare, FLOOR: floor},
            )
            steps = await ack_phase(bench, rates, seconds)
            replies = await reply_phase(bench, {OURS: ours, BARE: bare_reply}, reply_count)
        return steps, replies, log_summary(tmp / "ours.log")  # read once the servers stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rates, short steps (~25 s)")
    parser.add_argument("--seconds", type=float, help="per app per rate (default 3, quick 0.6)")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--slack-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--reply-seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        child_main(args)
        return
    rates, seconds, count = ((50, 100), 0.6, 15) if args.quick else ((50, 100, 200, 400), 3.0, 50)
    seconds = args.seconds or seconds
    started = time.perf_counter()
    steps, replies, server_log = asyncio.run(run(rates, seconds, count))
    report(steps, rates, seconds, replies, server_log)
    print(f"\n(total {time.perf_counter() - started:.0f} s, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
