"""A Slack workspace emulator: workspace state plus the Web API methods the bot uses.

The bot's ``AsyncWebClient`` reaches it over HTTP (``SLACK_API_URL=http://…/api/``) and gets
the answers Slack would give, including the failures:

- the bot token (``not_authed`` / ``invalid_auth``);
- unknown channels, users, usergroups, messages, threads and views (``channel_not_found``,
  ``user_not_found``, ``no_such_subteam``, ``message_not_found``, ``thread_not_found``,
  ``not_found``), the bot outside a channel (``not_in_channel``);
- a message without text or blocks (``no_text``), over-long text (``msg_too_long``);
- Block Kit parsed and checked with ``slack_sdk.models`` (``invalid_blocks`` with the
  reasons in ``errors``, as Slack lists them), views likewise (``invalid_arguments``);
- a per-channel rate limit on message writes: a token bucket per channel, answered with
  HTTP 429, ``Retry-After`` and ``ratelimited`` when a channel's burst is spent;
- trigger ids that expire after three seconds (``expired_trigger_id``), response URLs that
  accept five uses in thirty minutes;
- who is in which conversation (``conversations.members``, ``users.conversations``,
  ``conversations.info`` with ``is_im`` and the DM's ``user``) and guest and Slack Connect
  users (``is_restricted``, ``is_ultra_restricted``, another ``team_id``), which the bot
  uses to read only what the person asking may read.

State changes are announced to ``listeners`` as :class:`Change` values (the page's live
updates), and every Web API call to ``call_listeners`` as :class:`ApiCall` values (record).
Everything runs on one event loop; no method awaits, so no lock is needed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = [
    "ApiCall",
    "Change",
    "Emulator",
    "RateLimit",
    "SlackError",
    "check_blocks",
    "dm_channel_id",
    "routes",
]

log = logging.getLogger(f"switchboard.{__name__}")

JSON_FIELDS = ("blocks", "attachments", "view", "prompts", "chunks", "metadata")
MAX_TEXT = 40_000
MAX_MARKDOWN_TEXT = 12_000
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
TRIGGER_TTL = 3.0
RESPONSE_URL_TTL = 30 * 60.0
RESPONSE_URL_USES = 5

#: Methods that write to a channel and so count against its rate limit.
RATE_LIMITED = frozenset(
    {
        "chat.postMessage",
        "chat.update",
        "chat.delete",
        "chat.postEphemeral",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    }
)


class SlackError(Exception):
    """A Web API error answer (``{"ok": false, "error": code, …}``)."""

    def __init__(self, error: str, **extra: Any) -> None:
        self.error = error
        self.extra = extra
        super().__init__(error)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket per channel: ``burst`` writes at once, refilled at ``per_second``.

    Slack allows about one message a second per channel with short bursts.
    """

    per_second: float = 1.0
    burst: int = 20


