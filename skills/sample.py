"""An in-memory Slack workspace with realistic sample data, and a `SlackReader` over it.

The reader is also the workspace's `ConversationAccess` port: it answers membership from
the channels' member lists, so runs over sample data follow the same read rule as in Slack.

Used by tests, the console and (later) the sandbox's workspace emulator, which seeds itself
from the same plain data (`Workspace`). The sample is a payments company:

* people in several time zones — Carol (Europe/Lisbon), Dev (Asia/Dubai), Sam
  (America/New_York), Priya (Asia/Kolkata), Marta (Europe/Warsaw), Leo (America/Sao_Paulo)
  — plus the Alertmanager and PagerDuty bots;
* user groups ``S0LEADS`` (approvers: Carol, Dev), ``S0SUPPORT`` and ``S0ONCALL``;
* ``C0PAYALERTS`` (#payments-alerts): 40 top-level messages in the 24 hours before ``now``
  (alerts, acknowledgements, threads, some questions left unanswered) and two older ones;
* ``C0SUPPORT`` (#support) and ``C0PAYMENTS`` (#payments), smaller;
* ``G0RISK`` (#risk-private), a private channel of Carol and Dev (fraud reviews), and Nina
  (``U0NINA``), a single-channel guest in #support: who may read what, in practice.

Every timestamp is relative to the ``now`` given to `sample_workspace`, so tests pass a
fixed datetime and get the same workspace every time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from skills.context import (
    Membership,
    Principal,
    SlackMessage,
    SlackReader,
    SlackReaderError,
    SlackUser,
)

__all__ = [
    "StaticSlackReader",
    "Workspace",
    "WorkspaceChannel",
    "WorkspaceMessage",
    "WorkspaceUsergroup",
    "sample_workspace",
]


@dataclass(slots=True)
class WorkspaceChannel:
    """A channel; ``members`` are user ids."""

    id: str
    name: str
    topic: str = ""
    members: tuple[str, ...] = ()
    is_private: bool = False


@dataclass(slots=True)
class WorkspaceUsergroup:
    """A user group (``S…`` id, ``@handle``)."""

    id: str
    handle: str
    name: str
    members: frozenset[str] = frozenset()


@dataclass(slots=True)
class WorkspaceMessage:
    """A stored message. A reply has ``thread_ts`` set to its root's ``ts``."""

    channel: str
    ts: str
    user: str | None
    text: str
    thread_ts: str | None = None
    bot: bool = False

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass(slots=True)
class Workspace:
    """The raw data of a workspace: plain values, no behaviour beyond lookups."""

    team_id: str
    team_name: str
    users: dict[str, SlackUser] = field(default_factory=dict)
    channels: dict[str, WorkspaceChannel] = field(default_factory=dict)
    usergroups: dict[str, WorkspaceUsergroup] = field(default_factory=dict)
    messages: list[WorkspaceMessage] = field(default_factory=list)


