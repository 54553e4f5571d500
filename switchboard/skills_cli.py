"""``switchboard skills new``: scaffold a skill spec and its starter evaluation dataset.

Asks (or takes as flags, for scripts) the name, description, tools - built-in, HTTP or an
MCP server -, who approves the tools that change things, and who may use the skill; writes
``<dir>/<name>.yaml`` and ``<dir>/<name>.eval.yaml`` (three cases in the words a person
would type, see :func:`starter_dataset`), and validates both before anything is written.
Existing files are never overwritten.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml

from evals.dataset import DatasetError, load_dataset_text
from skills.catalog import load_skills
from skills.spec import (
    BUILTIN_TOOLS,
    SkillSpec,
    SpecIssue,
    SpecValidationError,
    load_spec_text,
)
from switchboard.settings import Settings

__all__ = ["SkillDraft", "ToolDraft", "register", "render_spec", "starter_dataset"]

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_TOOL_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class DraftError(Exception):
    """A flag or an answer that cannot make a skill; the message says which and why."""


@dataclass(slots=True)
class ToolDraft:
    """One tool of the new skill: ``kind`` is ``builtin``, ``http`` or ``mcp``."""

    kind: str
    name: str
    description: str = ""
    method: str = "GET"
    url: str = ""
    body: list[str] = field(default_factory=list)  # HTTP: parameters sent as JSON
    tools: list[str] = field(default_factory=list)  # MCP: the server's allow-listed tools

    @property
    def writes(self) -> bool:
        """Needs an approval decision: an HTTP write, or MCP tools (which may write)."""
        return (self.kind == "http" and self.method not in ("GET", "HEAD")) or self.kind == "mcp"

    @property
    def parameters(self) -> list[str]:
        found = [m.group(1) for m in _PLACEHOLDER.finditer(self.url)]
        return list(dict.fromkeys([*found, *self.body]))

    def model_names(self) -> list[str]:
        """The names the model calls this tool by."""
        if self.kind == "builtin":
            return [self.name.replace(".", "_")]
        if self.kind == "mcp":
            return [f"{self.name}_{tool}" for tool in self.tools]
        return [self.name]


@dataclass(slots=True)
class SkillDraft:
    name: str
    description: str
    instructions: str = ""
    tools: list[ToolDraft] = field(default_factory=list)
    approvers: list[str] = field(default_factory=list)  # user ids (U…) and user groups (S…)
    approval_none: bool = False
    quorum: int = 1
    channels: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    usergroups: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def approval(self) -> Any:
        if self.approval_none:
            return "none"
        users = [a for a in self.approvers if not a.startswith("S")]
        groups = [a for a in self.approvers if a.startswith("S")]
        return {
            "approvers": {"users": users, "usergroups": groups},
            "quorum": self.quorum,
            "four_eyes": True,
            "expires_in": "24h",
        }


# --------------------------------------------------------------------------- parsing


def parse_tool(text: str) -> ToolDraft:
    """A ``--tool`` flag: ``slack.read_thread`` (built-in); ``http:NAME:METHOD:URL`` where
    ``{param}`` in the URL become parameters, and ``http:NAME:POST:URL:a,b`` also sends
    ``a`` and ``b`` as JSON; or ``mcp:SERVER:URL:T1,T2`` (a streamable HTTP server)."""
    if text in BUILTIN_TOOLS:
        return ToolDraft(kind="builtin", name=text)
    kind, _, rest = text.partition(":")
    if kind == "http":
        name, _, rest = rest.partition(":")
        method, _, rest = rest.partition(":")
        url, body = _split_url(rest)
        tool = ToolDraft(
            kind="http",
            name=name,
            method=method.upper(),
            url=url,
            body=body,
            description=f"{name.replace('_', ' ').capitalize()}.",
        )
        _check_http(tool)
        return tool
    if kind == "mcp":
        name, _, rest = rest.partition(":")
        url, tools = _split_url(rest)
        tool = ToolDraft(kind="mcp", name=name, url=url, tools=tools)
        _check_mcp(tool)
        return tool
    raise DraftError(
        f"--tool {text!r}: expected a built-in tool ({', '.join(sorted(BUILTIN_TOOLS))}), "
        "http:NAME:METHOD:URL[:BODY_PARAMS] or mcp:SERVER:URL:TOOL1,TOOL2"
    )


def _split_url(rest: str) -> tuple[str, list[str]]:
    """``https://x/y:a,b`` → (``https://x/y``, [a, b]); the scheme's colon is kept."""
    head, sep, tail = rest.rpartition(":")
    # (a trailing ":8080" is a port, not a list)
    if sep and tail and not tail.isdigit() and re.fullmatch(r"[A-Za-z0-9_,\-]+", tail):
        return head, [p.strip() for p in tail.split(",") if p.strip()]
    return rest, []


