"""The Slack side of approvals: the card, the clicks, the modals, the sweep, the lists.

Clicks are acked at once; the decision runs in the background. Button values carry the
request id and nothing else trusted: who clicked comes from the signed payload, what is
approved comes from the database, and whether the clicker is an approver is asked of Slack
at that moment (user groups resolved afresh, never from a cache).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations import Conversations, Inbound, user_error
from bot.delivery import Undelivered, post_once
from bot.home import publish_home
from bot.listeners._context import BotContext
from bot.metrics import Metrics
from bot.views import approvals as cards
from bot.views.text import escape_mrkdwn
from skills.approvals import (
    ApprovalService,
    Completed,
    Decided,
    EditRejected,
    args_of,
    policy_of,
    schema_of,
)
from skills.context import Principal, ThreadRef
from skills.outcomes import ApprovalRequest
from storage.approvals import ApprovalRecord
from storage.errors import StorageError
from storage.runqueue import JobInfo, QueueUnavailable, Retryable, RunQueue

log = logging.getLogger(f"switchboard.{__name__}")

#: The run-queue job that resumes a decided request's run.
RESUME_KIND = "approval.resume"


@dataclass(slots=True)
class ApprovalsBot:
    """The approval cards of one Bolt app; built by :class:`Conversations` (see
    :meth:`cards`), which renders into them and they into it."""

    service: ApprovalService
    conversations: Conversations
    client: AsyncWebClient
    dm_approvers: bool = False
    #: Where approval waits are counted (``switchboard_approval_wait_seconds``).
    metrics: Metrics | None = None
    #: With a run queue, a decided request's resume is a queue job any worker runs
    #: (:meth:`resume_job`); without one it runs here, after the click.
    queue: RunQueue | None = None

    @classmethod
    def cards(
        cls,
        service: ApprovalService,
        *,
        dm_approvers: bool = False,
        metrics: Metrics | None = None,
        queue: RunQueue | None = None,
    ) -> Callable[[Conversations], ApprovalsBot]:
        """The factory ``Conversations(approvals=…)`` builds its cards with."""

        def build(conversations: Conversations) -> ApprovalsBot:
            return cls(
                service=service,
                conversations=conversations,
                client=conversations.client,
                dm_approvers=dm_approvers,
                metrics=metrics,
                queue=queue,
            )

        return build

    # -- cards --------------------------------------------------------------------------

    async def post_card(self, inbound: Inbound, request: ApprovalRequest) -> None:
        """Store the request and post its card in the requesting thread."""
        row = await self.service.open(
            request, channel=inbound.channel, thread_ts=inbound.reply_thread_ts
        )
        # one card per request: a post whose answer was lost is looked for, not made twice
        posted = await post_once(
            self.client,
            {
                "channel": inbound.channel,
                "thread_ts": inbound.reply_thread_ts,
                "text": cards.card_text(row),
                "blocks": cards.card_blocks(row),
                "unfurl_links": False,
                "unfurl_media": False,
            },
        )
        await self.service.store.update_fields(
            row.id, card_channel=inbound.channel, card_ts=str(posted["ts"])
        )
        if self.dm_approvers:
            await self._dm_approvers(row, str(posted["ts"]))

    async def refresh_card(self, row: ApprovalRecord) -> None:
        if not (row.card_channel and row.card_ts):
            return
        # Approvals still count once decided: the card says "Approved · 1 of 1".
        votes = await self.service.store.votes(row.id)
        try:
            await self.client.chat_update(
                channel=row.card_channel,
                ts=row.card_ts,
                text=cards.card_text(row, votes),
                blocks=cards.card_blocks(row, votes=votes, outcome=cards.outcome_text(row)),
            )
        except SlackApiError as exc:
            log.warning("approval card %s not updated: %s", row.id, exc.response.get("error"))

    async def _dm_approvers(self, row: ApprovalRecord, card_ts: str) -> None:
        try:
            auth = await self.client.auth_test()
            base = str(auth.get("url") or "https://slack.com/")
            link = f"{base}archives/{row.channel_id}/p{card_ts.replace('.', '')}"
            policy = policy_of(row)
            users = set(policy.users)
            for group in policy.usergroups:
                users |= await self.conversations.directory.group_members(group)
            users.discard(row.requester)
            for user in sorted(users)[:25]:
                dm = await self.client.conversations_open(users=user)
                channel = str(dm["channel"]["id"])
                await self.client.chat_postMessage(
                    channel=channel,
                    text=f"<@{row.requester}> needs your approval for *{row.tool}*: {link}",
                )
        except SlackApiError as exc:
            log.warning("approver DMs for %s failed: %s", row.id, exc.response.get("error"))

    # -- decisions ----------------------------------------------------------------------

    async def decided(self, decided: Decided, clicker: str, channel: str | None) -> None:
        """Show the clicker what happened and carry the request on."""
        row = decided.row
        if decided.kind in {"refused", "duplicate", "closed", "expired", "recorded"}:
            await self.tell(clicker, row, cards.decided_text(decided), channel)
        if decided.kind in {"recorded", "approved", "rejected", "expired"}:
            await self.refresh_card(row)
        if decided.kind in {"approved", "rejected", "expired"}:
            self._observe_wait(row, decided.kind)
            await self.complete(row)

    def _observe_wait(self, row: ApprovalRecord, decision: str) -> None:
        if self.metrics is not None:
            end = row.decided_at or datetime.now(UTC)
            wait = (end - row.created_at).total_seconds()
            self.metrics.observe_approval(skill=row.skill, decision=decision, seconds=wait)

    async def complete(self, row: ApprovalRecord) -> None:
        """Carry a decided request on: enqueue its resume (any worker runs it, after the
        thread's running turn: the job holds the thread's lock), or run it here."""
        if self.queue is not None:
            try:
                await self.queue.defer(
                    RESUME_KIND,
                    {"request_id": row.id},
                    lock=row.thread_id,
                    queueing_lock=f"resume:{row.id}",
                )
                return
            except QueueUnavailable as exc:  # the sweep would get it later; do it now
                log.warning("approval %s: resume not enqueued (%s); resuming here", row.id, exc)
        await self._complete(row)

    async def resume_job(self, payload: Mapping[str, Any], job: JobInfo) -> None:
        """The worker's half (``approval.resume`` jobs). A job re-run after its worker died
        (even mid tool call) resumes again under the same claim; the idempotency ledger
        keeps the approved call to one execution, and the card and the answer are shown
        by the attempt that finishes."""
        row = await self.service.store.get(str(payload.get("request_id", "")))
        if row is None or row.completed_at is not None:
            return
        await self._complete(row, holder=f"job-{job.id}", job=job)

    async def _complete(
        self, row: ApprovalRecord, *, holder: str | None = None, job: JobInfo | None = None
    ) -> None:
        requester = await self.conversations.directory.actor(row.requester)
        try:
            done = await self.service.complete(
                row,
                requester=requester,
                slack=self.conversations.reader,
                access=self.conversations.access,
                holder=holder,
            )
        except StorageError as exc:
            if job is not None and not job.final_attempt:
                raise Retryable(str(exc)) from exc
            text, ref = user_error(exc)
            log.warning("approval %s: resuming the run failed ref=%s: %s", row.id, ref, exc)
            await self.conversations.post_error(self._inbound(row), text)
            return
        except Exception as exc:
            if job is not None:
                await job.check()
            text, ref = user_error(exc)
            log.exception("approval %s: resuming the run failed ref=%s", row.id, ref)
            await self.conversations.post_error(self._inbound(row), text)
            return
        if job is not None:
            await job.check()  # re-claimed elsewhere meanwhile: that attempt shows it
        await self.show(done)

    async def show(self, done: Completed) -> None:
        await self.refresh_card(done.row)
        if done.outcome is not None:
            inbound = self._inbound(done.row)
            try:
                await self.conversations.render(inbound, done.outcome)
            except Undelivered as exc:  # Slack refuses for now: posted later, not lost
                await self.conversations.deliver_later(inbound, exc)

    def _inbound(self, row: ApprovalRecord) -> Inbound:
        thread = ThreadRef.parse(row.thread_id)
        return Inbound(
            team=thread.team,
            channel=row.channel_id,
            user=row.requester,
            text="",
            kind="thread",
            memory=thread,
            reply_thread_ts=row.thread_ts,
        )

    async def tell(self, user: str, row: ApprovalRecord, text: str, channel: str | None) -> None:
        try:
            await self.client.chat_postEphemeral(
                channel=channel or row.card_channel or row.channel_id,
                user=user,
                thread_ts=row.thread_ts,
                text=text,
            )
        except SlackApiError as exc:
            log.info("ephemeral to %s failed: %s", user, exc.response.get("error"))

    # -- sweep ----------------------------------------------------------------------------

    async def sweep_once(self) -> list[Completed]:
        done = await self.service.sweep(
            actor_for=self.conversations.directory.actor,
            slack=self.conversations.reader,
            access=self.conversations.access,
        )
        for item in done:
            self._observe_wait(item.row, item.row.status)
            await self.show(item)
        return done

    # -- reset ----------------------------------------------------------------------------

    async def reset(self, thread: ThreadRef, user: str) -> str | None:
        """The conversation's reset, as ``user``: refused while someone else's approval is
        open; the requester's own reset abandons it and its card says so."""
        actor = await self.conversations.directory.actor(user)
        result = await self.service.reset(thread, actor)
        for row in result.abandoned:
            await self.refresh_card(row)
        return cards.reset_text(result)

    # -- lists ----------------------------------------------------------------------------

    async def lists(self, actor: Principal) -> list[Block]:
        waiting, mine = await self.service.waiting_for(actor)
        blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="Approvals"))]
        blocks.append(_heading(f"Waiting for you ({len(waiting)})"))
        blocks.extend(b for row in waiting[:15] for b in _row_blocks(row, buttons=True))
        blocks.append(_heading(f"Requested by you ({len(mine)})"))
        blocks.extend(b for row in mine[:15] for b in _row_blocks(row, buttons=False))
        return blocks


