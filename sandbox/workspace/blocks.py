"""Block Kit checked as Slack checks it: parsed and validated with ``slack_sdk.models``.

On top of what ``validate_json`` checks, the limits a renderer most often breaks and
``slack_sdk`` lets through: a section field over 2,000 characters, a header that is not
plain text or is empty, a context or actions block without elements, markdown blocks over
12,000 characters together, a modal without a title. A failure is ``invalid_blocks`` (views:
``invalid_arguments``) with the reasons in ``errors``, as Slack lists them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

__all__ = [
    "MAX_MARKDOWN_TEXT",
    "MAX_MESSAGE_BLOCKS",
    "MAX_VIEW_BLOCKS",
    "SlackError",
    "check_blocks",
    "check_view",
]

MAX_MARKDOWN_TEXT = 12_000
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_FIELD_TEXT = 2_000


class SlackError(Exception):
    """A Web API error answer (``{"ok": false, "error": code, …}``)."""

    def __init__(self, error: str, **extra: Any) -> None:
        self.error = error
        self.extra = extra
        super().__init__(error)


def check_blocks(value: Any, *, limit: int, block_ids: bool = True) -> list[dict[str, Any]]:
    """Blocks parsed and validated with ``slack_sdk.models``, or ``invalid_blocks``.

    ``block_ids``: give each block without one a ``block_id``, as Slack does.
    """
    if not isinstance(value, list):
        raise SlackError("invalid_blocks", errors=["blocks must be an array"])
    if len(value) > limit:
        raise SlackError("invalid_blocks", errors=[f"no more than {limit} items allowed"])
    errors: list[str] = []
    markdown_total = 0
    for index, raw in enumerate(value):
        pointer = f"[json-pointer:/blocks/{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            errors.append(f"a block must be an object with a type {pointer}")
            continue
        try:
            block = Block.parse(raw)
            if block is None:
                errors.append(f"unsupported block type {raw['type']!r} {pointer}")
                continue
            block.validate_json()
        except (SlackObjectFormationError, TypeError, ValueError, KeyError, AttributeError) as exc:
            errors.append(f"{exc} {pointer}")
            continue
        errors.extend(f"{problem} {pointer}" for problem in _beyond_slack_sdk(raw))
        if raw["type"] == "markdown":
            markdown_total += len(str(raw.get("text", "")))
    if markdown_total > MAX_MARKDOWN_TEXT:
        errors.append(f"markdown blocks exceed {MAX_MARKDOWN_TEXT} characters in total")
    if errors:
        raise SlackError("invalid_blocks", errors=errors)
    return [_with_block_id(block) for block in value] if block_ids else value


def _beyond_slack_sdk(block: dict[str, Any]) -> list[str]:
    """Slack's limits that ``validate_json`` does not check."""
    kind = block["type"]
    if kind == "section":
        fields = block.get("fields") or []
        if any(len(_text_of(f)) > MAX_FIELD_TEXT for f in fields):
            return [f"a field's text cannot exceed {MAX_FIELD_TEXT} characters"]
    elif kind == "header":
        text = block.get("text")
        if not isinstance(text, dict) or text.get("type") != "plain_text":
            return ["a header's text must be plain_text"]
        if not _text_of(text):
            return ["a header's text must not be empty"]
    elif kind in ("context", "actions") and not block.get("elements"):
        return [f"a {kind} block needs at least one element"]
    return []


def _text_of(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def _with_block_id(block: dict[str, Any]) -> dict[str, Any]:
    """Slack gives every block without a ``block_id`` one; derived from the content here,
    so the same blocks get the same ids (replays compare equal)."""
    if block.get("block_id"):
        return block
    digest = hashlib.sha1(json.dumps(block, sort_keys=True).encode(), usedforsecurity=False)
    return {**block, "block_id": base64.b32encode(digest.digest()).decode()[:5]}


def check_view(value: Any, *, expected_type: str, block_ids: bool = True) -> dict[str, Any]:
    """A view parsed and validated with ``slack_sdk.models.views.View``."""
    if not isinstance(value, dict) or value.get("type") != expected_type:
        raise SlackError("invalid_arguments", errors=[f"view must be of type {expected_type}"])
    if expected_type == "modal" and not value.get("title"):
        raise SlackError("invalid_arguments", errors=["a modal must have a title"])
    try:
        blocks = check_blocks(value.get("blocks", []), limit=MAX_VIEW_BLOCKS, block_ids=block_ids)
    except SlackError as exc:
        raise SlackError("invalid_arguments", errors=exc.extra.get("errors", [])) from None
    try:
        View(**value).validate_json()
    except (SlackObjectFormationError, TypeError, ValueError) as exc:
        raise SlackError("invalid_arguments", errors=[str(exc)]) from None
    return {**value, "blocks": blocks}
