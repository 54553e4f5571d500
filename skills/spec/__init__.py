"""Skill specs: the YAML contract, its validation, and request rendering for HTTP tools.

A skill spec is a YAML file (see "Skill spec (contract)" in the design notes). Loading one:

1. parses the YAML, remembering the line of every key (``skills._yaml``);
2. expands ``${ENV}`` references from an explicit ``env`` mapping (never ``os.environ``
   implicitly), in every string except the text the model reads (name, description,
   instructions, tool parameters), so secrets can only reach HTTP requests;
3. validates the result with the pydantic models below and reports *every* problem as a
   ``SpecIssue`` such as ``refunds.yaml:14 tools[1].approval: required for POST tools``.

At call time ``render_request`` checks a tool's arguments against its JSON Schema and fills
the ``{param}`` placeholders of its URL, headers, query and JSON body.

Exceptions::

    SpecError                 base of everything raised here
    ├── SpecValidationError   one or more spec files are invalid; ``.issues`` lists them all
    └── ToolArgumentsError    a tool call's arguments do not match the tool's parameters

The package, one module per part of the contract::

    model.py        SkillSpec: one skill as declared in YAML
    access.py       access allow-lists, memory, budget
    rollout.py      canary rollouts
    approvals.py    the approval policy of a risky tool
    tools.py        HTTP tools and built-in tool references (URL redaction)
    mcp.py          MCP tool servers
    templates.py    call-time ``{param}`` templates
    durations.py    ``7d``, ``4h``, ``30m``
    env.py          ``${ENV}`` expansion and where secrets may go
    loader.py       loading files and folders
    messages.py     validation errors as ``file:line field: message``
    errors.py       the exception tree below, and ``SpecIssue``
    rendering.py    a tool call's concrete HTTP request

Callers import from ``skills.spec``; the modules are its parts, not its interface.
"""

from __future__ import annotations

from skills.spec._common import BUILTIN_TOOLS, READ_METHODS, Loc
from skills.spec.access import Access, Budget, Memory
from skills.spec.approvals import ApprovalPolicy, Approvers
from skills.spec.durations import describe_duration, format_duration, parse_duration
from skills.spec.errors import SpecError, SpecIssue, SpecValidationError, ToolArgumentsError
from skills.spec.loader import (
    LoadResult,
    builtin_dir,
    check_paths,
    load_spec_dirs,
    load_spec_file,
    load_spec_text,
    validate_paths,
)
from skills.spec.mcp import MCP_TRANSPORTS, McpServerSpec, McpToolRef
from skills.spec.model import Concurrency, SkillSpec
from skills.spec.rendering import RenderedRequest, render_request
from skills.spec.rollout import Rollout
from skills.spec.tools import BuiltinToolRef, HttpSpec, HttpToolSpec, ToolSpec, redact_url

__all__ = [
    "BUILTIN_TOOLS",
    "MCP_TRANSPORTS",
    "READ_METHODS",
    "Access",
    "ApprovalPolicy",
    "Approvers",
    "Budget",
    "BuiltinToolRef",
    "Concurrency",
    "HttpSpec",
    "HttpToolSpec",
    "LoadResult",
    "Loc",
    "McpServerSpec",
    "McpToolRef",
    "Memory",
    "RenderedRequest",
    "Rollout",
    "SkillSpec",
    "SpecError",
    "SpecIssue",
    "SpecValidationError",
    "ToolArgumentsError",
    "ToolSpec",
    "builtin_dir",
    "check_paths",
    "describe_duration",
    "format_duration",
    "load_spec_dirs",
    "load_spec_file",
    "load_spec_text",
    "parse_duration",
    "redact_url",
    "render_request",
    "validate_paths",
]