def _heading(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=f"*{text}*"))


def _row_blocks(row: ApprovalRecord, *, buttons: bool) -> list[Block]:
    args = ", ".join(f"{k}={v}" for k, v in sorted(args_of(row).items()))
    text = (
        f"*{escape_mrkdwn(row.skill)}* → `{escape_mrkdwn(row.tool)}` "
        f"({escape_mrkdwn(args)[:300]}) for <@{row.requester}> · expires "
        f"{cards.slack_date(row.expires_at)}"
    )
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=text))]
    if buttons:
        blocks.append(
            ActionsBlock(
                block_id=f"list:{row.id}",
                elements=[
                    ButtonElement(
                        text=PlainTextObject(text="Approve"),
                        action_id=cards.APPROVE,
                        value=row.id,
                        style="primary",
                    ),
                    ButtonElement(
                        text=PlainTextObject(text="Reject"),
                        action_id=cards.REJECT,
                        value=row.id,
                        style="danger",
                    ),
                ],
            )
        )
    return blocks


def _from_home(body: dict[str, Any]) -> bool:
    """Was the click on the App Home tab (which then has to be published again)?"""
    return (body.get("view") or {}).get("type") == "home"


def _modal_errors(view: dict[str, Any], problems: list[str]) -> dict[str, str]:
    """Slack modal validation errors: each problem under its argument's input."""
    blocks = list(((view.get("state") or {}).get("values") or {}).keys()) or ["arg:"]
    errors: dict[str, str] = {}
    for problem in problems:
        name = problem.split(":", 1)[0]
        block = f"arg:{name}" if f"arg:{name}" in blocks else blocks[0]
        errors[block] = (errors.get(block, "") + " " + problem).strip()[:150]
    return errors


