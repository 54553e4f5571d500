"""``switchboard usage``: runs, tokens and cost from the run records, for a period.

    switchboard usage [--days N] [--by skill|user|channel] [--json]

Costs come from the price table the runs were recorded with (``SWITCHBOARD_MODEL_PRICES``,
docs/observability.md); a run of a model without a price counts as *unpriced*, so the
total is a lower bound and says so. The CLI registers the command with an opener for the
deployment's SQL sessions, so this module needs nothing from the CLI module itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.runs import RunStore, UsageRow

__all__ = ["register"]

SqlOpener = Callable[[], contextlib.AbstractAsyncContextManager[async_sessionmaker[AsyncSession]]]


class By(StrEnum):
    skill = "skill"
    user = "user"
    channel = "channel"


_HEADERS = ("RUNS", "FAILED", "INPUT TOKENS", "OUTPUT TOKENS", "COST (USD)", "UNPRICED")


def _total(rows: list[UsageRow]) -> UsageRow:
    return UsageRow(
        key="TOTAL",
        runs=sum(r.runs for r in rows),
        errors=sum(r.errors for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cost_usd=sum(r.cost_usd for r in rows),
        unpriced_runs=sum(r.unpriced_runs for r in rows),
    )


def table(rows: list[UsageRow], *, by: str) -> str:
    """Rows as a fixed-width table with a total line."""

    def cells(row: UsageRow) -> list[str]:
        return [
            row.key if row.key is not None else "(none)",
            f"{row.runs:,}",
            f"{row.errors:,}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            f"{row.cost_usd:,.4f}",
            f"{row.unpriced_runs:,}",
        ]

    body = [cells(r) for r in rows]
    lines = [[by.upper(), *_HEADERS], *body, cells(_total(rows))]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def render(line: list[str]) -> str:
        first = line[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    out = [render(lines[0]), *(render(line) for line in lines[1:-1])]
    out.append("-" * len(out[0]))
    out.append(render(lines[-1]))
    return "\n".join(out)


def register(
    app: typer.Typer, *, open_sql: SqlOpener, clock: Callable[[], datetime] | None = None
) -> None:
    """Add ``switchboard usage`` to ``app``."""
    now = clock or (lambda: datetime.now(UTC))

    @app.command("usage")
    def usage(
        days: int = typer.Option(7, "--days", min=1, max=366, help="how many days back"),
        by: By = typer.Option(By.skill, "--by", help="group runs by skill, user or channel"),  # noqa: B008
        as_json: bool = typer.Option(False, "--json", help="one JSON object instead of a table"),
    ) -> None:
        """Runs, tokens and cost by skill, user or channel over the last N days."""
        since = now() - timedelta(days=days)

        async def main() -> list[UsageRow]:
            async with open_sql() as sessions:
                return await RunStore(sessions=sessions).usage(since=since, by=by.value)

        try:
            rows = asyncio.run(main())
        except OSError as exc:
            typer.echo(
                f"switchboard: DATABASE_URL: cannot connect ({type(exc).__name__})", err=True
            )
            raise typer.Exit(1) from None
        if as_json:
            total = asdict(_total(rows))
            del total["key"]
            report = {
                "since": since.isoformat(),
                "days": days,
                "by": by.value,
                "currency": "USD",
                "rows": [{by.value: r.key, **{k: v for k, v in asdict(r).items() if k != "key"}}
                         for r in rows],
                "total": total,
            }  # fmt: skip
            typer.echo(json.dumps(report, ensure_ascii=False))
            return
        plural = "s" if days != 1 else ""
        typer.echo(f"Usage in the last {days} day{plural} (since {since:%Y-%m-%d %H:%M} UTC)")
        if not rows:
            typer.echo("No runs in this period.")
            return
        typer.echo(table(rows, by=by.value))
        unpriced = sum(r.unpriced_runs for r in rows)
        if unpriced:
            typer.echo(
                f"{unpriced} run(s) used a model without a price: the cost is a lower bound "
                "(add the model to SWITCHBOARD_MODEL_PRICES)."
            )
