"""The ``time.now`` built-in tool: the current time where the asker is."""

from __future__ import annotations

from typing import Annotated

from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import Field

from skills.context import RunContext
from skills.tools.slack import run_context, tool_errors, zone

__all__ = ["clock_tools", "format_now"]


def format_now(context: RunContext, tz: str | None = None) -> str:
    """``Tuesday 2024-05-14 18:05 (Asia/Dubai, UTC+04:00); ISO 2024-05-14T18:05:00+04:00``.

    Uses ``context.now()`` (so tests and replays control the clock) in ``tz`` when given
    (an IANA name such as ``Asia/Dubai``), else in the asker's zone.
    """
    name = (tz or "").strip() or context.actor.tz or "UTC"
    where = zone(name)
    local = context.now().astimezone(where)
    offset = local.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else "+00:00"
    shown_zone = name if str(where) == name else f"UTC; {name!r} is not a known time zone"
    return (
        f"{local:%A %Y-%m-%d %H:%M} ({shown_zone}, UTC{offset}); "
        f"ISO {local.isoformat(timespec='seconds')}"
    )


@tool_errors("time_now")
async def time_now(
    runtime: ToolRuntime[RunContext],
    tz: Annotated[
        str | None,
        Field(description="IANA time zone such as Asia/Dubai; defaults to the asker's own"),
    ] = None,
) -> str:
    """The current date and time in the asker's time zone (or ``tz``), with weekday and UTC
    offset."""
    return format_now(run_context(runtime), tz)


def clock_tools() -> dict[str, BaseTool]:
    """The clock tools keyed by spec name."""
    return {
        "time.now": StructuredTool.from_function(
            coroutine=time_now,
            name="time_now",
            description=(time_now.__doc__ or "").strip(),
            handle_tool_error=True,
        )
    }
