"""``${ENV}`` expansion: what may be expanded where, and where secrets may go."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from skills._yaml import LineMappedDocument
from skills.spec._common import Loc
from skills.spec.model import SkillSpec
from skills.spec.templates import escape_braces, parse_template
from skills.spec.tools import SENSITIVE_NAME

_ENV_RE: Final = re.compile(
    r"\$\$\{(?P<escaped>[^}]*)\}"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<bad>\$\{)"
)
# Text the model reads is never expanded, so a secret cannot end up in a prompt.
_LITERAL_SKILL_KEYS: Final = frozenset({"name", "description", "instructions", "version"})
_LITERAL_TOOL_KEYS: Final = frozenset({"name", "description", "parameters", "required", "use"})


@dataclass(frozen=True)
class _Reference:
    """Where one ``${NAME}`` landed in an expanded string, and whether the environment
    (rather than its ``:-default``) supplied the value."""

    name: str
    start: int
    end: int
    from_env: bool


@dataclass
class Expansion:
    env: Mapping[str, str]
    templates: dict[Loc, str] = field(default_factory=dict)
    problems: list[tuple[Loc, str]] = field(default_factory=list)
    unresolved_strings: set[str] = field(default_factory=set)
    references: dict[Loc, list[_Reference]] = field(default_factory=dict)
    # Every non-empty value the environment supplied: secret wherever it shows up.
    secrets: dict[Loc, set[str]] = field(default_factory=dict)

    def skill(self, data: dict[Any, Any]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, value in data.items():
            if key in _LITERAL_SKILL_KEYS:
                out[key] = value
            elif key == "tools" and isinstance(value, list):
                out[key] = [self._tool(item, ("tools", i)) for i, item in enumerate(value)]
            else:
                out[key] = self._tree(value, (key,), call_template=False)
        return out

    def secrets_under(self, prefix: Loc) -> frozenset[str]:
        return frozenset(
            value
            for loc, values in self.secrets.items()
            if loc[: len(prefix)] == prefix
            for value in values
        )

    def _tool(self, item: Any, loc: Loc) -> Any:
        if not isinstance(item, dict):
            return item
        return {
            key: value
            if key in _LITERAL_TOOL_KEYS
            else self._tree(value, (*loc, key), call_template=key == "http")
            for key, value in item.items()
        }

    def _tree(self, value: Any, loc: Loc, *, call_template: bool) -> Any:
        if isinstance(value, str):
            return self._string(value, loc, call_template=call_template)
        if isinstance(value, dict):
            return {
                k: self._tree(v, (*loc, k), call_template=call_template) for k, v in value.items()
            }
        if isinstance(value, list):
            return [
                self._tree(v, (*loc, i), call_template=call_template) for i, v in enumerate(value)
            ]
        return value

    def _string(self, text: str, loc: Loc, *, call_template: bool) -> str:
        if "${" not in text:
            return text
        escape = escape_braces if call_template else (lambda s: s)
        problems_before = len(self.problems)
        out: list[str] = []
        length = 0
        position = 0
        for match in _ENV_RE.finditer(text):
            piece = text[position : match.start()]
            out.append(piece)
            length += len(piece)
            position = match.end()
            value, reference = self._replacement(match, loc)
            piece = escape(value)
            if reference is not None:
                name, from_env = reference
                self.references.setdefault(loc, []).append(
                    _Reference(name, length, length + len(piece), from_env)
                )
                if from_env and value:
                    self.secrets.setdefault(loc, set()).add(value)
            out.append(piece)
            length += len(piece)
        out.append(text[position:])
        expanded = "".join(out)
        if len(self.problems) > problems_before:
            self.unresolved_strings.add(expanded)
        self.templates[loc] = text
        return expanded

    def _replacement(self, match: re.Match[str], loc: Loc) -> tuple[str, tuple[str, bool] | None]:
        """The text for one ``${...}`` and, for a variable, (its name, whether the
        environment supplied the value)."""
        if match.group("escaped") is not None:
            return "${" + match.group("escaped") + "}", None
        if match.group("bad") is not None:
            self.problems.append(
                (
                    loc,
                    "malformed ${...}: write ${NAME}, ${NAME:-default}, or $${...} for a literal",
                )
            )
            return "", None
        name, default = match.group("name"), match.group("default")
        value = self.env.get(name)
        if default is not None and not value:
            return default, (name, False)
        if value is None:
            self.problems.append((loc, f"environment variable {name} is not set"))
            return "", (name, False)
        return value, (name, True)


def url_problems(expansion: Expansion, data: Any) -> list[tuple[Loc, str]]:
    """Secrets in URLs: a ``${VAR}`` may only start the URL (a base URL), never carry
    credentials, and a URL's own query string may not hold credential-like parameters.

    Values from the environment are secrets; in a URL path they end up in logs, proxies
    and the target's access logs, where header and ``query:`` values are redacted.
    """
    problems: list[tuple[Loc, str]] = []
    tools = data.get("tools") if isinstance(data, dict) else None
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        http = tool.get("http") if isinstance(tool, dict) else None
        url = http.get("url") if isinstance(http, dict) else None
        if not isinstance(url, str):
            continue
        loc: Loc = ("tools", index, "http", "url")
        for ref in expansion.references.get(loc, []):
            if ref.start > 0:
                problems.append(
                    (
                        loc,
                        f"${{{ref.name}}} is expanded inside the URL; values from the "
                        "environment are secrets and may only form the start of the URL "
                        "(scheme, host, port and a path prefix) - send this one in `headers:` "
                        "or `query:`",
                    )
                )
        try:
            sample = "".join(s if isinstance(s, str) else "x" for s in parse_template(url))
        except ValueError:
            continue  # the model validation reports it
        parts = urlsplit(sample)
        if "@" in parts.netloc:
            problems.append(
                (
                    loc,
                    "credentials in the URL (user:password@host) are not allowed; send them "
                    "in an Authorization header",
                )
            )
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if SENSITIVE_NAME.search(name) and value:
                problems.append(
                    (
                        loc,
                        f"the URL's query parameter {name!r} looks like a credential; move it "
                        f'to `query: {{{name}: "${{...}}"}}`, where it is redacted',
                    )
                )
    return problems


def mcp_url_problems(expansion: Expansion, data: Any) -> list[tuple[Loc, str]]:
    """Secrets in MCP server URLs: as for HTTP tools, a ``${VAR}`` may only start the URL."""
    problems: list[tuple[Loc, str]] = []
    servers = data.get("mcp") if isinstance(data, dict) else None
    for index, _server in enumerate(servers if isinstance(servers, list) else []):
        loc: Loc = ("mcp", index, "url")
        problems.extend(
            (
                loc,
                f"${{{ref.name}}} is expanded inside the URL; values from the environment are "
                "secrets and may only form the start of the URL - send this one in `headers:`",
            )
            for ref in expansion.references.get(loc, [])
            if ref.start > 0
        )
    return problems


def attach_mcp(spec: SkillSpec, expansion: Expansion, doc: LineMappedDocument) -> None:
    """Give each MCP server its secrets, its ``${VAR}`` texts and its lines."""
    for index, server in enumerate(spec.mcp):
        prefix: Loc = ("mcp", index)
        server._secrets = expansion.secrets_under(prefix)
        server._templates = {
            loc[len(prefix) :]: text
            for loc, text in expansion.templates.items()
            if loc[: len(prefix)] == prefix
        }
        server._lines = {(): doc.line_for(prefix)}
        for position in range(len(server.tools)):
            for loc in (("tools", position), ("tools", position, "name")):
                server._lines[loc] = doc.line_for((*prefix, *loc))
        server._lines[("tools",)] = doc.line_for((*prefix, "tools"))
