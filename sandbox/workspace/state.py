"""The workspace the Web API methods read and change: people, conversations, messages, views.

:class:`WorkspaceState` holds the state and the lookups every API family shares (a channel
by id or name, the bot's own message, a thread's root), each failing with the code Slack
answers. Seeding (``add_user``, ``add_channel``…) is here too: the sandbox's sample
workspace and the tests' fixtures build their workspaces with it.

State changes are announced to ``listeners`` as :class:`Change` values (the sandbox page's
live updates). Nothing here awaits or locks: the sandbox calls it from one event loop, the
test fake from behind one lock.
"""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.workspace.blocks import SlackError

__all__ = ["Change", "Method", "Trigger", "WorkspaceState", "dm_channel_id"]


@dataclass(frozen=True, slots=True)
class Change:
    """Something the page should show. ``user`` set = only that person sees it."""

    kind: str
    data: dict[str, Any]
    user: str | None = None


@dataclass(slots=True)
class Trigger:
    """A ``trigger_id`` handed out with an interaction: whose, and until when."""

    user: str | None
    expires: float


def dm_channel_id(user_id: str) -> str:
    """The id of the DM between a person and the bot (``U0SAM`` → ``D0SAM``)."""
    return "D" + user_id.removeprefix("U").removeprefix("W")


