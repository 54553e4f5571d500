"""Scenario fixtures: the real ASGI app, signed requests, a fake Slack Web API server.

``slack_bot`` gives a :class:`BotEnv` that can "say" things to the bot (events, slash
commands, button clicks) as Slack would — signed, over HTTP through the ASGI app — and read
what the bot sent to the fake Web API.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from redis.asyncio import Redis
from slack_sdk.signature import SignatureVerifier

from bot.app import Bot
from bot.http import create_http_app
from bot.slack.client import create_web_client
from bot.views.runs import WORKING_TEXT
from skills.models.offline import OfflineChatModel
from storage.keys import Keys
from switchboard.serve import build_bot, queue_workers
from switchboard.services import Services, open_services
from switchboard.settings import Settings
from tests.conftest import Backend
from tests.fakes.slack_api import ApiCall, FakeSlackApi, slack_api_server

SIGNING_SECRET = "test-signing-secret"
TEAM = "T0FAKE"


def sign(
    body: str, *, timestamp: int | None = None, secret: str = SIGNING_SECRET
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {"x-slack-request-timestamp": ts, "x-slack-signature": signature}


@pytest.fixture
def slack_api() -> Iterator[FakeSlackApi]:
    with slack_api_server() as server:
        server.add_user("U0SAM", "sam", real_name="Sam Whitaker", tz="America/New_York")
        server.add_user("U0CAROL", "carol", real_name="Carol Pereira", tz="Europe/Lisbon")
        server.add_user("U0DEV", "dev", real_name="Dev Raman", tz="Asia/Dubai")
        server.add_user("U0OTHERBOT", "otherbot", is_bot=True)
        server.add_channel("C0GENERAL", "general", members=["U0SAM", "U0CAROL", "U0DEV"])
        server.add_channel("C0PAYMENTS", "payments", members=["U0SAM", "U0CAROL"])
        server.add_channel("D0SAM", "sam-dm", members=["U0SAM"])
        server.add_usergroup("S0LEADS", "leads", ["U0CAROL"])
        yield server


@dataclass(frozen=True)
class Answer:
    call: ApiCall
    text: str

    @property
    def args(self) -> dict[str, Any]:
        return {**self.call.args, "text": self.text}


@dataclass
class BotEnv:
    """One bot replica: its services, its Bolt app, and an HTTP client to its ASGI app."""

    services: Services
    bot: Bot
    http: httpx.AsyncClient
    slack: FakeSlackApi
    sent: list[httpx.Response] = field(default_factory=list)

    async def post(
        self, body: str, content_type: str, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        all_headers = {"content-type": content_type, **sign(body), **(headers or {})}
        response = await self.http.post("/slack/events", content=body, headers=all_headers)
        self.sent.append(response)
        return response

    async def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
    ) -> httpx.Response:
        payload = {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": "A0FAKE",
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "event": {"event_ts": event.get("ts", "1.0"), **event},
        }
        headers = {}
        if retry_num is not None:
            headers = {"x-slack-retry-num": str(retry_num), "x-slack-retry-reason": "http_timeout"}
        return await self.post(json.dumps(payload), "application/json", headers)

    async def mention(
        self,
        text: str,
        *,
        user: str = "U0SAM",
        channel: str = "C0GENERAL",
        thread_ts: str | None = None,
        **kw: Any,
    ) -> tuple[httpx.Response, str]:
        ts = self.slack.add_message(channel, f"<@U0BOT> {text}", user=user, thread_ts=thread_ts)
        event = {
            "type": "app_mention",
            "user": user,
            "text": f"<@U0BOT> {text}",
            "ts": ts,
            "channel": channel,
            "team": TEAM,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return await self.event(event, **kw), ts

    async def message(
        self,
        text: str,
        *,
        user: str = "U0SAM",
        channel: str = "C0GENERAL",
        thread_ts: str | None = None,
        channel_type: str = "channel",
        **extra: Any,
    ) -> tuple[httpx.Response, str]:
        ts = self.slack.add_message(channel, text, user=user, thread_ts=thread_ts)
        event = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": ts,
            "channel": channel,
            "channel_type": channel_type,
            "team": TEAM,
            **extra,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return await self.event(event), ts

    async def command(
        self, text: str, *, user: str = "U0SAM", channel: str = "C0GENERAL"
    ) -> httpx.Response:
        form = {
            "token": "legacy",
            "team_id": TEAM,
            "channel_id": channel,
            "user_id": user,
            "command": "/switchboard",
            "text": text,
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
            "response_url": "http://127.0.0.1:9/response",
            "api_app_id": "A0FAKE",
        }
        return await self.post(urlencode(form), "application/x-www-form-urlencoded")

    async def action(self, payload: dict[str, Any]) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded")

    async def idle(self, timeout: float = 20.0) -> None:
        await self.bot.idle(timeout)

    def answers(self) -> list[Answer]:
        """What the bot posted, as people end up seeing it: each successful
        ``chat.postMessage`` with the text of its last ``chat.update`` (a queued turn posts
        a placeholder, then replaces it with the answer). Placeholders deleted again (a
        lost race with the busy notice) are left out."""
        final: dict[str, str] = {}
        deleted: set[str] = set()
        for call in self.slack.calls():
            ts = str(call.args.get("ts", ""))
            if call.method == "chat.update" and call.ok:
                final[ts] = str(call.args.get("text", ""))
            elif call.method == "chat.delete" and call.ok:
                deleted.add(ts)
        out = []
        for call in self.slack.calls("chat.postMessage"):
            ts = str(call.response.get("ts", ""))
            if call.ok and ts not in deleted:
                out.append(Answer(call=call, text=final.get(ts, str(call.args.get("text", "")))))
        return out

    def answer_texts(self) -> list[str]:
        return [a.text for a in self.answers()]

    def answered_replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The bot's replies in a thread, without a placeholder still saying it works."""
        return [m for m in self.replies(channel, thread_ts) if m.get("text") != WORKING_TEXT]

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.slack.messages(channel, thread_ts)
            if m.get("user") == "U0BOT" or m.get("bot_id")
        ]


