"""The membership port (``bot/access.py``) against the fake Web API: what it answers for
each kind of conversation, with pagination, caching and invalidation. A wrong "member"
here would open every read rule above, so each case that must say no is tried."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.access import SlackConversationAccess
from bot.slack.client import create_web_client
from skills.context import Membership, Principal, SlackReaderError
from tests.fakes.slack_api import FakeSlackApi, slack_api_server

ANA = Principal(user_id="U0ANA")
BEN = Principal(user_id="U0BEN")


@pytest.fixture
def slack() -> Iterator[FakeSlackApi]:
    with slack_api_server() as server:
        server.add_user("U0ANA", "ana")
        server.add_user("U0BEN", "ben")
        server.add_channel("C0PUBLIC", "public", members=["U0ANA"])
        server.add_channel("C0NOBOT", "nobot", members=["U0ANA"], bot_is_member=False)
        server.add_channel("G0PRIV", "priv", members=["U0ANA"], is_private=True)
        server.add_im("U0ANA", "D0ANA")
        server.add_channel("G0MPIM", "mpdm-ana--ben", members=["U0ANA", "U0BEN"], is_private=True)
        server.channels["G0MPIM"].update({"is_mpim": True, "is_group": False})
        yield server


def port(slack: FakeSlackApi, **options: float) -> SlackConversationAccess:
    client = create_web_client(token=slack.token, base_url=slack.base_url)
    return SlackConversationAccess(client=client, page_size=2, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("conversation", "ana", "ben"),
    [
        ("C0PUBLIC", Membership("channel", True), Membership("channel", False)),
        ("C0NOBOT", Membership("channel", True), Membership("channel", False)),
        ("G0PRIV", Membership("private", True), Membership("private", False)),
        ("D0ANA", Membership("im", True), Membership("im", False)),
        ("G0MPIM", Membership("mpim", True), Membership("mpim", True)),
        ("C0NOPE", Membership("unknown", False), Membership("unknown", False)),
    ],
)
async def test_each_kind_of_conversation(
    slack: FakeSlackApi, conversation: str, ana: Membership, ben: Membership
) -> None:
    access = port(slack)
    assert await access.membership(ANA, conversation) == ana
    assert await access.membership(BEN, conversation) == ben


async def test_memberships_are_paged_and_cached_per_person(slack: FakeSlackApi) -> None:
    for index in range(7):
        slack.add_channel(f"C0MORE{index}", f"more{index}", members=["U0ANA"])
    access = port(slack)
    assert (await access.membership(ANA, "C0MORE6")).member
    pages = len(slack.calls("users.conversations"))
    assert pages >= 5  # 12 conversations, 2 a page
    assert (await access.membership(ANA, "C0PUBLIC")).member
    assert len(slack.calls("users.conversations")) == pages  # cached


async def test_a_list_cut_short_falls_back_to_the_channels_members(slack: FakeSlackApi) -> None:
    for index in range(7):
        slack.add_channel(f"C0MORE{index}", f"more{index}", members=["U0ANA"])
    access = port(slack, max_pages=1)
    assert (await access.membership(ANA, "C0MORE6")).member
    assert slack.calls("conversations.members")
    assert not (await access.membership(BEN, "G0PRIV")).member


async def test_leaving_is_seen_after_invalidation_or_the_ttl(slack: FakeSlackApi) -> None:
    now = [0.0]
    client = create_web_client(token=slack.token, base_url=slack.base_url)
    access = SlackConversationAccess(client=client, ttl=30.0, clock=lambda: now[0])
    assert (await access.membership(ANA, "G0PRIV")).member
    slack.set_members("G0PRIV", [])
    assert (await access.membership(ANA, "G0PRIV")).member  # cached
    access.forget_person("U0ANA")
    assert not (await access.membership(ANA, "G0PRIV")).member
    slack.set_members("G0PRIV", ["U0ANA"])
    now[0] += 31
    assert (await access.membership(ANA, "G0PRIV")).member
    slack.set_members("G0PRIV", [])
    access.forget_conversation("G0PRIV")
    assert not (await access.membership(ANA, "G0PRIV")).member


async def test_slack_failing_fails_closed(slack: FakeSlackApi) -> None:
    access = port(slack)
    slack.fail_next("users.conversations", status=200, error="internal_error")
    with pytest.raises(SlackReaderError):
        await access.membership(ANA, "G0PRIV")
