"""``WebApiSlackReader``: the read-only :class:`~skills.context.SlackReader` over the Web API.

Tools and the digest skill read threads, channel history, people and usergroups through it.
Pages are followed with cursors, people and usergroups are cached briefly in process (so a
1,000-message digest costs one ``users.info`` per author, not per message), and every Slack
failure arrives as :class:`~skills.context.SlackReaderError` naming the method and Slack's
error code, never as a slack_sdk or aiohttp exception.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import Any, Final, Generic, Literal, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from skills.context import SlackMessage, SlackReaderError, SlackUser

__all__ = ["MISSING", "TtlCache", "WebApiSlackReader", "api_get"]

log = logging.getLogger(f"switchboard.{__name__}")

K = TypeVar("K")
V = TypeVar("V")

# Housekeeping messages that say nothing a reader of the conversation needs.
_NOISE_SUBTYPES = frozenset(
    {
        "channel_join",
        "channel_leave",
        "channel_topic",
        "channel_purpose",
        "channel_name",
        "channel_archive",
        "channel_unarchive",
        "group_join",
        "group_leave",
        "group_topic",
        "group_purpose",
        "group_name",
        "pinned_item",
        "unpinned_item",
        "bot_add",
        "bot_remove",
    }
)


class _Missing(enum.Enum):
    MISSING = enum.auto()


MISSING: Final = _Missing.MISSING


class TtlCache(Generic[K, V]):
    """A small LRU cache whose entries expire ``ttl`` seconds after they were stored."""

    def __init__(
        self, *, ttl: float, max_size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | Literal[_Missing.MISSING]:
        """The cached value, or ``MISSING`` (cached values may themselves be None)."""
        item = self._items.get(key)
        if item is None:
            return MISSING
        expires, value = item
        if expires <= self._clock():
            del self._items[key]
            return MISSING
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = (self._clock() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)

    def discard(self, key: K) -> None:
        """Forget ``key`` (an invalidation: the next read asks Slack again)."""
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class WebApiSlackReader:
    """Reads Slack through an ``AsyncWebClient`` (build it with ``create_web_client``).

    ``page_size`` is the ``limit`` asked of paginated methods (Slack recommends 200 or less);
    ``user_ttl`` / ``usergroup_ttl`` are cache lifetimes in seconds; ``cache_size`` bounds
    each cache; ``lookups`` bounds concurrent ``users.info`` calls when resolving names.
    """

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        page_size: int = 200,
        user_ttl: float = 300.0,
        usergroup_ttl: float = 60.0,
        channel_ttl: float = 300.0,
        cache_size: int = 1000,
        lookups: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        self._client = client
        self._page_size = page_size
        self._users: TtlCache[str, SlackUser | None] = TtlCache(
            ttl=user_ttl, max_size=cache_size, clock=clock
        )
        self._usergroups: TtlCache[str, frozenset[str]] = TtlCache(
            ttl=usergroup_ttl, max_size=cache_size, clock=clock
        )
        self._channels: TtlCache[str, str | None] = TtlCache(
            ttl=channel_ttl, max_size=cache_size, clock=clock
        )
        self._lookups = asyncio.Semaphore(lookups)
        self._workspace: tuple[str | None, str | None] | None = None

    # -- SlackReader ------------------------------------------------------------------------

    async def thread_messages(
        self, channel: str, thread_ts: str, *, limit: int = 200
    ) -> Sequence[SlackMessage]:
        """The root and the latest ``limit - 1`` replies of a thread, oldest first.

        When a thread is longer than ``limit`` the newest replies are kept: the bot is
        usually asked about a thread at its end.
        """
        if limit < 1:
            return []
        root: dict[str, Any] | None = None
        replies: deque[dict[str, Any]] = deque(maxlen=max(limit - 1, 0))
        seen: set[str] = set()
        async for message in self._pages(
            "conversations.replies", {"channel": channel, "ts": thread_ts}
        ):
            ts = str(message.get("ts", ""))
            if not ts or ts in seen:  # the root may come again on every page
                continue
            seen.add(ts)
            if ts == thread_ts or (root is None and message.get("thread_ts") in (None, ts)):
                root = message
            elif limit > 1:
                replies.append(message)
        raw = ([root] if root is not None else []) + list(replies)
        return await self._to_messages(raw)

    async def channel_messages(
        self, channel: str, *, oldest: datetime, latest: datetime | None = None, limit: int = 1000
    ) -> Sequence[SlackMessage]:
        """Top-level messages with ``oldest <= time < latest``, oldest first.

        Slack pages newest first, so when the window holds more than ``limit`` messages the
        newest ``limit`` are returned. Join/leave/topic notices are left out.
        """
        if limit < 1:
            return []
        # Slack's bounds are both exclusive unless `inclusive`; step one microsecond back
        # from `oldest` so back-to-back windows neither lose nor repeat a message.
        args: dict[str, Any] = {"channel": channel, "oldest": _slack_ts(oldest, -1)}
        if latest is not None:
            args["latest"] = _slack_ts(latest)
        newest_first: list[dict[str, Any]] = []
        pages = self._pages("conversations.history", args, wanted=lambda: limit - len(newest_first))
        async with aclosing(pages):
            async for message in pages:
                if message.get("subtype") in _NOISE_SUBTYPES:
                    continue
                newest_first.append(message)
                if len(newest_first) >= limit:
                    break
        newest_first.sort(key=lambda m: float(m.get("ts", 0)), reverse=True)
        return await self._to_messages(reversed(newest_first))

    async def user_info(self, user_id: str) -> SlackUser | None:
        """The person (or bot user) with this id; None when Slack does not know it."""
        cached = self._users.get(user_id)
        if cached is not MISSING:
            return cached
        async with self._lookups:
            cached = self._users.get(user_id)  # another task may have fetched it meanwhile
            if cached is not MISSING:
                return cached
            try:
                data = await self._call("users.info", {"user": user_id})
            except SlackReaderError as exc:
                if exc.error not in ("user_not_found", "users_not_found"):
                    raise
                user = None
            else:
                user = _to_user(data.get("user") or {})
            self._users.put(user_id, user)
            return user

    async def usergroup_members(self, usergroup_id: str, *, fresh: bool = False) -> frozenset[str]:
        """User ids in the usergroup (``S…``); cached for ``usergroup_ttl`` seconds.

        ``fresh`` asks Slack whatever is cached (and refreshes the cache): authorization
        decisions use it, so a person removed from a group loses its rights at once.
        """
        cached = MISSING if fresh else self._usergroups.get(usergroup_id)
        if cached is not MISSING:
            return cached
        data = await self._call("usergroups.users.list", {"usergroup": usergroup_id})
        members = frozenset(str(u) for u in data.get("users") or [])
        self._usergroups.put(usergroup_id, members)
        return members

    async def channel_name(self, channel: str) -> str | None:
        """The channel's name without ``#``; None for DMs and channels Slack does not know."""
        cached = self._channels.get(channel)
        if cached is not MISSING:
            return cached
        try:
            data = await self._call("conversations.info", {"channel": channel})
        except SlackReaderError as exc:
            if exc.error != "channel_not_found":
                raise
            name = None
        else:
            info = data.get("channel") or {}
            name = None if info.get("is_im") else info.get("name") or None
        self._channels.put(channel, name)
        return name

    async def workspace(self) -> tuple[str | None, str | None]:
        """(team id, Enterprise Grid id) of the installation, from ``auth.test`` (once)."""
        if self._workspace is None:
            data = await self._call("auth.test", {})
            self._workspace = (
                str(data["team_id"]) if data.get("team_id") else None,
                str(data["enterprise_id"]) if data.get("enterprise_id") else None,
            )
        return self._workspace

    # -- plumbing ---------------------------------------------------------------------------

    async def _call(self, method: str, args: Mapping[str, Any]) -> Mapping[str, Any]:
        """One GET call; every failure becomes ``SlackReaderError(method, code)``."""
        return await api_get(self._client, method, args)

    async def _pages(
        self, method: str, args: Mapping[str, Any], *, wanted: Callable[[], int] | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Messages of every page, following ``response_metadata.next_cursor``.

        ``wanted`` says how many more messages the caller needs, so the last page asks for
        no more than that and no page is fetched once it is zero.
        """
        cursor = ""
        seen_cursors: set[str] = set()
        while True:
            need = self._page_size if wanted is None else wanted()
            if need <= 0:
                return
            page_args = {**args, "limit": min(self._page_size, need)}
            if cursor:
                page_args["cursor"] = cursor
            data = await self._call(method, page_args)
            for message in data.get("messages") or []:
                if isinstance(message, dict):
                    yield message
            metadata = data.get("response_metadata") or {}
            cursor = str(metadata.get("next_cursor") or "")
            if not cursor or cursor in seen_cursors:  # a repeated cursor would loop forever
                return
            seen_cursors.add(cursor)

    async def _to_messages(self, raw: Iterable[dict[str, Any]]) -> list[SlackMessage]:
        items = list(raw)
        user_ids = sorted({str(m["user"]) for m in items if m.get("user")})
        users = await asyncio.gather(*(self._user_or_none(u) for u in user_ids))
        names = {u.id: u.name for u in users if u is not None}
        return [_to_message(m, names) for m in items]

    async def _user_or_none(self, user_id: str) -> SlackUser | None:
        """A name is a nicety: failing to look one up must not fail the whole read."""
        try:
            return await self.user_info(user_id)
        except SlackReaderError as exc:
            log.warning(
                "could not resolve a Slack user name",
                extra={"user": user_id, "error": exc.error},
            )
            return None


async def api_get(
    client: AsyncWebClient, method: str, args: Mapping[str, Any]
) -> Mapping[str, Any]:
    """One GET call of a read method; every failure becomes ``SlackReaderError(method, code)``
    (never a slack_sdk or aiohttp exception)."""
    try:
        response = await client.api_call(method, http_verb="GET", params=dict(args))
    except SlackApiError as exc:
        raise SlackReaderError(method, _error_code(exc)) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SlackReaderError(method, f"connection_error:{type(exc).__name__}") from exc
    data = response.data
    if not isinstance(data, Mapping):
        raise SlackReaderError(method, "unexpected_response")
    return data


def _slack_ts(moment: datetime, microseconds: int = 0) -> str:
    """A Slack timestamp (``seconds.micros``) for a datetime; naive means UTC."""
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    moment += timedelta(microseconds=microseconds)
    whole = int(moment.timestamp())
    return f"{whole}.{moment.microsecond:06d}"


def _error_code(exc: SlackApiError) -> str:
    response = exc.response
    data = getattr(response, "data", None)
    if isinstance(data, Mapping) and data.get("error"):
        return str(data["error"])
    status = getattr(response, "status_code", None)
    return f"http_{status}" if status else "unknown_error"


def _to_user(data: Mapping[str, Any]) -> SlackUser:
    profile = data.get("profile") or {}
    name = (
        profile.get("display_name")
        or data.get("real_name")
        or profile.get("real_name")
        or data.get("name")
        or str(data.get("id", ""))
    )
    enterprise = data.get("enterprise_user") or {}
    return SlackUser(
        id=str(data.get("id", "")),
        name=str(name),
        real_name=data.get("real_name") or profile.get("real_name") or None,
        tz=data.get("tz") or None,
        title=profile.get("title") or None,
        is_bot=bool(data.get("is_bot")),
        team_id=str(data.get("team_id") or profile.get("team") or "") or None,
        enterprise_id=str(enterprise.get("enterprise_id") or "") or None,
        is_restricted=bool(data.get("is_restricted")),
        is_ultra_restricted=bool(data.get("is_ultra_restricted")),
        is_stranger=bool(data.get("is_stranger")),
    )


def _to_message(message: Mapping[str, Any], names: Mapping[str, str]) -> SlackMessage:
    user = message.get("user")
    bot_profile = message.get("bot_profile") or {}
    user_name = names.get(str(user)) if user else None
    if user_name is None:
        user_name = message.get("username") or bot_profile.get("name") or None
    thread_ts = message.get("thread_ts")
    return SlackMessage(
        ts=str(message["ts"]),
        user=str(user) if user else None,
        text=str(message.get("text") or ""),
        user_name=user_name,
        thread_ts=str(thread_ts) if thread_ts else None,
        reply_count=int(message.get("reply_count") or 0),
        bot=bool(message.get("bot_id")) or message.get("subtype") == "bot_message",
    )
