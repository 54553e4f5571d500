"""``views.*``: App Home tabs and modals, checked with ``slack_sdk.models.views``; a modal
opens only with a fresh ``trigger_id`` (``invalid_trigger_id``, ``expired_trigger_id``)."""

from __future__ import annotations

from typing import Any

from sandbox.workspace.blocks import SlackError, check_view
from sandbox.workspace.state import Method, WorkspaceState

__all__ = ["METHODS"]


def publish(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    user_id = args.get("user_id")
    if not user_id or user_id not in ws.users:
        raise SlackError("user_not_found")
    view = check_view(args.get("view"), expected_type="home", block_ids=ws.block_ids)
    existing = ws.home_views.get(str(user_id))
    if existing and args.get("hash") and args["hash"] != ws.views[existing]["hash"]:
        raise SlackError("hash_conflict")
    stored = ws.store_view(existing or ws.new_view_id(), view, user_id=str(user_id))
    ws.home_views[str(user_id)] = stored["id"]
    ws.emit("home", {"view": stored}, user=str(user_id))
    return {"view": stored}


def open_(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    trigger_id = str(args.get("trigger_id") or args.get("interactivity_pointer") or "")
    if not trigger_id:
        raise SlackError("invalid_arguments")
    trigger = ws.triggers.pop(trigger_id, None)
    if trigger is None and not ws.any_trigger:
        raise SlackError("invalid_trigger_id")
    if trigger is not None and trigger.expires < ws.clock():
        raise SlackError("expired_trigger_id")
    user = trigger.user if trigger is not None else None
    view = check_view(args.get("view"), expected_type="modal", block_ids=ws.block_ids)
    stored = ws.store_view(ws.new_view_id(), view, user_id=user)
    if user is not None:
        ws.open_modals[user] = stored["id"]
        ws.emit("modal", {"view": stored}, user=user)
    return {"view": stored}


def update(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    view_id = args.get("view_id")
    if not view_id and args.get("external_id"):
        view_id = next(
            (k for k, v in ws.views.items() if v.get("external_id") == args["external_id"]),
            None,
        )
    if not view_id or view_id not in ws.views:
        raise SlackError("not_found")
    current = ws.views[str(view_id)]
    if args.get("hash") and args["hash"] != current["hash"]:
        raise SlackError("hash_conflict")
    view = check_view(args.get("view"), expected_type=str(current["type"]), block_ids=ws.block_ids)
    owner = current.get("user_id")
    stored = ws.store_view(str(view_id), view, user_id=owner)
    if owner and stored["type"] == "home":
        ws.emit("home", {"view": stored}, user=str(owner))
    elif owner and ws.open_modals.get(str(owner)) == view_id:
        ws.emit("modal", {"view": stored}, user=str(owner))
    return {"view": stored}


METHODS: dict[str, Method] = {
    "views.publish": publish,
    "views.open": open_,
    "views.update": update,
}
