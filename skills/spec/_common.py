"""Names every part of the spec shares: the built-in tools, read methods, locations."""

from __future__ import annotations

from typing import Final

BUILTIN_TOOLS: Final = frozenset(
    {"slack.read_thread", "slack.read_channel", "slack.user_info", "time.now"}
)
"""Tools a spec may reference with ``use:``; the runtime provides their implementations."""

READ_METHODS: Final = frozenset({"GET", "HEAD"})

Loc = tuple[str | int, ...]
