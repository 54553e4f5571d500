"""A turn's placeholder is never left behind: when the database blips right after it was
posted, the attempt deletes it before failing, and the retry leaves one message, the answer.

Real parts: the inbox on SQLite, the fake Slack Web API over HTTP, the worker's
``TurnRunner``. Only the conversation is a stand-in (it answers by updating the
placeholder, as ``Conversations.answer_queued`` does), and the inbox is a subclass whose
first placeholder write fails the way a lost database connection does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import OperationalError

from bot.conversations import Inbound
from bot.queueing import PayloadSealer, TurnRunner, to_payload
from bot.slack.client import create_web_client
from skills.context import ThreadRef
from storage.runqueue import InboxStore, JobInfo
from storage.sql import create_engine, session_factory, upgrade
from tests.fakes.slack_api import FakeSlackApi, slack_api_server


class BlippingInbox(InboxStore):
    """The first placeholder write fails as a dropped database connection would."""

    blips = 1

    async def set_placeholder_if_unset(self, row_id: str, ts: str) -> bool:
        if self.blips:
            self.blips -= 1
            raise OperationalError("UPDATE run_inbox", {}, ConnectionResetError("lost"))
        return await super().set_placeholder_if_unset(row_id, ts)


class AnsweringConversation:
    """Answers by replacing the placeholder, like ``Conversations.answer_queued``."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    def streams(self, _inbound: Inbound) -> bool:
        return False

    async def answer_queued(
        self,
        inbound: Inbound,
        *,
        final_attempt: bool,
        fence: Callable[[], Awaitable[None]] | None = None,
    ) -> str:
        assert inbound.placeholder_ts is not None
        await self.client.chat_update(
            channel=inbound.channel, ts=inbound.placeholder_ts, text="the answer"
        )
        return "reply"


@pytest.fixture
def slack() -> Iterator[FakeSlackApi]:
    with slack_api_server() as server:
        server.add_user("U0SAM", "sam", real_name="Sam")
        server.add_channel("C0GENERAL", "general", members=["U0SAM"])
        yield server


async def test_a_placeholder_whose_write_failed_is_deleted_and_the_retry_answers_once(
    slack: FakeSlackApi, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}"
    await upgrade(url)
    engine = create_engine(url)
    try:
        inbox = BlippingInbox(sessions=session_factory(engine))
        sealer = PayloadSealer(key=b"k" * 32)
        root = slack.add_message("C0GENERAL", "<@U0BOT> ask hello", user="U0SAM")
        inbound = Inbound(
            team="T0FAKE",
            channel="C0GENERAL",
            user="U0SAM",
            text="ask hello",
            kind="mention",
            memory=ThreadRef("T0FAKE", "C0GENERAL", root),
            reply_thread_ts=root,
            message_ts=root,
            source_ts=root,
        )
        thread = inbound.memory.thread_id
        await inbox.add(
            dedupe_key=f"msg:{root}",
            thread_key=thread,
            user_id="U0SAM",
            payload=to_payload(inbound, sealer),
        )
        client = create_web_client(token=slack.token, base_url=slack.base_url, backoff=0.01)
        runner = TurnRunner(
            conversations=cast(Any, AnsweringConversation(client)), inbox=inbox, sealer=sealer
        )

        with pytest.raises(OperationalError):
            await runner.run(thread, JobInfo(id=7, attempt=0, final_attempt=False))
        posted = [c.args for c in slack.calls("chat.postMessage")]
        deleted = [c.args for c in slack.calls("chat.delete")]
        assert len(posted) == 1 and len(deleted) == 1  # the orphan went at once

        await runner.run(thread, JobInfo(id=7, attempt=1, final_attempt=False))

        bot = [m for m in slack.messages("C0GENERAL", root) if m.get("bot_id")]
        assert [m["text"] for m in bot] == ["the answer"]
    finally:
        await engine.dispose()
