"""``chat.*``: posting, editing and deleting the bot's messages, ephemeral messages, and
streamed answers (``chat.startStream`` / ``appendStream`` / ``stopStream``)."""

from __future__ import annotations

from typing import Any

from sandbox.workspace._args import (
    check_length,
    chunk_text,
    message_content,
    truthy,
)
from sandbox.workspace.blocks import MAX_MARKDOWN_TEXT, MAX_MESSAGE_BLOCKS, SlackError, check_blocks
from sandbox.workspace.state import Method, WorkspaceState

__all__ = ["METHODS"]


def post_message(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    channel = ws.channel_for_post(args.get("channel"))
    content = message_content(args, block_ids=ws.block_ids)
    thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
    message = ws.bot_message(**content)
    for key in ("metadata", "username", "icon_emoji", "icon_url"):
        if key in args:
            message[key] = args[key]
    if thread_ts and truthy(args.get("reply_broadcast")):
        message["subtype"] = "thread_broadcast"
    ws.insert(channel["id"], message, thread_ts)
    return {"channel": channel["id"], "ts": message["ts"], "message": message}


def update(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    channel = ws.channel(args.get("channel"))
    message = ws.own_message(channel["id"], args.get("ts"), "cant_update_message")
    content = message_content(args, block_ids=ws.block_ids, allow_empty_blocks=True)
    for key in ("blocks", "attachments"):
        message.pop(key, None)
    message.update(content)
    message["edited"] = {"user": ws.bot_user_id, "ts": ws.new_ts()}
    ws.emit("message", {"channel": channel["id"], "message": message})
    return {
        "channel": channel["id"],
        "ts": message["ts"],
        "text": message["text"],
        "message": message,
    }


def delete(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    channel = ws.channel(args.get("channel"))
    message = ws.own_message(channel["id"], args.get("ts"), "cant_delete_message")
    ws.remove(channel["id"], message)
    return {"channel": channel["id"], "ts": message["ts"]}


def post_ephemeral(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    channel = ws.channel_for_post(args.get("channel"))
    user = args.get("user")
    if not user or user not in ws.users:
        raise SlackError("user_not_found")
    if user not in channel["members"]:
        raise SlackError("user_not_in_channel")
    content = message_content(args, block_ids=ws.block_ids)
    message = ws.show_ephemeral(
        channel=channel["id"],
        user=str(user),
        thread_ts=str(args["thread_ts"]) if args.get("thread_ts") else None,
        **content,
    )
    return {"message_ts": message["ts"]}


def start_stream(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    channel = ws.channel_for_post(args.get("channel"))
    thread_ts = args.get("thread_ts")
    if not thread_ts:
        raise SlackError("invalid_arguments")
    if ws.find(channel["id"], thread_ts) is None:
        raise SlackError("thread_not_found")
    text = str(args.get("markdown_text") or "") + chunk_text(args.get("chunks"))
    check_length(text, MAX_MARKDOWN_TEXT)
    message = ws.bot_message(text)
    message["streaming"] = True
    for key in ("recipient_user_id", "recipient_team_id"):
        if args.get(key):
            message[key] = args[key]
    ws.insert(channel["id"], message, str(thread_ts))
    return {"channel": channel["id"], "ts": message["ts"]}


def _streaming(ws: WorkspaceState, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    channel = ws.channel(args.get("channel"))
    message = ws.own_message(channel["id"], args.get("ts"), "cant_update_message")
    if not message.get("streaming"):
        raise SlackError("message_not_in_streaming_state")
    return str(channel["id"]), message


def append_stream(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    channel, message = _streaming(ws, args)
    addition = str(args.get("markdown_text") or "") + chunk_text(args.get("chunks"))
    if not addition:
        raise SlackError("no_text")
    check_length(message["text"] + addition, MAX_MARKDOWN_TEXT)
    message["text"] += addition
    ws.emit("message", {"channel": channel, "message": message})
    return {"channel": channel, "ts": message["ts"]}


def stop_stream(ws: WorkspaceState, args: dict[str, Any]) -> dict[str, Any]:
    channel, message = _streaming(ws, args)
    message["text"] += str(args.get("markdown_text") or "") + chunk_text(args.get("chunks"))
    if args.get("blocks"):
        message["blocks"] = check_blocks(
            args["blocks"], limit=MAX_MESSAGE_BLOCKS, block_ids=ws.block_ids
        )
    if "metadata" in args:
        message["metadata"] = args["metadata"]
    message["streaming"] = False
    ws.emit("message", {"channel": channel, "message": message})
    return {"channel": channel, "ts": message["ts"], "message": message}


METHODS: dict[str, Method] = {
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.delete": delete,
    "chat.postEphemeral": post_ephemeral,
    "chat.startStream": start_stream,
    "chat.appendStream": append_stream,
    "chat.stopStream": stop_stream,
}
