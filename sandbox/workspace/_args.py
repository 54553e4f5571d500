"""Reading Web API arguments as Slack reads them: JSON fields, limits, cursors, content."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from sandbox.workspace.blocks import MAX_MARKDOWN_TEXT, MAX_MESSAGE_BLOCKS, SlackError, check_blocks

JSON_FIELDS = ("blocks", "attachments", "view", "prompts", "chunks", "metadata")
MAX_TEXT = 40_000


def truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def decode_json_fields(args: dict[str, Any]) -> dict[str, Any]:
    """Form-encoded calls send blocks, views… as JSON strings; JSON calls send objects."""
    decoded = dict(args)
    for key in JSON_FIELDS:
        value = decoded.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            try:
                decoded[key] = json.loads(value)
            except json.JSONDecodeError:
                raise SlackError(f"invalid_{key}") from None
    return decoded


def conversation_type(channel: Mapping[str, Any]) -> str:
    if channel.get("is_im"):
        return "im"
    if channel.get("is_mpim"):
        return "mpim"
    return "private_channel" if channel.get("is_private") else "public_channel"


def limit_arg(value: Any, *, default: int, maximum: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SlackError("invalid_limit") from None
    return default if number <= 0 else min(number, maximum)


def ts_arg(value: Any, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SlackError("invalid_ts_latest") from None


def in_window(ts: str, oldest: float, latest: float, inclusive: bool) -> bool:
    value = float(ts)
    return oldest <= value <= latest if inclusive else oldest < value < latest


def is_top_level(message: Mapping[str, Any]) -> bool:
    thread_ts = message.get("thread_ts")
    return (
        thread_ts is None
        or thread_ts == message["ts"]
        or message.get("subtype") == "thread_broadcast"
    )


def encode_cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def decode_cursor(cursor: Any, kind: str) -> float | None:
    """A cursor this method handed out (a ``next_ts`` cursor is no ``offset`` one)."""
    if not cursor:
        return None
    try:
        prefix, value = base64.b64decode(str(cursor)).decode().split(":", 1)
        if prefix != kind:
            raise ValueError(prefix)
        return float(value)
    except ValueError:
        raise SlackError("invalid_cursor") from None


def offset_page(items: list[Any], args: Mapping[str, Any]) -> tuple[list[Any], str]:
    limit = limit_arg(args.get("limit"), default=100, maximum=1000)
    start = decode_cursor(args.get("cursor"), "offset")
    offset = int(start) if start is not None else 0
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    return page, encode_cursor("offset", str(offset + limit)) if more else ""


def check_length(text: str, maximum: int) -> None:
    if len(text) > maximum:
        raise SlackError("msg_too_long")


def message_content(
    args: Mapping[str, Any], *, block_ids: bool, allow_empty_blocks: bool = False
) -> dict[str, Any]:
    """A message's text, blocks and attachments, checked (``no_text``, ``msg_too_long``,
    ``invalid_blocks``, ``invalid_attachments``)."""
    text = args.get("text")
    markdown_text = args.get("markdown_text")
    blocks = args.get("blocks")
    attachments = args.get("attachments")
    if not text and not markdown_text and not blocks and not attachments:
        raise SlackError("no_text")
    check_length(str(text or ""), MAX_TEXT)
    check_length(str(markdown_text or ""), MAX_MARKDOWN_TEXT)
    content: dict[str, Any] = {"text": str(text or markdown_text or "")}
    if blocks or (blocks == [] and not allow_empty_blocks):
        content["blocks"] = check_blocks(blocks, limit=MAX_MESSAGE_BLOCKS, block_ids=block_ids)
    if attachments:
        if not isinstance(attachments, list):
            raise SlackError("invalid_attachments")
        content["attachments"] = attachments
    return content


def chunk_text(chunks: Any) -> str:
    if not isinstance(chunks, list):
        return ""
    return "".join(
        str(c.get("text", ""))
        for c in chunks
        if isinstance(c, dict) and c.get("type") == "markdown_text"
    )
