"""What the scheduler posts, in Slack mrkdwn: stand-up prompts and summaries, the owner's
failure DMs, mentions and channel links (:class:`scheduler.ports.ScheduleWords`)."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.standup import blocker_lines
from scheduler.triggers import format_run_time
from storage.schedules import Schedule, StandupAnswer, StandupSession

_MAX_ANSWER = 1200


def _inert(text: str) -> str:
    """User text made inert for Slack mrkdwn: no mentions, links or broadcasts."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackScheduleWords:
    """The bot's wording of everything the scheduler says in Slack."""

    def user(self, user_id: str) -> str:
        return f"<@{user_id}>"

    def channel(self, channel_id: str) -> str:
        return f"<#{channel_id}>"

    def standup_prompt(self, session: StandupSession, *, tz: str) -> str:
        closes = format_run_time(session.closes_at, tz)
        return (
            f":wave: {_inert(session.prompt)}\n"
            f"_Reply in this conversation before {closes}; everything you write until then "
            f"goes into the summary in {self.channel(session.channel_id)}._"
        )

    def standup_summary(
        self, session: StandupSession, answers: Sequence[StandupAnswer], *, tz: str
    ) -> str:
        answered = [a for a in answers if a.answer.strip()]
        silent = [a for a in answers if not a.answer.strip()]
        day = format_run_time(session.opens_at, tz).rsplit(" ", 2)[0]
        lines = [f"*Stand-up summary · {day}* — {len(answered)} of {len(answers)} answered"]
        blockers = [(a.user_id, b) for a in answered for b in blocker_lines(a.answer)]
        if blockers:
            lines.append("")
            lines.append(":rotating_light: *Blockers*")
            lines.extend(f"• {self.user(user)}: {_inert(text)[:300]}" for user, text in blockers)
        if answered:
            lines.append("")
            lines.append("*Answers*")
            for a in answered:
                body = _inert(a.answer.strip())
                if len(body) > _MAX_ANSWER:
                    body = body[:_MAX_ANSWER] + "…"
                quoted = "\n".join(f"> {line}" for line in body.splitlines() if line.strip())
                lines.append(f"{self.user(a.user_id)}\n{quoted}")
        if silent:
            lines.append("")
            lines.append("*No answer:* " + ", ".join(self.user(a.user_id) for a in silent))
        if not answers:
            lines.append("_The user group had no members to ask._")
        return "\n".join(lines)

    def standup_noted(self) -> str:
        return "Thanks, noted for the stand-up. Add more here until it closes."

    def answer_dropped(self, schedule: Schedule, *, when: str) -> str:
        return (
            f":warning: Your schedule {self._name(schedule)} (`{schedule.id[:8]}`) ran at "
            f"{when}, but I couldn't post its answer: Slack didn't take it, even after "
            "waiting and trying again. It runs again at its next time; to get this one "
            "now, use *Run now* in `/switchboard schedules` in that channel."
        )

    def _name(self, schedule: Schedule) -> str:
        return f"*{schedule.skill}* in {self.channel(schedule.channel_id)}"

    def firing_failed(
        self, schedule: Schedule, *, when: str, reason: str, max_failures: int
    ) -> str:
        return (
            f":warning: Your schedule {self._name(schedule)} (`{schedule.id[:8]}`) failed at "
            f"{when}: {reason}.\nI won't repeat this for each failure; after "
            f"{max_failures} failures in a row I'll pause it."
        )

    def schedule_paused(self, schedule: Schedule, *, when: str, reason: str, streak: int) -> str:
        return (
            f":double_vertical_bar: I paused your schedule {self._name(schedule)} "
            f"(`{schedule.id[:8]}`): it failed {streak} times in a row. Last error ({when}): "
            f"{reason}.\nFix the cause, then resume it from `/switchboard schedules` in that "
            "channel."
        )
