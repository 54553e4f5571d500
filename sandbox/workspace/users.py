"""``auth.test``, ``users.*`` and ``usergroups.*``: who the bot is, the people, their
conversations (what the bot may know of) and the usergroups."""

from __future__ import annotations

from typing import Any

from sandbox.workspace._args import conversation_type, offset_page, truthy
from sandbox.workspace.blocks import SlackError
from sandbox.workspace.state import Method, WorkspaceState

__all__ = ["METHODS"]


def auth_test(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": ws.url,
        "team": ws.team_name,
        "user": "switchboard",
        "team_id": ws.team_id,
        "user_id": ws.bot_user_id,
        "bot_id": ws.bot_id,
        "is_enterprise_install": False,
    }


def info(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    user = ws.users.get(str(args.get("user")))
    if user is None:
        raise SlackError("user_not_found")
    return {"user": user}


def list_(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    page, cursor = offset_page(list(ws.users.values()), args)
    return {
        "members": page,
        "cache_ts": int(ws.clock()),
        "response_metadata": {"next_cursor": cursor},
    }


def conversations(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    """The conversations ``user`` is in that the bot may know of: public channels, and
    private channels, group DMs and DMs the bot is in too (as with a bot token)."""
    user = str(args.get("user") or ws.bot_user_id)
    if user not in ws.users:
        raise SlackError("user_not_found")
    types = {t.strip() for t in str(args.get("types") or "public_channel").split(",")}
    exclude_archived = truthy(args.get("exclude_archived"))
    found = []
    for channel in ws.channels.values():
        if user not in channel["members"]:
            continue
        kind = conversation_type(channel)
        shared = ws.bot_user_id in channel["members"]
        if kind not in types or (kind != "public_channel" and not shared):
            continue
        if exclude_archived and channel.get("is_archived"):
            continue
        found.append(ws.public_channel(channel))
    page, cursor = offset_page(found, args)
    return {"channels": page, "response_metadata": {"next_cursor": cursor}}


def usergroups_list(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    groups = list(ws.usergroups.values())
    if not truthy(args.get("include_users")):
        groups = [{k: v for k, v in g.items() if k != "users"} for g in groups]
    return {"usergroups": groups}


def usergroups_users_list(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    group = ws.usergroups.get(str(args.get("usergroup")))
    if group is None:
        raise SlackError("no_such_subteam")
    return {"users": list(group["users"])}


METHODS: dict[str, Method] = {
    "api.test": lambda ws, args: {"args": args},
    "auth.test": auth_test,
    "users.info": info,
    "users.list": list_,
    "users.conversations": conversations,
    "usergroups.list": usergroups_list,
    "usergroups.users.list": usergroups_users_list,
}
