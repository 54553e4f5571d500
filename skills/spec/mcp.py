"""MCP tool servers a skill lists, and their allow-listed tools."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, PrivateAttr, model_validator

from skills.spec._common import Loc
from skills.spec._validation import (
    HeaderName,
    NonEmptyStr,
    ParamName,
    ScalarStr,
    SpecModel,
    _pattern_check,
    fail,
)
from skills.spec.approvals import Approval, ApprovalPolicy
from skills.spec.tools import REDACTED, SENSITIVE_NAME, redact_url

# A skill may list MCP tool servers (``mcp:``). What the spec fixes: where the server is
# (a fixed URL or a command), which of its tools the model may call (the allow-list, by the
# server's names) and the approval policy of each. What only the server knows - each tool's
# JSON Schema and whether it is read-only (``readOnlyHint``) - is checked when its tool list
# is loaded (``skills.mcp``), which reports problems as ``SpecIssue`` with this file's lines.

MCP_TRANSPORTS: Final = ("streamable_http", "sse", "stdio")
McpServerName = Annotated[
    str, Field(max_length=32), _pattern_check(r"[a-z][a-z0-9_]*", "MCP server name")
]
McpRemoteName = Annotated[
    str, Field(max_length=128), _pattern_check(r"[A-Za-z0-9_.-]+", "MCP tool name")
]
_MODEL_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _mcp_tool_ref(value: Any) -> Any:
    """``- lookup_order`` is short for ``- {name: lookup_order}``."""
    return {"name": value} if isinstance(value, str) else value


class McpToolRef(SpecModel):
    """One allow-listed tool of an MCP server, by the server's name for it.

    ``approval`` is required (a policy, or ``none``) unless the server annotates the tool
    read-only; only the server can say, so that is checked when its tool list loads.
    """

    name: McpRemoteName
    approval: Approval | None = None

    @property
    def approval_policy(self) -> ApprovalPolicy | None:
        return self.approval if isinstance(self.approval, ApprovalPolicy) else None


class McpServerSpec(SpecModel):
    """An MCP tool server: ``streamable_http`` or ``sse`` at a fixed ``url`` (with
    ``headers``), or ``stdio``: a ``command`` started with only ``env`` (plus a minimal
    PATH/HOME set) in its environment. The model sees each tool as ``<server>_<tool>``."""

    name: McpServerName
    transport: Literal["streamable_http", "sse", "stdio"]
    url: NonEmptyStr | None = None
    headers: dict[HeaderName, ScalarStr] = Field(default_factory=dict)
    command: list[NonEmptyStr] = Field(default_factory=list)
    env: dict[ParamName, ScalarStr] = Field(default_factory=dict)
    timeout: Annotated[float, Field(gt=0)] | None = None
    tools: Annotated[
        list[Annotated[McpToolRef, BeforeValidator(_mcp_tool_ref)]], Field(min_length=1)
    ]

    # Set by the loader: values the environment supplied here, the text as written, and
    # the line of each ``tools`` entry (for issues found when the tool list loads).
    _secrets: frozenset[str] = PrivateAttr(default=frozenset())
    _templates: dict[Loc, str] = PrivateAttr(default_factory=dict)
    _lines: dict[Loc, int | None] = PrivateAttr(default_factory=dict)

    @property
    def secrets(self) -> frozenset[str]:
        """Values never to show, log or return: everything expanded from ``${ENV}`` here
        and literal values of credential-like headers."""
        found = set(self._secrets)
        found.update(
            value
            for name, value in self.headers.items()
            if SENSITIVE_NAME.search(name) and ("headers", name) not in self._templates
        )
        return frozenset(value for value in found if value)

    @property
    def is_remote(self) -> bool:
        """Reached over the network (and so through the egress policy)."""
        return self.transport != "stdio"

    def model_name(self, tool: str) -> str:
        """The name the model sees for the server's tool ``tool``."""
        return f"{self.name}_{tool}"

    def line_of(self, loc: Loc) -> int | None:
        """The spec line of ``loc`` inside this entry (``("tools", 1)``), if known."""
        return self._lines.get(loc)

    def display_url(self) -> str:
        return redact_url(self._templates.get(("url",), self.url or ""))

    def describe(self) -> str:
        """One line for people: ``crm  streamable_http ${CRM_MCP}/mcp  tools: …``."""
        where = self.display_url() if self.is_remote else " ".join(self.command[:1]) + " …"
        tools = ", ".join(
            t.name + ("" if t.approval is None else f" (approval: {_mcp_approval(t)})")
            for t in self.tools
        )
        return f"{self.name}  {self.transport} {where}  tools: {tools}"

    def redacted_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "transport": self.transport}
        if self.url is not None:
            data["url"] = self.display_url()
        if self.headers:
            data["headers"] = {
                name: self._templates.get(("headers", name))
                or (REDACTED if SENSITIVE_NAME.search(name) else value)
                for name, value in self.headers.items()
            }
        if self.command:
            data["command"] = [
                self._templates.get(("command", i), part) for i, part in enumerate(self.command)
            ]
        if self.env:
            data["env"] = {k: self._templates.get(("env", k), REDACTED) for k in self.env}
        if self.timeout is not None:
            data["timeout"] = self.timeout
        data["tools"] = [
            t.name
            if t.approval is None
            else {
                "name": t.name,
                "approval": t.approval
                if isinstance(t.approval, str)
                else t.approval.model_dump(mode="json"),
            }
            for t in self.tools
        ]
        return data

    @model_validator(mode="after")
    def _consistent(self) -> McpServerSpec:
        problems: list[tuple[Loc, str]] = []
        if self.is_remote:
            if self.url is None:
                problems.append((("url",), f"required for the {self.transport} transport"))
            else:
                parts = urlsplit(self.url)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    problems.append((("url",), "must be an absolute http:// or https:// URL"))
                elif "@" in parts.netloc:
                    problems.append(
                        (("url",), "credentials in the URL are not allowed; use `headers:`")
                    )
            for key in ("command", "env"):
                if getattr(self, key):
                    problems.append(((key,), "only for the stdio transport"))
        else:
            if not self.command:
                problems.append((("command",), "required for the stdio transport"))
            for key in ("url", "headers"):
                if getattr(self, key):
                    problems.append(((key,), "not used by the stdio transport"))
        seen: dict[str, int] = {}
        for index, tool in enumerate(self.tools):
            if tool.name in seen:
                problems.append(
                    (
                        ("tools", index),
                        f"duplicate tool {tool.name!r} (also tools[{seen[tool.name]}])",
                    )
                )
            seen.setdefault(tool.name, index)
            shown = self.model_name(tool.name)
            if not _MODEL_TOOL_NAME.fullmatch(shown):
                problems.append(
                    (
                        ("tools", index, "name"),
                        f"the model would see it as {shown!r}; names the model sees must be "
                        "1-64 letters, digits, _ or - (shorten the server name or pick "
                        "another tool)",
                    )
                )
        if problems:
            fail(problems, self)
        return self


def _mcp_approval(tool: McpToolRef) -> str:
    policy = tool.approval_policy
    if policy is None:
        return "none"
    approvers = ", ".join([*policy.approvers.users, *policy.approvers.usergroups])
    return f"{policy.quorum} of {approvers}"
