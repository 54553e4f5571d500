"""What a run returns: a reply, an approval request or a refusal — typed, never parsed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from skills.context import ThreadRef


@dataclass(frozen=True, slots=True)
class ApprovalPolicyView:
    """The approval rules of a gated tool, as the card and the approvals store need them."""

    users: tuple[str, ...] = ()
    usergroups: tuple[str, ...] = ()
    quorum: int = 1
    four_eyes: bool = True
    expires_in_seconds: int = 24 * 3600
    allow_edit: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """The skill answered; ``text`` is Markdown from the model, PII-masked.

    ``refused_reads`` lists the conversations the run tried to read and was refused
    (ids only): a scheduled run treats any as a failure rather than posting the answer.
    """

    skill: str
    thread: ThreadRef
    text: str
    run_id: str
    refused_reads: tuple[str, ...] = ()
    kind: Literal["reply"] = "reply"


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """The run paused before a gated tool; resume it with a :class:`Decision`."""

    skill: str
    thread: ThreadRef
    run_id: str
    interrupt_id: str
    tool_call_id: str
    tool: str
    args: dict[str, Any]  # as the model asked, PII-masked (tokens, never raw values)
    policy: ApprovalPolicyView
    requester: str
    description: str = ""
    parameters_schema: dict[str, Any] = field(default_factory=dict)
    # True when the run had read untrusted tool output (a Slack thread, an HTTP response)
    # before the model asked for this call: the card tells the approver to look twice.
    after_untrusted: bool = False
    kind: Literal["approval"] = "approval"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Nothing ran: the person may not use the skill (or it does not exist)."""

    reason: str
    allowed_skills: tuple[str, ...] = ()
    skill: str | None = None
    kind: Literal["refusal"] = "refusal"


Outcome = Reply | ApprovalRequest | Refusal


@dataclass(frozen=True, slots=True)
class Decision:
    """A person's answer to an :class:`ApprovalRequest`."""

    type: Literal["approve", "reject", "edit"]
    interrupt_id: str
    actor: str
    reason: str | None = None
    args: dict[str, Any] | None = None  # for "edit": the replacement arguments

    def to_hitl(self, tool: str) -> dict[str, Any]:
        """The decision in the shape ``HumanInTheLoopMiddleware`` (per_call) resumes with."""
        if self.type == "approve":
            return {"type": "approve"}
        if self.type == "reject":
            decision: dict[str, Any] = {"type": "reject"}
            if self.reason:
                decision["message"] = self.reason
            return decision
        if self.args is None:
            raise ValueError("an edit decision needs the edited arguments")
        return {"type": "edit", "edited_action": {"name": tool, "args": self.args}}
