"""Approvals: who may decide a gated tool call, when it is decided, and running it once.

A paused run (an :class:`~skills.outcomes.ApprovalRequest`) becomes an approval request
row bound to the exact action: an id and the sha256 of the tool and its canonical
arguments. People then approve, reject or edit it; this service applies the policy:

* approvers are users and/or user groups, resolved afresh for every decision; anyone
  else's click is refused (and audited);
* ``four_eyes``: the requester can never approve their own request, even as an approver;
* an edit makes a new request (new hash, ``edited_by`` its editor) and earlier approvals
  do not count. Across the whole chain of edits, the editors and everyone who approved an
  earlier version may not approve the current one: whoever chose the arguments, or
  already spoke for other ones, is not one of the four eyes on these;
* ``quorum``: N distinct approvers (the same person twice counts once), none of them
  barred by the rules above; a single reject rejects;
* ``expires_in``: past it, the request is closed and the run resumed with a rejection;
* a reset of the conversation while a request is open is refused unless the requester
  resets it, which abandons the request (``abandoned``: nothing ran, and the card and the
  audit log say so).

Exactly once: a decision is a transactional state change (see ``storage/approvals.py``);
only the caller whose change applied resumes the run, the runtime resumes only a run
that is still waiting on that interrupt (under the thread's lease), and the approved HTTP
call carries an ``Idempotency-Key`` derived from the request id and is recorded before
and after the call (``skills/tools/http.py``: ``_execute_once`` documents each crash
window). A decided request whose run never completed (a crash after the decision) is
resumed by :meth:`ApprovalService.sweep`.

Every button's click is decided by :meth:`ApprovalService.click`, and what it did comes
back as data (:class:`Decided`, :class:`Refused`, :class:`ResetResult`): this module
writes no Slack markup; ``bot/views/approvals.py`` says it to the person who clicked.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from skills.arguments import argument_problems
from skills.context import ConversationAccess, Principal, SlackReader, ThreadRef
from skills.errors import NothingToResume
from skills.outcomes import ApprovalPolicyView, ApprovalRequest, Decision, Outcome, Reply
from skills.pii import mask_obj, mask_text
from skills.runtime import Runtime
from storage.approvals import ApprovalRecord, ApprovalStore, canonical_json
from storage.audit import AuditLog
from storage.locks import RedisLocks

log = logging.getLogger(f"switchboard.{__name__}")

DecidedKind = Literal[
    "refused",
    "recorded",
    "approved",
    "rejected",
    "duplicate",
    "closed",
    "expired",
    "edited",
    "proceed",
]
#: Why a click was refused: an earlier version's approver, an editor, the requester
#: (four-eyes), someone the policy does not list, or an edit of a tool that allows none.
RefusalWhy = Literal["approved_earlier", "edited", "four_eyes", "not_approver", "not_editable"]
#: Why a reset was refused: an approved action is running, someone else's request is
#: waiting, or a request was decided while the reset ran.
ResetRefusal = Literal["executing", "not_requester", "just_decided"]
ActorLookup = Callable[[str], Awaitable[Principal]]
Verb = Literal["approve", "reject", "edit"]

#: What a request that was abandoned (or found with nothing left to resume) says ran.
NOTHING_RAN = "nothing ran"
#: The ``reason`` of a request abandoned because its requester reset the conversation.
RESET_REASON = "the conversation was reset"


def canonical_args(args: Mapping[str, Any]) -> str:
    return canonical_json(args)


def args_hash(tool: str, args: Mapping[str, Any]) -> str:
    return hashlib.sha256(f"{tool}\n{canonical_args(args)}".encode()).hexdigest()


def policy_of(row: ApprovalRecord) -> ApprovalPolicyView:
    data = row.policy
    return ApprovalPolicyView(
        users=tuple(data.get("users", ())),
        usergroups=tuple(data.get("usergroups", ())),
        quorum=int(data.get("quorum", 1)),
        four_eyes=bool(data.get("four_eyes", True)),
        expires_in_seconds=int(data.get("expires_in_seconds", 86400)),
        allow_edit=bool(data.get("allow_edit", False)),
    )


def args_of(row: ApprovalRecord) -> dict[str, Any]:
    return dict(row.args)


def schema_of(row: ApprovalRecord) -> dict[str, Any]:
    """The tool's parameters (JSON Schema) the request was opened with."""
    schema = row.policy.get("schema")
    return dict(schema) if isinstance(schema, dict) else {}


