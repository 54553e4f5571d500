"""The Slack Web API for tests: the sandbox's workspace behind a threaded local server.

The workspace, its Web API methods and their checks are :mod:`sandbox.workspace`, the one
Slack fake (users, channels, usergroups, messages with threads, reactions, views,
Assistant thread state; tokens, membership, Block Kit through ``slack_sdk.models``). This
module serves it on an ephemeral port in its own threads, so a test's event loop stays
free, and adds what tests need on top: every request recorded (:meth:`FakeSlackApi.calls`,
:meth:`FakeSlackApi.wait_for`), faults injected per method (:meth:`FakeSlackApi.fail_next`:
an HTTP status, 429 with ``Retry-After``, 5xx, a Slack error, a dropped connection), a
per-method rate limit like Slack's tiers (:meth:`FakeSlackApi.rate_limit`), and seeding
and reading helpers. Tests talk HTTP to it through a real ``AsyncWebClient``; nothing in
slack_sdk is patched.

    with slack_api_server() as slack:
        slack.add_user("U1", "alice")
        slack.add_channel("C1", "general", members=["U1"])
        client = create_web_client(token=slack.token, base_url=slack.base_url)
        await client.chat_postMessage(channel="C1", text="hi")
        assert slack.messages("C1")[-1]["text"] == "hi"

Unlike the sandbox, a test workspace accepts any ``trigger_id`` (``"expired"`` is
expired), leaves blocks as posted (no ``block_id`` added), has no per-channel write limit
unless a test sets one, and opens no DM until one is used or added (:meth:`add_im`).
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sandbox.workspace import UNLIMITED, Emulator, is_top_level, parse_call
from switchboard.local_server import LocalHandler, LocalServer

__all__ = ["ApiCall", "FakeSlackApi", "SlackFault", "slack_api_server"]


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
    #: the call is carried out first, and then its answer is this failure (a gateway's
    #: 502 or a timeout after Slack acted)
    done: bool = False


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


class FakeSlackApi(LocalServer):
    """The fake Web API server and its workspace. Use as a context manager, or start/stop.

    ``base_url`` is what ``SLACK_API_URL`` / ``create_web_client(base_url=…)`` takes;
    ``token`` is the only bot token it accepts; ``workspace`` is the
    :class:`~sandbox.workspace.Emulator` behind it (touch it only under ``lock``).
    """

    thread_name = "fake-slack-api"

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
        super().__init__()
        self.workspace = Emulator(
            token=token,
            team_id=team_id,
            team_name="Fake Workspace",
            url="https://fake-workspace.slack.com/",
            bot_user_id=bot_user_id,
            bot_id=bot_id,
            app_id=app_id,
            repeat_thread_root=repeat_thread_root,
            any_trigger=True,
            block_ids=False,
            rate_limit=UNLIMITED,
        )
        self.workspace.new_trigger(None, trigger_id="expired", ttl=-1.0)
        self.lock = threading.RLock()
        self._calls: list[ApiCall] = []
        self._faults: dict[str, deque[SlackFault | None]] = {}
        self._limits: dict[str, _RateLimit] = {}

    @property
    def base_url(self) -> str:
        if not self.running:
            raise RuntimeError("the fake Slack API server is not running")
        return f"{self.url}/api/"

    # -- the workspace ----------------------------------------------------------------------

    @property
    def token(self) -> str:
        return self.workspace.token

    @property
    def team_id(self) -> str:
        return self.workspace.team_id

    @property
    def bot_user_id(self) -> str:
        return self.workspace.bot_user_id

    @property
    def bot_id(self) -> str:
        return self.workspace.bot_id

    @property
    def channels(self) -> dict[str, dict[str, Any]]:
        """The workspace's conversations by id (the rest: ``workspace``)."""
        return self.workspace.channels

    @property
    def repeat_thread_root(self) -> bool:
        """Whether ``conversations.replies`` repeats the root on continuation pages."""
        return self.workspace.repeat_thread_root

    @repeat_thread_root.setter
    def repeat_thread_root(self, value: bool) -> None:
        self.workspace.repeat_thread_root = value

    @property
    def ephemeral(self) -> list[dict[str, Any]]:
        """Ephemeral messages shown so far: ``channel``, ``user`` (who saw it),
        ``thread_ts``, ``message_ts`` and the content."""
        with self.lock:
            return [
                {
                    "channel": m["channel"],
                    "user": m["user_visible"],
                    "thread_ts": m.get("thread_ts"),
                    "message_ts": m["ts"],
                    **{k: copy.deepcopy(m[k]) for k in ("text", "blocks", "attachments") if k in m},
                }
                for m in self.workspace.ephemeral
            ]

    # -- workspace seeding ------------------------------------------------------------------

    def add_user(
        self, user_id: str, name: str, *, display_name: str = "", **profile: Any
    ) -> dict[str, Any]:
        """A person or bot (``profile``: see :meth:`WorkspaceState.add_user
        <sandbox.workspace.WorkspaceState.add_user>`); another ``team_id`` makes a Slack
        Connect user, ``is_restricted`` / ``is_ultra_restricted`` a multi- / single-channel
        guest. No DM opens until one is used or added (:meth:`add_im`)."""
        with self.lock:
            return self.workspace.add_user(
                user_id, name, display_name=display_name, open_dm=False, **profile
            )

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
        """A channel with these members, and the bot unless ``bot_is_member=False``."""
        bot = [self.bot_user_id] if bot_is_member else []
        with self.lock:
            return self.workspace.add_channel(
                channel_id,
                name,
                members=[*members, *bot],
                is_private=is_private,
                is_archived=is_archived,
            )

    def add_im(self, user_id: str, channel_id: str | None = None) -> dict[str, Any]:
        """The DM between ``user_id`` and the bot (``D…``), as Slack describes one."""
        with self.lock:
            if channel_id is None:
                return self.workspace.ensure_dm(user_id)
            channel = self.workspace.add_channel(
                channel_id, channel_id, members=[user_id, self.bot_user_id]
            )
            channel.update({"is_channel": False, "is_im": True, "is_private": True})
            channel["user"] = user_id
            return channel

    def set_members(self, channel_id: str, members: list[str] | tuple[str, ...]) -> None:
        """Replace a channel's members (the bot stays if it was in)."""
        with self.lock:
            channel = self.channels[channel_id]
            bot = [self.bot_user_id] if self.bot_user_id in channel["members"] else []
            channel["members"] = list(dict.fromkeys([*members, *bot]))

    def add_usergroup(
        self, usergroup_id: str, handle: str, users: list[str] | tuple[str, ...] = ()
    ) -> dict[str, Any]:
        with self.lock:
            return self.workspace.add_usergroup(usergroup_id, handle, handle, users)

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
        """Seed a message (as if someone wrote it, no questions asked) and return its ts."""
        with self.lock:
            if channel not in self.channels:
                raise KeyError(f"unknown channel {channel}; add_channel first")
            message: dict[str, Any] = {
                "type": "message",
                "ts": ts or self.workspace.new_ts(),
                "text": text,
            }
            if user is not None:
                message["user"] = user
            if bot_id is not None:
                message["bot_id"] = bot_id
            if subtype is not None:
                message["subtype"] = subtype
            message.update(extra)
            self.workspace.insert(channel, message, thread_ts)
            return str(message["ts"])

    # -- assertions -------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[ApiCall]:
        """Recorded calls, oldest first, all or of one method (including failed attempts)."""
        with self.lock:
            return [c for c in self._calls if method is None or c.method == method]

    def reset_calls(self) -> None:
        with self.lock:
            self._calls.clear()

    def messages(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Copies of the channel's top-level messages, or of one thread (root first)."""
        with self.lock:
            stored = self.workspace.messages.get(channel, [])
            if thread_ts is None:
                picked = [m for m in stored if is_top_level(m)]
            else:
                picked = [
                    m for m in stored if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
                ]
            return copy.deepcopy(picked)

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.workspace.find(channel, ts)
            return copy.deepcopy(found) if found else None

    def home_view(self, user_id: str) -> dict[str, Any] | None:
        with self.lock:
            return self.workspace.home_view(user_id)

    def assistant_thread(self, channel: str, thread_ts: str) -> dict[str, Any]:
        """Status, title and suggested prompts last set on an Assistant thread."""
        with self.lock:
            return copy.deepcopy(self.workspace.assistant_threads.get((channel, thread_ts), {}))

    async def wait_for(self, method: str, count: int = 1, *, timeout: float = 5.0) -> list[ApiCall]:
        """Poll until ``count`` successful calls of ``method`` arrived; return them.

        Polls with ``asyncio.sleep`` so the code under test keeps running on the test's loop.
        """
        deadline = time.monotonic() + timeout
        while (done := self._arrived(method, count, deadline, timeout)) is None:
            await asyncio.sleep(0.01)
        return done

    def wait_for_blocking(
        self, method: str, count: int = 1, *, timeout: float = 5.0
    ) -> list[ApiCall]:
        """:meth:`wait_for` for synchronous tests (blocks the calling thread)."""
        deadline = time.monotonic() + timeout
        while (done := self._arrived(method, count, deadline, timeout)) is None:
            time.sleep(0.01)
        return done

    def _arrived(
        self, method: str, count: int, deadline: float, timeout: float
    ) -> list[ApiCall] | None:
        """The ok calls once there are ``count``; None to keep waiting; past ``deadline``,
        an AssertionError listing every call seen."""
        done = [c for c in self.calls(method) if c.ok]
        if len(done) >= count:
            return done
        if time.monotonic() < deadline:
            return None
        seen = [f"{c.method}:{c.error or c.status}" for c in self.calls()]
        raise AssertionError(
            f"expected {count} ok {method} call(s) within {timeout}s, saw {len(done)}; "
            f"calls: {seen}"
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
        after: int = 0,
        done: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (``"*"`` = any) fail, once ``after``
        calls of it went through.

        - ``status=429`` (default): ``Retry-After: retry_after`` (omitted when None),
          ``{"ok": false, "error": "ratelimited"}``.
        - ``status=500`` (or any 5xx): that status with ``{"ok": false, "error": …}``.
        - ``status=200, error="not_in_channel"``: a plain Slack error answer.
        - ``drop=True``: read the request, then close the connection without answering.
        - ``done=True``: carry the call out all the same, then answer with the failure
          (Slack acted, but its answer was lost on the way).
        """
        fault = SlackFault(
            status=status, retry_after=retry_after, error=error, drop=drop, done=done
        )
        with self.lock:
            self._faults.setdefault(method, deque()).extend([None] * after + [fault] * times)

    def rate_limit(
        self, method: str, *, limit: int, per: float = 1.0, per_channel: bool = False
    ) -> None:
        """Answer 429 (``ratelimited``, ``Retry-After`` in whole seconds, at least 1) to
        calls of ``method`` beyond ``limit`` per ``per`` seconds, like Slack's per-method
        tiers; ``per_channel`` counts each channel on its own (chat.postMessage's
        "1 per second per channel"). ``limit=0`` removes the limit."""
        with self.lock:
            if limit <= 0:
                self._limits.pop(method, None)
            else:
                self._limits[method] = _RateLimit(limit=limit, per=per, per_channel=per_channel)

    def rate_limited(self, method: str) -> int:
        """How many calls of ``method`` the rate limit answered with 429 so far."""
        with self.lock:
            limit = self._limits.get(method)
            return limit.limited if limit else 0

    def _fault(self, method: str, args: dict[str, Any]) -> SlackFault | None:
        with self.lock:
            for key in (method, "*"):
                queue = self._faults.get(key)
                if queue:
                    return queue.popleft()  # None: one let through (``after``)
            limit = self._limits.get(method)
            wait = limit.take(args, time.monotonic()) if limit else None
        if wait is None:
            return None
        return SlackFault(status=429, retry_after=max(1, int(wait + 0.999)))

    # -- request handling (server threads) --------------------------------------------------

    def handle(
        self, method: str, args: dict[str, Any], http_verb: str, token: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        """Answer one call: (HTTP status, extra headers, JSON body or None to drop)."""
        fault = self._fault(method, args)
        headers: dict[str, str] = {}
        body: dict[str, Any] | None
        if fault is not None and fault.done:
            with self.lock:
                self.workspace.call(method, args, token)
        if fault is not None and fault.drop:
            status, body = 0, None
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
            with self.lock:
                status, headers, body = self.workspace.call(method, args, token)
        with self.lock:
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


def _header_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _Handler(LocalHandler["FakeSlackApi"]):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, verb: str) -> None:
        url = urlsplit(self.path)
        method = url.path.rstrip("/").rsplit("/", 1)[-1]
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        parsed = parse_call(
            query,
            authorization=self.headers.get("Authorization") or "",
            content_type=self.headers.get("Content-Type") or "",
            raw=self.read_body(),
        )
        if parsed is None:
            self._send(200, {}, {"ok": False, "error": "invalid_json"})
            return
        args, token = parsed
        status, headers, payload = self.fake.handle(method, args, verb, token)
        if payload is None:
            self.close_connection = True  # drop: no status line, no body
            return
        self._send(status, headers, payload)

    def _send(self, status: int, headers: dict[str, str], payload: dict[str, Any]) -> None:
        self.send_json(status, payload, headers, content_type="application/json; charset=utf-8")


FakeSlackApi.handler = _Handler


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
