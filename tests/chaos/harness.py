"""A production-shaped deployment on this machine: one receiver (in the test process,
``SWITCHBOARD_INPROCESS_WORKERS=0``), ``switchboard worker`` subprocesses, PostgreSQL,
Redis, the fake Slack Web API and the fake OpenAI-compatible model server.

Tests send signed mentions through the receiver's real HTTP app, kill or stop workers with
real signals, and count what people see in the fake workspace: answers per message,
duplicates, placeholders left unanswered.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bot.http import create_http_app
from bot.slack.client import create_web_client
from bot.views.runs import WORKING_TEXT
from switchboard.serve import build_bot
from switchboard.services import open_services
from switchboard.settings import Settings
from tests.bot.conftest import SIGNING_SECRET, TEAM, sign
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_api import FakeSlackApi

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker {name} exited: {worker.output()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    return worker
            time.sleep(0.1)
        raise RuntimeError(f"worker {name} did not come up: {worker.output()[-2000:]}")

    async def mention(self, text: str, *, channel: str = "C0GENERAL") -> tuple[int, str]:
        assert self.http is not None
        ts = self.slack.add_message(channel, f"<@U0BOT> {text}", user="U0SAM")
        payload = {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": "A0FAKE",
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": "U0SAM",
                "text": f"<@U0BOT> {text}",
                "ts": ts,
                "event_ts": ts,
                "channel": channel,
                "team": TEAM,
            },
        }
        body = json.dumps(payload)
        headers = {"content-type": "application/json", **sign(body)}
        response = await self.http.post("/slack/events", content=body, headers=headers)
        self.sent[ts] = text
        return response.status_code, ts

    def count(self, channel: str = "C0GENERAL") -> Counts:
        """What people see: per message asked, the bot's messages in its thread."""
        answered = duplicates = unanswered = wrong = 0
        for ts, text in self.sent.items():
            bot = [
                m
                for m in self.slack.messages(channel, ts)
                if m.get("user") == "U0BOT" or m.get("bot_id")
            ]
            finals = [m for m in bot if m.get("text") != WORKING_TEXT]
            if not finals:
                unanswered += 1
                continue
            answered += 1
            duplicates += len(bot) - 1
            if not all(text.removeprefix("ask ") in str(m.get("text")) for m in finals):
                wrong += 1
        return Counts(len(self.sent), answered, duplicates, unanswered, wrong)

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.signal(signal.SIGKILL)
                worker.wait(10)


@dataclass(frozen=True)
class Counts:
    sent: int
    answered: int
    duplicates: int
    unanswered: int
    wrong: int

    def __str__(self) -> str:
        return (
            f"sent={self.sent} answered={self.answered} duplicates={self.duplicates} "
            f"unanswered={self.unanswered} mismatched={self.wrong}"
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
