"""User simulation: a simulated person pursues a case's ``goal`` over several messages.

A case with ``goal`` and ``persona`` (instead of ``message``) is a conversation: the
simulator says what the person writes next, given the goal, the persona and the
conversation so far, or ends it saying whether the goal was reached. The runner sends
each message through the runtime on one thread, as the person would in Slack, for up to
``max_turns`` messages, and scores the whole conversation: goal reached, turns used,
the tool trajectory across turns, and policy (no personal data in any answer, approval
requested where the case requires it).

Quality mode's simulator is a model (:class:`ModelSimulator`, ``--simulator-model``;
its input is masked like every model call); wiring mode plays the case's
``simulation:`` moves (:class:`ScriptedSimulator`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from evals.dataset import Case, Script
from skills.models import ensure_masked

__all__ = [
    "SIMULATOR_PROMPT",
    "Exchange",
    "ModelSimulator",
    "Move",
    "ScriptedSimulator",
    "Simulator",
    "SimulatorError",
]

SIMULATOR_PROMPT = """\
You play a person who writes to Switchboard, an AI assistant in their company's Slack
workspace (a payments company). Stay in character and pursue your goal.

<persona>
{persona}
</persona>

<goal>
{goal}
</goal>

Write the person's next Slack message, short and natural, giving details only when the
assistant asks for them or when the person would volunteer them. When the goal is
reached, or the assistant clearly cannot reach it, stop: set done to true, say in
goal_reached whether the goal was met, and leave message empty. Never invent facts the
goal and persona do not give.
"""


class SimulatorError(Exception):
    """The simulator model failed or answered something that is not a move."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"user simulator failed: {detail}")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One turn of the conversation so far: what the person said, what came back."""

    user: str
    assistant: str


@dataclass(frozen=True, slots=True)
class Move:
    """The simulated person's next move: a message (with its wiring-mode script), or stop."""

    message: str | None
    done: bool = False
    goal_reached: bool = False
    reason: str = ""
    script: Script | None = None


class Simulator(Protocol):
    """Plays the person of a simulated case."""

    async def next(self, case: Case, conversation: Sequence[Exchange]) -> Move: ...


class ScriptedSimulator:
    """Wiring mode: the case's ``simulation:`` moves, in order. Running out of moves ends
    the conversation with the goal not reached."""

    async def next(self, case: Case, conversation: Sequence[Exchange]) -> Move:
        said = 0
        for step in case.simulation:
            if step.user is None:
                if said == len(conversation):
                    return Move(
                        None, done=True, goal_reached=step.goal_reached, reason=step.done or ""
                    )
                continue
            if said == len(conversation):
                return Move(step.user, script=step.script)
            said += 1
        return Move(None, done=True, goal_reached=False, reason="the simulation ran out of moves")


class _Turn(BaseModel):
    message: str = Field(default="", description="the person's next message; empty when done")
    done: bool = Field(description="true when the conversation should end")
    goal_reached: bool = Field(default=False, description="whether the goal was met")
    reason: str = Field(default="", description="one sentence on why, when done")


class ModelSimulator:
    """Quality mode: a chat model plays the person (structured output ``_Turn``)."""

    def __init__(self, *, model: BaseChatModel, model_name: str) -> None:
        self.model_name = model_name
        self._model = ensure_masked(model)

    async def next(self, case: Case, conversation: Sequence[Exchange]) -> Move:
        transcript = "\n\n".join(
            f"You wrote: {turn.user}\nSwitchboard answered: {turn.assistant}"
            for turn in conversation
        )
        prompt = SIMULATOR_PROMPT.format(
            persona=case.persona or "A colleague at the company.", goal=case.goal
        )
        ask = (
            f"The conversation so far:\n\n{transcript}\n\nYour next move?"
            if conversation
            else "Write your first message."
        )
        try:
            structured: Any = self._model.with_structured_output(_Turn)
            result = await structured.ainvoke([SystemMessage(prompt), HumanMessage(ask)])
        except Exception as exc:  # any provider or parsing failure is the simulator's
            raise SimulatorError(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(result, _Turn):
            raise SimulatorError(f"not a move: {result!r}"[:300])
        if result.done or not result.message.strip():
            return Move(None, done=True, goal_reached=result.goal_reached, reason=result.reason)
        return Move(result.message.strip())
