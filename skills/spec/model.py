"""``SkillSpec``: one skill as declared in YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from skills.spec._common import Loc
from skills.spec._validation import (
    NonEmptyStr,
    SkillName,
    SpecModel,
    VersionStr,
    fail,
    reraise_with,
)
from skills.spec.access import Access, Budget, Memory
from skills.spec.mcp import McpServerSpec
from skills.spec.rollout import Rollout
from skills.spec.tools import BuiltinToolRef, HttpToolSpec, ToolSpec, tool_key

#: What a skill does with a message that arrives while its turn runs (``concurrency:``).
Concurrency = Literal["enqueue", "interrupt", "reject"]


class SkillSpec(SpecModel):
    """One skill as declared in YAML. ``source`` is the file it came from, if any."""

    name: SkillName
    description: NonEmptyStr
    instructions: NonEmptyStr
    version: VersionStr | None = None
    """Recorded on every run; two files may share a ``name`` with different versions when
    the newer one has a ``rollout`` (a canary)."""
    rollout: Rollout | None = None
    model: NonEmptyStr | None = None
    access: Access = Field(default_factory=Access)
    tools: list[ToolSpec] = Field(default_factory=list)
    memory: Memory = Field(default_factory=Memory)
    budget: Budget | None = None
    examples: list[NonEmptyStr] = Field(default_factory=list, max_length=10)
    """Example prompts shown in App Home and as Assistant suggested prompts."""
    mcp: list[McpServerSpec] = Field(default_factory=list)
    """MCP tool servers whose allow-listed tools the model may call (see McpServerSpec)."""
    concurrency: Concurrency = "enqueue"
    """A message arriving while this skill's turn runs in the thread: ``enqueue`` waits
    (waiting messages of one person fold into one turn), ``interrupt`` cancels the running
    turn and answers both messages together, ``reject`` says "still working on your
    previous message" (only to the sender) and drops the new one."""

    _source: Path | None = PrivateAttr(default=None)
    _name_line: int | None = PrivateAttr(default=None)
    _version_line: int | None = PrivateAttr(default=None)
    # Path -> the string as written, for every string that had a ${VAR}; and the values
    # the environment supplied (each one a secret, wherever it ends up).
    _templates: dict[Loc, str] = PrivateAttr(default_factory=dict)
    _secrets: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def secrets(self) -> frozenset[str]:
        """Every value expanded from the environment anywhere in the spec."""
        return self._secrets

    def shown(self, loc: Loc, value: str) -> str:
        """``value`` (at ``loc``, e.g. ``("model",)``) as it may be shown: its ``${VAR}``
        text when it was expanded from the environment."""
        return self._templates.get(loc, value)

    @property
    def source(self) -> Path | None:
        """The file this spec was loaded from (None when built from text or in code)."""
        return self._source

    @property
    def http_tools(self) -> list[HttpToolSpec]:
        return [tool for tool in self.tools if isinstance(tool, HttpToolSpec)]

    @property
    def builtin_tools(self) -> list[str]:
        return [tool.use for tool in self.tools if isinstance(tool, BuiltinToolRef)]

    def tool(self, name: str) -> HttpToolSpec | None:
        """The HTTP tool called ``name``, if the skill has one."""
        return next((tool for tool in self.http_tools if tool.name == name), None)

    def describe_tools(self) -> list[str]:
        """One line per tool (and MCP server), secrets redacted (``skills show``)."""
        return [
            f"{tool.use}  (built-in)" if isinstance(tool, BuiltinToolRef) else tool.describe()
            for tool in self.tools
        ] + [f"mcp {server.describe()}" for server in self.mcp]

    def redacted_dict(self) -> dict[str, Any]:
        """The spec as plain data, secrets replaced by their ``${VAR}`` text: safe to print."""
        dumped = self.model_dump(mode="json", exclude_none=True, exclude={"tools", "mcp"})
        data: dict[str, Any] = self._with_templates(dumped, ())
        data["tools"] = [
            {"use": tool.use} if isinstance(tool, BuiltinToolRef) else tool.redacted_dict()
            for tool in self.tools
        ]
        if self.mcp:
            data["mcp"] = [server.redacted_dict() for server in self.mcp]
        return data

    @model_validator(mode="after")
    def _mcp_names_are_unique(self) -> SkillSpec:
        """Server names, and the names the model sees, may not clash with each other or
        with the skill's HTTP tools."""
        problems: list[tuple[Loc, str]] = []
        taken = {
            tool.name: f"tools[{i}]"
            for i, tool in enumerate(self.tools)
            if isinstance(tool, HttpToolSpec)
        }
        servers: dict[str, int] = {}
        for index, server in enumerate(self.mcp):
            if server.name in servers:
                problems.append(
                    (
                        ("mcp", index, "name"),
                        f"duplicate MCP server {server.name!r} (also mcp[{servers[server.name]}])",
                    )
                )
                continue
            servers[server.name] = index
            for position, tool in enumerate(server.tools):
                shown = server.model_name(tool.name)
                if shown in taken:
                    problems.append(
                        (
                            ("mcp", index, "tools", position),
                            f"the model would see it as {shown!r}, like {taken[shown]}",
                        )
                    )
                taken.setdefault(shown, f"mcp[{index}].tools[{position}]")
        if problems:
            fail(problems, self)
        return self

    def _with_templates(self, value: Any, loc: Loc) -> Any:
        if isinstance(value, str):
            return self._templates.get(loc, value)
        if isinstance(value, dict):
            return {k: self._with_templates(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._with_templates(v, (*loc, i)) for i, v in enumerate(value)]
        return value

    @field_validator("tools", mode="wrap")
    @classmethod
    def _unique_tool_names(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        problems: list[tuple[Loc, str]] = []
        first_seen: dict[tuple[str, str], int] = {}
        for index, item in enumerate(value if isinstance(value, list) else []):
            key = tool_key(item)
            if key is None:
                continue
            if key in first_seen:
                problems.append(
                    ((index, key[0]), f"duplicate tool {key[1]!r} (also tools[{first_seen[key]}])")
                )
            else:
                first_seen[key] = index
        try:
            tools = handler(value)
        except ValidationError as exc:
            if problems:
                reraise_with(exc, problems, value)
            raise
        if problems:
            fail(problems, value)
        return tools
