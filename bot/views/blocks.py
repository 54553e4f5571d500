"""Block Kit builders and user-facing texts (built with slack_sdk models, so Slack's limits
are checked when the blocks are built)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.views.text import LinkPolicy, escape_mrkdwn, markdown_to_mrkdwn, split_message
from skills.outcomes import ApprovalRequest, Refusal
from skills.pii import mask_obj, mask_text, strip_token_ids
from skills.registry import Skill

FEEDBACK_UP = "feedback_up"
FEEDBACK_DOWN = "feedback_down"
FEEDBACK_MODAL = "feedback_comment"
COMMAND = "/switchboard"

USAGE = f"""*Switchboard* — AI skills in Slack.
• `{COMMAND} help` — this help
• `{COMMAND} skills` — the skills you can use here
• `{COMMAND} <skill> <text>` — run a skill, e.g. `{COMMAND} digest #payments-alerts 24h`
• `{COMMAND} reset` — forget this conversation (in a DM) or the channel's conversation
Mention me in a channel (`@Switchboard …`) and I answer in the thread; reply in that thread \
and I keep the context. In a DM, just write."""


def _mrkdwn(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text)


def safe_answer(text: str, *, links: LinkPolicy) -> str:
    """Model Markdown → Slack mrkdwn, PII masked, mentions and control sequences escaped,
    links only to the domains ``links`` allows (others shown as inert text)."""
    return markdown_to_mrkdwn(strip_token_ids(mask_text(text)), links=links)


def answer_chunks(text: str, *, links: LinkPolicy) -> list[str]:
    """An answer split under Slack's per-message limit (at least one chunk)."""
    return split_message(safe_answer(text, links=links)) or ["(no answer)"]


def feedback_actions(run_id: str, skill: str) -> ActionsBlock:
    value = f"{run_id}|{skill}"
    return ActionsBlock(
        block_id="feedback",
        elements=[
            ButtonElement(text=PlainTextObject(text="👍"), action_id=FEEDBACK_UP, value=value),
            ButtonElement(text=PlainTextObject(text="👎"), action_id=FEEDBACK_DOWN, value=value),
        ],
    )


def feedback_blocks(run_id: str, skill: str) -> list[Block]:
    """The skill label and 👍/👎 buttons under an answer."""
    label = ContextBlock(elements=[_mrkdwn(f"_{skill}_ · was this helpful?")])
    return [label, feedback_actions(run_id, skill)]


def answer_blocks(chunk: str, *, run_id: str | None, skill: str, last: bool) -> list[Block]:
    """A chunk of an answer; the last chunk carries the skill label and feedback buttons."""
    blocks: list[Block] = [SectionBlock(text=_mrkdwn(chunk))]
    if last and run_id is not None:
        blocks.extend(feedback_blocks(run_id, skill))
    return blocks


def asked_by(user: str, skill: str | None, text: str) -> ContextBlock:
    """The line above a ``/switchboard <skill> …`` answer in the channel: who asked what."""
    shown = escape_mrkdwn(mask_text(text) if text and text != skill else "")[:200]
    command = f"{COMMAND} {skill or ''} {shown}".strip()
    return ContextBlock(elements=[_mrkdwn(f"<@{user}> asked `{command}`")])


def feedback_thanks(value: str) -> str:
    """What the person who clicked 👍/👎 sees (only they see it; the buttons stay)."""
    emoji = "👍" if value == "up" else "👎"
    return f"{emoji} Thanks, your feedback is recorded. Click again to change it."


def feedback_modal(*, run_id: str, skill: str, channel: str, message_ts: str) -> View:
    from slack_sdk.models.blocks import InputBlock, PlainTextInputElement

    return View(
        type="modal",
        callback_id=FEEDBACK_MODAL,
        private_metadata=f"{run_id}|{skill}|{channel}|{message_ts}",
        title=PlainTextObject(text="What went wrong?"),
        submit=PlainTextObject(text="Send"),
        close=PlainTextObject(text="Skip"),
        blocks=[
            InputBlock(
                block_id="comment",
                # Slack adds "(optional)" to an optional input's label itself.
                label=PlainTextObject(text="Tell the skill's owners"),
                optional=True,
                element=PlainTextInputElement(action_id="text", multiline=True, max_length=2000),
            )
        ],
    )


def skills_text(skills: Sequence[Skill]) -> str:
    if not skills:
        return "You can't use any skill here."
    lines = ["*Skills you can use here:*"]
    for skill in skills:
        lines.append(f"• *{skill.name}* — {escape_mrkdwn(skill.description)}")
    return "\n".join(lines)


def refusal_text(refusal: Refusal) -> str:
    text = escape_mrkdwn(refusal.reason)
    if refusal.allowed_skills:
        text += " You can use: " + ", ".join(f"`{name}`" for name in refusal.allowed_skills)
    return text


