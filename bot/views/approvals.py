"""The approval card (see the design contract), its modals, and what a click or a reset is
told: skills.approvals decides and returns data, this module says it in Slack's words."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.views.text import LinkPolicy, defang_links, escape_mrkdwn
from skills.approvals import (
    RESET_REASON,
    Decided,
    RefusalWhy,
    Refused,
    ResetResult,
    args_of,
    policy_of,
    schema_of,
)
from skills.pii import mask_obj, strip_token_ids
from storage.approvals import ApprovalRecord

APPROVE = "approval_approve"
REJECT = "approval_reject"
EDIT = "approval_edit"
REJECT_MODAL = "approval_reject_reason"
EDIT_MODAL = "approval_edit_args"


def slack_date(when: datetime, fmt: str = "{date_short_pretty} at {time}") -> str:
    """Slack's viewer-neutral date: each person sees it in their own time zone."""
    fallback = when.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{fmt}|{fallback}>"


def _mrkdwn(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text)


UNTRUSTED_NOTICE = (
    ":warning: This request came after the assistant read content from a Slack thread or a"
    " tool result, which anyone could have written. Check that the action and its arguments"
    " are what the requester wants before approving."
)


def after_untrusted(row: ApprovalRecord) -> bool:
    """Did the run read untrusted tool output before asking for this call?"""
    return bool(row.policy.get("after_untrusted", False))


def _mentions(users: Sequence[str], usergroups: Sequence[str]) -> list[str]:
    return [f"<@{u}>" for u in users] + [f"<!subteam^{g}>" for g in usergroups]


def approvers_text(row: ApprovalRecord) -> str:
    policy = policy_of(row)
    return ", ".join(_mentions(policy.users, policy.usergroups)) or "anyone"


_REFUSALS: dict[RefusalWhy, str] = {
    "approved_earlier": (
        "You approved an earlier version of this request, so the edited one needs "
        "someone else's approval."
    ),
    "edited": "You edited this request, so someone else has to approve it (four-eyes).",
    "four_eyes": "You asked for this action, so someone else has to approve it (four-eyes).",
    "not_editable": "This tool's requests can't be edited.",
}

_CLOSED = {
    "superseded": "replaced by an edited request",
    "abandoned": "abandoned (the conversation was reset)",
}


def refusal_text(refused: Refused) -> str:
    """Why the clicker may not do what they clicked, in a sentence."""
    if refused.why == "not_approver":
        who = ", ".join(_mentions(refused.users, refused.usergroups))
        return f"Only {who or 'the listed approvers'} can decide this request."
    return _REFUSALS[refused.why]


def decided_text(decided: Decided) -> str:
    """What the person who clicked is told (an ephemeral message) about their click."""
    row = decided.row
    if decided.refused is not None:
        return refusal_text(decided.refused)
    if decided.kind == "closed":
        who = f" by <@{row.decided_by}>" if row.decided_by else ""
        return f"This request was already {_CLOSED.get(row.status, row.status)}{who}."
    if decided.kind == "recorded":
        return f"Approval recorded ({len(decided.votes)} of {row.quorum})."
    return {
        "duplicate": "Your approval was already counted.",
        "approved": "Approved.",
        "rejected": "Rejected.",
        "expired": "This request has expired.",
        "edited": "Edited: the new arguments need approval.",
    }.get(decided.kind, "")


def reset_text(result: ResetResult) -> str | None:
    """Why a reset was refused (None: it was done)."""
    if result.done:
        return None
    tool = result.blocking.tool if result.blocking is not None else ""
    if result.refusal == "not_requester" and result.blocking is not None:
        return (
            f"This conversation is waiting for approval of `{tool}`, requested by "
            f"<@{result.blocking.requester}>, so only they can reset it. An approver can "
            "reject the request instead."
        )
    if result.refusal == "just_decided":
        return f"The request for `{tool}` was just decided; try again in a moment."
    return (
        "An approved action in this conversation is still being carried out; try again in a moment."
    )


def args_block_text(args: dict[str, Any]) -> str:
    shown = json.dumps(mask_obj(args), indent=2, sort_keys=True, ensure_ascii=False)
    shown = strip_token_ids(shown).replace("```", "'''")
    return "```" + escape_mrkdwn(shown)[:2800] + "```"