@dataclass(frozen=True, slots=True)
class Change:
    """Something the page should show. ``user`` set = only that person sees it."""

    kind: str
    data: dict[str, Any]
    user: str | None = None


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One Web API call the bot made and what it was answered."""

    method: str
    args: dict[str, Any]
    status: int
    response: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        error = self.response.get("error")
        return str(error) if error else None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(slots=True)
class _ResponseUrl:
    user: str
    channel: str
    expires: float
    message_ts: str | None = None
    ephemeral: bool = False
    uses: int = 0


@dataclass(slots=True)
class _Trigger:
    user: str
    expires: float


def dm_channel_id(user_id: str) -> str:
    """The id of the DM between a person and the bot (``U0SAM`` → ``D0SAM``)."""
    return "D" + user_id.removeprefix("U").removeprefix("W")


class Emulator:
    """Workspace state and Web API. ``clock`` gives epoch seconds (ts, limits, expiry)."""

    def __init__(
        self,
        *,
        token: str,
        team_id: str = "T0PAYCO",
        team_name: str = "PayCo",
        bot_user_id: str = "U0SWITCH",
        bot_id: str = "B0SWITCH",
        app_id: str = "A0SWITCH",
        rate_limit: RateLimit | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.team_id = team_id
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.rate_limit = rate_limit or RateLimit()
        self._clock = clock
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.ephemeral: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, str] = {}
        self.open_modals: dict[str, str] = {}  # user → view id
        self.assistant_threads: dict[tuple[str, str], dict[str, Any]] = {}
        self.listeners: list[Callable[[Change], None]] = []
        self.call_listeners: list[Callable[[ApiCall], None]] = []
        self.created: list[str] = []  # message ts and view ids, in creation order (replay)
        self._buckets: dict[str, _Bucket] = {}
        self._triggers: dict[str, _Trigger] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._last_ts = 0.0
        self._counter = 0
        self.add_user(bot_user_id, "switchboard", real_name="Switchboard", is_bot=True)

    # -- seeding ------------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        real_name: str | None = None,
        tz: str | None = None,
        title: str = "",
        is_bot: bool = False,
        team_id: str | None = None,
        is_restricted: bool = False,
        is_ultra_restricted: bool = False,
    ) -> dict[str, Any]:
        """A person or bot; another ``team_id`` makes a Slack Connect user, ``is_restricted``
        / ``is_ultra_restricted`` a multi- / single-channel guest."""
        profile: dict[str, Any] = {
            "real_name": real_name or name,
            "display_name": name,
            "title": title,
        }
        if is_bot and user_id == self.bot_user_id:
            profile["bot_id"] = self.bot_id
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": team_id or self.team_id,
            "name": name,
            "real_name": real_name or name,
            "deleted": False,
            "is_bot": is_bot,
            "is_restricted": is_restricted or is_ultra_restricted,
            "is_ultra_restricted": is_ultra_restricted,
            "tz": tz or "UTC",
            "profile": profile,
        }
        self.users[user_id] = user
        if not is_bot:
            self._ensure_dm(user_id)
        return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        topic: str = "",
        members: list[str] | tuple[str, ...] = (),
        is_private: bool = False,
    ) -> dict[str, Any]:
        channel = {
            "id": channel_id,
            "name": name,
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private,
            "is_archived": False,
            "created": 1_600_000_000,
            "topic": {"value": topic},
            "members": list(dict.fromkeys(members)),
        }
        self.channels[channel_id] = channel
        self.messages.setdefault(channel_id, [])
        return channel

    def add_usergroup(
        self, usergroup_id: str, handle: str, name: str, users: list[str] | tuple[str, ...] = ()
    ) -> dict[str, Any]:
        group = {
            "id": usergroup_id,
            "team_id": self.team_id,
            "handle": handle,
            "name": name,
            "users": list(users),
        }
        self.usergroups[usergroup_id] = group
        return group

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str | None,
        ts: str | None = None,
        thread_ts: str | None = None,
        join: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        """Store a message someone wrote (seed data or a person on the page) and return it.

        A person must be a member of the channel (``not_in_channel``) unless ``join``
        (seeding) makes them one; a reply needs its root (``thread_not_found``).
        """
        found = self._channel(channel)
        if user is not None and user not in self.users:
            raise SlackError("user_not_found")
        if user is not None and user not in found["members"]:
            if not join:
                raise SlackError("not_in_channel")
            found["members"].append(user)
        if thread_ts and self._find(found["id"], thread_ts) is None:
            raise SlackError("thread_not_found")
        message: dict[str, Any] = {
            "type": "message",
            "ts": ts or self._new_ts(),
            "text": text,
            "team": self.team_id,
            **extra,
        }
        if user is not None:
            message["user"] = user
            if self.users[user]["is_bot"] and user != self.bot_user_id:
                message["bot_id"] = "B" + user.removeprefix("U")
        self._insert(found["id"], message, thread_ts)
        return copy.deepcopy(message)

    # -- page and sandbox helpers ---------------------------------------------------------

    def new_trigger(self, user: str) -> str:
        """A ``trigger_id`` for an interaction by ``user``, valid for three seconds."""
        self._counter += 1
        trigger = f"{self._counter}.{int(self._clock())}.{secrets.token_hex(8)}"
        self._triggers[trigger] = _Trigger(user=user, expires=self._clock() + TRIGGER_TTL)
        return trigger

    def new_response_url_token(
        self, *, user: str, channel: str, message_ts: str | None = None, ephemeral: bool = False
    ) -> str:
        """A token for a ``response_url`` (the caller builds the URL around it)."""
        token = secrets.token_urlsafe(16)
        self._response_urls[token] = _ResponseUrl(
            user=user,
            channel=channel,
            expires=self._clock() + RESPONSE_URL_TTL,
            message_ts=message_ts,
            ephemeral=ephemeral,
        )
        return token

    def show_ephemeral(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> dict[str, Any]:
        """Show ``user`` a message only they see (acks of slash commands use this too)."""
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "ephemeral",
            "channel": channel,
            "user_visible": user,
            "ts": self._new_ts(),
            "text": text,
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
        }
        if blocks:
            message["blocks"] = blocks
        if thread_ts:
            message["thread_ts"] = thread_ts
        self.ephemeral.append(message)
        self.created.append(message["ts"])
        self._emit("ephemeral", {"channel": channel, "message": message}, user=user)
        return message

    def new_action_ts(self) -> str:
        return f"{self._clock():.6f}"

    def replace_modal(self, user: str, view_id: str, view: dict[str, Any]) -> None:
        """A ``response_action: update`` answer: the open modal shows ``view`` instead."""
        checked = check_view(view, expected_type="modal")
        stored = self._store_view(view_id, checked, user_id=user)
        self.open_modals[user] = view_id
        self._emit("modal", {"view": stored}, user=user)

    def close_modal(self, user: str) -> None:
        self.open_modals.pop(user, None)
        self._emit("modal_closed", {}, user=user)

    def respond(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """What ``POST response_url`` does: ephemeral/in-channel answers, replace, delete."""
        hook = self._response_urls.get(token)
        if hook is None or hook.expires < self._clock():
            raise SlackError("expired_url")
        if hook.uses >= RESPONSE_URL_USES:
            raise SlackError("used_url")
        hook.uses += 1
        text = str(body.get("text") or "")
        blocks = body.get("blocks")
        if blocks is not None:
            blocks = check_blocks(blocks, limit=MAX_MESSAGE_BLOCKS)
        if _truthy(body.get("delete_original")) and hook.message_ts:
            self._delete_original(hook)
            return {}
        if not text and not blocks:
            raise SlackError("no_text")
        if _truthy(body.get("replace_original")) and hook.message_ts:
            self._replace_original(hook, text, blocks)
            return {}
        thread_ts = body.get("thread_ts")
        if body.get("response_type") == "in_channel":
            self._post_as_bot(hook.channel, text, blocks, str(thread_ts) if thread_ts else None)
        else:
            self.show_ephemeral(
                channel=hook.channel,
                user=hook.user,
                text=text,
                blocks=blocks,
                thread_ts=str(thread_ts) if thread_ts else None,
            )
        return {}

    def hook(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST response_url``: :meth:`respond`, answered and announced like a call."""
        try:
            self.respond(token, body)
            answer: dict[str, Any] = {"ok": True}
        except SlackError as exc:
            answer = {"ok": False, "error": exc.error, **exc.extra}
        call = ApiCall(method="response_url", args=dict(body), status=200, response=answer)
        for listener in list(self.call_listeners):
            listener(call)
        return answer

    def find_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        found = self._find(channel, ts)
        if found is None:
            found = next(
                (m for m in self.ephemeral if m["channel"] == channel and m["ts"] == ts), None
            )
        return copy.deepcopy(found) if found else None

    def visible_ephemeral(self, user: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(m) for m in self.ephemeral if m["user_visible"] == user]

    def home_view(self, user: str) -> dict[str, Any] | None:
        view_id = self.home_views.get(user)
        return copy.deepcopy(self.views[view_id]) if view_id else None

    def open_modal(self, user: str) -> dict[str, Any] | None:
        view_id = self.open_modals.get(user)
        return copy.deepcopy(self.views[view_id]) if view_id else None

    def dm_of(self, user: str) -> str:
        return str(self._ensure_dm(user)["id"])

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain JSON-able data (saved between runs; see ``load``)."""
        return copy.deepcopy(
            {
                "team_id": self.team_id,
                "team_name": self.team_name,
                "users": list(self.users.values()),
                "channels": list(self.channels.values()),
                "usergroups": list(self.usergroups.values()),
                "messages": self.messages,
                "views": self.views,
                "home_views": self.home_views,
                "assistant_threads": [
                    {"channel": c, "thread_ts": t, **state}
                    for (c, t), state in self.assistant_threads.items()
                ],
            }
        )

    def load(self, data: Mapping[str, Any]) -> None:
        """Replace the state with a :meth:`snapshot`."""
        data = copy.deepcopy(dict(data))
        self.team_id = str(data.get("team_id") or self.team_id)
        self.team_name = str(data.get("team_name") or self.team_name)
        self.users = {u["id"]: u for u in data.get("users", [])}
        self.channels = {c["id"]: c for c in data.get("channels", [])}
        self.usergroups = {g["id"]: g for g in data.get("usergroups", [])}
        self.messages = {k: list(v) for k, v in (data.get("messages") or {}).items()}
        self.views = dict(data.get("views") or {})
        self.home_views = dict(data.get("home_views") or {})
        self.assistant_threads = {}
        for state in data.get("assistant_threads") or []:
            key = (str(state.pop("channel")), str(state.pop("thread_ts")))
            self.assistant_threads[key] = state
        for channel in self.channels:
            self.messages.setdefault(channel, [])
        last = [float(m["ts"]) for ms in self.messages.values() for m in ms]
        self._last_ts = max([self._last_ts, *last])

    # -- the Web API ----------------------------------------------------------------------

    def call(
        self, method: str, args: Mapping[str, Any], token: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Answer one Web API call: (HTTP status, extra headers, JSON body)."""
        args = dict(args)
        status, headers, body = self._answer(method, args, token)
        call = ApiCall(method=method, args=args, status=status, response=copy.deepcopy(body))
        for listener in list(self.call_listeners):
            listener(call)
        return status, headers, body

    def _answer(
        self, method: str, args: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if not token:
            return 200, {}, {"ok": False, "error": "not_authed"}
        if token != self.token:
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        handler = self._methods().get(method)
        if handler is None:
            return 200, {}, {"ok": False, "error": "unknown_method"}
        try:
            decoded = _decode_json_fields(args)
            if method in RATE_LIMITED:
                wait = self._spend(decoded.get("channel"))
                if wait is not None:
                    return 429, {"Retry-After": str(wait)}, {"ok": False, "error": "ratelimited"}
            payload = handler(decoded)
        except SlackError as exc:
            return 200, {}, {"ok": False, "error": exc.error, **exc.extra}
        return 200, {}, {"ok": True, **copy.deepcopy(payload)}

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "api.test": lambda args: {"args": args},
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "conversations.open": self._conversations_open,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "users.conversations": self._users_conversations,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "assistant.threads.setStatus": self._assistant_set_status,
            "assistant.threads.setSuggestedPrompts": self._assistant_set_prompts,
            "assistant.threads.setTitle": self._assistant_set_title,
        }

    def _spend(self, channel_arg: Any) -> int | None:
        """Take one write from the channel's bucket; the seconds to wait when it is empty."""
        limit = self.rate_limit
        key = str(channel_arg or "")
        if key in self.users:
            key = dm_channel_id(key)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(limit.burst), updated=now)
        bucket.tokens = min(
            float(limit.burst), bucket.tokens + (now - bucket.updated) * limit.per_second
        )
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / limit.per_second))

    # -- methods --------------------------------------------------------------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "http://sandbox.localhost/",
            "team": self.team_name,
            "user": "switchboard",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_for_post(args.get("channel"))
        content = _message_content(args)
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        message = self._post_as_bot(
            channel["id"], content["text"], content.get("blocks"), thread_ts, store=False
        )
        for key in ("metadata", "username", "icon_emoji", "icon_url"):
            if key in args:
                message[key] = args[key]
        if thread_ts and _truthy(args.get("reply_broadcast")):
            message["subtype"] = "thread_broadcast"
        self._insert(channel["id"], message, thread_ts)
        return {"channel": channel["id"], "ts": message["ts"], "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        message = self._own_message(channel["id"], args.get("ts"), "cant_update_message")
        content = _message_content(args, allow_empty_blocks=True)
        message.pop("blocks", None)
        message.update(content)
        message["edited"] = {"user": self.bot_user_id, "ts": self._new_ts()}
        self._emit("message", {"channel": channel["id"], "message": message})
        return {
            "channel": channel["id"],
            "ts": message["ts"],
            "text": message["text"],
            "message": message,
        }

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        message = self._own_message(channel["id"], args.get("ts"), "cant_delete_message")
        self._remove(channel["id"], message)
        return {"channel": channel["id"], "ts": message["ts"]}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_for_post(args.get("channel"))
        user = args.get("user")
        if not user or user not in self.users:
            raise SlackError("user_not_found")
        if user not in channel["members"]:
            raise SlackError("user_not_in_channel")
        content = _message_content(args)
        message = self.show_ephemeral(
            channel=channel["id"],
            user=str(user),
            text=content["text"],
            blocks=content.get("blocks"),
            thread_ts=str(args["thread_ts"]) if args.get("thread_ts") else None,
        )
        return {"message_ts": message["ts"]}

    def _chat_start_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_for_post(args.get("channel"))
        thread_ts = args.get("thread_ts")
        if not thread_ts:
            raise SlackError("invalid_arguments")
        if self._find(channel["id"], thread_ts) is None:
            raise SlackError("thread_not_found")
        text = str(args.get("markdown_text") or "") + _chunk_text(args.get("chunks"))
        _check_length(text, MAX_MARKDOWN_TEXT)
        message = self._post_as_bot(channel["id"], text, None, str(thread_ts), store=False)
        message["streaming"] = True
        self._insert(channel["id"], message, str(thread_ts))
        return {"channel": channel["id"], "ts": message["ts"]}

    def _chat_append_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, message = self._streaming_message(args)
        addition = str(args.get("markdown_text") or "") + _chunk_text(args.get("chunks"))
        if not addition:
            raise SlackError("no_text")
        _check_length(message["text"] + addition, MAX_MARKDOWN_TEXT)
        message["text"] += addition
        self._emit("message", {"channel": channel["id"], "message": message})
        return {"channel": channel["id"], "ts": message["ts"]}

    def _chat_stop_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, message = self._streaming_message(args)
        message["text"] += str(args.get("markdown_text") or "") + _chunk_text(args.get("chunks"))
        if args.get("blocks"):
            message["blocks"] = check_blocks(args["blocks"], limit=MAX_MESSAGE_BLOCKS)
        message["streaming"] = False
        self._emit("message", {"channel": channel["id"], "message": message})
        return {"channel": channel["id"], "ts": message["ts"], "message": message}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._readable_channel(args.get("channel"))
        limit = _limit(args.get("limit"), default=100, maximum=999)
        inclusive = _truthy(args.get("inclusive"))
        oldest = _ts_arg(args.get("oldest"), 0.0)
        latest = _ts_arg(args.get("latest"), math.inf)
        before = _decode_cursor(args.get("cursor"))
        window = [
            m
            for m in self.messages[channel["id"]]
            if _is_top_level(m) and _in_window(m["ts"], oldest, latest, inclusive)
        ]
        window.sort(key=lambda m: float(m["ts"]), reverse=True)
        if before is not None:
            window = [m for m in window if float(m["ts"]) < before]
        page, rest = window[:limit], window[limit:]
        return {
            "messages": page,
            "has_more": bool(rest),
            "pin_count": 0,
            "response_metadata": {"next_cursor": _encode_cursor(page[-1]["ts"]) if rest else ""},
        }

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._readable_channel(args.get("channel"))
        ts = args.get("ts")
        if not ts:
            raise SlackError("invalid_arguments")
        found = self._find(channel["id"], ts)
        if found is None:
            raise SlackError("thread_not_found")
        root_ts = found.get("thread_ts") or found["ts"]
        root = self._find(channel["id"], root_ts) or found
        limit = _limit(args.get("limit"), default=1000, maximum=1000)
        inclusive = _truthy(args.get("inclusive"))
        oldest = _ts_arg(args.get("oldest"), 0.0)
        latest = _ts_arg(args.get("latest"), math.inf)
        after = _decode_cursor(args.get("cursor"))
        replies = [
            m
            for m in self.messages[channel["id"]]
            if m.get("thread_ts") == root_ts
            and m["ts"] != root_ts
            and _in_window(m["ts"], oldest, latest, inclusive)
        ]
        if after is not None:
            replies = [m for m in replies if float(m["ts"]) > after]
        take = max(1, limit - 1)
        page, rest = replies[:take], replies[take:]
        return {
            "messages": [root, *page],
            "has_more": bool(rest),
            "response_metadata": {"next_cursor": _encode_cursor(page[-1]["ts"]) if rest else ""},
        }

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        public = {k: v for k, v in channel.items() if k != "members"}
        public["is_member"] = self.bot_user_id in channel["members"]
        public["num_members"] = len(channel["members"])
        return {"channel": public}

    def _conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._readable_channel(args.get("channel"))
        page, cursor = _offset_page(list(channel["members"]), args)
        return {"members": page, "response_metadata": {"next_cursor": cursor}}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel"):
            return {"channel": {"id": self._channel(args["channel"])["id"]}, "already_open": True}
        users = [u.strip() for u in str(args.get("users") or "").split(",") if u.strip()]
        if not users:
            raise SlackError("users_list_not_supplied")
        if len(users) > 1:
            raise SlackError("not_supported", detail="the sandbox opens DMs with one person")
        if users[0] not in self.users or self.users[users[0]]["is_bot"]:
            raise SlackError("user_not_found")
        return {"channel": {"id": self._ensure_dm(users[0])["id"]}, "already_open": True}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user}

    def _users_conversations(self, args: dict[str, Any]) -> dict[str, Any]:
        """The conversations ``user`` is in that the bot may know of: public channels, and
        private channels, group DMs and DMs the bot is in too (as with a bot token)."""
        user = str(args.get("user") or self.bot_user_id)
        if user not in self.users:
            raise SlackError("user_not_found")
        types = {t.strip() for t in str(args.get("types") or "public_channel").split(",")}
        exclude_archived = _truthy(args.get("exclude_archived"))
        found = []
        for channel in self.channels.values():
            if user not in channel["members"]:
                continue
            kind = _conversation_type(channel)
            shared = self.bot_user_id in channel["members"]
            if kind not in types or (kind != "public_channel" and not shared):
                continue
            if exclude_archived and channel.get("is_archived"):
                continue
            found.append({k: v for k, v in channel.items() if k != "members"})
        page, cursor = _offset_page(found, args)
        return {"channels": page, "response_metadata": {"next_cursor": cursor}}

    def _users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        page, cursor = _offset_page(list(self.users.values()), args)
        return {"members": page, "response_metadata": {"next_cursor": cursor}}

    def _usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        groups = list(self.usergroups.values())
        if not _truthy(args.get("include_users")):
            groups = [{k: v for k, v in g.items() if k != "users"} for g in groups]
        return {"usergroups": groups}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self.usergroups.get(str(args.get("usergroup")))
        if group is None:
            raise SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = args.get("user_id")
        if not user_id or user_id not in self.users:
            raise SlackError("user_not_found")
        view = check_view(args.get("view"), expected_type="home")
        existing = self.home_views.get(str(user_id))
        if existing and args.get("hash") and args["hash"] != self.views[existing]["hash"]:
            raise SlackError("hash_conflict")
        stored = self._store_view(existing or self._new_view_id(), view, user_id=str(user_id))
        self.home_views[str(user_id)] = stored["id"]
        self._emit("home", {"view": stored}, user=str(user_id))
        return {"view": stored}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger_id = str(args.get("trigger_id") or args.get("interactivity_pointer") or "")
        if not trigger_id:
            raise SlackError("invalid_arguments")
        trigger = self._triggers.pop(trigger_id, None)
        if trigger is None:
            raise SlackError("invalid_trigger_id")
        if trigger.expires < self._clock():
            raise SlackError("expired_trigger_id")
        view = check_view(args.get("view"), expected_type="modal")
        stored = self._store_view(self._new_view_id(), view, user_id=trigger.user)
        self.open_modals[trigger.user] = stored["id"]
        self._emit("modal", {"view": stored}, user=trigger.user)
        return {"view": stored}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = args.get("view_id")
        if not view_id and args.get("external_id"):
            view_id = next(
                (k for k, v in self.views.items() if v.get("external_id") == args["external_id"]),
                None,
            )
        if not view_id or view_id not in self.views:
            raise SlackError("not_found")
        current = self.views[str(view_id)]
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        view = check_view(args.get("view"), expected_type=str(current["type"]))
        owner = current.get("user_id")
        stored = self._store_view(str(view_id), view, user_id=owner)
        if owner and stored["type"] == "home":
            self._emit("home", {"view": stored}, user=str(owner))
        elif owner and self.open_modals.get(str(owner)) == view_id:
            self._emit("modal", {"view": stored}, user=str(owner))
        return {"view": stored}

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, message, name = self._reaction_target(args)
        reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
        entry = next((r for r in reactions if r["name"] == name), None)
        if entry is None:
            entry = {"name": name, "users": [], "count": 0}
            reactions.append(entry)
        if self.bot_user_id in entry["users"]:
            raise SlackError("already_reacted")
        entry["users"].append(self.bot_user_id)
        entry["count"] = len(entry["users"])
        self._emit("message", {"channel": channel, "message": message})
        return {}

    def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, message, name = self._reaction_target(args)
        reactions: list[dict[str, Any]] = message.get("reactions", [])
        entry = next((r for r in reactions if r["name"] == name), None)
        if entry is None or self.bot_user_id not in entry["users"]:
            raise SlackError("no_reaction")
        entry["users"].remove(self.bot_user_id)
        entry["count"] = len(entry["users"])
        if not entry["users"]:
            reactions.remove(entry)
        self._emit("message", {"channel": channel, "message": message})
        return {}

    def _assistant_set_status(self, args: dict[str, Any]) -> dict[str, Any]:
        key, state = self._assistant_state(args)
        if "status" not in args:
            raise SlackError("invalid_arguments")
        state["status"] = str(args["status"])
        self._emit_assistant(key, state)
        return {}

    def _assistant_set_prompts(self, args: dict[str, Any]) -> dict[str, Any]:
        key, state = self._assistant_state(args)
        prompts = args.get("prompts")
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= 4:
            raise SlackError("invalid_arguments")
        for prompt in prompts:
            if not isinstance(prompt, dict) or not prompt.get("title") or not prompt.get("message"):
                raise SlackError("invalid_arguments")
        state["prompts"] = prompts
        if args.get("title"):
            state["prompts_title"] = str(args["title"])
        self._emit_assistant(key, state)
        return {}

    def _assistant_set_title(self, args: dict[str, Any]) -> dict[str, Any]:
        key, state = self._assistant_state(args)
        if not args.get("title"):
            raise SlackError("invalid_arguments")
        state["title"] = str(args["title"])
        self._emit_assistant(key, state)
        return {}

    # -- state helpers --------------------------------------------------------------------

    def _emit(self, kind: str, data: dict[str, Any], *, user: str | None = None) -> None:
        change = Change(kind=kind, data=copy.deepcopy(data), user=user)
        for listener in list(self.listeners):
            listener(change)

    def _emit_assistant(self, key: tuple[str, str], state: dict[str, Any]) -> None:
        channel = self.channels.get(key[0]) or {}
        data = {"channel": key[0], "thread_ts": key[1], "state": state}
        self._emit("assistant", data, user=channel.get("user"))

    def _new_ts(self) -> str:
        now = max(self._clock(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    def _new_view_id(self) -> str:
        self._counter += 1
        view_id = f"V{self._counter:05d}{secrets.token_hex(3).upper()}"
        self.created.append(view_id)
        return view_id

    def _ensure_dm(self, user_id: str) -> dict[str, Any]:
        channel_id = dm_channel_id(user_id)
        if channel_id not in self.channels:
            channel = self.add_channel(channel_id, channel_id, members=[user_id, self.bot_user_id])
            channel.update({"is_channel": False, "is_im": True, "is_private": True})
            channel["user"] = user_id
            self._emit("channel", {"channel": channel})
        return self.channels[channel_id]

    def _channel(self, channel_id: Any) -> dict[str, Any]:
        if not channel_id:
            raise SlackError("channel_not_found")
        channel = self.channels.get(str(channel_id))
        if channel is None:
            name = str(channel_id).removeprefix("#")
            channel = next((c for c in self.channels.values() if c["name"] == name), None)
        if channel is None:
            raise SlackError("channel_not_found")
        return channel

    def _readable_channel(self, channel_id: Any) -> dict[str, Any]:
        channel = self._channel(channel_id)
        if self.bot_user_id not in channel["members"]:
            raise SlackError("channel_not_found" if channel["is_private"] else "not_in_channel")
        return channel

    def _channel_for_post(self, channel_id: Any) -> dict[str, Any]:
        if isinstance(channel_id, str) and channel_id in self.users:
            return self._ensure_dm(channel_id)
        channel = self._readable_channel(channel_id)
        if channel["is_archived"]:
            raise SlackError("is_archived")
        return channel

    def _find(self, channel_id: str, ts: Any) -> dict[str, Any] | None:
        for message in self.messages.get(channel_id, []):
            if message["ts"] == ts:
                return message
        return None

    def _own_message(self, channel_id: str, ts: Any, error: str) -> dict[str, Any]:
        message = self._find(channel_id, ts)
        if message is None:
            raise SlackError("message_not_found")
        if message.get("bot_id") != self.bot_id:
            raise SlackError(error)
        return message

    def _streaming_message(self, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        channel = self._channel(args.get("channel"))
        message = self._own_message(channel["id"], args.get("ts"), "cant_update_message")
        if not message.get("streaming"):
            raise SlackError("message_not_in_streaming_state")
        return channel, message

    def _reaction_target(self, args: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        channel = self._readable_channel(args.get("channel"))
        message = self._find(channel["id"], args.get("timestamp"))
        if message is None:
            raise SlackError("message_not_found")
        name = str(args.get("name") or "").strip(":")
        if not name:
            raise SlackError("invalid_name")
        return channel["id"], message, name

    def _assistant_state(self, args: dict[str, Any]) -> tuple[tuple[str, str], dict[str, Any]]:
        channel = self._channel(args.get("channel_id"))
        thread_ts = args.get("thread_ts")
        if not thread_ts:
            raise SlackError("invalid_arguments")
        key = (channel["id"], str(thread_ts))
        return key, self.assistant_threads.setdefault(key, {})

    def _store_view(
        self, view_id: str, view: dict[str, Any], *, user_id: str | None
    ) -> dict[str, Any]:
        self._counter += 1
        stored = {
            **view,
            "id": view_id,
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "hash": f"{int(self._clock())}.{self._counter:08d}",
            "user_id": user_id,
        }
        self.views[view_id] = stored
        return copy.deepcopy(stored)

    def _post_as_bot(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None,
        thread_ts: str | None,
        *,
        store: bool = True,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "ts": self._new_ts(),
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": text,
        }
        if blocks:
            message["blocks"] = blocks
        if store:
            self._insert(channel, message, thread_ts)
        return message

    def _insert(self, channel_id: str, message: dict[str, Any], thread_ts: str | None) -> None:
        stored = self.messages.setdefault(channel_id, [])
        parent = self._find(channel_id, thread_ts) if thread_ts else None
        if parent is not None and parent.get("thread_ts") not in (None, parent["ts"]):
            # A reply to a reply lands in the root's thread, as in Slack.
            parent = self._find(channel_id, parent["thread_ts"]) or parent
        if thread_ts:
            message["thread_ts"] = parent["ts"] if parent is not None else thread_ts
        stored.append(message)
        stored.sort(key=lambda m: float(m["ts"]))
        self.created.append(message["ts"])
        self._emit("message", {"channel": channel_id, "message": message})
        if parent is not None:
            parent["thread_ts"] = parent["ts"]
            self._refresh_thread(channel_id, parent)

    def _remove(self, channel_id: str, message: dict[str, Any]) -> None:
        self.messages[channel_id].remove(message)
        self._emit("message_deleted", {"channel": channel_id, "ts": message["ts"]})
        parent_ts = message.get("thread_ts")
        if parent_ts and parent_ts != message["ts"]:
            parent = self._find(channel_id, parent_ts)
            if parent is not None:
                self._refresh_thread(channel_id, parent)

    def _refresh_thread(self, channel_id: str, parent: dict[str, Any]) -> None:
        replies = [
            m
            for m in self.messages[channel_id]
            if m.get("thread_ts") == parent["ts"] and m["ts"] != parent["ts"]
        ]
        parent["reply_count"] = len(replies)
        parent["reply_users"] = list(dict.fromkeys(m["user"] for m in replies if m.get("user")))
        parent["reply_users_count"] = len(parent["reply_users"])
        if replies:
            parent["latest_reply"] = replies[-1]["ts"]
        else:
            parent.pop("latest_reply", None)
        self._emit("message", {"channel": channel_id, "message": parent})

    def _replace_original(
        self, hook: _ResponseUrl, text: str, blocks: list[dict[str, Any]] | None
    ) -> None:
        if hook.ephemeral:
            for message in self.ephemeral:
                if message["ts"] == hook.message_ts and message["user_visible"] == hook.user:
                    message["text"] = text
                    message.pop("blocks", None)
                    if blocks:
                        message["blocks"] = blocks
                    data = {"channel": hook.channel, "message": message}
                    self._emit("ephemeral", data, user=hook.user)
            return
        found = self._find(hook.channel, hook.message_ts)
        if found is None:
            raise SlackError("message_not_found")
        message = found
        message["text"] = text
        message.pop("blocks", None)
        if blocks:
            message["blocks"] = blocks
        message["edited"] = {"user": self.bot_user_id, "ts": self._new_ts()}
        self._emit("message", {"channel": hook.channel, "message": message})

    def _delete_original(self, hook: _ResponseUrl) -> None:
        if hook.ephemeral:
            kept = [
                m
                for m in self.ephemeral
                if not (m["ts"] == hook.message_ts and m["user_visible"] == hook.user)
            ]
            self.ephemeral[:] = kept
            data = {"channel": hook.channel, "ts": hook.message_ts}
            self._emit("ephemeral_deleted", data, user=hook.user)
            return
        message = self._find(hook.channel, hook.message_ts)
        if message is not None:
            self._remove(hook.channel, message)


# -- Block Kit ------------------------------------------------------------------------------


def check_blocks(value: Any, *, limit: int) -> list[dict[str, Any]]:
    """Blocks parsed and validated with ``slack_sdk.models``, or ``invalid_blocks``."""
    if not isinstance(value, list):
        raise SlackError("invalid_blocks", errors=["blocks must be an array"])
    if len(value) > limit:
        raise SlackError("invalid_blocks", errors=[f"no more than {limit} items allowed"])
    errors: list[str] = []
    markdown_total = 0
    for index, raw in enumerate(value):
        pointer = f"[json-pointer:/blocks/{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            errors.append(f"a block must be an object with a type {pointer}")
            continue
        try:
            block = Block.parse(raw)
            if block is None:
                errors.append(f"unsupported block type {raw['type']!r} {pointer}")
                continue
            block.validate_json()
        except (SlackObjectFormationError, TypeError, ValueError, KeyError, AttributeError) as exc:
            errors.append(f"{exc} {pointer}")
        if raw["type"] == "markdown":
            markdown_total += len(str(raw.get("text", "")))
    if markdown_total > MAX_MARKDOWN_TEXT:
        errors.append(f"markdown blocks exceed {MAX_MARKDOWN_TEXT} characters in total")
    if errors:
        raise SlackError("invalid_blocks", errors=errors)
    return [_with_block_id(block) for block in value]


def _with_block_id(block: dict[str, Any]) -> dict[str, Any]:
    """Slack gives every block without a ``block_id`` one; derived from the content here,
    so the same blocks get the same ids (replays compare equal)."""
    if block.get("block_id"):
        return block
    digest = hashlib.sha1(json.dumps(block, sort_keys=True).encode(), usedforsecurity=False)
    return {**block, "block_id": base64.b32encode(digest.digest()).decode()[:5]}


def check_view(value: Any, *, expected_type: str) -> dict[str, Any]:
    """A view parsed and validated with ``slack_sdk.models.views.View``."""
    if not isinstance(value, dict) or value.get("type") != expected_type:
        raise SlackError("invalid_arguments", errors=[f"view must be of type {expected_type}"])
    try:
        blocks = check_blocks(value.get("blocks", []), limit=MAX_VIEW_BLOCKS)
    except SlackError as exc:
        raise SlackError("invalid_arguments", errors=exc.extra.get("errors", [])) from None
    try:
        View(**value).validate_json()
    except (SlackObjectFormationError, TypeError, ValueError) as exc:
        raise SlackError("invalid_arguments", errors=[str(exc)]) from None
    return {**value, "blocks": blocks}


# -- argument helpers ------------------------------------------------------------------------


def _conversation_type(channel: Mapping[str, Any]) -> str:
    if channel.get("is_im"):
        return "im"
    if channel.get("is_mpim"):
        return "mpim"
    return "private_channel" if channel.get("is_private") else "public_channel"


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _decode_json_fields(args: dict[str, Any]) -> dict[str, Any]:
    """Form-encoded calls send blocks, views… as JSON strings; JSON calls send objects."""
    decoded = dict(args)
    for key in JSON_FIELDS:
        value = decoded.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            try:
                decoded[key] = json.loads(value)
            except json.JSONDecodeError:
                raise SlackError(f"invalid_{key}") from None
    return decoded


def _limit(value: Any, *, default: int, maximum: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SlackError("invalid_limit") from None
    return default if number <= 0 else min(number, maximum)


def _ts_arg(value: Any, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SlackError("invalid_ts_latest") from None


def _in_window(ts: str, oldest: float, latest: float, inclusive: bool) -> bool:
    value = float(ts)
    return oldest <= value <= latest if inclusive else oldest < value < latest


def _is_top_level(message: dict[str, Any]) -> bool:
    thread_ts = message.get("thread_ts")
    return (
        thread_ts is None
        or thread_ts == message["ts"]
        or message.get("subtype") == "thread_broadcast"
    )


def _encode_cursor(value: str) -> str:
    return base64.b64encode(f"next_ts:{value}".encode()).decode()


def _decode_cursor(cursor: Any) -> float | None:
    if not cursor:
        return None
    try:
        prefix, value = base64.b64decode(str(cursor)).decode().split(":", 1)
        if prefix not in ("next_ts", "offset"):
            raise ValueError(prefix)
        return float(value)
    except ValueError:
        raise SlackError("invalid_cursor") from None


def _offset_page(items: list[Any], args: dict[str, Any]) -> tuple[list[Any], str]:
    limit = _limit(args.get("limit"), default=100, maximum=1000)
    start = _decode_cursor(args.get("cursor"))
    offset = int(start) if start is not None else 0
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    cursor = base64.b64encode(f"offset:{offset + limit}".encode()).decode() if more else ""
    return page, cursor


def _check_length(text: str, maximum: int) -> None:
    if len(text) > maximum:
        raise SlackError("msg_too_long")


def _message_content(args: dict[str, Any], *, allow_empty_blocks: bool = False) -> dict[str, Any]:
    text = args.get("text")
    markdown_text = args.get("markdown_text")
    blocks = args.get("blocks")
    attachments = args.get("attachments")
    if not text and not markdown_text and not blocks and not attachments:
        raise SlackError("no_text")
    _check_length(str(text or ""), MAX_TEXT)
    _check_length(str(markdown_text or ""), MAX_MARKDOWN_TEXT)
    content: dict[str, Any] = {"text": str(text or markdown_text or "")}
    if blocks or (blocks == [] and not allow_empty_blocks):
        content["blocks"] = check_blocks(blocks, limit=MAX_MESSAGE_BLOCKS)
    if attachments:
        if not isinstance(attachments, list):
            raise SlackError("invalid_attachments")
        content["attachments"] = attachments
    return content


def _chunk_text(chunks: Any) -> str:
    if not isinstance(chunks, list):
        return ""
    return "".join(
        str(c.get("text", ""))
        for c in chunks
        if isinstance(c, dict) and c.get("type") == "markdown_text"
    )


# -- HTTP ------------------------------------------------------------------------------------


def routes(emulator: Emulator) -> list[Route]:
    """``/{method}`` (mount under ``/api``): GET query or POST form/JSON, as Slack takes."""

    async def web_api(request: Request) -> Response:
        method = request.path_params["method"]
        args: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            raw = await request.body()
            if raw and content_type == "application/json":
                try:
                    body = json.loads(raw)
                except ValueError:
                    return JSONResponse({"ok": False, "error": "invalid_json"})
                if isinstance(body, dict):
                    args.update(body)
            elif raw:
                args.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        token = token or args.pop("token", None)
        args.pop("token", None)
        status, headers, body = emulator.call(method, args, token)
        return JSONResponse(body, status_code=status, headers=headers)

    return [Route("/{method:str}", web_api, methods=["GET", "POST"])]