def install(app: AsyncApp, bot: BotContext) -> ApprovalsBot:
    """Register the approval listeners, /switchboard approvals and App Home for the cards
    the conversations were built with (``Conversations(approvals=ApprovalsBot.cards(…))``)."""
    conversations = bot.conversations
    client = conversations.client
    approvals = conversations.approvals
    if not isinstance(approvals, ApprovalsBot):
        raise TypeError("the conversations were built without approval cards")
    service = approvals.service

    async def decider(user: str) -> Principal:
        """The clicker, with user groups asked of Slack now: a decision is authorization."""
        return await conversations.directory.actor(user, fresh=True)

    def _click(body: dict[str, Any]) -> tuple[str, str, str | None]:
        action = (body.get("actions") or [{}])[0]
        user = str((body.get("user") or {}).get("id", ""))
        channel = (body.get("channel") or {}).get("id")
        return str(action.get("value", "")), user, channel

    async def _row(request_id: str) -> ApprovalRecord | None:
        return await service.store.get(request_id) if request_id else None

    @app.action(cards.APPROVE)
    async def on_approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        request_id, user, channel = _click(body)
        if await _row(request_id) is None:
            log.warning("approve click for unknown request %r ignored", request_id)
            return

        async def work() -> None:
            actor = await decider(user)
            await approvals.decided(
                await service.click(request_id, actor, "approve"), user, channel
            )
            if _from_home(body):  # the list there must not keep live buttons for it
                await publish_home(bot, client, user)

        bot.worker.spawn(work(), name=f"approve:{request_id}")

    @app.action(cards.REJECT)
    async def on_reject(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        request_id, user, channel = _click(body)
        row = await _row(request_id)
        if row is None:
            return
        actor = await decider(user)
        clicked = await service.click(request_id, actor, "reject")
        if clicked.kind != "proceed":
            await approvals.decided(clicked, user, channel)
            return
        trigger = body.get("trigger_id")
        home = _from_home(body)
        if trigger:
            await client.views_open(
                trigger_id=str(trigger), view=cards.reject_modal(row.id, from_home=home)
            )
        else:  # no modal possible: reject without a reason
            bot.worker.spawn(
                _reject(request_id, actor, None, channel, home=home), name=f"reject:{request_id}"
            )

    async def _reject(
        request_id: str,
        actor: Principal,
        reason: str | None,
        channel: str | None,
        *,
        home: bool = False,
    ) -> None:
        await approvals.decided(
            await service.reject(request_id, actor, reason), actor.user_id, channel
        )
        if home:
            await publish_home(bot, client, actor.user_id)

    @app.view(cards.REJECT_MODAL)
    async def on_reject_reason(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await ack()
        request_id, home = cards.reject_origin(str(view.get("private_metadata", "")))
        values = (view.get("state") or {}).get("values") or {}
        reason = ((values.get("reason") or {}).get("text") or {}).get("value")
        user = str((body.get("user") or {}).get("id", ""))
        if await _row(request_id) is None:
            return
        actor = await decider(user)
        bot.worker.spawn(
            _reject(request_id, actor, reason, None, home=home), name=f"reject:{request_id}"
        )

    @app.action(cards.EDIT)
    async def on_edit(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        request_id, user, channel = _click(body)
        row = await _row(request_id)
        if row is None:
            return
        actor = await decider(user)
        clicked = await service.click(request_id, actor, "edit")
        if clicked.kind != "proceed":
            await approvals.decided(clicked, user, channel)
            return
        if body.get("trigger_id"):
            await client.views_open(
                trigger_id=str(body["trigger_id"]), view=cards.edit_modal(clicked.row)
            )

    @app.view(cards.EDIT_MODAL)
    async def on_edit_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        request_id = str(view.get("private_metadata", ""))
        row = await _row(request_id)
        if row is None:
            await ack()
            return
        args = cards.parse_edit(view, schema_of(row))
        user = str((body.get("user") or {}).get("id", ""))
        actor = await decider(user)
        try:
            decided, new = await service.edit(request_id, actor, args)
        except EditRejected as exc:
            errors = {}
            for problem in exc.problems:
                name = problem.split(":", 1)[0]
                block = (
                    f"arg:{name}"
                    if f"arg:{name}" in ((view.get("state") or {}).get("values") or {})
                    else None
                )
                errors[
                    block or next(iter((view.get("state") or {}).get("values") or {"arg:": 0}))
                ] = problem[:150]
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        if new is None:
            bot.worker.spawn(approvals.decided(decided, user, None), name=f"edit:{request_id}")
            return
        bot.worker.spawn(approvals.refresh_card(new), name=f"edit:{request_id}")

    async def approvals_command(
        body: dict[str, Any],
        ack: AsyncAck,
        respond: AsyncRespond,
        client: AsyncWebClient,
        args: str,
    ) -> None:
        user = str(body.get("user_id", ""))
        actor = await conversations.directory.actor(user)
        blocks = await approvals.lists(actor)
        await ack(
            response_type="ephemeral",
            text="Approvals waiting for you and requested by you",
            blocks=[b.to_dict() for b in blocks],
        )

    bot.subcommands["approvals"] = approvals_command
    bot.help_lines.append("• `/switchboard approvals` — requests waiting for you, and yours")
    bot.home_sections.append(approvals.lists)
    return approvals
