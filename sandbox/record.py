"""Record a sandbox session, and replay it against the current bot to spot regressions.

A recording is JSON Lines: a ``header`` (the workspace as it was when recording began),
then in order what people did (``action``), the signed payloads that sent (``inbound``)
and the Web API calls the bot made (``call``, with Slack's answer). Every entry is written
PII-masked (:func:`sandbox.seed.mask_saved`: a card number typed in the sandbox never
reaches the file) to a file only its owner can read (0600): recordings get committed and
shared.

Replaying loads the recorded workspace with every timestamp moved to the present (so
"the last 24 hours" means the same messages), performs the same actions through the same
code paths (so the payloads are built afresh and signed with a new secret), waits for the
bot after each one, and compares what the bot *sent* — message posts and edits,
ephemeral messages, reactions, views, Assistant status, ``response_url`` answers — with
the recording. Reads (history, users…) are left out: caching makes their number vary.
Timestamps, view ids, trigger ids, run ids and other random ids are replaced by
placeholders numbered in order of appearance, so only real differences show.

Messages that a recorded action refers to (a button under the bot's answer, a thread) are
found in the replay by position: the n-th ``chat.postMessage`` answer of the recording is
the n-th of the replay.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sandbox.actions import ActionError, Actions
from sandbox.events import Inbound
from sandbox.seed import mask_saved
from sandbox.workspace import ApiCall

__all__ = [
    "Recorder",
    "Recording",
    "ReplayError",
    "Step",
    "compare",
    "read_recording",
    "render_steps",
    "replay",
    "shift_workspace",
]

VERSION = 1

#: Calls that change what people see; these are compared.
_SENT_PREFIXES = ("chat.", "reactions.", "views.", "assistant.", "response_url")

_TS = re.compile(r"\b1\d{9}\.\d{6}\b")
_DATETIME = re.compile(
    r"\b\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?: ?(?:UTC|Z|[+-]\d{2}:?\d{2}))?"
)
_TRIGGER = re.compile(r"\b\d+\.\d{10}\.[0-9a-f]{16}\b")
_VIEW = re.compile(r"\bV\d{5}[0-9A-F]{6}\b")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_HEX = re.compile(r"\b[0-9a-f]{10,40}\b")
_AUTO_BLOCK_ID = re.compile(r"^[A-Z2-7]{5}$")
_EXACT_TS = re.compile(r"^1\d{9}\.\d{6}$")


class ReplayError(Exception):
    """A recording cannot be read or replayed; the message says why."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


# -- recording ------------------------------------------------------------------------------