def _ts(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


class StaticSlackReader(SlackReader):
    """A `SlackReader` over an in-memory `Workspace`; errors mimic Slack's error codes.

    ``channel_messages`` returns the *newest* ``limit`` top-level messages of the window,
    oldest first, as a paginated ``conversations.history`` read would.
    """

    def __init__(
        self, *, workspace: Workspace, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.workspace = workspace
        self._clock = clock

    @classmethod
    def sample(cls, now: datetime) -> StaticSlackReader:
        """The sample payments workspace, with timestamps relative to ``now``."""
        return cls(workspace=sample_workspace(now), clock=lambda: now)

    # -- SlackReader -------------------------------------------------------------------

    async def thread_messages(
        self, channel: str, thread_ts: str, *, limit: int = 200
    ) -> Sequence[SlackMessage]:
        self._channel(channel, "conversations.replies")
        stored = [
            m
            for m in self.workspace.messages
            if m.channel == channel and (m.ts == thread_ts or m.thread_ts == thread_ts)
        ]
        if not any(m.ts == thread_ts for m in stored):
            raise SlackReaderError("conversations.replies", "thread_not_found")
        stored.sort(key=lambda m: float(m.ts))
        return [self._view(m) for m in stored[:limit]]

    async def channel_messages(
        self, channel: str, *, oldest: datetime, latest: datetime | None = None, limit: int = 1000
    ) -> Sequence[SlackMessage]:
        self._channel(channel, "conversations.history")
        low = oldest.timestamp()
        high = latest.timestamp() if latest is not None else float("inf")
        stored = sorted(
            (
                m
                for m in self.workspace.messages
                if m.channel == channel and not m.is_reply and low <= float(m.ts) <= high
            ),
            key=lambda m: float(m.ts),
        )
        if limit >= 0:
            stored = stored[-limit:] if limit else []
        return [self._view(m) for m in stored]

    async def user_info(self, user_id: str) -> SlackUser | None:
        return self.workspace.users.get(user_id)

    async def usergroup_members(self, usergroup_id: str) -> frozenset[str]:
        group = self.workspace.usergroups.get(usergroup_id)
        return group.members if group is not None else frozenset()

    async def channel_name(self, channel: str) -> str | None:
        found = self.workspace.channels.get(channel)
        return found.name if found is not None else None

    # -- ConversationAccess ------------------------------------------------------------

    async def membership(self, principal: Principal, conversation: str) -> Membership:
        """From the member lists; a ``D…`` conversation is a DM of its members."""
        found = self.workspace.channels.get(conversation)
        if found is None:
            return Membership("unknown", False)
        if conversation.startswith("D"):
            return Membership("im", principal.user_id in found.members)
        return Membership(
            "private" if found.is_private else "channel", principal.user_id in found.members
        )

    # -- editing -----------------------------------------------------------------------

    def add_user(self, user: SlackUser) -> None:
        self.workspace.users[user.id] = user

    def add_channel(self, channel: WorkspaceChannel) -> None:
        self.workspace.channels[channel.id] = channel

    def add_message(
        self,
        channel: str,
        user: str | None,
        text: str,
        *,
        at: datetime | None = None,
        thread_ts: str | None = None,
    ) -> SlackMessage:
        """Post a message (a reply when ``thread_ts`` is given); returns it as read back.

        ``at`` defaults to the reader's clock. Timestamps are kept unique per channel, as
        Slack's are, by moving a clashing one forward by a microsecond.
        """
        self._channel(channel, "chat.postMessage")
        if thread_ts is not None and not any(
            m.channel == channel and m.ts == thread_ts for m in self.workspace.messages
        ):
            raise SlackReaderError("chat.postMessage", "thread_not_found")
        moment = at or self._clock()
        taken = {m.ts for m in self.workspace.messages if m.channel == channel}
        ts = _ts(moment)
        while ts in taken:
            moment += timedelta(microseconds=1)
            ts = _ts(moment)
        author = self.workspace.users.get(user) if user else None
        stored = WorkspaceMessage(
            channel=channel,
            ts=ts,
            user=user,
            text=text,
            thread_ts=thread_ts,
            bot=bool(author and author.is_bot),
        )
        self.workspace.messages.append(stored)
        return self._view(stored)

    # -- helpers -----------------------------------------------------------------------

    def _channel(self, channel: str, method: str) -> WorkspaceChannel:
        found = self.workspace.channels.get(channel)
        if found is None:
            raise SlackReaderError(method, "channel_not_found")
        return found

    def _view(self, stored: WorkspaceMessage) -> SlackMessage:
        user = self.workspace.users.get(stored.user) if stored.user else None
        replies = 0
        if not stored.is_reply:
            replies = sum(
                1
                for m in self.workspace.messages
                if m.channel == stored.channel and m.thread_ts == stored.ts and m.is_reply
            )
        return SlackMessage(
            ts=stored.ts,
            user=stored.user,
            text=stored.text,
            user_name=(user.real_name or user.name) if user else None,
            thread_ts=stored.thread_ts if stored.is_reply or replies else None,
            reply_count=replies,
            bot=stored.bot,
        )


# --------------------------------------------------------------------------- sample data

_USERS = (
    SlackUser("U0CAROL", "carol", "Carol Pereira", "Europe/Lisbon", "Head of Risk"),
    SlackUser("U0DEV", "dev", "Dev Raman", "Asia/Dubai", "Payments SRE"),
    SlackUser("U0SAM", "sam", "Sam Whitaker", "America/New_York", "Support Engineer"),
    SlackUser("U0PRIYA", "priya", "Priya Nair", "Asia/Kolkata", "Finance Ops Analyst"),
    SlackUser("U0MARTA", "marta", "Marta Nowak", "Europe/Warsaw", "Backend Engineer, Payouts"),
    SlackUser("U0LEO", "leo", "Leo Santos", "America/Sao_Paulo", "Support Agent"),
    SlackUser(
        "U0NINA",
        "nina",
        "Nina Brandt",
        "Europe/Berlin",
        "Contractor, support (guest)",
        is_restricted=True,
        is_ultra_restricted=True,
    ),
    SlackUser("U0ALERTS", "alertmanager", "Alertmanager", None, None, is_bot=True),
    SlackUser("U0PAGER", "pagerduty", "PagerDuty", None, None, is_bot=True),
    SlackUser("U0SWITCH", "switchboard", "Switchboard", None, None, is_bot=True),
)

_GROUPS = (
    WorkspaceUsergroup("S0LEADS", "leads", "Leads (approvers)", frozenset({"U0CAROL", "U0DEV"})),
    WorkspaceUsergroup("S0SUPPORT", "support-team", "Support", frozenset({"U0SAM", "U0LEO"})),
    WorkspaceUsergroup("S0ONCALL", "payments-oncall", "On-call", frozenset({"U0DEV", "U0MARTA"})),
)

_HUMANS = ("U0CAROL", "U0DEV", "U0SAM", "U0PRIYA", "U0MARTA", "U0LEO")
_CHANNELS = (
    WorkspaceChannel(
        "C0PAYALERTS", "payments-alerts", "Alerts for the payments platform", (*_HUMANS, "U0SWITCH")
    ),
    WorkspaceChannel("C0SUPPORT", "support", "Customer support escalations", (*_HUMANS, "U0NINA")),
    WorkspaceChannel("C0PAYMENTS", "payments", "Payments team", _HUMANS),
    WorkspaceChannel(
        "G0RISK", "risk-private", "Risk reviews (private)", ("U0CAROL", "U0DEV"), is_private=True
    ),
)

# (minutes before now, author, text, replies as (minutes after the root, author, text))
_Thread = tuple[int, str, str, tuple[tuple[int, str, str], ...]]

_PAYALERTS: tuple[_Thread, ...] = (
    (2000, "U0ALERTS", "[RESOLVED] Payout API error rate (wise)", ()),
    (1500, "U0DEV", "Quiet night so far, handing over to the EU shift.", ()),
    (1430, "U0ALERTS", "[FIRING] PSP latency p95 > 2s (adyen-eu): 2.4s over 5m", (
        (3, "U0DEV", "ack, looking"),
        (12, "U0DEV", "Adyen status page shows degraded performance in EU. Nothing on our side."),
        (41, "U0DEV", "resolved on their end, p95 back to 600ms"),
    )),
    (1425, "U0PAGER", "Incident #4812 triggered: PSP latency p95 (adyen-eu), assigned to Dev", ()),
    (1410, "U0PAGER", "Incident #4812 acknowledged by Dev Raman", ()),
    (1385, "U0ALERTS", "[RESOLVED] PSP latency p95 > 2s (adyen-eu)", ()),
    (1320, "U0MARTA", "Deploying payouts-service v2.31.0 (batching fix for SEPA files)", ()),
    (1290, "U0MARTA", "v2.31.0 is out, watching error rates", ()),
    (1200, "U0ALERTS", "[FIRING] Chargeback webhook 5xx rate 4% (stripe)", (
        (5, "U0MARTA", "that's us: the new deploy rejects the dispute.closed event schema"),
        (9, "U0MARTA", "rolling back to v2.30.4"),
        (25, "U0MARTA", "rollback done, 5xx back to 0"),
        (30, "U0CAROL", "Thanks Marta. Can we make sure the missed webhooks are replayed?"),
        (44, "U0MARTA", "Replayed 37 events from the Stripe dashboard, all 200 now."),
    )),
    (1195, "U0PAGER", "Incident #4813 triggered: Chargeback webhook 5xx (stripe), assigned to Marta", ()),  # noqa: E501
    (1150, "U0ALERTS", "[RESOLVED] Chargeback webhook 5xx rate (stripe)", ()),
    (1100, "U0PRIYA", "Does anyone know why yesterday's settlement report shows 3 payouts stuck in PENDING?", ()),  # noqa: E501
    (1020, "U0ALERTS", "[FIRING] Fraud score service error rate 1.2%", (
        (4, "U0DEV", "ack"),
        (10, "U0DEV", "model server OOM-killed, restarted with more memory"),
        (18, "U0CAROL", "Any transactions approved without a score during that window?"),
        (31, "U0DEV", "No, we fail closed: 214 payments were held for manual review."),
    )),
    (1015, "U0ALERTS", "[RESOLVED] Fraud score service error rate", ()),
    (960, "U0SAM", "Customer reports a double charge on order 88123419, card ending 4242. Is this the retry bug from last week?", (  # noqa: E501
        (15, "U0MARTA", "Looks like it: two captures 3s apart, the retry path lost the idempotency key. Refund one capture and I'll file a ticket."),  # noqa: E501
        (20, "U0SAM", "refunded, thanks!"),
    )),
    (900, "U0ALERTS", "[FIRING] Payout batch SEPA-0513 not acknowledged by the bank after 60m", ()),
    (880, "U0PRIYA", "Bank portal shows the SEPA file as received, just slow. Will check again at 14:00.", ()),  # noqa: E501
    (830, "U0ALERTS", "[RESOLVED] Payout batch SEPA-0513 acknowledged", ()),
    (780, "U0LEO", "Is the checkout page slow for anyone else? Two merchants are complaining.", (
        (6, "U0LEO", "never mind, it was the merchant's CDN"),
    )),
    (725, "U0ALERTS", "[FIRING] 3DS challenge success rate 71% (visa, last 30m)", (
        (8, "U0DEV", "looking"),
        (16, "U0CAROL", "Visa posted an ACS incident for some UK issuers."),
        (22, "U0DEV", "confirmed, issuer-side; nothing to do but watch"),
    )),
    (715, "U0PAGER", "Incident #4814 triggered: 3DS challenge success rate, assigned to Dev", ()),
    (690, "U0ALERTS", "[RESOLVED] 3DS challenge success rate", ()),
    (640, "U0CAROL", "Reminder: the velocity rule change (5 → 3 per card per hour) goes live tomorrow 09:00 Lisbon time.", (  # noqa: E501
        (30, "U0SAM", "noted, will brief support"),
    )),
    (600, "U0MARTA", "Who owns the reconciliation cron now that Tom moved teams?", ()),
    (560, "U0ALERTS", "[FIRING] Refund API p99 > 5s", (
        (7, "U0MARTA", "DB failover in progress, expected"),
        (15, "U0MARTA", "done"),
    )),
    (548, "U0ALERTS", "[RESOLVED] Refund API p99 > 5s", ()),
    (500, "U0SAM", "FYI a customer pasted a full card number (4111 1111 1111 1111) into ticket T-9912; I redacted it in Zendesk.", ()),  # noqa: E501
    (420, "U0ALERTS", "[FIRING] Disk usage 91% on ledger-db-2", (
        (12, "U0DEV", "cleaned old WAL archives, 64% now"),
    )),
    (405, "U0ALERTS", "[RESOLVED] Disk usage on ledger-db-2", ()),
    (360, "U0PRIYA", "Can someone confirm the FX rates job ran? The EUR/GBP rate in the admin is from yesterday.", (  # noqa: E501
        (5, "U0PRIYA", "checking the logs myself"),
        (9, "U0PRIYA", "still not sure"),
    )),
    (300, "U0DEV", "Handing over on-call to Marta at 18:00 Dubai time. Open: #4812 post-mortem draft.", ()),  # noqa: E501
    (280, "U0ALERTS", "[FIRING] Card tokenization latency p95 > 800ms", (
        (4, "U0MARTA", "ack"),
        (9, "U0MARTA", "vault cluster rebalancing, should settle"),
        (20, "U0MARTA", "settled"),
    )),
    (276, "U0PAGER", "Incident #4815 triggered: Card tokenization latency, assigned to Marta", ()),
    (255, "U0ALERTS", "[RESOLVED] Card tokenization latency p95 > 800ms", ()),
    (200, "U0LEO", "Customer jane.doe@example.com asks whether refund RF-55120 went through; it shows as processed. OK to say 5-7 business days?", (  # noqa: E501
        (11, "U0SAM", "yes, that's the standard wording"),
    )),
    (150, "U0ALERTS", "[FIRING] Webhook delivery backlog 12k events (merchant notifications)", (
        (6, "U0MARTA", "consumer lag after the deploy, scaling workers 4 → 8"),
        (14, "U0DEV", "want me to page the platform team?"),
        (17, "U0MARTA", "no, draining already"),
        (33, "U0MARTA", "backlog cleared"),
    )),
    (115, "U0ALERTS", "[RESOLVED] Webhook delivery backlog", ()),
    (90, "U0CAROL", "Are we OK to enable the new velocity rule for the NL market too, or wait a week?", ()),  # noqa: E501
    (60, "U0ALERTS", "[FIRING] Payout API error rate 2.1% (wise)", (
        (3, "U0MARTA", "ack"),
    )),
    (45, "U0SAM", "Support queue is calm: 4 open payment tickets, none urgent.", ()),
    (20, "U0ALERTS", "[RESOLVED] Payout API error rate (wise)", ()),
    (8, "U0DEV", "Post-mortem draft for #4812 is up, comments welcome by Friday.", ()),
)  # fmt: skip

_SUPPORT: tuple[_Thread, ...] = (
    (600, "U0LEO", "Merchant Bluebird Cafe says payouts stopped on Monday. Who can check?", (
        (20, "U0SAM", "Their IBAN GB82 WEST 1234 5698 7654 32 failed verification, asked them to re-enter."),  # noqa: E501
    )),
    (400, "U0SAM", "Escalating ticket T-9912 to risk: customer disputes a charge on card 4111 1111 1111 1111.", (  # noqa: E501
        (30, "U0CAROL", "On it. Please ask the customer for the receipt."),
        (45, "U0SAM", "sent"),
    )),
    (240, "U0LEO", "Updated the 'refund not received' macro: 5-7 business days.", ()),
    (90, "U0SAM", "Anyone seen chargeback notices arriving twice today?", ()),
)  # fmt: skip

_RISK: tuple[_Thread, ...] = (
    (480, "U0CAROL", "Merchant Bluebird Cafe is under review for friendly fraud; keep it between us until Friday.", (  # noqa: E501
        (25, "U0DEV", "Understood. Chargeback ratio is 1.8% this month, threshold is 1%."),
    )),
)  # fmt: skip

_PAYMENTS: tuple[_Thread, ...] = (
    (900, "U0MARTA", "RFC: move payout batching to every 30 minutes instead of hourly. Comments by Thursday.", (  # noqa: E501
        (60, "U0PRIYA", "Fine for finance as long as the bank cut-off at 15:00 is respected."),
        (90, "U0DEV", "+1, watch the SEPA file count limits"),
    )),
    (300, "U0CAROL", "Quarterly risk review slides are in the shared drive.", ()),
)  # fmt: skip


def sample_workspace(now: datetime) -> Workspace:
    """The sample payments workspace; every message timestamp is relative to ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    reader = StaticSlackReader(
        workspace=Workspace(team_id="T0PAYCO", team_name="PayCo"), clock=lambda: now
    )
    for user in _USERS:
        reader.add_user(user)
    for channel in _CHANNELS:
        reader.add_channel(
            WorkspaceChannel(
                channel.id, channel.name, channel.topic, channel.members, channel.is_private
            )
        )
    reader.workspace.usergroups = {
        group.id: WorkspaceUsergroup(group.id, group.handle, group.name, group.members)
        for group in _GROUPS
    }
    for channel_id, threads in (
        ("C0PAYALERTS", _PAYALERTS),
        ("C0SUPPORT", _SUPPORT),
        ("C0PAYMENTS", _PAYMENTS),
        ("G0RISK", _RISK),
    ):
        for minutes_ago, author, text, replies in threads:
            at = now - timedelta(minutes=minutes_ago)
            root = reader.add_message(channel_id, author, text, at=at)
            for after, reply_author, reply_text in replies:
                reader.add_message(
                    channel_id,
                    reply_author,
                    reply_text,
                    at=at + timedelta(minutes=after),
                    thread_ts=root.ts,
                )
    return reader.workspace