def heading(row: ApprovalRecord, votes: Sequence[str] = ()) -> str:
    """The card's header: what state the request is in, at a glance."""
    count = f"{len(votes)} of {row.quorum}"
    return {
        "pending": "🔒 Approval needed",
        "approved": f"⏳ Approved · {count} · running",
        "executed": f"✅ Approved · {count}",
        "failed": f"⚠️ Approved · {count} · failed",
        "rejected": "❌ Rejected",
        "expired": "⏰ Expired",
        "superseded": "✏️ Edited",
        "abandoned": "🗑️ Abandoned",
    }.get(row.status, row.status.capitalize())


def card_blocks(
    row: ApprovalRecord,
    *,
    votes: Sequence[str] = (),
    outcome: str | None = None,
) -> list[dict[str, Any]]:
    """The card: who asked for what, with which arguments, who may approve, until when.

    ``outcome`` replaces the buttons with the result once decided; the header and the
    approval count follow the request's state (``votes`` are the approvals it got).
    """
    policy = policy_of(row)
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=heading(row, votes))),
        SectionBlock(
            fields=[
                _mrkdwn(f"*Requested by*\n<@{row.requester}>"),
                _mrkdwn(f"*Skill*\n{escape_mrkdwn(row.skill)}"),
                _mrkdwn(f"*Tool*\n`{escape_mrkdwn(row.tool)}`"),
                _mrkdwn(
                    f"*Expires*\n{slack_date(row.expires_at)}"
                    if row.status == "pending"
                    else f"*Decided*\n{slack_date(row.decided_at) if row.decided_at else '—'}"
                ),
            ]
        ),
        SectionBlock(text=_mrkdwn("*Arguments*\n" + args_block_text(args_of(row)))),
    ]
    if after_untrusted(row):
        blocks.append(ContextBlock(elements=[_mrkdwn(UNTRUSTED_NOTICE)]))
    quorum = f"{len(votes)} of {row.quorum} approval{'s' if row.quorum != 1 else ''}"
    rules = [f"Approvers: {approvers_text(row)}", quorum]
    if policy.four_eyes:
        rules.append("the requester can't approve")
    if row.edited_from:
        editor = f" by <@{row.edited_by}>" if row.edited_by else ""
        rules.append(
            f"edited{editor}: earlier approvals don't count, and neither the editor nor "
            "earlier approvers can approve"
        )
    blocks.append(ContextBlock(elements=[_mrkdwn(" · ".join(rules))]))
    if outcome is None:
        buttons = [
            ButtonElement(
                text=PlainTextObject(text="Approve"),
                action_id=APPROVE,
                value=row.id,
                style="primary",
            ),
            ButtonElement(
                text=PlainTextObject(text="Reject"), action_id=REJECT, value=row.id, style="danger"
            ),
        ]
        if policy.allow_edit:
            buttons.append(
                ButtonElement(text=PlainTextObject(text="Edit"), action_id=EDIT, value=row.id)
            )
        blocks.append(ActionsBlock(block_id=f"approval:{row.id}", elements=buttons))
    else:
        blocks.append(SectionBlock(text=_mrkdwn(outcome)))
        fields = result_fields(row)
        if fields:
            blocks.append(SectionBlock(fields=fields))
    return [b.to_dict() for b in blocks]


def _result_object(row: ApprovalRecord) -> dict[str, Any] | None:
    """The call's result as the fields of a JSON object, when it was one."""
    if row.status not in {"executed", "failed"} or not row.result_summary:
        return None
    try:
        value = json.loads(row.result_summary)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value else None


def _inert(text: str) -> str:
    # The result is what the target system answered: data, so a URL in it is never
    # clickable (strict policy: only slack.com), whatever the answer allow-list says.
    return escape_mrkdwn(defang_links(strip_token_ids(text), LinkPolicy()))


def result_fields(row: ApprovalRecord) -> list[MarkdownTextObject]:
    """A result that is a JSON object, as card fields (``*refund_id*`` / ``RF-0001``)."""
    found = _result_object(row)
    if found is None:
        return []
    fields = []
    for key, value in list(found.items())[:10]:
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        label = key.replace("_", " ").capitalize()
        fields.append(_mrkdwn(f"*{_inert(label)}*\n{_inert(shown)[:1900] or '—'}"))
    return fields


