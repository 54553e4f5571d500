"""Durations as specs write them: ``7d``, ``4h``, ``30m``, ``90s``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, PlainSerializer

from skills.spec._validation import custom_error

_DURATION_RE: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_HINT: Final = "expected a duration like 7d, 4h, 30m or 90s"


def parse_duration(text: str) -> timedelta:
    """Parse ``7d``, ``4h``, ``30m``, ``90s`` or combinations such as ``1h30m``."""
    match = _DURATION_RE.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{_DURATION_HINT}, got {text!r}")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if duration <= timedelta(0):
        raise ValueError("duration must be longer than zero")
    return duration


def format_duration(duration: timedelta) -> str:
    """The compact form ``parse_duration`` reads: ``timedelta(hours=28)`` gives ``1d4h``."""
    total = int(duration.total_seconds())
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def describe_duration(duration: timedelta) -> str:
    """For people: ``timedelta(days=1)`` gives ``1 day``, ``timedelta(hours=28)`` gives
    ``1 day 4 hours`` (never ``1 day, 0:00:00``)."""
    total = int(duration.total_seconds())
    parts = []
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts) or "0 seconds"


def _to_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise custom_error(_DURATION_HINT)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise custom_error(str(exc)) from None


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
