"""The sandbox's "Skills" page: every skill, its validation state and its last evaluation.

``GET /sandbox/skills`` is the JSON the page (``/skills``) and the workspace page's banner
poll; it comes from the hosted bot's :meth:`~sandbox.server.HostedBot.skills_overview`, which
reads the live registry and the reloader's status, so editing a spec file on disk shows up
within seconds - a spec that no longer validates as a banner with its ``file:line``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["EvalSummary", "SkillEntry", "SkillsOverview"]


@dataclass(frozen=True, slots=True)
class EvalSummary:
    """A skill's numbers in the newest ``eval-results/*/results.json`` that has it."""

    results: str
    started_at: str
    model: str
    cases: int
    passed: int
    pass_rate: float
    mode: str | None = None


@dataclass(frozen=True, slots=True)
class SkillEntry:
    name: str
    description: str
    source: str
    kind: str  # "yaml" or "python"
    state: str  # "valid", "previous version (the file has errors)", "degraded: …"
    version: str | None = None
    canary: float | None = None  # the share of new threads, for a version being rolled out
    eval: EvalSummary | None = None


@dataclass(frozen=True, slots=True)
class SkillsOverview:
    skills: list[SkillEntry]
    #: Spec problems as ``file:line field: problem`` (the banner shows them).
    errors: list[str] = field(default_factory=list)
    #: The folders the skills come from, and the last reload.
    folders: list[str] = field(default_factory=list)
    generation: int = 0
    reloaded_at: str | None = None
    outcome: str = "loaded"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