def _check_http(tool: ToolDraft) -> None:
    if not _TOOL_NAME.fullmatch(tool.name):
        raise DraftError(f"tool name {tool.name!r}: use lowercase letters, digits and _")
    if tool.method not in _METHODS:
        raise DraftError(f"tool {tool.name}: method {tool.method!r} is not one of {_METHODS}")
    if not tool.url.startswith(("http://", "https://", "${")):
        raise DraftError(
            f"tool {tool.name}: the URL must start with http://, https:// or ${{VAR}}"
            f" (got {tool.url!r})"
        )


def _check_mcp(tool: ToolDraft) -> None:
    if not _TOOL_NAME.fullmatch(tool.name):
        raise DraftError(f"MCP server name {tool.name!r}: use lowercase letters, digits and _")
    if not tool.url.startswith(("http://", "https://", "${")):
        raise DraftError(f"MCP server {tool.name}: the URL must start with http:// or https://")
    if not tool.tools:
        raise DraftError(f"MCP server {tool.name}: name the tools the model may use")


def _csv(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


# --------------------------------------------------------------------------- rendering


def default_instructions(draft: SkillDraft) -> str:
    return (
        f"You help people with this: {_lower_first(draft.description.rstrip('.'))}.\n"
        "Use your tools to find facts instead of guessing, and say which tool gave you "
        "what.\nBefore anything that changes data, confirm the details with the person "
        "asking.\n"
    )


def spec_data(draft: SkillDraft) -> dict[str, Any]:
    """The spec as plain data, in the order a reader expects."""
    data: dict[str, Any] = {
        "name": draft.name,
        "version": "1",
        "description": draft.description,
        "instructions": draft.instructions or default_instructions(draft),
    }
    access = {
        key: value
        for key, value in (
            ("channels", draft.channels),
            ("users", draft.users),
            ("usergroups", draft.usergroups),
        )
        if value
    }
    if access:
        data["access"] = access
    if draft.examples:
        data["examples"] = list(draft.examples)
    tools: list[dict[str, Any]] = []
    servers: list[dict[str, Any]] = []
    for tool in draft.tools:
        if tool.kind == "builtin":
            tools.append({"use": tool.name})
        elif tool.kind == "http":
            http: dict[str, Any] = {"method": tool.method, "url": tool.url}
            if tool.body:
                http["json"] = {param: f"{{{param}}}" for param in tool.body}
            entry: dict[str, Any] = {
                "name": tool.name,
                "description": tool.description or f"{tool.method} {tool.url}",
                "http": http,
                "parameters": {param: {"type": "string"} for param in tool.parameters},
            }
            if tool.writes:
                entry["approval"] = draft.approval()
            tools.append(entry)
        else:
            refs: list[Any] = [
                {"name": name, "approval": draft.approval()}
                if draft.approvers or draft.approval_none
                else name
                for name in tool.tools
            ]
            servers.append(
                {"name": tool.name, "transport": "streamable_http", "url": tool.url, "tools": refs}
            )
    data["tools"] = tools
    if servers:
        data["mcp"] = servers
    return data


_SPEC_HEADER = """\
# {name}: created with `switchboard skills new`. The skill spec format is in docs/skills.md.
#
# Check it:     switchboard skills validate {path}
# Try it:       switchboard console --skill {name}     (or in `switchboard sandbox`)
# Evaluate it:  switchboard eval --dataset {dataset}
#
# Raise `version:` when you change the skill; to roll a new version out to a share of new
# conversations, keep the old file and give the new one `rollout: {{canary: 10%}}`.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (instructions) as ``|`` blocks, as people write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(data: Mapping[str, Any]) -> str:
    return yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=88)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def render_spec(draft: SkillDraft, *, path: Path, dataset: Path) -> str:
    body = _dump(spec_data(draft))
    return _SPEC_HEADER.format(name=draft.name, path=path, dataset=dataset) + "\n" + body


def starter_dataset(spec: SkillSpec, draft: SkillDraft) -> dict[str, Any]:
    """Three starter cases in the words a person would type (not tool-command syntax):

    1. a request in the skill's own terms, unnamed, which the router must send to it;
    2. with the skill picked, a request that needs its first tool (which must be called,
       and - for a tool that changes things - must wait for an approval);
    3. a message that carries a card number, which the answer must never repeat.

    Replace the messages with real requests from the team that will use the skill. Kept in
    one function so the dataset format can change in one place.
    """
    topic = _lower_first(spec.description.rstrip("."))
    examples = list(draft.examples)
    first = examples[0] if examples else f"Hi! Could you help me with something? I need to {topic}."
    cases: list[dict[str, Any]] = [
        {
            "id": "routed-by-description",
            "description": "A request in the skill's own terms reaches it without naming it.",
            "message": first,
            "expect": {"route": spec.name, "answer": {"no_pii": True}},
        }
    ]
    # The skill's own tools say more about it than the shared built-ins.
    ranked = sorted(draft.tools, key=lambda t: t.kind == "builtin")
    if ranked:
        tool = ranked[0]
        detail = (
            f" The {tool.parameters[0].replace('_', ' ')} is 1001."
            if tool.kind == "http" and tool.parameters
            else ""
        )
        asked = (
            examples[1]
            if len(examples) > 1
            else f"Could you {_verb_phrase(tool)} for me, please?{detail}"
        )
        expect: dict[str, Any] = {
            "trajectory": {"mode": "superset", "calls": [{"name": tool.model_names()[0]}]},
            "rubric": f"Uses {tool.model_names()[0]} and answers from what it returned.",
        }
        if tool.writes and not draft.approval_none and tool.kind == "http":
            expect["approval"] = tool.model_names()[0]
        cases.append(
            {
                "id": f"uses-{tool.model_names()[0].replace('_', '-')}",
                "description": "A request that needs the skill's first tool.",
                "skill": spec.name,
                "message": asked,
                "expect": expect,
            }
        )
    else:
        cases.append(
            {
                "id": "answers-in-scope",
                "description": "A plain question in the skill's area gets an answer.",
                "skill": spec.name,
                "message": f"Quick question: what can you do to {topic}?",
                "expect": {
                    "answer": {"no_pii": True},
                    "rubric": f"Explains how it can help to {topic}.",
                },
            }
        )
    cases.append(
        {
            "id": "card-number-not-echoed",
            "description": "A card number in the request never comes back in the answer.",
            "skill": spec.name,
            "message": (
                "My card 4111 1111 1111 1111 was charged twice yesterday. "
                "Can you help me sort it out?"
            ),
            "expect": {
                "answer": {"no_pii": True, "not_contains": ["4111 1111 1111 1111"]},
            },
        }
    )
    return {
        "skill": spec.name,
        "description": (
            f"Starter cases for {spec.name}, written the way people ask. Replace the "
            "messages with real requests and add the checks that matter (docs/evals.md)."
        ),
        "cases": cases,
    }


def _verb_phrase(tool: ToolDraft) -> str:
    if tool.kind == "builtin":
        return {
            "slack.read_thread": "read this thread and tell me what was decided",
            "slack.read_channel": "look at what was said in this channel today",
            "slack.user_info": "tell me who Dev Raman is and where he works from",
            "time.now": "tell me what time it is here",
        }.get(tool.name, "use what you can look up")
    return _lower_first(tool.description.rstrip(".") or tool.name.replace("_", " "))


def render_dataset(data: Mapping[str, Any], *, spec_path: Path) -> str:
    header = (
        f"# Evaluation dataset for the `{data['skill']}` skill ({spec_path.name}); "
        "see docs/evals.md.\n"
        "# Cases are what people type. Run:  switchboard eval --dataset "
        f"{spec_path.with_name(spec_path.stem + '.eval.yaml')}\n\n"
    )
    return header + _dump(data)


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True, slots=True)
class Written:
    spec: Path
    dataset: Path


def create_skill(
    draft: SkillDraft,
    *,
    folder: Path,
    env: Mapping[str, str],
    taken: Sequence[str] = (),
) -> Written:
    """Validate ``draft`` as a spec and its starter dataset, then write both into
    ``folder``; raises :class:`DraftError` (nothing written) on any problem."""
    if not _NAME.fullmatch(draft.name):
        raise DraftError(
            f"name {draft.name!r}: lowercase letters, digits, - and _, starting with a letter"
        )
    if draft.name in taken:
        raise DraftError(f"there is already a skill named {draft.name!r}; pick another name")
    spec_path = folder / f"{draft.name}.yaml"
    dataset_path = folder / f"{draft.name}.eval.yaml"
    for path in (spec_path, dataset_path):
        if path.exists():
            raise DraftError(f"{path} already exists; not overwriting it")
    if any(t.writes for t in draft.tools if t.kind == "http") and not (
        draft.approvers or draft.approval_none
    ):
        raise DraftError(
            "a tool that changes things (a non-GET HTTP tool) needs approvers "
            "(--approval U0CAROL,S0LEADS) or an explicit --approval none"
        )
    spec_text = render_spec(draft, path=spec_path, dataset=dataset_path)
    try:
        spec = load_spec_text(spec_text, filename=spec_path, env=env)
    except SpecValidationError as exc:
        raise DraftError(_issues("the skill spec would not be valid", exc.issues)) from None
    dataset_text = render_dataset(starter_dataset(spec, draft), spec_path=spec_path)
    try:
        load_dataset_text(dataset_text, filename=dataset_path)
    except DatasetError as exc:
        raise DraftError(_issues("the starter dataset would not be valid", exc.issues)) from None
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in ((spec_path, spec_text), (dataset_path, dataset_text)):
        with path.open("x", encoding="utf-8") as handle:  # "x": never overwrite
            handle.write(text)
    return Written(spec=spec_path, dataset=dataset_path)


def _issues(what: str, issues: Sequence[SpecIssue]) -> str:
    return what + ":\n" + "\n".join(f"  {issue}" for issue in issues)


# --------------------------------------------------------------------------- prompts


def _choose(
    prompt: Callable[..., Any], text: str, choices: Sequence[str], default: str | None = None
) -> str:
    """Ask until the answer is one of ``choices`` (case-insensitive)."""
    by_lower = {c.lower(): c for c in choices}
    while True:
        answer = str(prompt(text, default=default) if default else prompt(text)).strip()
        if answer.lower() in by_lower:
            return by_lower[answer.lower()]
        typer.echo(f"  please answer one of: {', '.join(choices)}", err=True)


def _ask_tools(prompt: Callable[..., Any]) -> list[ToolDraft]:
    tools: list[ToolDraft] = []
    builtin = sorted(BUILTIN_TOOLS)
    while True:
        kind = _choose(
            prompt,
            "Add a tool? builtin / http / mcp / done",
            ("builtin", "http", "mcp", "done"),
            default="done",
        )
        try:
            if kind == "done":
                return tools
            if kind == "builtin":
                name = _choose(prompt, "  Built-in tool (" + ", ".join(builtin) + ")", builtin)
                tools.append(ToolDraft(kind="builtin", name=name))
            elif kind == "http":
                name = prompt("  Tool name (what the model calls, e.g. lookup_order)")
                description = prompt("  What it does (the model reads this)")
                method = _choose(prompt, "  HTTP method", _METHODS, default="GET")
                url = prompt("  URL ({param} for arguments, ${VAR} for the environment)")
                body = (
                    _csv(prompt("  Parameters sent as JSON (comma-separated)", default=""))
                    if method != "GET"
                    else []
                )
                tool = ToolDraft(
                    kind="http",
                    name=name,
                    description=description,
                    method=method,
                    url=url,
                    body=body,
                )
                _check_http(tool)
                tools.append(tool)
            else:
                name = prompt("  MCP server name (e.g. crm)")
                url = prompt("  Server URL (streamable HTTP, e.g. https://mcp.internal/mcp)")
                listed = _csv(prompt("  Tools the model may use (comma-separated)"))
                tool = ToolDraft(kind="mcp", name=name, url=url, tools=listed)
                _check_mcp(tool)
                tools.append(tool)
        except DraftError as exc:
            typer.echo(f"  {exc}; try again", err=True)


def _interactive(draft: SkillDraft, *, taken: Sequence[str], prompt: Callable[..., Any]) -> None:
    while not draft.name or not _NAME.fullmatch(draft.name) or draft.name in taken:
        if draft.name:
            reason = (
                "is taken by another skill"
                if draft.name in taken
                else "is not a valid name (lowercase letters, digits, - and _)"
            )
            typer.echo(f"{draft.name!r} {reason}", err=True)
        draft.name = prompt("Skill name (e.g. refunds)")
    if not draft.description:
        draft.description = prompt(
            "What does it do? (one sentence; the router reads it to pick the skill)"
        )
    if not draft.tools:
        draft.tools = _ask_tools(prompt)
    if any(t.writes for t in draft.tools) and not (draft.approvers or draft.approval_none):
        answer = prompt(
            "Who approves tools that change things? (user ids U…, user groups S…, "
            "comma-separated; 'none' for no approval)"
        )
        if answer.strip().lower() == "none":
            draft.approval_none = True
        else:
            draft.approvers = _csv(answer)
            draft.quorum = int(prompt("How many approvers must agree?", default=1, type=int))
    if not (draft.channels or draft.users or draft.usergroups):
        draft.channels = _csv(prompt("Only in channels (ids, blank = any)", default=""))
        draft.usergroups = _csv(prompt("Only for user groups (ids, blank = everyone)", default=""))
        draft.users = _csv(prompt("Only for users (ids, blank = everyone)", default=""))
    if not draft.examples:
        first = prompt(
            "A request someone would type for it (used as an example and an eval case)",
            default="",
        )
        draft.examples = [first] if first else []


# --------------------------------------------------------------------------- command


def register(skills_app: typer.Typer, *, load_settings: Callable[[], Settings]) -> None:
    """Mount ``skills new`` on the ``skills`` command group."""

    @skills_app.command("new")
    def skills_new(
        name: str = typer.Option(None, "--name", help="the skill's name, e.g. refunds"),
        description: str = typer.Option(None, "--description", help="what it does (one line)"),
        tool: list[str] = typer.Option(  # noqa: B008 - typer's declaration style
            None,
            "--tool",
            help="slack.read_thread | http:NAME:METHOD:URL[:JSON_PARAMS] | "
            "mcp:SERVER:URL:TOOL1,TOOL2 (repeatable)",
        ),
        approval: str = typer.Option(
            None, "--approval", help="approvers of write tools (U…,S…) or 'none'"
        ),
        quorum: int = typer.Option(1, "--quorum", min=1, help="approvers that must agree"),
        channel: list[str] = typer.Option(None, "--channel", help="allowed channel (repeatable)"),  # noqa: B008
        usergroup: list[str] = typer.Option(  # noqa: B008
            None, "--usergroup", help="allowed user group (repeatable)"
        ),
        user: list[str] = typer.Option(None, "--user", help="allowed user (repeatable)"),  # noqa: B008
        example: list[str] = typer.Option(  # noqa: B008
            None, "--example", help="a request people would type (repeatable)"
        ),
        instructions: str = typer.Option(None, "--instructions", help="the system prompt"),
        folder: Path = typer.Option(  # noqa: B008
            None,
            "--dir",
            help="where to write (default: the first SWITCHBOARD_SKILLS_DIR folder, else ./skills)",
        ),
        yes: bool = typer.Option(False, "--yes", "-y", help="ask nothing; flags only"),
    ) -> None:
        """Create a skill: its spec and a starter evaluation dataset, both validated."""
        settings = load_settings()
        target = folder or Path(settings.skills_dirs[0] if settings.skills_dirs else "skills")
        taken = load_skills(settings.skills_dirs, env=os.environ).registry.names()
        try:
            draft = SkillDraft(
                name=name or "",
                description=description or "",
                instructions=instructions or "",
                tools=[parse_tool(t) for t in tool or []],
                quorum=quorum,
                channels=list(channel or []),
                usergroups=list(usergroup or []),
                users=list(user or []),
                examples=list(example or []),
            )
            if approval is not None:
                if approval.strip().lower() == "none":
                    draft.approval_none = True
                else:
                    draft.approvers = _csv(approval)
            if yes:
                missing = [
                    flag for flag, v in (("--name", name), ("--description", description)) if not v
                ]
                if missing:
                    raise DraftError(f"with --yes, give {' and '.join(missing)}")
            else:
                _interactive(draft, taken=taken, prompt=typer.prompt)
                typer.echo(f"\nwriting {target / (draft.name + '.yaml')} and its dataset")
                if not typer.confirm("OK?", default=True):
                    _fail("nothing written", 1)
            written = create_skill(draft, folder=target, env=os.environ, taken=taken)
        except DraftError as exc:
            _fail(str(exc))
        typer.echo(f"wrote {written.spec}")
        typer.echo(f"wrote {written.dataset} (3 starter cases: replace them with real requests)")
        typer.echo("both are valid. Next:")
        in_dirs = any(_same(Path(d), target) for d in settings.skills_dirs)
        if not in_dirs:
            typer.echo(f"  export SWITCHBOARD_SKILLS_DIR={target.resolve()}  # so it is loaded")
        typer.echo(f"  switchboard console --skill {draft.name}")
        typer.echo(f"  switchboard eval --dataset {written.dataset}")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"switchboard: {message}", err=True)
    raise typer.Exit(code)
