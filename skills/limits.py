"""Per-skill limits checked before a run starts: the admins' kill switch and daily budgets.

* **Kill switch** — ``/switchboard admin disable SKILL`` (or ``switchboard skills disable``)
  switches a skill off for everyone; it answers a clear refusal until it is enabled
  again. The switches live in SQL and every replica re-reads them at most
  ``refresh_seconds`` after it last did (the replica that flipped one, at once).
* **Budget** — ``budget: {daily_tokens: N}`` in a spec: once the skill's runs started this
  UTC day used N tokens, new runs are refused until midnight UTC. A run that started under
  budget finishes (budgets are checked before a run, not during it), so a day can end a
  little over; what counts is the ``runs`` table the runtime already keeps.

Each refusal is logged and passed to ``observers`` (the bot counts them in a metric).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from skills.outcomes import Refusal
from skills.registry import Skill
from storage.limits import SkillLimitsStore, SwitchedOff

__all__ = ["LimitObserver", "SkillGate"]

log = logging.getLogger(f"switchboard.{__name__}")

#: Told about each refusal: ``(skill, reason)`` with reason ``disabled`` or ``budget``.
LimitObserver = Callable[[str, str], None]


class SkillGate:
    """Decides whether a skill may start a run now; ``check`` returns the refusal if not."""

    def __init__(
        self,
        *,
        store: SkillLimitsStore,
        refresh_seconds: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        observers: list[LimitObserver] | None = None,
    ) -> None:
        self.store = store
        self._refresh = refresh_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._off: dict[str, SwitchedOff] = {}
        self._loaded_at: float | None = None
        self.observers: list[LimitObserver] = list(observers or [])

    async def check(self, skill: Skill) -> Refusal | None:
        """None when ``skill`` may run; else the refusal to show the person."""
        off = (await self.switched_off()).get(skill.name)
        if off is not None:
            self._refused(skill.name, "disabled", f"switched off by {off.by}")
            why = f" ({off.reason})" if off.reason else ""
            return Refusal(
                reason=f"`{skill.name}` is switched off by an admin right now{why}.",
                skill=skill.name,
            )
        budget = skill.spec.budget if skill.spec is not None else None
        if budget is None:
            return None
        now = self._clock().astimezone(UTC)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        used = await self.store.tokens_since(skill.name, midnight)
        if used < budget.daily_tokens:
            return None
        self._refused(skill.name, "budget", f"{used} of {budget.daily_tokens} tokens used today")
        return Refusal(
            reason=(
                f"`{skill.name}` has used its daily budget of {budget.daily_tokens:,} tokens. "
                f"It is available again {_until(midnight + timedelta(days=1) - now)}."
            ),
            skill=skill.name,
        )

    async def switched_off(self) -> dict[str, SwitchedOff]:
        """The switched-off skills, at most ``refresh_seconds`` old."""
        stamp = self._monotonic()
        if self._loaded_at is None or stamp - self._loaded_at >= self._refresh:
            self._off = await self.store.switched_off()
            self._loaded_at = stamp
        return dict(self._off)

    async def set_enabled(
        self, skill: str, enabled: bool, *, by: str, reason: str | None = None
    ) -> None:
        """Flip the kill switch of ``skill``; this replica sees the change at once."""
        await self.store.set_enabled(skill, enabled, by=by, reason=reason, at=self._clock())
        self._loaded_at = None
        log.warning(
            "skill %s %s by %s%s",
            skill,
            "enabled" if enabled else "disabled",
            by,
            f" ({reason})" if reason and not enabled else "",
        )

    def _refused(self, skill: str, reason: str, detail: str) -> None:
        log.warning("skill %s refused a run: %s (%s)", skill, reason, detail)
        for observer in self.observers:
            try:
                observer(skill, reason)
            except Exception:  # an observer must never fail a run
                log.exception("limit observer failed")


def _until(left: timedelta) -> str:
    minutes = max(1, int(left.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    span = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return f"at 00:00 UTC (in {span})"
