"""``reactions.add`` / ``reactions.remove``: the bot's emoji reactions on a message."""

from __future__ import annotations

from typing import Any

from sandbox.workspace.blocks import SlackError
from sandbox.workspace.state import Method, WorkspaceState

__all__ = ["METHODS"]


def _target(ws: WorkspaceState, args: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    channel = ws.readable_channel(args.get("channel"))
    message = ws.find(channel["id"], args.get("timestamp"))
    if message is None:
        raise SlackError("message_not_found")
    name = str(args.get("name") or "").strip(":")
    if not name:
        raise SlackError("invalid_name")
    return channel["id"], message, name


def add(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    channel, message, name = _target(ws, args)
    reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
    entry = next((r for r in reactions if r["name"] == name), None)
    if entry is None:
        entry = {"name": name, "users": [], "count": 0}
        reactions.append(entry)
    if ws.bot_user_id in entry["users"]:
        raise SlackError("already_reacted")
    entry["users"].append(ws.bot_user_id)
    entry["count"] = len(entry["users"])
    ws.emit("message", {"channel": channel, "message": message})
    return {}


def remove(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    channel, message, name = _target(ws, args)
    reactions: list[dict[str, Any]] = message.get("reactions", [])
    entry = next((r for r in reactions if r["name"] == name), None)
    if entry is None or ws.bot_user_id not in entry["users"]:
        raise SlackError("no_reaction")
    entry["users"].remove(ws.bot_user_id)
    entry["count"] = len(entry["users"])
    if not entry["users"]:
        reactions.remove(entry)
    ws.emit("message", {"channel": channel, "message": message})
    return {}


METHODS: dict[str, Method] = {"reactions.add": add, "reactions.remove": remove}
