"""Slack feedback → evaluation work: draft cases from 👎 answers, and 👍/👎 rates by week.

`import_feedback` turns each 👎 (with the thread's messages from conversation memory,
PII-masked) into a draft case — the request, the earlier turns, the channel, the person —
with the bad answer and the comment kept in ``notes`` for whoever completes the case.
Drafts only check the route; a person adds the real expectations. Each draft file loads
with `evals.dataset.load_dataset`, so it can be run at once. The rows come from
`storage.feedback.FeedbackStore.rows`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from skills.pii import mask_text, strip_token_ids
from storage.feedback import FeedbackRow

__all__ = [
    "DraftCase",
    "FeedbackRow",
    "WeekStats",
    "draft_cases",
    "render_drafts",
    "weekly_stats",
]

History = Callable[[str], Awaitable[Sequence[BaseMessage]]]
"""Thread id → the thread's remembered messages (``Runtime.history``), oldest first."""


@dataclass(frozen=True, slots=True)
class DraftCase:
    skill: str
    data: dict[str, Any]


def _clean(text: str) -> str:
    return mask_text(strip_token_ids(text)).strip()


async def draft_cases(rows: Sequence[FeedbackRow], *, history: History) -> list[DraftCase]:
    """One draft case per 👎 row (see the module docstring)."""
    drafts: list[DraftCase] = []
    for row in rows:
        if row.value != "down":
            continue
        messages = list(await history(row.thread_id))
        humans = [_clean(str(m.text)) for m in messages if isinstance(m, HumanMessage)]
        answers = [
            _clean(str(m.text))
            for m in messages
            if isinstance(m, AIMessage) and not m.tool_calls and str(m.text).strip()
        ]
        note = [f"👎 from {row.user_id} on {row.created_at:%Y-%m-%d %H:%M} UTC"]
        if row.comment:
            note.append(f"comment: {_clean(row.comment)}")
        if answers:
            note.append(f"answer given: {answers[-1][:1500]}")
        stored = _clean(row.request) if row.request else ""
        if not humans and stored:
            humans = [stored]
            note.append(
                "the thread's messages are no longer in memory: the request is the one "
                "stored with the feedback; earlier turns are lost"
            )
        elif not humans:
            note.append("the thread's messages are no longer in memory; fill in `message`")
        note.append("TODO: add expectations (trajectory, answer checks, rubric), then drop this")
        case: dict[str, Any] = {
            "id": f"feedback-{row.id[:10]}",
            "description": "from Slack feedback; complete before relying on it",
            "message": humans[-1] if humans else "TODO: the request",
            "channel": row.channel_id,
            "actor": row.requester or row.user_id,
        }
        if len(humans) > 1:
            case["history"] = humans[:-1]
        case["tags"] = ["feedback", "draft"]
        case["notes"] = "\n".join(note)
        case["expect"] = {"route": row.skill}
        drafts.append(DraftCase(skill=row.skill, data=case))
    return drafts


def render_drafts(skill: str, drafts: Sequence[DraftCase], *, since: datetime) -> str:
    """A dataset file holding ``drafts`` for ``skill``."""
    header = (
        f"# Draft evaluation cases for `{skill}` from 👎 feedback since {since:%Y-%m-%d}.\n"
        "# Personal data is masked. Complete each case's `expect` (see docs/evals.md),\n"
        "# then move the cases into the skill's dataset.\n"
    )
    document = {"skill": skill, "cases": [d.data for d in drafts if d.skill == skill]}
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    return header + body


@dataclass(frozen=True, slots=True)
class WeekStats:
    skill: str
    week: str  # ISO week, e.g. 2025-W20
    up: int
    down: int

    @property
    def total(self) -> int:
        return self.up + self.down

    @property
    def up_rate(self) -> float:
        return self.up / self.total if self.total else 0.0


def weekly_stats(rows: Sequence[FeedbackRow]) -> list[WeekStats]:
    """👍/👎 counts per skill and ISO week, ordered by skill then week."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        year, week, _ = row.created_at.isocalendar()
        counts[(row.skill, f"{year}-W{week:02d}", row.value)] += 1
    keys = sorted({(skill, week) for skill, week, _ in counts})
    return [
        WeekStats(skill, week, counts[(skill, week, "up")], counts[(skill, week, "down")])
        for skill, week in keys
    ]
