"""Slack markup stays in bot/views: the scheduler says what happened through the
ScheduleWords port and never writes a mention, a channel link or a broadcast itself."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.views.schedule_words import SlackScheduleWords
from scheduler.ports import ScheduleWords
from storage.schedules import StandupAnswer, StandupSession

ROOT = Path(__file__).resolve().parents[2]
OPENED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append(node.value)
    return found


def test_runner_and_standup_write_no_slack_markup() -> None:
    for name in ("runner.py", "standup.py"):
        for text in _strings(ROOT / "scheduler" / name):
            for markup in ("<@", "<#", "<!", ":warning:", ":wave:"):
                assert markup not in text, f"scheduler/{name} writes Slack markup: {text!r}"


def test_the_bot_words_mention_link_and_make_answers_inert() -> None:
    words: ScheduleWords = SlackScheduleWords()
    session = StandupSession(
        id="s1",
        schedule_id="sch1",
        scheduled_for=OPENED,
        team_id="T0",
        channel_id="C0TEAM",
        usergroup="S0TEAM",
        prompt="What's up? <!here>",
        opens_at=OPENED,
        closes_at=OPENED + timedelta(hours=1),
        status="closing",
    )
    answers = [
        StandupAnswer(
            id=1, session_id="s1", user_id="U0A", answer="shipped\nblocked on <!channel>"
        ),
        StandupAnswer(id=2, session_id="s1", user_id="U0B", answer=""),
    ]
    summary = words.standup_summary(session, answers, tz="UTC")
    assert summary.index("*Blockers*") < summary.index("*Answers*")
    assert "• <@U0A>: blocked on &lt;!channel&gt;" in summary
    assert "*No answer:* <@U0B>" in summary
    assert "<!channel>" not in summary
    prompt = words.standup_prompt(session, tz="UTC")
    assert "&lt;!here&gt;" in prompt and "<#C0TEAM>" in prompt
