"""The skills a deployment offers: YAML specs and Python skills, under one interface.

This module is the model (:class:`Skill`, :class:`Access`, :class:`SkillRegistry`); loading
a deployment's skills from their specs and the Python skills is :mod:`skills.catalog`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from skills.context import Principal
from skills.errors import UnknownSkill

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.types import Checkpointer

    from skills.spec import SkillSpec

log = logging.getLogger(f"switchboard.{__name__}")

#: Builds a Python skill's compiled graph from the model the runtime picked and its saver.
GraphFactory = Callable[["BaseChatModel", "Checkpointer"], Any]
#: The conversations (besides its own) a skill will read for an input, known up front.
ReadsFn = Callable[[str], Sequence[str]]

DEFAULT_MEMORY_TTL = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use a skill, and where.

    Allow-lists: an empty list means everyone. Channels limit *where*; users and user
    groups together limit *who* (either list admits a person). Guest accounts and people
    from other organizations (Slack Connect) are refused unless the skill opts in with
    ``guests`` / ``external``; the allow-lists apply to them as well.
    """

    channels: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    usergroups: frozenset[str] = frozenset()
    guests: bool = False
    external: bool = False

    @property
    def is_open(self) -> bool:
        return not (self.channels or self.users or self.usergroups)

    def admits(self, principal: Principal) -> bool:
        """False for a guest or an external person the skill has not opted in for."""
        if principal.is_guest and not self.guests:
            return False
        return not (principal.is_external and not self.external)

    def allows(self, actor: Principal, channel: str | None) -> bool:
        if not self.admits(actor):
            return False
        if self.channels and channel not in self.channels:
            return False
        if not (self.users or self.usergroups):
            return True
        return actor.user_id in self.users or bool(self.usergroups & actor.usergroups)


@dataclass(frozen=True, slots=True)
class Skill:
    """A registered skill: a YAML spec (``spec``) or a Python graph (``graph_factory``)."""

    name: str
    description: str
    access: Access = field(default_factory=Access)
    model: str | None = None
    memory_ttl: timedelta = DEFAULT_MEMORY_TTL
    examples: tuple[str, ...] = ()
    spec: SkillSpec | None = None
    graph_factory: GraphFactory | None = None
    source: str = "builtin"
    # For skills whose input names what they read (the digest): lets a schedule check the
    # owner may read it when it is created, not only when it fires.
    reads: ReadsFn | None = None

    @classmethod
    def from_spec(cls, spec: SkillSpec) -> Skill:
        access = spec.access
        return cls(
            name=spec.name,
            description=spec.description,
            access=Access(
                channels=frozenset(access.channels),
                users=frozenset(access.users),
                usergroups=frozenset(access.usergroups),
                guests=access.guests,
                external=access.external,
            ),
            model=spec.model,
            memory_ttl=spec.memory.ttl,
            examples=tuple(spec.examples),
            spec=spec,
            source=str(spec.source or "builtin"),
        )


class SkillRegistry:
    """Name → :class:`Skill`, in a stable order (built-ins first, then by name)."""

    def __init__(self, skills: Iterable[Skill]) -> None:
        self._skills: dict[str, Skill] = {}
        for skill in skills:
            if skill.name in self._skills:
                raise ValueError(f"skill {skill.name!r} is registered twice")
            self._skills[skill.name] = skill

    def get(self, name: str) -> Skill:
        try:
            return self._skills[name]
        except KeyError:
            raise UnknownSkill(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._skills

    def __iter__(self) -> Any:
        return iter(self._skills.values())

    def __len__(self) -> int:
        return len(self._skills)

    def names(self) -> list[str]:
        return list(self._skills)

    def available_to(self, actor: Principal, channel: str | None) -> list[Skill]:
        return [s for s in self._skills.values() if s.access.allows(actor, channel)]