class WorkspaceState:
    """Workspace state and the lookups the API families share.

    ``clock`` gives epoch seconds (message ts, expiry, rate limits). ``url`` and
    ``team_name`` are what ``auth.test`` reports. ``repeat_thread_root``: whether
    ``conversations.replies`` repeats the root at the top of continuation pages (Slack's
    docs do not say, reports differ; readers must cope with both). ``any_trigger``: accept
    ``trigger_id`` values this workspace did not hand out (tests make up their own).
    ``block_ids``: give blocks without a ``block_id`` one, as Slack does (tests that
    compare posted blocks with what they rendered turn it off).
    """

    def __init__(
        self,
        *,
        token: str,
        team_id: str = "T0PAYCO",
        team_name: str = "PayCo",
        url: str = "http://sandbox.localhost/",
        bot_user_id: str = "U0SWITCH",
        bot_id: str = "B0SWITCH",
        app_id: str = "A0SWITCH",
        repeat_thread_root: bool = True,
        any_trigger: bool = False,
        block_ids: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.team_id = team_id
        self.team_name = team_name
        self.url = url
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.repeat_thread_root = repeat_thread_root
        self.any_trigger = any_trigger
        self.block_ids = block_ids
        self.clock = clock
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
        self.created: list[str] = []  # message ts and view ids, in creation order (replay)
        self.triggers: dict[str, Trigger] = {}
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
        display_name: str | None = None,
        tz: str | None = None,
        title: str = "",
        is_bot: bool = False,
        deleted: bool = False,
        email: str | None = None,
        team_id: str | None = None,
        is_restricted: bool = False,
        is_ultra_restricted: bool = False,
        open_dm: bool = True,
    ) -> dict[str, Any]:
        """A person or bot; another ``team_id`` makes a Slack Connect user, ``is_restricted``
        / ``is_ultra_restricted`` a multi- / single-channel guest. ``display_name`` defaults
        to ``name``; ``open_dm`` opens the person's DM with the bot at once."""
        profile: dict[str, Any] = {
            "real_name": real_name or name,
            "display_name": name if display_name is None else display_name,
            "title": title,
        }
        if email:
            profile["email"] = email
        if is_bot and user_id == self.bot_user_id:
            profile["bot_id"] = self.bot_id
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": team_id or self.team_id,
            "name": name,
            "real_name": real_name or name,
            "deleted": deleted,
            "is_bot": is_bot,
            "is_restricted": is_restricted or is_ultra_restricted,
            "is_ultra_restricted": is_ultra_restricted,
            "tz": tz or "UTC",
            "tz_offset": 0,
            "profile": profile,
        }
        self.users[user_id] = user
        if open_dm and not is_bot:
            self.ensure_dm(user_id)
        return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        topic: str = "",
        members: list[str] | tuple[str, ...] = (),
        is_private: bool = False,
        is_archived: bool = False,
    ) -> dict[str, Any]:
        """A channel with these members (add the bot's id for the bot to be in it)."""
        channel = {
            "id": channel_id,
            "name": name,
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private,
            "is_archived": is_archived,
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
        found = self.channel(channel)
        if user is not None and user not in self.users:
            raise SlackError("user_not_found")
        if user is not None and user not in found["members"]:
            if not join:
                raise SlackError("not_in_channel")
            found["members"].append(user)
        if thread_ts and self.find(found["id"], thread_ts) is None:
            raise SlackError("thread_not_found")
        message: dict[str, Any] = {
            "type": "message",
            "ts": ts or self.new_ts(),
            "text": text,
            "team": self.team_id,
            **extra,
        }
        if user is not None:
            message["user"] = user
            if self.users[user]["is_bot"] and user != self.bot_user_id:
                message["bot_id"] = "B" + user.removeprefix("U")
        self.insert(found["id"], message, thread_ts)
        return copy.deepcopy(message)

    def new_trigger(
        self, user: str | None, *, trigger_id: str | None = None, ttl: float = 3.0
    ) -> str:
        """A ``trigger_id`` for an interaction by ``user``, valid for ``ttl`` seconds."""
        self._counter += 1
        trigger = trigger_id or f"{self._counter}.{int(self.clock())}.{secrets.token_hex(8)}"
        self.triggers[trigger] = Trigger(user=user, expires=self.clock() + ttl)
        return trigger

    # -- reading ------------------------------------------------------------------------

    def find_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        found = self.find(channel, ts)
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
        return str(self.ensure_dm(user)["id"])

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

    # -- lookups the API families share -------------------------------------------------

    def channel(self, channel_id: Any) -> dict[str, Any]:
        """A conversation by id or ``#name``, or ``channel_not_found``."""
        if not channel_id:
            raise SlackError("channel_not_found")
        channel = self.channels.get(str(channel_id))
        if channel is None:
            name = str(channel_id).removeprefix("#")
            channel = next((c for c in self.channels.values() if c["name"] == name), None)
        if channel is None:
            raise SlackError("channel_not_found")
        return channel

    def readable_channel(self, channel_id: Any) -> dict[str, Any]:
        """A conversation the bot is in; one it is not in is hidden when private."""
        channel = self.channel(channel_id)
        if self.bot_user_id not in channel["members"]:
            hidden = channel["is_private"] or channel["is_im"]
            raise SlackError("channel_not_found" if hidden else "not_in_channel")
        return channel

    def channel_for_post(self, channel_id: Any) -> dict[str, Any]:
        """Where a post lands: a user id means the DM with that person."""
        if isinstance(channel_id, str) and channel_id in self.users:
            return self.ensure_dm(channel_id)
        channel = self.readable_channel(channel_id)
        if channel["is_archived"]:
            raise SlackError("is_archived")
        return channel

    def public_channel(self, channel: Mapping[str, Any]) -> dict[str, Any]:
        """A conversation as the Web API describes it (members left out)."""
        public = {k: v for k, v in channel.items() if k != "members"}
        public["is_member"] = self.bot_user_id in channel["members"]
        return public

    def find(self, channel_id: str, ts: Any) -> dict[str, Any] | None:
        for message in self.messages.get(channel_id, []):
            if message["ts"] == ts:
                return message
        return None

    def own_message(self, channel_id: str, ts: Any, error: str) -> dict[str, Any]:
        """The bot's own message (``error`` when it is someone else's)."""
        message = self.find(channel_id, ts)
        if message is None:
            raise SlackError("message_not_found")
        if message.get("bot_id") != self.bot_id:
            raise SlackError(error)
        return message

    def ensure_dm(self, user_id: str) -> dict[str, Any]:
        channel_id = dm_channel_id(user_id)
        if channel_id not in self.channels:
            channel = self.add_channel(channel_id, channel_id, members=[user_id, self.bot_user_id])
            channel.update({"is_channel": False, "is_group": False, "is_im": True})
            channel.update({"is_private": True, "user": user_id})
            self.emit("channel", {"channel": channel})
        return self.channels[channel_id]

    # -- changes --------------------------------------------------------------------------

    def emit(self, kind: str, data: dict[str, Any], *, user: str | None = None) -> None:
        change = Change(kind=kind, data=copy.deepcopy(data), user=user)
        for listener in list(self.listeners):
            listener(change)

    def new_ts(self) -> str:
        now = max(self.clock(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    def new_view_id(self) -> str:
        self._counter += 1
        view_id = f"V{self._counter:05d}{secrets.token_hex(3).upper()}"
        self.created.append(view_id)
        return view_id

    def store_view(
        self, view_id: str, view: dict[str, Any], *, user_id: str | None
    ) -> dict[str, Any]:
        self._counter += 1
        stored = {
            **view,
            "id": view_id,
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "hash": f"{int(self.clock())}.{self._counter:08d}",
            "user_id": user_id,
        }
        self.views[view_id] = stored
        return copy.deepcopy(stored)

    def bot_message(self, text: str, **content: Any) -> dict[str, Any]:
        """A new message from the bot (not stored yet: see :meth:`insert`)."""
        return {
            "type": "message",
            "ts": self.new_ts(),
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": text,
            **{k: v for k, v in content.items() if v},
        }

    def show_ephemeral(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        **content: Any,
    ) -> dict[str, Any]:
        """Show ``user`` a message only they see (acks of slash commands use this too)."""
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "ephemeral",
            "channel": channel,
            "user_visible": user,
            "ts": self.new_ts(),
            "text": text,
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            **{k: v for k, v in content.items() if v},
        }
        if blocks:
            message["blocks"] = blocks
        if thread_ts:
            message["thread_ts"] = thread_ts
        self.ephemeral.append(message)
        self.created.append(message["ts"])
        self.emit("ephemeral", {"channel": channel, "message": message}, user=user)
        return message

    def insert(self, channel_id: str, message: dict[str, Any], thread_ts: str | None) -> None:
        """Store a message (a reply to a reply lands in the root's thread, as in Slack)."""
        stored = self.messages.setdefault(channel_id, [])
        parent = self.find(channel_id, thread_ts) if thread_ts else None
        if parent is not None and parent.get("thread_ts") not in (None, parent["ts"]):
            parent = self.find(channel_id, parent["thread_ts"]) or parent
        if thread_ts:
            message["thread_ts"] = parent["ts"] if parent is not None else thread_ts
        stored.append(message)
        stored.sort(key=lambda m: float(m["ts"]))
        self.created.append(message["ts"])
        self.emit("message", {"channel": channel_id, "message": message})
        if parent is not None:
            parent["thread_ts"] = parent["ts"]
            self._refresh_thread(channel_id, parent)

    def remove(self, channel_id: str, message: dict[str, Any]) -> None:
        self.messages[channel_id].remove(message)
        self.emit("message_deleted", {"channel": channel_id, "ts": message["ts"]})
        parent_ts = message.get("thread_ts")
        if parent_ts and parent_ts != message["ts"]:
            parent = self.find(channel_id, parent_ts)
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
        self.emit("message", {"channel": channel_id, "message": parent})


Method = Callable[[WorkspaceState, dict[str, Any]], dict[str, Any]]
"""One Web API method: the workspace and the decoded arguments in, the answer's fields out."""