def outcome_text(row: ApprovalRecord) -> str | None:
    """The line that replaces the buttons, or None while the request is open."""
    who = f"<@{row.decided_by}>" if row.decided_by and row.decided_by != "switchboard" else ""
    when = slack_date(row.decided_at, "{time}") if row.decided_at else ""
    summary = _inert(row.result_summary or "")
    if row.status == "pending":
        return None
    if row.status == "approved":
        return f":hourglass_flowing_sand: Approved by {who} at {when} — running…"
    if row.status == "executed":
        if _result_object(row) is not None:
            return f":white_check_mark: Approved by {who} at {when} — done:"
        return f":white_check_mark: Approved by {who} at {when} — done: {summary}"
    if row.status == "failed":
        if _result_object(row) is not None:
            return f":x: Approved by {who} at {when} — Failed:"
        return f":x: Approved by {who} at {when} — Failed: {summary}"
    if row.status == "rejected":
        reason = escape_mrkdwn(row.reason) if row.reason else "no reason given"
        return f":no_entry: Rejected by {who}: {reason}"
    if row.status == "expired":
        return ":alarm_clock: Expired before anyone approved it. Nothing ran."
    if row.status == "superseded":
        return f":pencil2: Edited by {who}: see the new request below"
    if row.status == "abandoned":
        if row.reason == RESET_REASON:
            return f":wastebasket: Abandoned: {who} reset the conversation at {when}. Nothing ran."
        return (
            f":wastebasket: Approved by {who} at {when}, but the conversation was no longer "
            "waiting for it. Nothing ran."
        )
    return escape_mrkdwn(row.status)


def card_text(row: ApprovalRecord, votes: Sequence[str] = ()) -> str:
    """The notification text, which follows the state like the header."""
    if row.status == "pending":
        return f"Approval needed: {row.skill} wants to run {row.tool}"
    return f"{heading(row, votes)}: {row.skill} wants to run {row.tool}"


_FROM_HOME = "|home"


def reject_origin(private_metadata: str) -> tuple[str, bool]:
    """(request id, whether the reject modal was opened from App Home)."""
    if private_metadata.endswith(_FROM_HOME):
        return private_metadata[: -len(_FROM_HOME)], True
    return private_metadata, False


def reject_modal(request_id: str, *, from_home: bool = False) -> View:
    return View(
        type="modal",
        callback_id=REJECT_MODAL,
        private_metadata=request_id + (_FROM_HOME if from_home else ""),
        title=PlainTextObject(text="Reject request"),
        submit=PlainTextObject(text="Reject"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            InputBlock(
                block_id="reason",
                optional=True,
                label=PlainTextObject(text="Reason (shown in the thread)"),
                element=PlainTextInputElement(action_id="text", multiline=True, max_length=500),
            )
        ],
    )


def edit_modal(row: ApprovalRecord) -> View:
    """One input per parameter, pre-filled; values are parsed as JSON where they can be."""
    schema = schema_of(row)
    properties: dict[str, Any] = schema.get("properties") or {}
    args = args_of(row)
    names = list(properties) or list(args)
    blocks: list[Block] = []
    for name in names[:20]:
        spec = properties.get(name, {})
        value = args.get(name)
        initial = "" if value is None else (value if isinstance(value, str) else json.dumps(value))
        blocks.append(
            InputBlock(
                block_id=f"arg:{name}",
                optional=name not in (schema.get("required") or names),
                label=PlainTextObject(text=name[:2000]),
                hint=PlainTextObject(
                    text=str(spec.get("description", spec.get("type", "")))[:150] or " "
                ),
                element=PlainTextInputElement(action_id="value", initial_value=str(initial)[:3000]),
            )
        )
    return View(
        type="modal",
        callback_id=EDIT_MODAL,
        private_metadata=row.id,
        title=PlainTextObject(text="Edit request"),
        submit=PlainTextObject(text="Save"),
        close=PlainTextObject(text="Cancel"),
        blocks=blocks,
    )


def parse_edit(view: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The arguments typed into the edit modal, typed per the schema where possible."""
    properties: dict[str, Any] = schema.get("properties") or {}
    values = (view.get("state") or {}).get("values") or {}
    args: dict[str, Any] = {}
    for block_id, inputs in values.items():
        if not block_id.startswith("arg:"):
            continue
        name = block_id[4:]
        raw = (inputs.get("value") or {}).get("value")
        if raw is None or raw == "":
            continue
        kind = (properties.get(name) or {}).get("type")
        if kind == "string":
            args[name] = raw
            continue
        try:
            args[name] = json.loads(raw)
        except ValueError:
            args[name] = raw
    return args
