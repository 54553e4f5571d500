"""A local HTTP server that plays the Slack Web API, with a small workspace behind it.

In the manner of bolt-python's ``tests/mock_web_api_server``, but a real workspace rather
than canned answers: users, channels, usergroups, messages with threads, reactions, views
and Assistant thread state, kept per server instance (not per class), on an ephemeral port,
in its own thread so a test's event loop stays free. Tests talk HTTP to it through a real
``AsyncWebClient``; nothing in slack_sdk is patched.

    with slack_api_server() as slack:
        slack.add_user("U1", "alice")
        slack.add_channel("C1", "general", members=["U1"])
        client = create_web_client(token=slack.token, base_url=slack.base_url)
        await client.chat_postMessage(channel="C1", text="hi")
        assert slack.messages("C1")[-1]["text"] == "hi"

Membership questions are answered as Slack answers them: ``conversations.members`` and
``users.conversations`` (paginated), ``conversations.info`` with ``is_im`` and the DM's
``user``, and guest (``is_restricted`` / ``is_ultra_restricted``) and Slack Connect
(another ``team_id``) users.

What it checks like Slack does: the ``Authorization: Bearer xoxb-…`` token
(``not_authed`` / ``invalid_auth``), unknown channels, users, usergroups and messages
(``channel_not_found``, ``user_not_found``, ``no_such_subteam``, ``message_not_found``,
``thread_not_found``), posting without text or blocks (``no_text``), over-long text
(``msg_too_long``), malformed or over-limit blocks (``invalid_blocks``), bot not in the
channel (``not_in_channel``), editing someone else's message (``cant_update_message``).

Every request is recorded (:meth:`FakeSlackApi.calls`, :meth:`FakeSlackApi.wait_for`), and
faults can be injected per method (:meth:`FakeSlackApi.fail_next`): an HTTP status (429
with ``Retry-After``, 5xx), a Slack error (``ok: false``) or a dropped connection. A rate
limit like Slack's (:meth:`FakeSlackApi.rate_limit`) answers 429 with ``Retry-After`` to
every call over N per window, per method (and per channel, as chat.postMessage is).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

__all__ = ["ApiCall", "FakeSlackApi", "SlackFault", "slack_api_server"]

_JSON_FIELDS = ("blocks", "attachments", "view", "prompts", "chunks", "metadata")
_MAX_TEXT = 40_000
_MAX_MARKDOWN_TEXT = 12_000
_MAX_MESSAGE_BLOCKS = 50
_MAX_VIEW_BLOCKS = 100


@dataclass(frozen=True)
class ApiCall:
    """One request the server received and what it answered.

    ``status`` is the HTTP status sent (0 when the connection was dropped); ``error`` is the
    Slack error code of an ``ok: false`` answer.
    """

    method: str
    args: dict[str, Any]
    http_verb: str
    token: str | None
    status: int
    ok: bool
    error: str | None = None
    response: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SlackFault:
    """An injected failure for the next call(s) of one method."""

    status: int = 429
    retry_after: float | None = 1
    error: str | None = None
    drop: bool = False


@dataclass
class _RateLimit:
    """At most ``limit`` calls per ``per`` seconds for one method (per channel, optionally);
    the rest get 429 with ``Retry-After`` = whole seconds until a slot frees."""

    limit: int
    per: float
    per_channel: bool
    seen: dict[str, deque[float]] = field(default_factory=dict)
    limited: int = 0

    def take(self, args: dict[str, Any], now: float) -> float | None:
        """None when the call may pass (and is counted), else the seconds to wait."""
        key = str(args.get("channel", "")) if self.per_channel else ""
        window = self.seen.setdefault(key, deque())
        while window and window[0] <= now - self.per:
            window.popleft()
        if len(window) < self.limit:
            window.append(now)
            return None
        self.limited += 1
        return window[0] + self.per - now


class _SlackError(Exception):
    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__(error)


class FakeSlackApi:
    """The fake Web API server and its workspace. Use as a context manager, or start/stop.

    ``base_url`` is what ``SLACK_API_URL`` / ``create_web_client(base_url=…)`` takes;
    ``token`` is the only bot token it accepts.
    """

    def __init__(
        self,
        *,
        token: str = "xoxb-fake-token",
        team_id: str = "T0FAKE",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0FAKE",
        repeat_thread_root: bool = True,
    ) -> None:
        self.token = token
        # Slack's docs do not say whether conversations.replies repeats the thread's root at
        # the top of continuation pages, and reports differ; readers must cope with both.
        self.repeat_thread_root = repeat_thread_root
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self._lock = threading.RLock()
        self._calls: list[ApiCall] = []
        self._faults: dict[str, deque[SlackFault]] = {}
        self._limits: dict[str, _RateLimit] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self.ephemeral: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, str] = {}
        self.assistant_threads: dict[tuple[str, str], dict[str, Any]] = {}
        self._last_ts = 0.0
        self._counter = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.add_user(bot_user_id, "switchboard", real_name="Switchboard", is_bot=True)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-slack-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Slack API server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/"

    # -- workspace seeding ------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        real_name: str | None = None,
        display_name: str | None = None,
        tz: str = "UTC",
        title: str = "",
        is_bot: bool = False,
        deleted: bool = False,
        email: str | None = None,
        team_id: str | None = None,
        is_restricted: bool = False,
        is_ultra_restricted: bool = False,
    ) -> dict[str, Any]:
        """A person or bot; ``team_id`` another team's id makes a Slack Connect user,
        ``is_restricted`` / ``is_ultra_restricted`` a multi- / single-channel guest."""
        user = {
            "id": user_id,
            "team_id": team_id or self.team_id,
            "name": name,
            "real_name": real_name or name,
            "deleted": deleted,
            "is_bot": is_bot,
            "is_restricted": is_restricted or is_ultra_restricted,
            "is_ultra_restricted": is_ultra_restricted,
            "tz": tz,
            "tz_offset": 0,
            "profile": {
                "real_name": real_name or name,
                "display_name": display_name if display_name is not None else "",
                "title": title,
                **({"email": email} if email else {}),
            },
        }
        with self._lock:
            self.users[user_id] = user
        return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        members: list[str] | tuple[str, ...] = (),
        is_private: bool = False,
        bot_is_member: bool = True,
        is_archived: bool = False,
    ) -> dict[str, Any]:
        member_ids = list(dict.fromkeys([*members, *([self.bot_user_id] if bot_is_member else [])]))
        channel = {
            "id": channel_id,
            "name": name,
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private,
            "is_archived": is_archived,
            "is_member": bot_is_member,
            "created": 1_600_000_000,
            "members": member_ids,
        }
        with self._lock:
            self.channels[channel_id] = channel
            self._messages.setdefault(channel_id, [])
        return channel

    def add_im(self, user_id: str, channel_id: str | None = None) -> dict[str, Any]:
        """The DM between ``user_id`` and the bot (``D…``), as Slack describes one."""
        channel_id = channel_id or "D" + user_id.removeprefix("U").removeprefix("W")
        channel = self.add_channel(channel_id, channel_id, members=[user_id])
        channel.update({"is_channel": False, "is_im": True, "is_private": True, "user": user_id})
        return channel

    def set_members(self, channel_id: str, members: list[str] | tuple[str, ...]) -> None:
        """Replace a channel's members (the bot stays if it was in)."""
        with self._lock:
            channel = self.channels[channel_id]
            bot = [self.bot_user_id] if channel["is_member"] else []
            channel["members"] = list(dict.fromkeys([*members, *bot]))

    def add_usergroup(
        self, usergroup_id: str, handle: str, users: list[str] | tuple[str, ...] = ()
    ) -> dict[str, Any]:
        group = {
            "id": usergroup_id,
            "team_id": self.team_id,
            "handle": handle,
            "users": list(users),
        }
        with self._lock:
            self.usergroups[usergroup_id] = group
        return group

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str | None = None,
        ts: str | None = None,
        thread_ts: str | None = None,
        bot_id: str | None = None,
        subtype: str | None = None,
        **extra: Any,
    ) -> str:
        """Seed a message (as if someone wrote it) and return its ts."""
        with self._lock:
            if channel not in self.channels:
                raise KeyError(f"unknown channel {channel}; add_channel first")
            message: dict[str, Any] = {"type": "message", "ts": ts or self._new_ts(), "text": text}
            if user is not None:
                message["user"] = user
            if bot_id is not None:
                message["bot_id"] = bot_id
            if subtype is not None:
                message["subtype"] = subtype
            message.update(extra)
            self._insert(channel, message, thread_ts)
            return str(message["ts"])

    # -- assertions -------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[ApiCall]:
        """Recorded calls, oldest first, all or of one method (including failed attempts)."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def messages(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Copies of the channel's top-level messages, or of one thread (root first)."""
        with self._lock:
            stored = self._messages.get(channel, [])
            if thread_ts is None:
                picked = [m for m in stored if _is_top_level(m)]
            else:
                picked = [
                    m for m in stored if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
                ]
            return copy.deepcopy(picked)

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._find(channel, ts)
            return copy.deepcopy(found) if found else None

    def home_view(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            view_id = self.home_views.get(user_id)
            return copy.deepcopy(self.views[view_id]) if view_id else None

    def assistant_thread(self, channel: str, thread_ts: str) -> dict[str, Any]:
        """Status, title and suggested prompts last set on an Assistant thread."""
        with self._lock:
            return copy.deepcopy(self.assistant_threads.get((channel, thread_ts), {}))

    async def wait_for(self, method: str, count: int = 1, *, timeout: float = 5.0) -> list[ApiCall]:
        """Poll until ``count`` successful calls of ``method`` arrived; return them.

        Polls with ``asyncio.sleep`` so the code under test keeps running on the test's loop.
        """
        deadline = time.monotonic() + timeout
        while True:
            done = [c for c in self.calls(method) if c.ok]
            if len(done) >= count:
                return done
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_message(method, count, len(done), timeout))
            await asyncio.sleep(0.01)

    def wait_for_blocking(
        self, method: str, count: int = 1, *, timeout: float = 5.0
    ) -> list[ApiCall]:
        """:meth:`wait_for` for synchronous tests (blocks the calling thread)."""
        deadline = time.monotonic() + timeout
        while True:
            done = [c for c in self.calls(method) if c.ok]
            if len(done) >= count:
                return done
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_message(method, count, len(done), timeout))
            time.sleep(0.01)

    def _timeout_message(self, method: str, count: int, seen: int, timeout: float) -> str:
        methods = [f"{c.method}:{c.error or c.status}" for c in self.calls()]
        return (
            f"expected {count} ok {method} call(s) within {timeout}s, saw {seen}; calls: {methods}"
        )

    # -- fault injection --------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: float | None = 1,
        error: str | None = None,
        drop: bool = False,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (``"*"`` = any) fail.

        - ``status=429`` (default): ``Retry-After: retry_after`` (omitted when None),
          ``{"ok": false, "error": "ratelimited"}``.
        - ``status=500`` (or any 5xx): that status with ``{"ok": false, "error": …}``.
        - ``status=200, error="not_in_channel"``: a plain Slack error answer.
        - ``drop=True``: read the request, then close the connection without answering.
        """
        fault = SlackFault(status=status, retry_after=retry_after, error=error, drop=drop)
        with self._lock:
            self._faults.setdefault(method, deque()).extend([fault] * times)

    def rate_limit(
        self, method: str, *, limit: int, per: float = 1.0, per_channel: bool = False
    ) -> None:
        """Answer 429 (``ratelimited``, ``Retry-After`` in whole seconds, at least 1) to
        calls of ``method`` beyond ``limit`` per ``per`` seconds, like Slack's per-method
        tiers; ``per_channel`` counts each channel on its own (chat.postMessage's
        "1 per second per channel"). ``limit=0`` removes the limit."""
        with self._lock:
            if limit <= 0:
                self._limits.pop(method, None)
            else:
                self._limits[method] = _RateLimit(limit=limit, per=per, per_channel=per_channel)

    def rate_limited(self, method: str) -> int:
        """How many calls of ``method`` the rate limit answered with 429 so far."""
        with self._lock:
            limit = self._limits.get(method)
            return limit.limited if limit else 0

    def _over_limit(self, method: str, args: dict[str, Any]) -> SlackFault | None:
        with self._lock:
            limit = self._limits.get(method)
            wait = limit.take(args, time.monotonic()) if limit else None
        if wait is None:
            return None
        return SlackFault(status=429, retry_after=max(1, int(wait + 0.999)))

    def _take_fault(self, method: str) -> SlackFault | None:
        with self._lock:
            for key in (method, "*"):
                queue = self._faults.get(key)
                if queue:
                    return queue.popleft()
        return None

    # -- request handling (server threads) --------------------------------------------------

    def _handle(
        self, method: str, args: dict[str, Any], http_verb: str, token: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        """Answer one call: (HTTP status, extra headers, JSON body or None to drop)."""
        fault = self._take_fault(method) or self._over_limit(method, args)
        headers: dict[str, str] = {}
        body: dict[str, Any] | None
        status = 200
        if fault is not None and fault.drop:
            body = None
            status = 0
        elif fault is not None:
            status = fault.status
            if status == 429:
                if fault.retry_after is not None:
                    headers["Retry-After"] = _header_number(fault.retry_after)
                body = {"ok": False, "error": fault.error or "ratelimited"}
            else:
                default = "internal_error" if status >= 500 else "fatal_error"
                body = {"ok": False, "error": fault.error or default}
        else:
            body = self._dispatch(method, args, token)
        with self._lock:
            self._calls.append(
                ApiCall(
                    method=method,
                    args=args,
                    http_verb=http_verb,
                    token=token,
                    status=status,
                    ok=bool(body and body.get("ok")) and status == 200,
                    error=body.get("error") if body else "connection_dropped",
                    response=copy.deepcopy(body) if body else {},
                )
            )
        return status, headers, body

    def _dispatch(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        handler = self._methods().get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        try:
            args = _decode_json_fields(args)
            with self._lock:
                payload = handler(args)
        except _SlackError as exc:
            return {"ok": False, "error": exc.error}
        return {"ok": True, **copy.deepcopy(payload)}

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
            "users.conversations": self._users_conversations,
            "users.list": self._users_list,
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

    # -- methods ----------------------------------------------------------------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake-workspace.slack.com/",
            "team": "Fake Workspace",
            "user": "switchboard",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_for_post(args.get("channel"))
        content = _message_content(args)
        message: dict[str, Any] = {
            "type": "message",
            "ts": self._new_ts(),
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            **content,
        }
        for key in ("metadata", "username", "icon_emoji", "icon_url"):
            if key in args:
                message[key] = args[key]
        thread_ts = args.get("thread_ts") or None
        if thread_ts and _truthy(args.get("reply_broadcast")):
            message["subtype"] = "thread_broadcast"
        self._insert(channel["id"], message, thread_ts)
        return {"channel": channel["id"], "ts": message["ts"], "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        message = self._own_message(channel["id"], args.get("ts"), "cant_update_message")
        content = _message_content(args)
        for key in ("blocks", "attachments"):
            message.pop(key, None)
        message.update(content)
        message["edited"] = {"user": self.bot_user_id, "ts": self._new_ts()}
        return {
            "channel": channel["id"],
            "ts": message["ts"],
            "text": message["text"],
            "message": message,
        }

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        message = self._own_message(channel["id"], args.get("ts"), "cant_delete_message")
        stored = self._messages[channel["id"]]
        stored.remove(message)
        parent_ts = message.get("thread_ts")
        if parent_ts and parent_ts != message["ts"]:
            parent = self._find(channel["id"], parent_ts)
            if parent is not None:
                self._refresh_thread(channel["id"], parent)
        return {"channel": channel["id"], "ts": message["ts"]}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_for_post(args.get("channel"))
        user = args.get("user")
        if not user or user not in self.users:
            raise _SlackError("user_not_found")
        if user not in channel.get("members", []):
            raise _SlackError("user_not_in_channel")
        content = _message_content(args)
        ts = self._new_ts()
        self.ephemeral.append(
            {
                "channel": channel["id"],
                "user": user,
                "thread_ts": args.get("thread_ts"),
                "message_ts": ts,
                **content,
            }
        )
        return {"message_ts": ts}

    def _chat_start_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_for_post(args.get("channel"))
        thread_ts = args.get("thread_ts")
        if not thread_ts:
            raise _SlackError("invalid_arguments")
        text = str(args.get("markdown_text") or "") + _chunk_text(args.get("chunks"))
        _check_length(text, _MAX_MARKDOWN_TEXT)
        message = {
            "type": "message",
            "ts": self._new_ts(),
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": text,
            "streaming": True,
            "recipient_user_id": args.get("recipient_user_id"),
            "recipient_team_id": args.get("recipient_team_id"),
        }
        self._insert(channel["id"], message, thread_ts)
        return {"channel": channel["id"], "ts": message["ts"]}

    def _chat_append_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, message = self._streaming_message(args)
        addition = str(args.get("markdown_text") or "") + _chunk_text(args.get("chunks"))
        if not addition:
            raise _SlackError("no_text")
        message["text"] += addition
        _check_length(message["text"], _MAX_MARKDOWN_TEXT)
        return {"channel": channel["id"], "ts": message["ts"]}

    def _chat_stop_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, message = self._streaming_message(args)
        message["text"] += str(args.get("markdown_text") or "") + _chunk_text(args.get("chunks"))
        if "blocks" in args:
            message["blocks"] = _check_blocks(args["blocks"], _MAX_MESSAGE_BLOCKS)
        if "metadata" in args:
            message["metadata"] = args["metadata"]
        message["streaming"] = False
        return {"channel": channel["id"], "ts": message["ts"], "message": message}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._readable_channel(args.get("channel"))
        limit = _limit(args.get("limit"), default=100, maximum=999)
        inclusive = _truthy(args.get("inclusive"))
        oldest = _ts_arg(args.get("oldest"), 0.0)
        latest = _ts_arg(args.get("latest"), float("inf"))
        before = _decode_cursor(args.get("cursor"), "next_ts")
        window = [
            m
            for m in self._messages[channel["id"]]
            if _is_top_level(m) and _in_window(m["ts"], oldest, latest, inclusive)
        ]
        window.sort(key=lambda m: float(m["ts"]), reverse=True)
        if before is not None:
            window = [m for m in window if float(m["ts"]) < before]
        page, rest = window[:limit], window[limit:]
        next_cursor = _encode_cursor("next_ts", page[-1]["ts"]) if rest else ""
        return {
            "messages": page,
            "has_more": bool(rest),
            "pin_count": 0,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """The root first (on every page unless ``repeat_thread_root=False``), then replies."""
        channel = self._readable_channel(args.get("channel"))
        ts = args.get("ts")
        if not ts:
            raise _SlackError("invalid_arguments")
        found = self._find(channel["id"], ts)
        if found is None:
            raise _SlackError("thread_not_found")
        root_ts = found.get("thread_ts") or found["ts"]
        root = self._find(channel["id"], root_ts) or found
        limit = _limit(args.get("limit"), default=1000, maximum=1000)
        inclusive = _truthy(args.get("inclusive"))
        oldest = _ts_arg(args.get("oldest"), 0.0)
        latest = _ts_arg(args.get("latest"), float("inf"))
        after = _decode_cursor(args.get("cursor"), "next_ts")
        replies = [
            m
            for m in self._messages[channel["id"]]
            if m.get("thread_ts") == root_ts
            and m["ts"] != root_ts
            and _in_window(m["ts"], oldest, latest, inclusive)
        ]
        replies.sort(key=lambda m: float(m["ts"]))
        if after is not None:
            replies = [m for m in replies if float(m["ts"]) > after]
        with_root = after is None or self.repeat_thread_root
        take = max(1, limit - 1) if with_root else limit
        page, rest = replies[:take], replies[take:]
        next_cursor = _encode_cursor("next_ts", page[-1]["ts"]) if rest else ""
        return {
            "messages": [root, *page] if with_root else page,
            "has_more": bool(rest),
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        public = {k: v for k, v in channel.items() if k != "members"}
        public["num_members"] = len(channel.get("members", []))
        return {"channel": public}

    def _conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._readable_channel(args.get("channel"))
        members: list[str] = channel.get("members", [])
        page, next_cursor = _offset_page(members, args)
        return {"members": page, "response_metadata": {"next_cursor": next_cursor}}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel"):
            return {"channel": {"id": self._channel(args["channel"])["id"]}, "already_open": True}
        raw = args.get("users")
        if not raw:
            raise _SlackError("users_list_not_supplied")
        users = [u.strip() for u in str(raw).split(",") if u.strip()]
        for user in users:
            if user not in self.users:
                raise _SlackError("user_not_found")
        if len(users) == 1:
            channel = self._dm_channel(users[0])
            return {"channel": {"id": channel["id"]}, "already_open": False}
        key = "-".join(sorted(users))
        channel_id = "G" + base64.b32encode(key.encode()).decode()[:9]
        if channel_id not in self.channels:
            self.add_channel(channel_id, f"mpdm-{key}", members=users, is_private=True)
            self.channels[channel_id].update({"is_mpim": True, "is_group": False})
        return {"channel": {"id": channel_id}, "already_open": False}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        if user is None:
            raise _SlackError("user_not_found")
        return {"user": user}

    def _users_conversations(self, args: dict[str, Any]) -> dict[str, Any]:
        """The conversations ``user`` is in that the bot may know of: public channels, and
        private channels, group DMs and DMs the bot is in too (as with a bot token)."""
        user = str(args.get("user") or self.bot_user_id)
        if user not in self.users:
            raise _SlackError("user_not_found")
        types = {t.strip() for t in str(args.get("types") or "public_channel").split(",")}
        exclude_archived = _truthy(args.get("exclude_archived"))
        found = []
        for channel in self.channels.values():
            if user not in channel.get("members", []):
                continue
            kind = _conversation_type(channel)
            if kind not in types or (kind != "public_channel" and not channel["is_member"]):
                continue
            if exclude_archived and channel["is_archived"]:
                continue
            found.append({k: v for k, v in channel.items() if k != "members"})
        page, next_cursor = _offset_page(found, args)
        return {"channels": page, "response_metadata": {"next_cursor": next_cursor}}

    def _users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        page, next_cursor = _offset_page(list(self.users.values()), args)
        return {
            "members": page,
            "cache_ts": int(time.time()),
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self.usergroups.get(str(args.get("usergroup")))
        if group is None:
            raise _SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = args.get("user_id")
        if not user_id or user_id not in self.users:
            raise _SlackError("user_not_found")
        view = _check_view(args.get("view"), expected_type="home")
        existing_id = self.home_views.get(user_id)
        if existing_id and args.get("hash") and args["hash"] != self.views[existing_id]["hash"]:
            raise _SlackError("hash_conflict")
        view_id = existing_id or self._new_id("V")
        stored = self._store_view(view_id, view, user_id=user_id)
        self.home_views[user_id] = view_id
        return {"view": stored}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger_id = args.get("trigger_id") or args.get("interactivity_pointer")
        if not trigger_id:
            raise _SlackError("invalid_arguments")
        if trigger_id == "expired":
            raise _SlackError("expired_trigger_id")
        view = _check_view(args.get("view"), expected_type="modal")
        return {"view": self._store_view(self._new_id("V"), view, user_id=None)}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = args.get("view_id")
        if not view_id and args.get("external_id"):
            view_id = next(
                (k for k, v in self.views.items() if v.get("external_id") == args["external_id"]),
                None,
            )
        if not view_id or view_id not in self.views:
            raise _SlackError("not_found")
        current = self.views[view_id]
        if args.get("hash") and args["hash"] != current["hash"]:
            raise _SlackError("hash_conflict")
        view = _check_view(args.get("view"), expected_type=current["type"])
        return {"view": self._store_view(view_id, view, user_id=current.get("user_id"))}

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(args)
        reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
        entry = next((r for r in reactions if r["name"] == name), None)
        if entry is None:
            entry = {"name": name, "users": [], "count": 0}
            reactions.append(entry)
        if self.bot_user_id in entry["users"]:
            raise _SlackError("already_reacted")
        entry["users"].append(self.bot_user_id)
        entry["count"] = len(entry["users"])
        return {}

    def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(args)
        reactions: list[dict[str, Any]] = message.get("reactions", [])
        entry = next((r for r in reactions if r["name"] == name), None)
        if entry is None or self.bot_user_id not in entry["users"]:
            raise _SlackError("no_reaction")
        entry["users"].remove(self.bot_user_id)
        entry["count"] = len(entry["users"])
        if not entry["users"]:
            reactions.remove(entry)
        return {}

    def _assistant_set_status(self, args: dict[str, Any]) -> dict[str, Any]:
        state = self._assistant_state(args)
        if "status" not in args:
            raise _SlackError("invalid_arguments")
        state["status"] = args["status"]
        if "loading_messages" in args:
            state["loading_messages"] = args["loading_messages"]
        return {}

    def _assistant_set_prompts(self, args: dict[str, Any]) -> dict[str, Any]:
        state = self._assistant_state(args)
        prompts = args.get("prompts")
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= 4:
            raise _SlackError("invalid_arguments")
        for prompt in prompts:
            if not isinstance(prompt, dict) or not prompt.get("title") or not prompt.get("message"):
                raise _SlackError("invalid_arguments")
        state["prompts"] = prompts
        if "title" in args:
            state["prompts_title"] = args["title"]
        return {}

    def _assistant_set_title(self, args: dict[str, Any]) -> dict[str, Any]:
        state = self._assistant_state(args)
        if not args.get("title"):
            raise _SlackError("invalid_arguments")
        state["title"] = args["title"]
        return {}

    # -- state helpers (called with the lock held) ------------------------------------------

    def _new_ts(self) -> str:
        now = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    def _new_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}0FAKE{self._counter:04d}"

    def _channel(self, channel_id: Any) -> dict[str, Any]:
        if not channel_id:
            raise _SlackError("channel_not_found")
        channel = self.channels.get(str(channel_id))
        if channel is None:
            name = str(channel_id).removeprefix("#")
            channel = next((c for c in self.channels.values() if c["name"] == name), None)
        if channel is None:
            raise _SlackError("channel_not_found")
        return channel

    def _readable_channel(self, channel_id: Any) -> dict[str, Any]:
        channel = self._channel(channel_id)
        if not channel["is_member"] and (channel["is_private"] or channel["is_im"]):
            raise _SlackError("channel_not_found")
        if not channel["is_member"]:
            raise _SlackError("not_in_channel")
        return channel

    def _channel_for_post(self, channel_id: Any) -> dict[str, Any]:
        if isinstance(channel_id, str) and channel_id in self.users:
            return self._dm_channel(channel_id)
        channel = self._readable_channel(channel_id)
        if channel["is_archived"]:
            raise _SlackError("is_archived")
        return channel

    def _dm_channel(self, user_id: str) -> dict[str, Any]:
        channel_id = "D" + user_id.removeprefix("U").removeprefix("W")
        if channel_id not in self.channels:
            channel = self.add_channel(channel_id, channel_id, members=[user_id])
            channel.update({"is_channel": False, "is_im": True, "user": user_id})
        return self.channels[channel_id]

    def _find(self, channel_id: str, ts: Any) -> dict[str, Any] | None:
        for message in self._messages.get(channel_id, []):
            if message["ts"] == ts:
                return message
        return None

    def _own_message(self, channel_id: str, ts: Any, error: str) -> dict[str, Any]:
        message = self._find(channel_id, ts)
        if message is None:
            raise _SlackError("message_not_found")
        if message.get("bot_id") != self.bot_id:
            raise _SlackError(error)
        return message

    def _streaming_message(self, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        channel = self._channel(args.get("channel"))
        message = self._own_message(channel["id"], args.get("ts"), "cant_update_message")
        if not message.get("streaming"):
            raise _SlackError("message_not_in_streaming_state")
        return channel, message

    def _reaction_target(self, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        channel = self._readable_channel(args.get("channel"))
        message = self._find(channel["id"], args.get("timestamp"))
        if message is None:
            raise _SlackError("message_not_found")
        name = str(args.get("name") or "").strip(":")
        if not name:
            raise _SlackError("invalid_name")
        return message, name

    def _assistant_state(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel_id"))
        thread_ts = args.get("thread_ts")
        if not thread_ts:
            raise _SlackError("invalid_arguments")
        return self.assistant_threads.setdefault((channel["id"], str(thread_ts)), {})

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
            "hash": f"{int(time.time())}.{self._counter:08d}",
            "user_id": user_id,
        }
        self.views[view_id] = stored
        return stored

    def _insert(self, channel_id: str, message: dict[str, Any], thread_ts: str | None) -> None:
        stored = self._messages.setdefault(channel_id, [])
        parent = self._find(channel_id, thread_ts) if thread_ts else None
        if parent is not None and parent.get("thread_ts") not in (None, parent["ts"]):
            # Replying to a reply lands in the root's thread, as in Slack.
            parent = self._find(channel_id, parent["thread_ts"]) or parent
        if thread_ts:
            message["thread_ts"] = parent["ts"] if parent is not None else thread_ts
        stored.append(message)
        stored.sort(key=lambda m: float(m["ts"]))
        if parent is not None:
            parent["thread_ts"] = parent["ts"]
            self._refresh_thread(channel_id, parent)

    def _refresh_thread(self, channel_id: str, parent: dict[str, Any]) -> None:
        replies = [
            m
            for m in self._messages[channel_id]
            if m.get("thread_ts") == parent["ts"] and m["ts"] != parent["ts"]
        ]
        parent["reply_count"] = len(replies)
        parent["reply_users"] = list(dict.fromkeys(m["user"] for m in replies if m.get("user")))
        parent["reply_users_count"] = len(parent["reply_users"])
        if replies:
            parent["latest_reply"] = replies[-1]["ts"]
        else:
            parent.pop("latest_reply", None)


# -- argument and payload helpers -----------------------------------------------------------


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _conversation_type(channel: dict[str, Any]) -> str:
    if channel.get("is_im"):
        return "im"
    if channel.get("is_mpim"):
        return "mpim"
    return "private_channel" if channel.get("is_private") else "public_channel"


def _header_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _decode_json_fields(args: dict[str, Any]) -> dict[str, Any]:
    """Form-encoded calls send blocks, views… as JSON strings; JSON calls send objects."""
    decoded = dict(args)
    for key in _JSON_FIELDS:
        value = decoded.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            try:
                decoded[key] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise _SlackError(f"invalid_{key}") from exc
    return decoded


def _limit(value: Any, *, default: int, maximum: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise _SlackError("invalid_limit") from exc
    return default if number <= 0 else min(number, maximum)


def _ts_arg(value: Any, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise _SlackError("invalid_ts_latest") from exc


def _in_window(ts: str, oldest: float, latest: float, inclusive: bool) -> bool:
    value = float(ts)
    if inclusive:
        return oldest <= value <= latest
    return oldest < value < latest


def _is_top_level(message: dict[str, Any]) -> bool:
    thread_ts = message.get("thread_ts")
    return (
        thread_ts is None
        or thread_ts == message["ts"]
        or message.get("subtype") == "thread_broadcast"
    )


def _encode_cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def _decode_cursor(cursor: Any, kind: str) -> float | None:
    if not cursor:
        return None
    try:
        prefix, value = base64.b64decode(str(cursor)).decode().split(":", 1)
        if prefix != kind:
            raise ValueError(prefix)
        return float(value)
    except ValueError as exc:
        raise _SlackError("invalid_cursor") from exc


def _offset_page(items: list[Any], args: dict[str, Any]) -> tuple[list[Any], str]:
    limit = _limit(args.get("limit"), default=100, maximum=1000)
    start = _decode_cursor(args.get("cursor"), "offset")
    offset = int(start) if start is not None else 0
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    return page, _encode_cursor("offset", str(offset + limit)) if more else ""


def _check_length(text: str, maximum: int) -> None:
    if len(text) > maximum:
        raise _SlackError("msg_too_long")


def _message_content(args: dict[str, Any]) -> dict[str, Any]:
    text = args.get("text")
    markdown_text = args.get("markdown_text")
    blocks = args.get("blocks")
    attachments = args.get("attachments")
    if not text and not markdown_text and not blocks and not attachments:
        raise _SlackError("no_text")
    content: dict[str, Any] = {"text": str(text or markdown_text or "")}
    _check_length(str(text or ""), _MAX_TEXT)
    _check_length(str(markdown_text or ""), _MAX_MARKDOWN_TEXT)
    if blocks:
        content["blocks"] = _check_blocks(blocks, _MAX_MESSAGE_BLOCKS)
    if attachments:
        if not isinstance(attachments, list):
            raise _SlackError("invalid_attachments")
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


def _text_of(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def _check_blocks(blocks: Any, maximum: int) -> list[dict[str, Any]]:
    """The Block Kit limits a renderer is most likely to break."""
    if not isinstance(blocks, list) or len(blocks) > maximum:
        raise _SlackError("invalid_blocks")
    markdown_total = 0
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _SlackError("invalid_blocks")
        kind = block["type"]
        if kind == "section":
            fields = block.get("fields") or []
            if "text" not in block and not fields:
                raise _SlackError("invalid_blocks")
            if len(_text_of(block.get("text"))) > 3000 or len(fields) > 10:
                raise _SlackError("invalid_blocks")
            if any(len(_text_of(f)) > 2000 for f in fields):
                raise _SlackError("invalid_blocks")
        elif kind == "header":
            text = block.get("text")
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                raise _SlackError("invalid_blocks")
            if not 1 <= len(_text_of(text)) <= 150:
                raise _SlackError("invalid_blocks")
        elif kind == "context":
            if not 1 <= len(block.get("elements") or []) <= 10:
                raise _SlackError("invalid_blocks")
        elif kind == "actions":
            if not 1 <= len(block.get("elements") or []) <= 25:
                raise _SlackError("invalid_blocks")
        elif kind == "markdown":
            markdown_total += len(str(block.get("text", "")))
    if markdown_total > _MAX_MARKDOWN_TEXT:
        raise _SlackError("invalid_blocks")
    return blocks


def _check_view(view: Any, *, expected_type: str) -> dict[str, Any]:
    if not isinstance(view, dict) or view.get("type") != expected_type:
        raise _SlackError("invalid_arguments")
    if expected_type == "modal" and not view.get("title"):
        raise _SlackError("invalid_arguments")
    _check_blocks(view.get("blocks", []), _MAX_VIEW_BLOCKS)
    return view


# -- HTTP plumbing --------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeSlackApi) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, verb: str) -> None:
        url = urlsplit(self.path)
        method = url.path.rstrip("/").rsplit("/", 1)[-1]
        args: dict[str, Any] = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if raw:
            if content_type == "application/json":
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._send(200, {}, {"ok": False, "error": "invalid_json"})
                    return
                if isinstance(body, dict):
                    args.update(body)
            else:
                args.update(parse_qsl(raw.decode(), keep_blank_values=True))
        auth = self.headers.get("Authorization") or ""
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        token = token or args.pop("token", None)
        args.pop("token", None)
        status, headers, payload = self.server.fake._handle(method, args, verb, token)
        if payload is None:
            self.close_connection = True  # drop: no status line, no body
            return
        self._send(status, headers, payload)

    def _send(self, status: int, headers: dict[str, str], payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def slack_api_server(**options: Any) -> Iterator[FakeSlackApi]:
    """A running fake Slack Web API for one test; ``options`` go to :class:`FakeSlackApi`.

    In conftest::

        @pytest.fixture
        def slack_api() -> Iterator[FakeSlackApi]:
            with slack_api_server() as server:
                yield server
    """
    with FakeSlackApi(**options) as server:
        yield server
