"""``SlackConversationAccess``: who is in which conversation, asked of the Web API.

The :class:`~skills.context.ConversationAccess` port behind the read rule of
``skills/access.py``. For a principal and a conversation it answers what kind of
conversation it is and whether the principal is in it:

* ``conversations.info`` gives the kind, and for a DM whose DM it is (cached for
  ``info_ttl``: a conversation does not change kind; one Slack does not show us is not
  cached, since the bot may be invited to it at any moment);
* ``users.conversations`` lists the conversations a person is in (paginated, cached per
  person for ``ttl`` seconds). With a bot token Slack lists the public channels the person
  is in and the private channels and group DMs the bot shares with them, which are all the
  conversations the bot could read anyway. For someone in more conversations than
  ``max_pages`` pages hold, a conversation not on the list is looked up in its own
  ``conversations.members`` instead.

Memberships change, so the cache is short and events invalidate it where they arrive:
``member_left_channel`` / ``member_joined_channel`` forget that person's list,
``channel_left`` / ``group_left`` (the bot was removed) forget the conversation for
everyone (``bot/listeners/events.py``). Other replicas learn within ``ttl``; the scheduler
asks uncached (``ttl=0``) when a schedule fires. Any Slack failure raises
:class:`~skills.context.SlackReaderError`, so reads fail closed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.reader import MISSING, TtlCache, api_get
from skills.context import ConversationKind, Membership, Principal, SlackReaderError

__all__ = ["SlackConversationAccess"]

log = logging.getLogger(f"switchboard.{__name__}")

CONVERSATION_TYPES: Final = "public_channel,private_channel,mpim,im"


@dataclass(frozen=True, slots=True)
class _Info:
    kind: ConversationKind
    dm_user: str | None = None


@dataclass(frozen=True, slots=True)
class _Memberships:
    conversations: frozenset[str]
    complete: bool  # False when the list was cut at max_pages


class SlackConversationAccess:
    """Membership answers over an ``AsyncWebClient`` (see the module docstring)."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        ttl: float = 30.0,
        info_ttl: float = 600.0,
        page_size: int = 200,
        max_pages: int = 25,
        cache_size: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        self._client = client
        self._page_size = page_size
        self._max_pages = max_pages
        self._people: TtlCache[str, _Memberships] = TtlCache(
            ttl=ttl, max_size=cache_size, clock=clock
        )
        self._info: TtlCache[str, _Info] = TtlCache(ttl=info_ttl, max_size=cache_size, clock=clock)

    # -- ConversationAccess -----------------------------------------------------------------

    async def membership(self, principal: Principal, conversation: str) -> Membership:
        info = await self._conversation(conversation)
        if info.kind == "unknown":
            return Membership("unknown", False)
        if info.kind == "im":
            return Membership("im", info.dm_user == principal.user_id)
        memberships = await self._memberships(principal.user_id)
        if conversation in memberships.conversations:
            return Membership(info.kind, True)
        if memberships.complete:
            return Membership(info.kind, False)
        return Membership(info.kind, await self._listed_member(conversation, principal.user_id))

    # -- invalidation (events) ----------------------------------------------------------------

    def forget_person(self, user_id: str) -> None:
        """``user_id`` joined or left a conversation: ask Slack about them again."""
        self._people.discard(user_id)

    def forget_conversation(self, conversation: str) -> None:
        """The bot left ``conversation`` (or it changed): ask Slack about it again."""
        self._info.discard(conversation)
        self._people.clear()  # any list may hold it; cheaper to refetch than to scan

    # -- Slack ------------------------------------------------------------------------------

    async def _conversation(self, conversation: str) -> _Info:
        cached = self._info.get(conversation)
        if cached is not MISSING:
            return cached
        try:
            data = await self._call("conversations.info", {"channel": conversation})
        except SlackReaderError as exc:
            if exc.error not in ("channel_not_found", "not_in_channel", "missing_scope"):
                raise
            return _Info("unknown")  # not cached: the bot may be invited any moment
        found = data.get("channel") or {}
        info = _Info(_kind(found), str(found.get("user") or "") or None)
        self._info.put(conversation, info)
        return info

    async def _memberships(self, user_id: str) -> _Memberships:
        cached = self._people.get(user_id)
        if cached is not MISSING:
            return cached
        found: set[str] = set()
        pages = 0
        complete = True
        async for page in self._pages(
            "users.conversations",
            {"user": user_id, "types": CONVERSATION_TYPES, "exclude_archived": "false"},
        ):
            found.update(str(c.get("id")) for c in page.get("channels") or [] if c.get("id"))
            pages += 1
            if pages >= self._max_pages and page.get("more"):
                complete = False
                break
        memberships = _Memberships(frozenset(found), complete)
        self._people.put(user_id, memberships)
        return memberships

    async def _listed_member(self, conversation: str, user_id: str) -> bool:
        """``user_id`` in ``conversations.members`` of ``conversation`` (stops when found)."""
        try:
            async for page in self._pages("conversations.members", {"channel": conversation}):
                if user_id in (page.get("members") or []):
                    return True
        except SlackReaderError as exc:
            if exc.error in ("channel_not_found", "not_in_channel"):
                return False
            raise
        return False

    async def _call(self, method: str, args: Mapping[str, Any]) -> Mapping[str, Any]:
        return await api_get(self._client, method, args)

    async def _pages(
        self, method: str, args: Mapping[str, Any]
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Each page of a cursor-paginated method; ``more`` marks one with a next page."""
        cursor = ""
        seen: set[str] = set()
        while True:
            page_args = {**args, "limit": self._page_size}
            if cursor:
                page_args["cursor"] = cursor
            data = await self._call(method, page_args)
            cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
            more = bool(cursor) and cursor not in seen
            yield {**data, "more": more}
            if not more:
                return
            seen.add(cursor)


def _kind(channel: Mapping[str, Any]) -> ConversationKind:
    if channel.get("is_im"):
        return "im"
    if channel.get("is_mpim"):
        return "mpim"
    if channel.get("is_private") or channel.get("is_group"):
        return "private"
    return "channel"