@dataclass(frozen=True, slots=True)
class Refused:
    """Why ``actor`` may not do what they clicked; for ``not_approver`` the approvers the
    policy lists (the bot names them to the clicker)."""

    why: RefusalWhy
    users: tuple[str, ...] = ()
    usergroups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decided:
    """What a click did, as data: the bot's view says it to the person who clicked.

    ``refused`` says why for ``kind == "refused"``; a ``closed`` request's ``row`` says
    how it was closed and by whom.
    """

    kind: DecidedKind
    row: ApprovalRecord
    votes: tuple[str, ...] = ()
    refused: Refused | None = None

    @property
    def message(self) -> str:
        """A plain description, for callers without a Slack view (the evaluations)."""
        if self.refused is not None:
            return f"{self.kind}: {self.refused.why}"
        return self.kind if self.kind != "closed" else f"already {self.row.status}"


@dataclass(frozen=True, slots=True)
class ResetResult:
    """What a reset did: ``done`` (the conversation is forgotten) or why not (``refusal``,
    about the request ``blocking``); ``abandoned`` lists requests it closed, whose cards
    need updating."""

    done: bool
    refusal: ResetRefusal | None = None
    blocking: ApprovalRecord | None = None
    abandoned: tuple[ApprovalRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Completed:
    """A decided request whose run resumed: the row (final state) and the run's outcome."""

    row: ApprovalRecord
    outcome: Outcome | None


class EditRejected(ValueError):
    """Edited arguments that do not satisfy the tool's parameters."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class ApprovalService:
    def __init__(
        self,
        *,
        store: ApprovalStore,
        audit: AuditLog,
        runtime: Runtime,
        locks: RedisLocks,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.audit = audit
        self.runtime = runtime
        self._locks = locks
        self._clock = clock

    # -- opening ------------------------------------------------------------------------

    async def open(
        self, request: ApprovalRequest, *, channel: str, thread_ts: str | None
    ) -> ApprovalRecord:
        """Store a paused run's request (arguments PII-masked) and audit it."""
        now = self._clock()
        args = mask_obj(request.args)
        policy = request.policy
        row = await self.store.create(
            skill=request.skill,
            thread_id=request.thread.thread_id,
            channel_id=channel,
            thread_ts=thread_ts,
            requester=request.requester,
            tool=request.tool,
            args=args,
            args_hash=args_hash(request.tool, args),
            interrupt_id=request.interrupt_id,
            tool_call_id=request.tool_call_id,
            policy=(
                {
                    "users": list(policy.users),
                    "usergroups": list(policy.usergroups),
                    "quorum": policy.quorum,
                    "four_eyes": policy.four_eyes,
                    "expires_in_seconds": policy.expires_in_seconds,
                    "allow_edit": policy.allow_edit,
                    "schema": request.parameters_schema,
                    "after_untrusted": request.after_untrusted,
                }
            ),
            quorum=policy.quorum,
            status="pending",
            created_at=now,
            expires_at=now + timedelta(seconds=policy.expires_in_seconds),
        )
        await self.audit.append(
            "requested",
            actor=request.requester,
            request_id=row.id,
            args_hash=row.args_hash,
            summary=f"{request.skill}.{request.tool} {canonical_args(args)}",
            at=now,
        )
        return row

    # -- deciding -----------------------------------------------------------------------

    async def barred(self, row: ApprovalRecord) -> dict[str, RefusalWhy]:
        """Who may not approve ``row`` although the policy lists them, and why.

        The requester (four-eyes), every editor in the request's chain of edits, and
        everyone who approved an earlier version of it.
        """
        policy = policy_of(row)
        barred: dict[str, RefusalWhy] = {}
        chain = await self.store.chain(row.id) if row.edited_from else [row]
        earlier = [version.id for version in chain if version.id != row.id]
        for votes in (await self.store.voters(earlier)).values():
            for voter in votes:
                barred[voter] = "approved_earlier"
        for version in chain:
            if version.edited_by:
                barred[version.edited_by] = "edited"
        if policy.four_eyes:
            barred[row.requester] = "four_eyes"
        return barred

    async def may_decide(
        self, row: ApprovalRecord, actor: Principal, verb: Verb = "approve"
    ) -> Refused | None:
        """None when ``actor`` may ``verb`` ``row``; otherwise why not.

        Approving needs a listed approver who is not barred (:meth:`barred`). Editing is
        refused to the requester under four-eyes; rejecting only needs a listed approver
        (a rejection never runs anything). ``actor.usergroups`` must be fresh: resolve the
        clicker for a decision, not from a cache.
        """
        policy = policy_of(row)
        if verb == "approve":
            why = (await self.barred(row)).get(actor.user_id)
            if why is not None:
                return Refused(why)
        elif verb == "edit" and policy.four_eyes and actor.user_id == row.requester:
            return Refused("four_eyes")
        allowed = actor.user_id in policy.users or bool(
            set(policy.usergroups) & set(actor.usergroups)
        )
        if not allowed:
            return Refused("not_approver", policy.users, policy.usergroups)
        return None

    async def waiting_for(
        self, actor: Principal
    ) -> tuple[list[ApprovalRecord], list[ApprovalRecord]]:
        """(pending requests ``actor`` may approve, pending requests ``actor`` made)."""
        waiting, mine = await self.store.open_for(
            approver=actor.user_id, usergroups=actor.usergroups, requester=actor.user_id
        )
        decidable = [row for row in waiting if actor.user_id not in await self.barred(row)]
        return decidable, mine

    async def click(self, request_id: str, actor: Principal, verb: Verb) -> Decided:
        """A click on a request's button (card, list or App Home), decided here once.

        ``approve`` votes (:meth:`approve`). ``reject`` and ``edit`` open a modal first, so
        their click answers ``proceed`` when ``actor`` may go on (the decision comes with
        the modal: :meth:`reject`, :meth:`edit`) or says why not. Every refusal is
        audited; a request past its expiry is expired on the spot.
        """
        if verb == "approve":
            return await self.approve(request_id, actor)
        row, early = await self._open_row(request_id, actor, verb)
        if early is not None:
            return early
        assert row is not None
        if verb == "edit" and not policy_of(row).allow_edit:
            return Decided("refused", row, refused=Refused("not_editable"))
        return Decided("proceed", row)

    async def approve(self, request_id: str, actor: Principal) -> Decided:
        row, early = await self._open_row(request_id, actor, "approve")
        if early is not None:
            return early
        assert row is not None
        result = await self.store.add_vote(request_id, actor.user_id, now=self._clock())
        votes = tuple(await self.store.votes(request_id))
        if result.state == "duplicate":
            return Decided("duplicate", result.request, votes)
        if result.state == "not_pending":
            return self.closed(result.request, votes)
        if result.state == "recorded":
            await self.audit.append(
                "vote",
                actor=actor.user_id,
                request_id=request_id,
                args_hash=row.args_hash,
                summary=f"{len(votes)} of {row.quorum} approvals",
            )
            return Decided("recorded", result.request, votes)
        await self.audit.append(
            "approved",
            actor=actor.user_id,
            request_id=request_id,
            args_hash=row.args_hash,
            summary=f"approved by {', '.join(votes)}",
        )
        return Decided("approved", result.request, votes)

    async def reject(self, request_id: str, actor: Principal, reason: str | None) -> Decided:
        row, early = await self._open_row(request_id, actor, "reject")
        if early is not None:
            return early
        assert row is not None
        reason = mask_text(reason.strip())[:500] if reason and reason.strip() else None
        won = await self.store.transition(
            request_id,
            to="rejected",
            allowed_from=["pending"],
            decided_at=self._clock(),
            decided_by=actor.user_id,
            reason=reason,
        )
        fresh = await self.store.get(request_id)
        assert fresh is not None
        if not won:
            return self.closed(fresh, tuple(await self.store.votes(request_id)))
        await self.audit.append(
            "rejected",
            actor=actor.user_id,
            request_id=request_id,
            args_hash=row.args_hash,
            summary=reason or "",
        )
        return Decided("rejected", fresh)

    async def edit(
        self, request_id: str, actor: Principal, new_args: Mapping[str, Any]
    ) -> tuple[Decided, ApprovalRecord | None]:
        """Replace the arguments: a new request (new hash) that needs approval again, from
        someone other than the editor (and other than earlier versions' approvers)."""
        row, early = await self._open_row(request_id, actor, "edit")
        if early is not None:
            return early, None
        assert row is not None
        policy = policy_of(row)
        if not policy.allow_edit:
            return Decided("refused", row, refused=Refused("not_editable")), None
        schema = schema_of(row) or {"type": "object"}
        problems = argument_problems(schema, new_args)
        if problems:
            raise EditRejected(problems)
        args = mask_obj(dict(new_args))
        now = self._clock()
        won = await self.store.transition(
            request_id,
            to="superseded",
            allowed_from=["pending"],
            decided_at=now,
            decided_by=actor.user_id,
            completed_at=now,
        )
        if not won:
            fresh = await self.store.get(request_id)
            assert fresh is not None
            return self.closed(fresh, ()), None
        new = await self.store.create(
            skill=row.skill,
            thread_id=row.thread_id,
            channel_id=row.channel_id,
            thread_ts=row.thread_ts,
            requester=row.requester,
            tool=row.tool,
            args=args,
            args_hash=args_hash(row.tool, args),
            interrupt_id=row.interrupt_id,
            tool_call_id=row.tool_call_id,
            policy=row.policy,
            quorum=row.quorum,
            status="pending",
            edited_from=row.id,
            edited_by=actor.user_id,
            created_at=now,
            expires_at=now + timedelta(seconds=policy.expires_in_seconds),
            card_channel=row.card_channel,
            card_ts=row.card_ts,
        )
        await self.audit.append(
            "edited",
            actor=actor.user_id,
            request_id=row.id,
            args_hash=row.args_hash,
            summary=f"replaced by {new.id}",
        )
        await self.audit.append(
            "requested",
            actor=actor.user_id,
            request_id=new.id,
            args_hash=new.args_hash,
            summary=f"{row.skill}.{row.tool} {canonical_args(new.args)} (edit of {row.id})",
        )
        return Decided("edited", new), new

    async def _open_row(
        self, request_id: str, actor: Principal, verb: Verb
    ) -> tuple[ApprovalRecord | None, Decided | None]:
        row = await self.store.get(request_id)
        if row is None:
            raise LookupError(f"no approval request {request_id!r}")
        if row.status != "pending":
            return row, self.closed(row, tuple(await self.store.votes(request_id)))
        if row.expires_at <= self._clock():
            await self.expire(row)
            fresh = await self.store.get(request_id)
            assert fresh is not None
            return fresh, Decided("expired", fresh)
        requester_withdraws = verb == "reject" and actor.user_id == row.requester
        refused = None if requester_withdraws else await self.may_decide(row, actor, verb)
        if refused is not None:
            await self.audit.append(
                "refused-click",
                actor=actor.user_id,
                request_id=request_id,
                args_hash=row.args_hash,
                summary=f"{verb}: {refused.why}",
            )
            return row, Decided("refused", row, refused=refused)
        return row, None

    def closed(self, row: ApprovalRecord, votes: tuple[str, ...]) -> Decided:
        """A click on a request that is no longer pending."""
        return Decided("expired" if row.status == "expired" else "closed", row, votes)

    async def expire(self, row: ApprovalRecord) -> bool:
        won = await self.store.transition(
            row.id,
            to="expired",
            allowed_from=["pending"],
            decided_at=self._clock(),
            decided_by="switchboard",
        )
        if won:
            await self.audit.append(
                "expired",
                actor="switchboard",
                request_id=row.id,
                args_hash=row.args_hash,
                summary=f"expired at {row.expires_at.isoformat()}",
            )
        return won

    # -- resuming -------------------------------------------------------------------------

    async def complete(
        self,
        row: ApprovalRecord,
        *,
        requester: Principal,
        slack: SlackReader | None,
        access: ConversationAccess | None = None,
        holder: str | None = None,
    ) -> Completed:
        """Resume the run of a decided request (approved, rejected or expired), once.

        The resumed run reads Slack as ``requester`` (through ``access``), as the run that
        paused did. ``holder`` names the resume's owner (a run-queue job): the same owner
        resuming again after its worker died takes its claim back at once.
        """
        if row.completed_at is not None:
            return Completed(row, None)
        if not await self._locks.claim(
            "approval-resume", row.id, ttl=timedelta(minutes=10), holder=holder
        ):
            return Completed(row, None)  # another replica is completing it
        current = await self.store.get(row.id)
        if current is None or current.completed_at is not None:
            return Completed(current or row, None)  # abandoned or finished meanwhile
        row = current
        thread = ThreadRef.parse(row.thread_id)
        decision = self._decision(row)
        try:
            outcome: Outcome | None = await self.runtime.resume(
                thread=thread,
                decision=decision,
                actor=requester,
                slack=slack,
                access=access,
                approval_id=row.id if row.status == "approved" else None,
            )
        except NothingToResume:
            log.warning("approval %s: the run was no longer waiting", row.id)
            outcome = None
        except Exception:
            await self._locks.unclaim("approval-resume", row.id)  # let the sweep retry
            raise
        final, summary = await self._result(row, outcome)
        await self.store.update_fields(
            row.id,
            completed_at=self._clock(),
            result_summary=summary,
            **({"status": final} if row.status == "approved" else {}),
        )
        if row.status == "approved":
            await self.audit.append(
                final,
                actor="switchboard",
                request_id=row.id,
                args_hash=row.args_hash,
                summary=summary,
            )
        fresh = await self.store.get(row.id)
        assert fresh is not None
        return Completed(fresh, outcome)

    # -- resetting --------------------------------------------------------------------------

    async def reset(self, thread: ThreadRef, actor: Principal) -> ResetResult:
        """Forget ``thread`` for ``actor``, unless that would drop someone else's request.

        While a request in the thread is pending, only its requester may reset: the
        request is then ``abandoned`` (audited; nothing ran). Anyone else is refused (and
        audited), and so is everyone while an approved action is still being carried out.
        """
        now = self._clock()
        open_rows: list[ApprovalRecord] = []
        for row in await self.store.for_thread(thread.thread_id):
            if row.completed_at is not None or row.status not in {"pending", "approved"}:
                continue
            if row.status == "pending" and row.expires_at <= now:
                await self.expire(row)  # overdue: the sweep would close it anyway
                continue
            open_rows.append(row)
        if any(row.status == "approved" for row in open_rows):
            return ResetResult(False, "executing")
        for row in open_rows:
            if row.requester != actor.user_id:
                await self.audit.append(
                    "refused-reset",
                    actor=actor.user_id,
                    request_id=row.id,
                    args_hash=row.args_hash,
                    summary=f"reset refused: {row.skill}.{row.tool} awaits approval",
                )
                return ResetResult(False, "not_requester", row)
        abandoned: list[ApprovalRecord] = []
        for row in open_rows:
            won = await self.store.transition(
                row.id,
                to="abandoned",
                allowed_from=["pending"],
                decided_at=now,
                decided_by=actor.user_id,
                reason=RESET_REASON,
                completed_at=now,
                result_summary=f"{RESET_REASON}; {NOTHING_RAN}",
            )
            fresh = await self.store.get(row.id)
            assert fresh is not None
            if not won:  # decided in the meantime: let the person look again
                return ResetResult(False, "just_decided", fresh, tuple(abandoned))
            await self.audit.append(
                "abandoned",
                actor=actor.user_id,
                request_id=row.id,
                args_hash=row.args_hash,
                summary=f"the requester reset the conversation; {NOTHING_RAN}",
            )
            abandoned.append(fresh)
        await self.runtime.reset(thread)
        return ResetResult(True, abandoned=tuple(abandoned))

    def _decision(self, row: ApprovalRecord) -> Decision:
        if row.status == "approved":
            if row.edited_from is not None:
                return Decision(
                    type="edit",
                    interrupt_id=row.interrupt_id,
                    actor=row.decided_by or "",
                    args=args_of(row),
                )
            return Decision(
                type="approve", interrupt_id=row.interrupt_id, actor=row.decided_by or ""
            )
        if row.status == "expired":
            reason = "The approval request expired before anyone approved it. Tell the requester."
        else:
            reason = row.reason or "The approver gave no reason."
            reason = f"Rejected by <@{row.decided_by}>: {reason}"
        return Decision(
            type="reject", interrupt_id=row.interrupt_id, actor=row.decided_by or "", reason=reason
        )

    async def _result(self, row: ApprovalRecord, outcome: Outcome | None) -> tuple[str, str]:
        if row.status != "approved":
            return row.status, row.reason or row.status
        execution = await self.store.execution(row.id)
        if execution is not None and execution.state == "failed":
            return "failed", _short(execution.result or "the call failed")
        if execution is not None and execution.state == "succeeded":
            return "executed", result_summary(execution.result or "done")
        if isinstance(outcome, Reply):
            return "executed", _short(outcome.text)
        if outcome is None:
            # The run was no longer waiting (its memory was reset or expired) and nothing
            # recorded a call: never report as executed what did not run.
            return "abandoned", f"the run was no longer waiting; {NOTHING_RAN}"
        return "executed", "done"

    async def sweep(
        self,
        *,
        actor_for: ActorLookup,
        slack: SlackReader | None,
        access: ConversationAccess | None = None,
    ) -> list[Completed]:
        """Expire overdue requests and finish decided ones whose run never completed."""
        now = self._clock()
        done: list[Completed] = []
        for row in await self.store.due_for_expiry(now):
            await self.expire(row)
        now = self._clock()  # expiring took time: include what was just expired
        for row in await self.store.stalled(now, older_than=timedelta(seconds=0)):
            if (
                row.status == "approved"
                and row.decided_at
                and now - row.decided_at < timedelta(minutes=2)
            ):
                continue  # the click that approved it is probably still running it
            requester = await actor_for(row.requester)
            try:
                done.append(
                    await self.complete(row, requester=requester, slack=slack, access=access)
                )
            except Exception:
                log.exception("approval %s could not be completed; will retry", row.id)
        return done


def result_summary(text: str, *, fields: int = 10, limit: int = 120) -> str:
    """What a card shows of a call's result: a JSON object stays a (compact, masked) JSON
    object of its first ``fields`` scalar fields, so the card can show them as fields;
    anything else is a short line of text."""
    try:
        value = json.loads(text)
    except ValueError:
        return _short(text)
    if not isinstance(value, dict) or not value:
        return _short(text)
    shown: dict[str, Any] = {}
    for key, item in list(value.items())[:fields]:
        if isinstance(item, dict | list):
            item = _short(json.dumps(item, ensure_ascii=False), limit)
        elif isinstance(item, str):
            item = _short(item, limit)
        shown[_short(str(key), 60)] = mask_obj(item)
    return json.dumps(shown, ensure_ascii=False, separators=(",", ":"))


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(mask_text(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