class Recorder:
    """Appends a session to a JSON Lines file as it happens (a crash keeps what was done)."""

    def __init__(self, path: Path, *, workspace: Mapping[str, Any], started: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        self._file: IO[str] | None = os.fdopen(fd, "w", encoding="utf-8")
        self._write(
            {"type": "header", "version": VERSION, "started": started, "workspace": workspace}
        )

    def action(self, action: dict[str, Any]) -> None:
        self._write({"type": "action", **action})

    def inbound(self, inbound: Inbound) -> None:
        self._write({"type": "inbound", "kind": inbound.kind, "payload": inbound.payload})

    def call(self, call: ApiCall) -> None:
        self._write(
            {
                "type": "call",
                "method": call.method,
                "args": call.args,
                "status": call.status,
                "response": call.response,
            }
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            return
        masked = mask_saved(json.loads(json.dumps(entry, default=str)))
        self._file.write(json.dumps(masked, ensure_ascii=False) + "\n")
        self._file.flush()


# -- reading --------------------------------------------------------------------------------


@dataclass(slots=True)
class Step:
    """One action and the Web API calls the bot made until the next action."""

    action: dict[str, Any]
    calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Recording:
    started: float
    workspace: dict[str, Any]
    steps: list[Step]


def read_recording(path: Path) -> Recording:
    """Parse a recording; :class:`ReplayError` names the line that is wrong."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read ({exc.strerror or exc})") from None
    header: dict[str, Any] | None = None
    steps: list[Step] = []
    before: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise ReplayError(f"{path}:{number}: not JSON") from None
        kind = entry.get("type") if isinstance(entry, dict) else None
        if kind == "header":
            if entry.get("version") != VERSION:
                raise ReplayError(f"{path}:{number}: unsupported version {entry.get('version')}")
            header = entry
        elif kind == "action":
            steps.append(Step(action={k: v for k, v in entry.items() if k != "type"}))
        elif kind == "call":
            (steps[-1].calls if steps else before).append(entry)
        elif kind != "inbound":
            raise ReplayError(f"{path}:{number}: unknown entry type {kind!r}")
    if header is None:
        raise ReplayError(f"{path}: no header line; is this a sandbox recording?")
    return Recording(
        started=float(header["started"]), workspace=dict(header["workspace"]), steps=steps
    )


# -- replaying ------------------------------------------------------------------------------


def shift_workspace(workspace: Any, delta: float, mapping: dict[str, str]) -> Any:
    """``workspace`` with every Slack timestamp moved by ``delta`` seconds (old → new in
    ``mapping``)."""
    if isinstance(workspace, dict):
        return {k: shift_workspace(v, delta, mapping) for k, v in workspace.items()}
    if isinstance(workspace, list):
        return [shift_workspace(v, delta, mapping) for v in workspace]
    if isinstance(workspace, str) and _EXACT_TS.match(workspace):
        if workspace not in mapping:
            mapping[workspace] = f"{float(workspace) + delta:.6f}"
        return mapping[workspace]
    return workspace


def _ids(response: Mapping[str, Any]) -> list[str]:
    """The ids an answer hands out: message ts, view ids."""
    found = [str(response[k]) for k in ("ts", "message_ts") if response.get(k)]
    view = response.get("view")
    if isinstance(view, dict) and view.get("id"):
        found.append(str(view["id"]))
    return found


class _Aligner:
    """Maps recorded ids to replayed ones by the order in which each method handed them out."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping
        self._recorded: dict[str, list[dict[str, Any]]] = {}
        self._replayed: dict[str, list[dict[str, Any]]] = {}

    def add(self, recorded: Iterable[dict[str, Any]], replayed: Iterable[dict[str, Any]]) -> None:
        for side, calls in ((self._recorded, recorded), (self._replayed, replayed)):
            for call in calls:
                if call.get("status") == 200:
                    side.setdefault(str(call["method"]), []).append(call["response"])
        for method, answers in self._recorded.items():
            for old, new in zip(answers, self._replayed.get(method, []), strict=False):
                for old_id, new_id in zip(_ids(old), _ids(new), strict=False):
                    self.mapping.setdefault(old_id, new_id)

    def __call__(self, value: Any) -> Any:
        return self.mapping.get(value, value) if isinstance(value, str) else value


async def replay(
    recording: Recording,
    actions: Actions,
    *,
    mapping: dict[str, str],
    calls: list[ApiCall],
    on_step: Callable[[int, Step], None] | None = None,
) -> list[Step]:
    """Perform the recorded actions; returns the replayed steps with the calls they caused.

    ``calls`` is the list the emulator appends every replayed call to; ``mapping`` holds the
    recorded → replayed ids known so far (the shifted workspace's timestamps).
    """
    align = _Aligner(mapping)
    steps: list[Step] = []
    for index, recorded in enumerate(recording.steps):
        action = recorded.action
        start = len(calls)
        try:
            created = await _perform(action, actions, align)
        except ActionError as exc:
            created = None
            action = {**action, "failed": exc.problem}
        await actions.settle()
        made = [_as_entry(c) for c in calls[start:]]
        if created is not None and action.get("created"):
            mapping.setdefault(str(action["created"]), created)
        align.add(recorded.calls, made)
        step = Step(action=action, calls=made)
        steps.append(step)
        if on_step is not None:
            on_step(index, step)
    return steps


def _as_entry(call: ApiCall) -> dict[str, Any]:
    return {
        "type": "call",
        "method": call.method,
        "args": call.args,
        "status": call.status,
        "response": call.response,
    }


async def _perform(action: Mapping[str, Any], actions: Actions, align: _Aligner) -> str | None:
    do = action.get("do")
    user = str(action.get("user", ""))
    if do == "say":
        message = await actions.say(
            user=user,
            channel=str(action["channel"]),
            text=str(action["text"]),
            thread_ts=align(action.get("thread_ts")),
        )
        return str(message["ts"])
    if do == "command":
        await actions.command(user=user, channel=str(action["channel"]), text=str(action["text"]))
        return None
    if do == "click":
        await actions.click(
            user=user,
            action_id=str(action["action_id"]),
            # Block ids often carry run or request ids: find the element by action id.
            block_id=None,
            channel=action.get("channel"),
            message_ts=align(action.get("message_ts")),
            view_id=align(action.get("view_id")),
            selected=action.get("selected"),
            state=action.get("state"),
        )
        return None
    if do == "submit":
        await actions.submit(
            user=user, view_id=str(align(action["view_id"])), values=dict(action["values"])
        )
        return None
    if do == "close":
        actions.close(user=user)
        return None
    if do == "open_home":
        await actions.open_home(user=user)
        return None
    if do == "start_assistant":
        return await actions.start_assistant(
            user=user, context_channel=action.get("context_channel")
        )
    raise ActionError(f"unknown recorded action {do!r}")


# -- comparing ------------------------------------------------------------------------------


class _Placeholders:
    """Replaces volatile values with ``<ts 1>``, ``<view 2>``… numbered per kind."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], str] = {}

    def _name(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self._seen:
            count = sum(1 for k in self._seen if k[0] == kind) + 1
            self._seen[key] = f"<{kind} {count}>"
        return self._seen[key]

    def text(self, value: str) -> str:
        for kind, pattern in (
            ("trigger", _TRIGGER),
            ("ts", _TS),
            ("time", _DATETIME),
            ("view", _VIEW),
            ("id", _UUID),
            ("id", _HEX),
        ):
            value = pattern.sub(self._replacer(kind), value)
        return value

    def _replacer(self, kind: str) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            return self._name(kind, match.group(0))

        return replace

    def value(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: self.value(v, k) for k, v in sorted(value.items())}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            if key == "block_id" and _AUTO_BLOCK_ID.match(value):
                return "<block>"
            return self.text(_maybe_json(value))
        return value


def _maybe_json(value: str) -> str:
    """Form-encoded args carry blocks as JSON text; compare them as canonical JSON."""
    if value[:1] in ("[", "{"):
        try:
            return json.dumps(json.loads(value), sort_keys=True, ensure_ascii=False)
        except ValueError:
            return value
    return value


def _describe(action: Mapping[str, Any]) -> str:
    do = action.get("do")
    who = action.get("user", "?")
    if do in ("say", "command"):
        where = action.get("channel", "?")
        text = action.get("text", "")
        return f"{who} in {where}{' (thread)' if action.get('thread_ts') else ''}: {text}"
    if do == "click":
        return f"{who} clicks {action.get('action_id')}"
    return f"{who} {do}"


def render_steps(steps: Iterable[Step]) -> list[str]:
    """What the bot sent, step by step, as comparable lines."""
    names = _Placeholders()
    lines: list[str] = []
    for number, step in enumerate(steps, start=1):
        lines.append(f"## step {number}: {_describe(step.action)}")
        if step.action.get("failed"):
            lines.append(f"   (could not be done: {step.action['failed']})")
        for call in step.calls:
            method = str(call["method"])
            if call.get("status") == 429 or not method.startswith(_SENT_PREFIXES):
                continue
            args = names.value(call.get("args") or {})
            response = call.get("response") or {}
            outcome = "" if response.get("ok") else f"  -> error {response.get('error')}"
            lines.append(f"{method}{outcome}")
            body = json.dumps(args, indent=2, sort_keys=True, ensure_ascii=False)
            lines.extend("    " + line for line in body.splitlines())
    return lines


def compare(recorded: Iterable[Step], replayed: Iterable[Step]) -> str:
    """A unified diff of what the bot sent (empty when the same)."""
    before, after = render_steps(recorded), render_steps(replayed)
    if before == after:
        return ""
    return "\n".join(difflib.unified_diff(before, after, "recorded", "replayed", lineterm="", n=4))


def iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Every entry of a recording (for tools and tests)."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
