"""MCP tool servers of skills: load their tool lists, check them, hand tools to agents.

A skill's ``mcp:`` entries (``skills.spec.McpServerSpec``) say where each server is and
which of its tools the model may use. What only the server knows is learnt when its tool
list is loaded - at start (``McpToolbox.load``) and, for a server that could not be
reached, again when a run of the skill starts and the retry is due:

* each allow-listed tool's description and JSON Schema (what the model sees);
* whether it is read-only (``annotations.readOnlyHint``). A tool the server does not mark
  read-only may change things, so - exactly like a write HTTP tool - it needs an
  ``approval:`` block (a policy, or ``approval: none``). Without one the tool is withheld
  and the problem is reported as a spec issue with the file and line of its ``tools``
  entry (``refunds.yaml:14 mcp[0].tools[1].approval: required …``);
* an allow-listed tool the server does not offer is an issue too.

A server that cannot be reached (or that the egress policy refuses) leaves its skill
**degraded**: ``skills list`` says so with the reason, the log says so at start, and each
of its allow-listed tools is replaced by a stand-in that answers the model with a clear
tool error, so a turn that needs it says the tool is unavailable instead of crashing.

Listing goes through the same egress check and egress-checked client as calls
(``skills.tools.mcp``), within ``load_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain.agents.middleware.human_in_the_loop import InterruptOnConfig
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.tools import load_mcp_tools

from skills.agents import approval_interrupt, policy_view
from skills.context import HttpPolicy
from skills.outcomes import ApprovalPolicyView
from skills.registry import Skill
from skills.spec import McpServerSpec, SpecIssue
from skills.tools.mcp import (
    check_egress,
    describe_failure,
    mcp_connection,
    mcp_tool,
    unavailable_tool,
)

__all__ = ["McpToolbox", "ServerHealth", "SkillHealth"]

log = logging.getLogger(f"switchboard.{__name__}")

ServerState = Literal["pending", "ok", "unreachable"]


@dataclass(frozen=True, slots=True)
class ServerHealth:
    """One MCP server of one skill, as last loaded."""

    name: str
    state: ServerState
    reason: str = ""
    tools: tuple[str, ...] = ()  # names the model sees, of the tools it may use


@dataclass(frozen=True, slots=True)
class SkillHealth:
    """Whether a skill has everything its spec lists: ``degraded`` when a server is
    unreachable or a listed tool was withheld (``issues`` says why, with file and line)."""

    servers: tuple[ServerHealth, ...] = ()
    issues: tuple[SpecIssue, ...] = ()

    @property
    def degraded(self) -> bool:
        return bool(self.issues) or any(s.state != "ok" for s in self.servers)

    def summary(self) -> str:
        """``mcp crm unreachable (ConnectError); 1 tool withheld`` - empty when healthy."""
        parts = [
            f"mcp {s.name} {s.state}" + (f" ({s.reason})" if s.reason else "")
            for s in self.servers
            if s.state != "ok"
        ]
        if self.issues:
            parts.append(f"{len(self.issues)} tool(s) withheld: see the spec issues")
        return "; ".join(parts)


@dataclass(slots=True)
class _Loaded:
    spec: McpServerSpec
    state: ServerState = "pending"
    reason: str = ""
    tools: list[BaseTool] = field(default_factory=list)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    issues: list[SpecIssue] = field(default_factory=list)
    checked_at: float = 0.0


class McpToolbox:
    """The loaded MCP tools of every skill; one per process, shared by its runs.

    ``policy`` is the egress policy for listing (calls use the run's own, which is the
    same in production). A server that failed is tried again at most every
    ``retry_after`` seconds, when a run of its skill starts.
    """

    def __init__(
        self,
        *,
        policy: HttpPolicy,
        load_timeout: float = 10.0,
        retry_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._load_timeout = load_timeout
        self._retry_after = retry_after
        self._clock = clock
        self._servers: dict[str, list[_Loaded]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- loading ------------------------------------------------------------------------

    async def load(self, skills: Iterable[Skill]) -> None:
        """Load the tool lists of every server of every skill that has any, concurrently;
        unreachable servers and withheld tools are logged (the skills are degraded)."""
        await asyncio.gather(*(self._load_skill(s) for s in skills if _servers(s)))

    def retain(self, keys: Iterable[str]) -> None:
        """Forget the tool lists of skill definitions not in ``keys`` (after a reload)."""
        live = set(keys)
        self._servers = {k: v for k, v in self._servers.items() if k in live}
        self._locks = {k: v for k, v in self._locks.items() if k in live}

    async def refresh(self, skill: Skill) -> bool:
        """Load ``skill``'s servers if never loaded, or retry failed ones when due.
        True when something changed (the skill's agent must then be rebuilt)."""
        specs = _servers(skill)
        if not specs:
            return False
        loaded = self._servers.get(skill.key)
        now = self._clock()
        if loaded is not None and not any(
            s.state != "ok" and now - s.checked_at >= self._retry_after for s in loaded
        ):
            return False
        lock = self._locks.setdefault(skill.key, asyncio.Lock())
        async with lock:
            before = [(s.state, len(s.tools)) for s in self._servers.get(skill.key, [])]
            await self._load_skill(skill, only_failed=loaded is not None)
            after = [(s.state, len(s.tools)) for s in self._servers[skill.key]]
        return before != after or loaded is None

    async def _load_skill(self, skill: Skill, *, only_failed: bool = False) -> None:
        previous = self._servers.get(skill.key)
        entries = previous if previous is not None else [_Loaded(spec) for spec in _servers(skill)]
        todo = [
            (index, entry)
            for index, entry in enumerate(entries)
            if not only_failed or entry.state != "ok"
        ]
        await asyncio.gather(*(self._load_server(skill, i, e) for i, e in todo))
        self._servers[skill.key] = entries

    async def _load_server(self, skill: Skill, index: int, entry: _Loaded) -> None:
        server = entry.spec
        entry.checked_at = self._clock()
        entry.issues = []
        try:
            async with asyncio.timeout(self._load_timeout):
                await check_egress(server, self._policy)
                listed = await load_mcp_tools(
                    None, connection=mcp_connection(server, self._policy), server_name=server.name
                )
        except (Exception, BaseExceptionGroup) as exc:  # any failure: the skill is degraded
            entry.state = "unreachable"
            entry.reason = describe_failure(exc)
            entry.tools = [unavailable_tool(server, ref, entry.reason) for ref in server.tools]
            entry.schemas = {}
            log.warning(
                "skill %s is degraded: MCP server %s unreachable (%s)",
                skill.name,
                server.name,
                entry.reason,
            )
            return
        offered = {tool.name: tool for tool in listed}
        entry.state, entry.reason = "ok", ""
        entry.tools, entry.schemas = [], {}
        for position, ref in enumerate(server.tools):
            remote = offered.get(ref.name)
            where = f"mcp[{index}].tools[{position}]"
            if remote is None:
                known = ", ".join(sorted(offered)) or "none"
                entry.issues.append(
                    self._issue(
                        skill,
                        server,
                        position,
                        f"{where}.name",
                        f"the MCP server {server.name} offers no tool {ref.name!r} "
                        f"(it offers: {known})",
                    )
                )
                continue
            read_only = bool((remote.metadata or {}).get("readOnlyHint"))
            if not read_only and ref.approval is None:
                entry.issues.append(
                    self._issue(
                        skill,
                        server,
                        position,
                        f"{where}.approval",
                        f"required: the MCP server {server.name} does not annotate "
                        f"{ref.name!r} as read-only (readOnlyHint), so it may change things "
                        "(add an approval block, or write `approval: none`); the tool is "
                        "withheld until then",
                    )
                )
                continue
            schema = remote.args_schema if isinstance(remote.args_schema, dict) else None
            tool = mcp_tool(
                server,
                ref,
                description=remote.description,
                schema=schema,
                read_only=read_only,
            )
            entry.tools.append(tool)
            entry.schemas[tool.name] = dict(schema or {})
        for issue in entry.issues:
            log.error("skill spec error: %s", issue)

    def _issue(
        self, skill: Skill, server: McpServerSpec, position: int, field_name: str, message: str
    ) -> SpecIssue:
        source = skill.spec.source if skill.spec is not None else None
        line = server.line_of(("tools", position))
        return SpecIssue(str(source) if source else f"{skill.name}.yaml", line, field_name, message)

    # -- what runs and people see -------------------------------------------------------

    def tools(self, skill: Skill) -> list[BaseTool]:
        """The skill's MCP tools as last loaded (stand-ins for unreachable servers)."""
        return [tool for entry in self._servers.get(skill.key, []) for tool in entry.tools]

    def interrupts(self, skill: Skill) -> dict[str, InterruptOnConfig]:
        """Approval gates of the skill's loaded MCP tools that have a policy."""
        gates: dict[str, InterruptOnConfig] = {}
        for entry in self._servers.get(skill.key, []):
            if entry.state != "ok":
                continue  # stand-ins only fail: nobody should approve that
            for ref in entry.spec.tools:
                name = entry.spec.model_name(ref.name)
                policy = ref.approval_policy
                if policy is not None and name in entry.schemas:
                    tool = next(t for t in entry.tools if t.name == name)
                    gates[name] = approval_interrupt(policy, tool.description)
        return gates

    def policy_view(
        self, skill: Skill, tool_name: str
    ) -> tuple[ApprovalPolicyView, dict[str, Any]] | None:
        """The approval policy and JSON Schema of MCP tool ``tool_name`` (for cards)."""
        for entry in self._servers.get(skill.key, []):
            for ref in entry.spec.tools:
                policy = ref.approval_policy
                if entry.spec.model_name(ref.name) == tool_name and policy is not None:
                    return policy_view(policy), entry.schemas.get(tool_name, {})
        return None

    def health(self, skill: Skill) -> SkillHealth:
        """The skill's servers and issues as last loaded (``pending`` before the first)."""
        entries = self._servers.get(skill.key)
        if entries is None:
            return SkillHealth(
                servers=tuple(ServerHealth(s.name, "pending") for s in _servers(skill))
            )
        return SkillHealth(
            servers=tuple(
                ServerHealth(e.spec.name, e.state, e.reason, tuple(t.name for t in e.tools))
                for e in entries
            ),
            issues=tuple(issue for e in entries for issue in e.issues),
        )


def _servers(skill: Skill) -> list[McpServerSpec]:
    return list(skill.spec.mcp) if skill.spec is not None else []


def probe(
    skills: Iterable[Skill], *, policy: HttpPolicy, timeout: float = 5.0
) -> dict[str, SkillHealth]:
    """Load the MCP servers of ``skills`` once (for ``switchboard skills list``): the
    health of each skill that has any, by name."""
    skills = [s for s in skills if _servers(s)]
    if not skills:
        return {}
    toolbox = McpToolbox(policy=policy, load_timeout=timeout)
    asyncio.run(toolbox.load(skills))
    return {skill.name: toolbox.health(skill) for skill in skills}
