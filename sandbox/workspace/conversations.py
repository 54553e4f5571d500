"""``conversations.*``: history and threads (paginated as Slack pages them), a conversation's
description and members, and opening DMs and group DMs."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

from sandbox.workspace._args import (
    decode_cursor,
    encode_cursor,
    in_window,
    is_top_level,
    limit_arg,
    offset_page,
    truthy,
    ts_arg,
)
from sandbox.workspace.blocks import SlackError
from sandbox.workspace.state import Method, WorkspaceState, dm_channel_id

__all__ = ["METHODS"]


def _window(args: dict[str, Any]) -> Callable[[str], bool]:
    """Whether a ts is in the ``oldest``…``latest`` window (``inclusive``: ends included)."""
    inclusive = truthy(args.get("inclusive"))
    oldest = ts_arg(args.get("oldest"), 0.0)
    latest = ts_arg(args.get("latest"), math.inf)
    return lambda ts: in_window(ts, oldest, latest, inclusive)


def _shown(messages: list[dict[str, Any]], args: dict[str, Any]) -> list[dict[str, Any]]:
    """Messages as Slack lists them: their ``metadata`` only with ``include_all_metadata``."""
    if truthy(args.get("include_all_metadata")):
        return messages
    return [{k: v for k, v in m.items() if k != "metadata"} for m in messages]


def history(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    """Top-level messages, newest first, in the ``oldest``…``latest`` window."""
    channel = ws.readable_channel(args.get("channel"))
    limit = limit_arg(args.get("limit"), default=100, maximum=999)
    within = _window(args)
    before = decode_cursor(args.get("cursor"), "next_ts")
    window = [m for m in ws.messages[channel["id"]] if is_top_level(m) and within(m["ts"])]
    window.sort(key=lambda m: float(m["ts"]), reverse=True)
    if before is not None:
        window = [m for m in window if float(m["ts"]) < before]
    page, rest = window[:limit], window[limit:]
    return {
        "messages": _shown(page, args),
        "has_more": bool(rest),
        "pin_count": 0,
        "response_metadata": {
            "next_cursor": encode_cursor("next_ts", page[-1]["ts"]) if rest else ""
        },
    }


def replies(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    """The root first (on every page unless ``repeat_thread_root`` is off), then replies."""
    channel = ws.readable_channel(args.get("channel"))
    ts = args.get("ts")
    if not ts:
        raise SlackError("invalid_arguments")
    found = ws.find(channel["id"], ts)
    if found is None:
        raise SlackError("thread_not_found")
    root_ts = found.get("thread_ts") or found["ts"]
    root = ws.find(channel["id"], root_ts) or found
    limit = limit_arg(args.get("limit"), default=1000, maximum=1000)
    within = _window(args)
    after = decode_cursor(args.get("cursor"), "next_ts")
    thread = [
        m
        for m in ws.messages[channel["id"]]
        if m.get("thread_ts") == root_ts and m["ts"] != root_ts and within(m["ts"])
    ]
    if after is not None:
        thread = [m for m in thread if float(m["ts"]) > after]
    with_root = after is None or ws.repeat_thread_root
    take = max(1, limit - 1) if with_root else limit
    page, rest = thread[:take], thread[take:]
    return {
        "messages": _shown([root, *page] if with_root else page, args),
        "has_more": bool(rest),
        "response_metadata": {
            "next_cursor": encode_cursor("next_ts", page[-1]["ts"]) if rest else ""
        },
    }


def info(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    channel = ws.channel(args.get("channel"))
    public = ws.public_channel(channel)
    public["num_members"] = len(channel["members"])
    return {"channel": public}


def members(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    channel = ws.readable_channel(args.get("channel"))
    page, cursor = offset_page(list(channel["members"]), args)
    return {"members": page, "response_metadata": {"next_cursor": cursor}}


def open_(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    """A DM with one person, or a group DM (``G…``) with the bot and several."""
    if args.get("channel"):
        return {"channel": {"id": ws.channel(args["channel"])["id"]}, "already_open": True}
    users = [u.strip() for u in str(args.get("users") or "").split(",") if u.strip()]
    if not users:
        raise SlackError("users_list_not_supplied")
    for user in users:
        if user not in ws.users or ws.users[user]["is_bot"]:
            raise SlackError("user_not_found")
    if len(users) == 1:
        already = dm_channel_id(users[0]) in ws.channels
        return {"channel": {"id": ws.ensure_dm(users[0])["id"]}, "already_open": already}
    key = "-".join(sorted(users))
    channel_id = "G" + base64.b32encode(key.encode()).decode()[:9]
    already = channel_id in ws.channels
    if not already:
        group = ws.add_channel(
            channel_id, f"mpdm-{key}", members=[*users, ws.bot_user_id], is_private=True
        )
        group.update({"is_mpim": True, "is_group": False})
        ws.emit("channel", {"channel": group})
    return {"channel": {"id": channel_id}, "already_open": already}


METHODS: dict[str, Method] = {
    "conversations.history": history,
    "conversations.replies": replies,
    "conversations.info": info,
    "conversations.members": members,
    "conversations.open": open_,
}
