"""What a queued turn shows in its thread: the placeholder with Stop, and its end states."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

STOP_ACTION = "run_stop"
WORKING_TEXT = "Working on it…"


def busy_text(position: int) -> str:
    return f"I'm busy right now — you're #{position} in line. I'll answer here."


def placeholder_blocks(text: str, *, job_id: int | None) -> list[dict[str, Any]]:
    """The status message of a turn; with a Stop button while it can still be stopped."""
    blocks: list[Any] = [
        SectionBlock(text=MarkdownTextObject(text=f":hourglass_flowing_sand: {text}"))
    ]
    if job_id is not None:
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text=PlainTextObject(text="Stop"),
                        action_id=STOP_ACTION,
                        value=str(job_id),
                        style="danger",
                    )
                ]
            )
        )
    return [b.to_dict() for b in blocks]


def stopped_text(user: str | None) -> str:
    return f"Stopped by <@{user}>." if user else "Stopped."


def approval_waiting_text(tool: str) -> str:
    return f"`{tool}` needs approval — see the card below."


REFUSED_TEXT = "I couldn't take this one; I've told you why in a note only you can see."
