"""The workspace's Web API: one call in, Slack's answer out, rate limits included.

:class:`Emulator` is the workspace (:class:`~sandbox.workspace.state.WorkspaceState`) with
the method table of every API family (:mod:`chat <sandbox.workspace.chat>`,
:mod:`conversations <sandbox.workspace.conversations>`, :mod:`users
<sandbox.workspace.users>`, :mod:`views <sandbox.workspace.views>`, :mod:`reactions
<sandbox.workspace.reactions>`, :mod:`assistant <sandbox.workspace.assistant>`), the bot
token check, a per-channel rate limit on message writes, and what a person's interactions
need: trigger ids and ``response_url`` hooks. Every call is announced to
``call_listeners`` as an :class:`ApiCall` (the sandbox records them).
"""

from __future__ import annotations

import copy
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.workspace import assistant, chat, conversations, reactions, users, views
from sandbox.workspace._args import decode_json_fields, truthy
from sandbox.workspace.blocks import MAX_MESSAGE_BLOCKS, SlackError, check_blocks, check_view
from sandbox.workspace.state import Method, WorkspaceState, dm_channel_id

__all__ = ["METHODS", "RATE_LIMITED", "UNLIMITED", "ApiCall", "Emulator", "RateLimit"]

RESPONSE_URL_TTL = 30 * 60.0
RESPONSE_URL_USES = 5

#: Every Web API method the workspace answers, by name.
METHODS: Mapping[str, Method] = {
    **users.METHODS,
    **chat.METHODS,
    **conversations.METHODS,
    **views.METHODS,
    **reactions.METHODS,
    **assistant.METHODS,
}

#: Methods that write to a channel and so count against its rate limit.
RATE_LIMITED = frozenset(chat.METHODS)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket per channel: ``burst`` writes at once, refilled at ``per_second``.

    Slack allows about one message a second per channel with short bursts;
    ``per_second=math.inf`` means no limit (:data:`UNLIMITED`).
    """

    per_second: float = 1.0
    burst: int = 20


UNLIMITED = RateLimit(per_second=math.inf, burst=1)


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


class Emulator(WorkspaceState):
    """Workspace state and Web API (``workspace``: see :class:`WorkspaceState`)."""

    def __init__(
        self,
        *,
        token: str,
        rate_limit: RateLimit | None = None,
        clock: Callable[[], float] = time.time,
        **workspace: Any,
    ) -> None:
        super().__init__(token=token, clock=clock, **workspace)
        self.rate_limit = rate_limit or RateLimit()
        self.call_listeners: list[Callable[[ApiCall], None]] = []
        self._buckets: dict[str, _Bucket] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}

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
        handler = METHODS.get(method)
        if handler is None:
            return 200, {}, {"ok": False, "error": "unknown_method"}
        try:
            decoded = decode_json_fields(args)
            if method in RATE_LIMITED:
                wait = self._spend(decoded.get("channel"))
                if wait is not None:
                    return 429, {"Retry-After": str(wait)}, {"ok": False, "error": "ratelimited"}
            payload = handler(self, decoded)
        except SlackError as exc:
            return 200, {}, {"ok": False, "error": exc.error, **exc.extra}
        return 200, {}, {"ok": True, **copy.deepcopy(payload)}

    def _spend(self, channel_arg: Any) -> int | None:
        """Take one write from the channel's bucket; the seconds to wait when it is empty."""
        limit = self.rate_limit
        if math.isinf(limit.per_second):
            return None
        key = str(channel_arg or "")
        if key in self.users:
            key = dm_channel_id(key)
        now = self.clock()
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

    # -- a person's interactions ----------------------------------------------------------

    def new_response_url_token(
        self, *, user: str, channel: str, message_ts: str | None = None, ephemeral: bool = False
    ) -> str:
        """A token for a ``response_url`` (the caller builds the URL around it)."""
        token = secrets.token_urlsafe(16)
        self._response_urls[token] = _ResponseUrl(
            user=user,
            channel=channel,
            expires=self.clock() + RESPONSE_URL_TTL,
            message_ts=message_ts,
            ephemeral=ephemeral,
        )
        return token

    def new_action_ts(self) -> str:
        return f"{self.clock():.6f}"

    def replace_modal(self, user: str, view_id: str, view: dict[str, Any]) -> None:
        """A ``response_action: update`` answer: the open modal shows ``view`` instead."""
        checked = check_view(view, expected_type="modal", block_ids=self.block_ids)
        stored = self.store_view(view_id, checked, user_id=user)
        self.open_modals[user] = view_id
        self.emit("modal", {"view": stored}, user=user)

    def close_modal(self, user: str) -> None:
        self.open_modals.pop(user, None)
        self.emit("modal_closed", {}, user=user)

    def respond(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """What ``POST response_url`` does: ephemeral/in-channel answers, replace, delete."""
        hook = self._response_urls.get(token)
        if hook is None or hook.expires < self.clock():
            raise SlackError("expired_url")
        if hook.uses >= RESPONSE_URL_USES:
            raise SlackError("used_url")
        hook.uses += 1
        text = str(body.get("text") or "")
        blocks = body.get("blocks")
        if blocks is not None:
            blocks = check_blocks(blocks, limit=MAX_MESSAGE_BLOCKS, block_ids=self.block_ids)
        if truthy(body.get("delete_original")) and hook.message_ts:
            self._delete_original(hook)
            return {}
        if not text and not blocks:
            raise SlackError("no_text")
        if truthy(body.get("replace_original")) and hook.message_ts:
            self._replace_original(hook, text, blocks)
            return {}
        thread_ts = str(body["thread_ts"]) if body.get("thread_ts") else None
        if body.get("response_type") == "in_channel":
            self.insert(hook.channel, self.bot_message(text, blocks=blocks), thread_ts)
        else:
            self.show_ephemeral(
                channel=hook.channel, user=hook.user, text=text, blocks=blocks, thread_ts=thread_ts
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
                    self.emit("ephemeral", data, user=hook.user)
            return
        found = self.find(hook.channel, hook.message_ts)
        if found is None:
            raise SlackError("message_not_found")
        message = found
        message["text"] = text
        message.pop("blocks", None)
        if blocks:
            message["blocks"] = blocks
        message["edited"] = {"user": self.bot_user_id, "ts": self.new_ts()}
        self.emit("message", {"channel": hook.channel, "message": message})

    def _delete_original(self, hook: _ResponseUrl) -> None:
        if hook.ephemeral:
            kept = [
                m
                for m in self.ephemeral
                if not (m["ts"] == hook.message_ts and m["user_visible"] == hook.user)
            ]
            self.ephemeral[:] = kept
            data = {"channel": hook.channel, "ts": hook.message_ts}
            self.emit("ephemeral_deleted", data, user=hook.user)
            return
        message = self.find(hook.channel, hook.message_ts)
        if message is not None:
            self.remove(hook.channel, message)
