"""What a log line says about the run it belongs to: the run id and the skill.

The runtime binds them (:func:`bound`) around each turn; ``switchboard.logs`` reads them
(:func:`current`) when it formats a record. They are context variables, so every task the
turn starts (tools, model calls, the Slack post) carries them, and concurrent turns never
see each other's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["bound", "current"]

_run_id: ContextVar[str | None] = ContextVar("switchboard_run_id", default=None)
_skill: ContextVar[str | None] = ContextVar("switchboard_skill", default=None)


@contextlib.contextmanager
def bound(*, run_id: str | None = None, skill: str | None = None) -> Iterator[None]:
    """Log records made inside the block carry ``run_id`` and ``skill`` (None keeps the
    value already bound, so a worker can bind the skill and the runtime the run id)."""
    tokens = []
    if run_id is not None:
        tokens.append((_run_id, _run_id.set(run_id)))
    if skill is not None:
        tokens.append((_skill, _skill.set(skill)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    """The bound fields (``run_id``, ``skill``), only those that are set."""
    fields: dict[str, str] = {}
    run_id, skill = _run_id.get(), _skill.get()
    if run_id is not None:
        fields["run_id"] = run_id
    if skill is not None:
        fields["skill"] = skill
    return fields