def approval_pending_blocks(request: ApprovalRequest) -> list[Block]:
    """Shown when a run pauses on a gated tool (the interactive card comes with approvals)."""
    args = mask_obj(request.args)
    pairs = ", ".join(f"`{k}`={escape_mrkdwn(str(v))}" for k, v in sorted(args.items()))
    approvers = [*(f"<@{u}>" for u in request.policy.users)]
    approvers += [f"<!subteam^{g}>" for g in request.policy.usergroups]
    return [
        SectionBlock(
            text=_mrkdwn(
                f":lock: *{request.skill}* wants to run *{request.tool}* ({pairs}) "
                f"and needs approval from {', '.join(approvers) or 'an approver'}."
            )
        )
    ]


def error_text(ref: str) -> str:
    return f"Sorry, something went wrong on my side. (reference `{ref}`)"


Examples = Mapping[str, Sequence[str]]
"""Skill name → the examples worth showing (``Runtime.examples``: on the offline model, only
those that work there)."""


def example_message(skill: Skill, example: str) -> str:
    """What to send to run ``example`` with ``skill``: the skill's name first, so the
    example reaches that skill whatever the router would have picked."""
    named = example.split(" ", 1)[0].lower() == skill.name
    return example if named else f"{skill.name} {example}"


def _examples_of(skill: Skill, examples: Examples | None) -> Sequence[str]:
    return skill.examples if examples is None else examples.get(skill.name, ())


HELP_TRIGGER = (
    r"^\s*(?:help|hi|hello|hey|hiya|howdy|what can you do|what do you do|who are you"
    r"|how does this work|how do i use (?:this|you)|commands|usage|\?)\s*[?.!]*\s*$"
)
"""A whole message that asks what Switchboard is: it gets :func:`help_text`, not a run."""


def help_text(
    skills: Sequence[Skill],
    *,
    examples: Examples | None = None,
    offline_note: str | None = None,
    in_dm: bool = False,
) -> str:
    """The answer to "help" / "hi" / "what can you do": the skills this person may use
    here, each with examples that work here, and how to reach them."""
    how = "Send me one of these" if in_dm else "Mention me (`@Switchboard …`) with one of these"
    lines = [
        "*Hi, I'm Switchboard* — AI skills in Slack. Here's what I can do for you here:",
    ]
    if not skills:
        lines.append("• No skills are available to you here yet.")
    for skill in skills:
        lines.append(f"• *{skill.name}* — {escape_mrkdwn(skill.description)}")
        shown = _examples_of(skill, examples)[:2]
        if shown:
            tries = " · ".join(f"`{escape_mrkdwn(example_message(skill, e))}`" for e in shown)
            lines.append(f"     Try: {tries}")
    lines.append(f"{how}, or use `{COMMAND} <skill> <text>`; `{COMMAND} help` lists every command.")
    if offline_note:
        lines.append(offline_note)
    return "\n".join(lines)


def home_view(
    skills: Sequence[Skill],
    *,
    user: str,
    sections: Sequence[Block] = (),
    examples: Examples | None = None,
) -> View:
    """The App Home tab: the skills this person may use, with examples that work here."""
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text="Switchboard")),
        SectionBlock(
            text=_mrkdwn(
                f"Hi <@{user}>! Mention me in a channel, write to me here, or use "
                f"`{COMMAND} <skill> <text>`."
            )
        ),
        DividerBlock(),
        HeaderBlock(text=PlainTextObject(text="Your skills")),
    ]
    if not skills:
        blocks.append(SectionBlock(text=_mrkdwn("No skills are available to you yet.")))
    for skill in skills[:40]:
        text = f"*{skill.name}*\n{escape_mrkdwn(skill.description)}"
        blocks.append(SectionBlock(text=_mrkdwn(text[:3000])))
        shown = _examples_of(skill, examples)[:3]
        if shown:
            tries = " · ".join(f"`{escape_mrkdwn(example_message(skill, e))}`" for e in shown)
            blocks.append(ContextBlock(elements=[_mrkdwn(("Try: " + tries)[:3000])]))
    if sections:
        blocks.extend([DividerBlock(), *sections])
    return View(type="home", blocks=blocks[:100])


def assistant_greeting(*, offline: str | None = None) -> str:
    """The Assistant panel's first message; offline it promises no free answers."""
    if offline is None:
        return "Hi! Ask me anything, or pick one of the suggestions below."
    return (
        "Hi! Pick one of the suggestions below, or say `help` to see what works here.\n" + offline
    )


def suggested_prompts(
    skills: Sequence[Skill], limit: int = 4, *, examples: Examples | None = None
) -> list[dict[str, str]]:
    """Assistant panel prompts drawn from the skills this person may use (one example each,
    only examples that work here)."""
    prompts: list[dict[str, str]] = []
    for skill in skills:
        for example in _examples_of(skill, examples)[:1]:
            message = example_message(skill, example)
            prompts.append({"title": f"{skill.name}: {example}"[:75], "message": message})
        if len(prompts) >= limit:
            break
    return prompts or [{"title": "What can you do?", "message": "What can you do?"}]
