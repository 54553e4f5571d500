"""Who is asking: a Slack user as an :class:`~skills.context.Actor` (name, time zone, and
membership of the user groups that skills' access lists mention)."""

from __future__ import annotations

import asyncio
import logging

from skills.context import Actor, SlackReader, SlackReaderError
from skills.registry import SkillRegistry

log = logging.getLogger(__name__)


class Directory:
    """Resolves actors through the (cached) Slack reader."""

    def __init__(self, *, reader: SlackReader, registry: SkillRegistry) -> None:
        self._reader = reader
        groups = {g for skill in registry for g in skill.access.usergroups}
        for skill in registry:  # approver groups of gated tools count too
            for tool in skill.spec.http_tools if skill.spec else ():
                policy = tool.approval
                if policy is not None and policy != "none":
                    groups.update(policy.approvers.usergroups)
        self._groups = sorted(groups)

    async def actor(self, user_id: str) -> Actor:
        try:
            user = await self._reader.user_info(user_id)
        except SlackReaderError as exc:
            log.warning("users.info failed for %s: %s", user_id, exc.error)
            user = None
        groups = await self._memberships(user_id)
        return Actor(
            user_id=user_id,
            name=(user.real_name or user.name) if user else None,
            tz=(user.tz if user and user.tz else "UTC"),
            usergroups=groups,
            is_bot=bool(user and user.is_bot),
        )

    async def group_members(self, usergroup: str) -> frozenset[str]:
        try:
            return await self._reader.usergroup_members(usergroup)
        except SlackReaderError as exc:
            log.warning("usergroups.users.list failed for %s: %s", usergroup, exc.error)
            return frozenset()

    async def _memberships(self, user_id: str) -> frozenset[str]:
        if not self._groups:
            return frozenset()

        async def member(group: str) -> str | None:
            try:
                members = await self._reader.usergroup_members(group)
            except SlackReaderError as exc:
                log.warning("usergroups.users.list failed for %s: %s", group, exc.error)
                return None
            return group if user_id in members else None

        found = await asyncio.gather(*(member(g) for g in self._groups))
        return frozenset(g for g in found if g)