ModelTable = Mapping[str, BaseChatModel] | Callable[[str], BaseChatModel]


@dataclass
class BotFactory:
    slack: FakeSlackApi
    database_url: str
    redis: Redis
    keys: Keys
    stack: contextlib.AsyncExitStack

    async def __call__(
        self,
        models: ModelTable | None = None,
        *,
        skills_env: Mapping[str, str] | None = None,
        runtime: Mapping[str, Any] | None = None,
        **settings: str,
    ) -> BotEnv:
        """A replica; ``settings`` are environment variables, ``runtime`` overrides
        :class:`~skills.runtime.RuntimeConfig` fields (e.g. an ``http_policy`` with a
        test resolver)."""
        env = {
            "DATABASE_URL": self.database_url,
            "SLACK_API_URL": self.slack.base_url,
            "SLACK_BOT_TOKEN": self.slack.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SWITCHBOARD_REDIS_PREFIX": self.keys.prefix,
            "SWITCHBOARD_PII_KEY": "test-pii-key",
            "SWITCHBOARD_WORKER_DRAIN_SECONDS": "2",  # teardown hands unfinished turns back
            "SWITCHBOARD_AUDIT_KEY": "test-audit-key-0123456789abcdef-0123",
            **settings,
        }
        config = Settings.from_env(env)
        if models is None:
            factory: Callable[[str], BaseChatModel] = lambda _n: OfflineChatModel()  # noqa: E731
        elif callable(models):
            factory = models
        else:
            table = dict(models)

            def factory(name: str) -> BaseChatModel:
                return table.get(name) or OfflineChatModel()

        services = await self.stack.enter_async_context(
            open_services(
                config,
                model_factory=factory,
                env=dict(skills_env or {}),
                redis=self.redis,
                **{"router_model": "router", "retry_initial_delay": 0.01, **(runtime or {})},
            )
        )
        client = create_web_client(
            token=self.slack.token, base_url=self.slack.base_url, backoff=0.01
        )
        bot = build_bot(services, client=client, signing_secret=SIGNING_SECRET)
        app = create_http_app(bot, signing_secret=SIGNING_SECRET, services=services)
        http = await self.stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchboard")
        )
        self.stack.push_async_callback(bot.worker.drain, 5.0)
        if config.inprocess_workers:  # the run queue's workers, as serve/socket run them
            await self.stack.enter_async_context(queue_workers(bot, services, config))
        return BotEnv(services=services, bot=bot, http=http, slack=self.slack)


@pytest.fixture
async def make_bot(
    backend: Backend, slack_api: FakeSlackApi, keys: Keys
) -> AsyncIterator[BotFactory]:
    """Builds bot replicas sharing one database, one Redis and one fake Slack."""
    async with contextlib.AsyncExitStack() as stack:
        yield BotFactory(
            slack=slack_api,
            database_url=backend.database_url,
            redis=backend.redis,
            keys=keys,
            stack=stack,
        )


@pytest.fixture
async def slack_bot(make_bot: BotFactory) -> BotEnv:
    return await make_bot()
