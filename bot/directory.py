"""Who is asking: a Slack user as a :class:`~skills.context.Principal` (name, time zone,
guest and Slack Connect flags, and membership of the user groups that skills' access lists
and approval policies mention).

A principal is built once per turn. User-group memberships come from a short cache for
what is only shown (lists, App Home) and from Slack itself for decisions
(``fresh=True``: approving, administering schedules), so someone removed from an
approvers group cannot approve a moment later.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from bot.slack.reader import MISSING, TtlCache
from skills.context import Principal, SlackReaderError, SlackUser
from skills.registry import SkillRegistry

log = logging.getLogger(f"switchboard.{__name__}")


class DirectoryReader(Protocol):
    """What the directory needs from Slack (``WebApiSlackReader`` provides it)."""

    async def user_info(self, user_id: str) -> SlackUser | None: ...

    async def usergroup_members(
        self, usergroup_id: str, *, fresh: bool = False
    ) -> frozenset[str]: ...

    async def workspace(self) -> tuple[str | None, str | None]:
        """(team id, Enterprise Grid id) of the workspace the bot is installed in."""
        ...


class Directory:
    """Resolves principals through the (cached) Slack reader."""

    def __init__(
        self,
        *,
        reader: DirectoryReader,
        registry: SkillRegistry,
        extra_groups: tuple[str, ...] = (),
        missing_group_ttl: float = 60.0,
    ) -> None:
        self._reader = reader
        self._registry = registry
        self._extra_groups = extra_groups
        self._known: tuple[int, list[str]] | None = None
        self._missing: TtlCache[str, bool] = TtlCache(ttl=missing_group_ttl, max_size=256)

    def _is_missing(self, group: str) -> bool:
        return self._missing.get(group) is not MISSING

    @property
    def _groups(self) -> list[str]:
        """The user groups any skill names (access, approvers), recomputed when the
        registry is reloaded: a group added by a hot-reloaded spec is looked up too."""
        registry = self._registry
        if self._known is not None and self._known[0] == registry.generation:
            return self._known[1]
        groups = set(self._extra_groups)
        for name in registry.names():
            for skill in registry.versions(name):
                groups.update(skill.access.usergroups)
                spec = skill.spec
                if spec is None:
                    continue
                # approver groups of gated tools count too
                policies = [t.approval_policy for t in spec.http_tools] + [
                    t.approval_policy for server in spec.mcp for t in server.tools
                ]
                for policy in policies:
                    if policy is not None:
                        groups.update(policy.approvers.usergroups)
        self._known = (registry.generation, sorted(groups))
        return self._known[1]

    async def actor(self, user_id: str, *, fresh: bool = False, strict: bool = False) -> Principal:
        """The principal for ``user_id``; ``fresh`` asks Slack for group memberships anew.

        Someone Slack does not know (``users.info`` answers ``user_not_found``) is treated
        as external: they are refused wherever external people are. When Slack cannot be
        asked, ``strict`` raises :class:`~skills.context.SlackReaderError` (a turn must not
        run without knowing whether the person is a guest); otherwise the principal has
        only the id, for what is merely shown.
        """
        try:
            user = await self._reader.user_info(user_id)
        except SlackReaderError as exc:
            log.warning("users.info failed for %s: %s", user_id, exc.error)
            if strict:
                raise
            user = None
            unknown = False
        else:
            unknown = user is None
        groups = await self._memberships(user_id, fresh=fresh)
        external = unknown or (user is not None and await self._is_external(user))
        return Principal(
            user_id=user_id,
            name=(user.real_name or user.name) if user else None,
            tz=(user.tz if user and user.tz else "UTC"),
            usergroups=groups,
            is_bot=bool(user and user.is_bot),
            team=user.team_id if user else None,
            is_restricted=bool(user and user.is_restricted),
            is_ultra_restricted=bool(user and user.is_ultra_restricted),
            is_external=external,
        )

    async def group_members(self, usergroup: str, *, fresh: bool = False) -> frozenset[str]:
        try:
            return await self._reader.usergroup_members(usergroup, fresh=fresh)
        except SlackReaderError as exc:
            log.warning("usergroups.users.list failed for %s: %s", usergroup, exc.error)
            return frozenset()

    async def in_group(self, user_id: str, usergroup: str | None) -> bool:
        """Whether ``user_id`` is in ``usergroup`` now (asked afresh; None: nobody is)."""
        if not usergroup:
            return False
        return user_id in await self.group_members(usergroup, fresh=True)

    async def _is_external(self, user: SlackUser) -> bool:
        if user.is_stranger:
            return True
        try:
            team, enterprise = await self._reader.workspace()
        except SlackReaderError as exc:
            log.warning("auth.test failed: %s", exc.error)
            return False
        if team is None or user.team_id in (None, team):
            return False
        # Enterprise Grid: people of other workspaces in the same organization are ours.
        return enterprise is None or user.enterprise_id != enterprise

    async def _memberships(self, user_id: str, *, fresh: bool) -> frozenset[str]:
        if not self._groups:
            return frozenset()

        async def member(group: str) -> str | None:
            try:
                members = await self._reader.usergroup_members(group, fresh=fresh)
            except SlackReaderError as exc:
                log.warning("usergroups.users.list failed for %s: %s", group, exc.error)
                if exc.error == "no_such_subteam":
                    self._missing.put(group, True)
                return None
            return group if user_id in members else None

        # A group a spec names that Slack does not know (deleted, a typo) has nobody in it:
        # asked again after ``missing_group_ttl`` seconds, not on every turn.
        groups = self._groups if fresh else [g for g in self._groups if not self._is_missing(g)]
        found = await asyncio.gather(*(member(g) for g in groups))
        return frozenset(g for g in found if g)
