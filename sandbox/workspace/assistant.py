"""``assistant.threads.*``: an Assistant thread's status, title and suggested prompts."""

from __future__ import annotations

from typing import Any

from sandbox.workspace.blocks import SlackError
from sandbox.workspace.state import Method, WorkspaceState

__all__ = ["METHODS"]


def _state(ws: WorkspaceState, args: dict[str, Any]) -> tuple[tuple[str, str], dict[str, Any]]:
    channel = ws.channel(args.get("channel_id"))
    thread_ts = args.get("thread_ts")
    if not thread_ts:
        raise SlackError("invalid_arguments")
    key = (str(channel["id"]), str(thread_ts))
    return key, ws.assistant_threads.setdefault(key, {})


def _announce(ws: WorkspaceState, key: tuple[str, str], state: dict[str, Any]) -> None:
    channel = ws.channels.get(key[0]) or {}
    data = {"channel": key[0], "thread_ts": key[1], "state": state}
    ws.emit("assistant", data, user=channel.get("user"))


def set_status(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    key, state = _state(ws, args)
    if "status" not in args:
        raise SlackError("invalid_arguments")
    state["status"] = str(args["status"])
    if "loading_messages" in args:
        state["loading_messages"] = args["loading_messages"]
    _announce(ws, key, state)
    return {}


def set_suggested_prompts(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    key, state = _state(ws, args)
    prompts = args.get("prompts")
    if not isinstance(prompts, list) or not 1 <= len(prompts) <= 4:
        raise SlackError("invalid_arguments")
    for prompt in prompts:
        if not isinstance(prompt, dict) or not prompt.get("title") or not prompt.get("message"):
            raise SlackError("invalid_arguments")
    state["prompts"] = prompts
    if args.get("title"):
        state["prompts_title"] = str(args["title"])
    _announce(ws, key, state)
    return {}


def set_title(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    key, state = _state(ws, args)
    if not args.get("title"):
        raise SlackError("invalid_arguments")
    state["title"] = str(args["title"])
    _announce(ws, key, state)
    return {}


METHODS: dict[str, Method] = {
    "assistant.threads.setStatus": set_status,
    "assistant.threads.setSuggestedPrompts": set_suggested_prompts,
    "assistant.threads.setTitle": set_title,
}
