"""The skills a deployment offers: YAML specs and Python skills, under one interface.

This module is the model (:class:`Skill`, :class:`Access`, :class:`SkillRegistry`); loading
a deployment's skills from their specs and the Python skills is :mod:`skills.catalog`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    #: The spec's ``version:`` (recorded on every run), None when it has none.
    version: str | None = None
    #: The share of new conversations this version gets while it is a canary (0-100).
    canary: float | None = None
    #: A fingerprint of the definition: caches of built agents are keyed by it, so an
    #: edited spec gets a new agent while turns in flight finish on the old one.
    revision: str = "python"

    @property
    def key(self) -> str:
        """Identifies this definition of the skill (name, version and content)."""
        return f"{self.name}@{self.version or ''}#{self.revision}"

    @property
    def label(self) -> str:
        """``refunds`` or ``refunds v2`` for people and logs."""
        return f"{self.name} v{self.version}" if self.version else self.name

    @classmethod
    def from_spec(cls, spec: SkillSpec) -> Skill:
        access = spec.access
        fingerprint = hashlib.sha256(
            f"{spec.source}\n{spec.model_dump_json()}".encode()
        ).hexdigest()[:16]
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
            version=spec.version,
            canary=spec.rollout.canary if spec.rollout is not None else None,
            revision=fingerprint,
        )


def canary_bucket(name: str, thread_id: str) -> float:
    """Where a conversation falls in ``[0, 100)`` for ``name``'s rollout: a hash of the
    thread, stable across processes and restarts, independent between skills."""
    digest = hashlib.sha256(f"{name}\0{thread_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


class SkillRegistry:
    """Name → :class:`Skill`, in a stable order (built-ins first, then by name).

    A skill may have a *canary*: a second version that gets a share of new conversations
    (:meth:`pick`). The registry is live: :meth:`replace` swaps in a new set of skills at
    once (hot reload), so everyone holding the registry sees the new set on their next
    lookup, while a turn in flight keeps the :class:`Skill` it started with.
    """

    def __init__(self, skills: Iterable[Skill], canaries: Iterable[Skill] = ()) -> None:
        self._skills: dict[str, Skill] = {}
        self._canaries: dict[str, Skill] = {}
        self.generation = 0
        self._skills, self._canaries = self._index(skills, canaries)

    @staticmethod
    def _index(
        skills: Iterable[Skill], canaries: Iterable[Skill]
    ) -> tuple[dict[str, Skill], dict[str, Skill]]:
        by_name: dict[str, Skill] = {}
        for skill in skills:
            if skill.name in by_name:
                raise ValueError(f"skill {skill.name!r} is registered twice")
            by_name[skill.name] = skill
        extra: dict[str, Skill] = {}
        for canary in canaries:
            stable = by_name.get(canary.name)
            if stable is None or canary.name in extra or canary.version == stable.version:
                raise ValueError(f"canary {canary.label!r} has no distinct stable version")
            extra[canary.name] = canary
        return by_name, extra

    def replace(self, skills: Iterable[Skill], canaries: Iterable[Skill] = ()) -> None:
        """Swap in a new set of skills, all at once (one assignment, no await)."""
        indexed = self._index(skills, canaries)
        self._skills, self._canaries = indexed
        self.generation += 1

    def get(self, name: str) -> Skill:
        """The stable version of ``name``."""
        try:
            return self._skills[name]
        except KeyError:
            raise UnknownSkill(name) from None

    def canary(self, name: str) -> Skill | None:
        """The version of ``name`` being rolled out, if any."""
        return self._canaries.get(name)

    def versions(self, name: str) -> list[Skill]:
        """Every version of ``name`` being served: the stable one, then the canary."""
        found = [self.get(name)]
        canary = self._canaries.get(name)
        return [*found, canary] if canary is not None else found

    def pick(
        self, name: str, thread_id: str, *, existing: bool = False, version: str | None = None
    ) -> Skill:
        """The version of ``name`` that serves conversation ``thread_id``.

        An ``existing`` conversation of this skill keeps the ``version`` it runs on while
        that version is served (one from before versions were recorded stays on the stable
        one), so a conversation never switches mid-way. A new one gets the canary when its
        thread falls within the canary's share (:func:`canary_bucket`).
        """
        stable = self.get(name)
        canary = self._canaries.get(name)
        if canary is None:
            return stable
        if existing:
            return canary if version is not None and version == canary.version else stable
        if canary.canary is not None and canary_bucket(name, thread_id) < canary.canary:
            return canary
        return stable

    def canaries(self) -> Mapping[str, Skill]:
        return dict(self._canaries)

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
