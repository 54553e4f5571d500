"""Block Kit for schedules: the create modal, the channel list with buttons, App Home."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    ConversationSelectElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.views.text import escape_mrkdwn, escape_mrkdwn_but_people
from storage.schedules import Schedule

SCHEDULE_MODAL = "schedule_create"
PAUSE = "schedule_pause"
RESUME = "schedule_resume"
DELETE = "schedule_delete"
RUN_NOW = "schedule_run_now"
ACTIONS = (PAUSE, RESUME, DELETE, RUN_NOW)

# block ids / action ids of the modal's inputs
SKILL, INPUT, CHANNEL, WHEN, TZ = "skill", "input", "channel", "when", "tz"

HELP_LINES = [
    "• `/switchboard schedule` — schedule a skill (opens a form), or in one line: "
    "`/switchboard schedule digest #payments-alerts every weekday at 9:00 [tz Asia/Dubai] "
    "[-- input]`",
    "• `/switchboard schedule standup @team #channel every weekday at 9:30 [for 1h]` — a "
    "stand-up: DMs the group, posts a summary when the window closes",
    "• `/switchboard schedules` — this channel's schedules, with pause, resume, delete and "
    "run-now buttons",
]

Summary = Callable[[Schedule], str]


def _mrkdwn(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text[:3000])


def schedule_modal(
    *, skills: Sequence[str], channel: str | None, tz: str, metadata: str = ""
) -> View:
    """The form behind ``/switchboard schedule``."""
    options = [Option(text=PlainTextObject(text=name[:75]), value=name) for name in skills][:100]
    return View(
        type="modal",
        callback_id=SCHEDULE_MODAL,
        title=PlainTextObject(text="New schedule"),
        submit=PlainTextObject(text="Save"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=metadata,
        blocks=[
            InputBlock(
                block_id=SKILL,
                label=PlainTextObject(text="Skill"),
                # no silent pre-selection: the person picks the skill
                element=StaticSelectElement(
                    action_id=SKILL,
                    options=options,
                    placeholder=PlainTextObject(text="Choose a skill"),
                ),
            ),
            InputBlock(
                block_id=INPUT,
                label=PlainTextObject(text="Input"),
                optional=True,
                hint=PlainTextObject(text="What the skill is asked each time, e.g. 24h"),
                element=PlainTextInputElement(action_id=INPUT, max_length=2000),
            ),
            InputBlock(
                block_id=CHANNEL,
                label=PlainTextObject(text="Post results in"),
                element=ConversationSelectElement(
                    action_id=CHANNEL,
                    initial_conversation=channel,
                    default_to_current_conversation=channel is None,
                ),
            ),
            InputBlock(
                block_id=WHEN,
                label=PlainTextObject(text="When"),
                hint=PlainTextObject(
                    text="every weekday at 9:00 · every monday at 10am · every 2 hours · "
                    "0 9 * * 1-5 · tomorrow at 15:00"
                ),
                element=PlainTextInputElement(action_id=WHEN, max_length=200),
            ),
            InputBlock(
                block_id=TZ,
                label=PlainTextObject(text="Time zone"),
                hint=PlainTextObject(text="An IANA name such as Europe/Lisbon or Asia/Dubai"),
                element=PlainTextInputElement(action_id=TZ, initial_value=tz, max_length=64),
            ),
        ],
    )


def created_text(skill: str, channel: str, echo: str, schedule_id: str) -> str:
    return (
        f":calendar: Scheduled *{escape_mrkdwn(skill)}* in <#{channel}> "
        f"(`{schedule_id[:8]}`)\n{escape_mrkdwn(echo)}"
    )


def _status(row: Schedule) -> str:
    if not row.enabled:
        reason = f" — {escape_mrkdwn_but_people(row.paused_reason)}" if row.paused_reason else ""
        return f":double_vertical_bar: paused{reason}"
    icons = {"ok": ":white_check_mark:", "failed": ":x:", "missed": ":hourglass:"}
    if row.last_status is None:
        return "not run yet"
    return f"{icons.get(row.last_status, '')} last run {row.last_status}".strip()


def schedule_line(row: Schedule, summary: Summary) -> str:
    text = f"*{escape_mrkdwn(summary(row))}*\n{_status(row)} · owner <@{row.owner}>"
    if row.input_text:
        text += f" · input `{escape_mrkdwn(row.input_text[:80])}`"
    if row.failure_streak:
        text += f" · {row.failure_streak} failure(s) in a row"
    return f"{text} · `{row.id[:8]}`"


def schedule_buttons(row: Schedule) -> ActionsBlock:
    toggle = (
        ButtonElement(text=PlainTextObject(text="Pause"), action_id=PAUSE, value=row.id)
        if row.enabled
        else ButtonElement(text=PlainTextObject(text="Resume"), action_id=RESUME, value=row.id)
    )
    return ActionsBlock(
        block_id=f"schedule:{row.id}",
        elements=[
            toggle,
            ButtonElement(text=PlainTextObject(text="Run now"), action_id=RUN_NOW, value=row.id),
            ButtonElement(
                text=PlainTextObject(text="Delete"), action_id=DELETE, value=row.id, style="danger"
            ),
        ],
    )


def channel_list_blocks(
    rows: Sequence[Schedule], *, channel: str, summary: Summary, note: str | None = None
) -> list[Block]:
    """``/switchboard schedules``: each schedule with next run, last status and buttons."""
    blocks: list[Block] = []
    if note:
        blocks.append(ContextBlock(elements=[_mrkdwn(note)]))
    if not rows:
        blocks.append(
            SectionBlock(
                text=_mrkdwn(
                    f"No schedules post in <#{channel}>. Create one with `/switchboard schedule`."
                )
            )
        )
        return blocks
    for row in rows[:24]:
        blocks.append(SectionBlock(text=_mrkdwn(schedule_line(row, summary))))
        blocks.append(schedule_buttons(row))
    if len(rows) > 24:
        blocks.append(ContextBlock(elements=[_mrkdwn(f"…and {len(rows) - 24} more.")]))
    return blocks


def channel_list_text(rows: Sequence[Schedule], *, channel: str, summary: Summary) -> str:
    if not rows:
        return f"No schedules post in <#{channel}>."
    return "\n".join(f"• {summary(row)}" for row in rows)


def home_blocks(rows: Sequence[Schedule], *, summary: Summary) -> list[Block]:
    """The App Home section "Your schedules"."""
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="Your schedules"))]
    if not rows:
        blocks.append(
            SectionBlock(text=_mrkdwn("You have no schedules. Try `/switchboard schedule`."))
        )
        return blocks
    for row in rows[:15]:
        blocks.append(
            SectionBlock(text=_mrkdwn(f"{schedule_line(row, summary)} · <#{row.channel_id}>"))
        )
        blocks.append(schedule_buttons(row))
    if len(rows) > 15:
        blocks.append(ContextBlock(elements=[_mrkdwn(f"…and {len(rows) - 15} more.")]))
    return blocks
