"""``/switchboard admin usage``: runs, tokens and cost by skill, person and channel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from bot.views.text import escape_mrkdwn
from storage.runs import UsageDimension, UsageRow

USAGE_HELP = (
    "`/switchboard admin usage [--days N]` — runs, tokens and cost by skill, person and channel"
)
MAX_DAYS = 366
#: Rows shown per table; the CLI (``switchboard usage``) shows all of them.
TOP = 10

_TITLES: Mapping[UsageDimension, str] = {
    "skill": "By skill",
    "user": "By person",
    "channel": "By channel",
}


class UsageArgsError(ValueError):
    """The arguments of ``admin usage`` are not ``[--days N]``."""


def parse_usage_args(args: str, *, default_days: int = 7) -> int:
    """The number of days ``[--days N]`` asks for (1…366); raises :class:`UsageArgsError`."""
    words = args.split()
    if not words:
        return default_days
    if len(words) == 1 and words[0].startswith("--days="):
        value = words[0].removeprefix("--days=")
    elif len(words) == 2 and words[0] == "--days":
        value = words[1]
    else:
        raise UsageArgsError(args)
    if not value.isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise UsageArgsError(args)
    return int(value)


def usd(value: float) -> str:
    """Dollars with enough digits for a cheap model's cents: $12.34, $0.0042."""
    return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:.4f}"


def _who(dimension: UsageDimension, key: str | None) -> str:
    if key is None:
        return "_(none)_"  # runs without a channel (the console, some schedules)
    if dimension == "user":
        return f"<@{key}>" if key[:1] in {"U", "W"} else f"`{escape_mrkdwn(key)}`"
    if dimension == "channel":
        return f"<#{key}>" if key[:1] in {"C", "G", "D"} else f"`{escape_mrkdwn(key)}`"
    return f"*{escape_mrkdwn(key)}*"


def _runs(count: int) -> str:
    return f"{count:,} run{'s' if count != 1 else ''}"


def _cost(cost: float, *, unpriced: int, runs: int) -> str:
    """The cost, saying so when some (or all) of it is unknown."""
    if unpriced and unpriced >= runs:
        return "cost unknown"
    return usd(cost) + (f" + {unpriced:,} unpriced" if unpriced else "")


def _line(dimension: UsageDimension, row: UsageRow) -> str:
    errors = f" ({row.errors} failed)" if row.errors else ""
    return (
        f"• {_who(dimension, row.key)} — {_runs(row.runs)}{errors} · "
        f"{row.input_tokens:,} in / {row.output_tokens:,} out tokens · "
        f"{_cost(row.cost_usd, unpriced=row.unpriced_runs, runs=row.runs)}"
    )


def usage_text(
    tables: Mapping[UsageDimension, Sequence[UsageRow]], *, days: int, since: datetime
) -> str:
    """The ephemeral report: a total, then the top rows of each table."""
    skills = tables.get("skill", ())
    runs = sum(r.runs for r in skills)
    plural = "s" if days != 1 else ""
    header = f"*Usage in the last {days} day{plural}* (since {since:%Y-%m-%d %H:%M} UTC)"
    if not runs:
        return f"{header}\nNo runs in this period."
    cost = sum(r.cost_usd for r in skills)
    unpriced = sum(r.unpriced_runs for r in skills)
    tokens_in = sum(r.input_tokens for r in skills)
    tokens_out = sum(r.output_tokens for r in skills)
    lines = [
        header,
        f"{_runs(runs)} · {tokens_in:,} in / {tokens_out:,} out tokens · "
        f"{_cost(cost, unpriced=unpriced, runs=runs)}",
    ]
    if unpriced:
        lines.append(
            f"_{unpriced:,} run{'s' if unpriced != 1 else ''} used a model without a price, so "
            "the cost is a lower bound: add it to SWITCHBOARD_MODEL_PRICES._"
        )
    for dimension, title in _TITLES.items():
        rows = tables.get(dimension, ())
        if not rows:
            continue
        more = f" (top {TOP})" if len(rows) > TOP else ""
        lines.append(f"\n*{title}*{more}")
        lines.extend(_line(dimension, row) for row in rows[:TOP])
    return "\n".join(lines)
