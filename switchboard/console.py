"""``switchboard console``: a terminal chat on the same runtime (like Errbot's text backend).

Memory carries across messages (one conversation thread per console session), approval
prompts are answered in the terminal, ``/reset`` forgets the conversation. Slack history
tools read a built-in sample workspace, so ``digest #C0PAYALERTS`` works with no Slack.
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from skills.context import Actor, SlackReader, ThreadRef
from skills.errors import SkillError
from skills.models import ModelConfigError
from skills.outcomes import ApprovalRequest, Decision, Outcome, Refusal, Reply
from skills.runtime import Runtime

ReadLine = Callable[[str], Awaitable[str | None]]
Write = Callable[[str], None]

HELP = """Commands:
  /skills          list the skills you may use
  /skill NAME      send every message to NAME (/skill off to route automatically)
  /as USER         speak as another person of the sample workspace (e.g. /as U0CAROL)
  /reset           forget this conversation
  /help            this text
  /quit            leave (Ctrl-D works too)
Anything else is a message. Name a skill first to use it once: `digest #C0PAYALERTS 24h`.
Call a tool with the offline model by naming it: `lookup_order order_id=1001`."""


@dataclass(slots=True)
class ConsoleSession:
    """One terminal conversation; the state that ``/`` commands change."""

    runtime: Runtime
    actor: Actor
    slack: SlackReader | None = None
    skill: str | None = None
    channel: str = "C0CONSOLE"
    team: str = "T0CONSOLE"
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def thread(self) -> ThreadRef:
        return ThreadRef(team=self.team, channel=self.channel, thread_ts=f"console-{self.session}")


async def run_console(session: ConsoleSession, *, read: ReadLine, write: Write) -> None:
    """The read-eval-print loop; returns on ``/quit`` or end of input."""
    runtime = session.runtime
    write(f"Switchboard console — model {runtime.config.default_model}. Type /help for help.")
    write("Skills: " + ", ".join(s.name for s in runtime.available_skills(session.actor, None)))
    while True:
        line = await read(f"{session.actor.name or session.actor.user_id}> ")
        if line is None:
            write("bye")
            return
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not await _command(session, line, write):
                return
            continue
        await _say(session, line, read=read, write=write)


async def _command(session: ConsoleSession, line: str, write: Write) -> bool:
    name, _, arg = line[1:].partition(" ")
    arg = arg.strip()
    if name in {"quit", "exit", "q"}:
        write("bye")
        return False
    if name == "help":
        write(HELP)
    elif name == "reset":
        await session.runtime.reset(session.thread)
        session.session = uuid.uuid4().hex[:8]
        write("Forgotten. This is a new conversation.")
    elif name == "skills":
        for skill in session.runtime.available_skills(session.actor, session.channel):
            write(f"  {skill.name:<12} {skill.description}")
    elif name == "skill":
        if arg in {"", "off", "auto"}:
            session.skill = None
            write("Routing automatically.")
        elif arg not in session.runtime.registry:
            write(f"No skill named {arg!r}. Try /skills.")
        else:
            session.skill = arg
            write(f"Sending messages to {arg}.")
    elif name == "as":
        if not arg:
            write("Usage: /as USER_ID")
        else:
            user = await session.slack.user_info(arg) if session.slack else None
            session.actor = Actor(
                user_id=arg,
                name=user.name if user else arg,
                tz=(user.tz if user and user.tz else session.actor.tz),
            )
            write(f"You are now {session.actor.name}.")
    else:
        write(f"Unknown command /{name}. Type /help.")
    return True


async def _say(session: ConsoleSession, text: str, *, read: ReadLine, write: Write) -> None:
    try:
        outcome: Outcome = await session.runtime.run(
            thread=session.thread,
            message=text,
            actor=session.actor,
            skill=session.skill,
            slack=session.slack,
            trigger="console",
        )
        while isinstance(outcome, ApprovalRequest):
            decision = await _ask_decision(outcome, session, read=read, write=write)
            outcome = await session.runtime.resume(
                thread=session.thread, decision=decision, actor=session.actor, slack=session.slack
            )
    except ModelConfigError as exc:
        write(f"! {exc}")
        return
    except SkillError as exc:
        write(f"! {exc}")
        return
    _show(outcome, write)


def _show(outcome: Outcome, write: Write) -> None:
    if isinstance(outcome, Reply):
        write(f"[{outcome.skill}] {outcome.text}")
    elif isinstance(outcome, Refusal):
        allowed = ", ".join(outcome.allowed_skills)
        write(f"! {outcome.reason}" + (f" You may use: {allowed}." if allowed else ""))


async def _ask_decision(
    request: ApprovalRequest, session: ConsoleSession, *, read: ReadLine, write: Write
) -> Decision:
    policy = request.policy
    approvers = ", ".join([*policy.users, *policy.usergroups]) or "anyone"
    write(
        f"Approval needed: {request.skill} wants to run {request.tool} "
        f"{json.dumps(request.args, sort_keys=True)}\n"
        f"  approvers: {approvers}; quorum {policy.quorum}"
        + ("; the requester may not approve" if policy.four_eyes else "")
    )
    options = "[a]pprove / [r]eject" + (" / [e]dit key=value…" if policy.allow_edit else "")
    while True:
        answer = await read(f"  {options}? ")
        if answer is None:
            answer = "r"
        verb, _, rest = answer.strip().partition(" ")
        verb = verb.lower()
        if verb in {"a", "approve", "y", "yes"}:
            return Decision(type="approve", interrupt_id=request.interrupt_id, actor="console")
        if verb in {"r", "reject", "n", "no"}:
            return Decision(
                type="reject",
                interrupt_id=request.interrupt_id,
                actor="console",
                reason=rest.strip() or None,
            )
        if verb in {"e", "edit"} and policy.allow_edit:
            args = dict(request.args)
            for pair in shlex.split(rest):
                key, sep, value = pair.partition("=")
                if sep:
                    args[key] = _coerce(value)
            return Decision(
                type="edit", interrupt_id=request.interrupt_id, actor="console", args=args
            )
        write(f"  Please answer {options}.")


def _coerce(value: str) -> object:
    try:
        return json.loads(value)
    except ValueError:
        return value


def now_utc() -> datetime:
    return datetime.now(UTC)
