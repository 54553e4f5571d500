"""The LLM-as-judge scorer: a case's rubric, the request and the answer → score and reason.

Built on `openevals` (LangChain's evaluator library): `create_async_llm_as_judge` formats
the prompt, asks the judge model for structured output (``{reasoning, score}``, a float
in 0…1 with ``continuous=True``) and returns it as an evaluator result. We only supply
the rubric prompt and turn the result into a `JudgeVerdict`. Used only when a judge model
is configured (``--judge-model``); deterministic scorers always run first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel

from skills.models import ensure_masked

__all__ = ["JUDGE_PROMPT", "Judge", "JudgeError", "JudgeVerdict", "RubricJudge"]

JUDGE_PROMPT = """\
You grade answers given by an AI assistant that works inside a company's Slack workspace
(a payments company: support, risk, finance ops, on-call engineers).

Grade the answer against the rubric only. Score 1.0 when the answer meets every point of
the rubric, 0.0 when it meets none or when it does something the rubric forbids, and a
proportional value in between. Personal data appears masked (for example [card ****1111]);
that is expected and never a fault.

<rubric>
{rubric}
</rubric>

<request>
{inputs}
</request>

<tool_calls>
{trajectory}
</tool_calls>

<answer>
{outputs}
</answer>
"""


class JudgeError(Exception):
    """The judge model failed or returned something that is not a score."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"judge failed: {detail}")


@dataclass(frozen=True, slots=True)
class JudgeVerdict:
    score: float
    reason: str


class Judge(Protocol):
    """Scores an answer against a rubric."""

    model_name: str

    async def grade(
        self, *, rubric: str, request: str, answer: str, trajectory: str
    ) -> JudgeVerdict: ...


class RubricJudge:
    """A `Judge` over any chat model with structured output, via openevals."""

    def __init__(self, *, model: BaseChatModel, model_name: str) -> None:
        from openevals.llm import create_async_llm_as_judge

        self.model_name = model_name
        self._evaluate: Any = create_async_llm_as_judge(
            prompt=JUDGE_PROMPT,
            judge=ensure_masked(model),  # the request and answer may quote personal data
            feedback_key="rubric",
            continuous=True,
            use_reasoning=True,
        )

    async def grade(
        self, *, rubric: str, request: str, answer: str, trajectory: str
    ) -> JudgeVerdict:
        try:
            result = await self._evaluate(
                inputs=request,
                outputs=answer or "(no answer)",
                rubric=rubric,
                trajectory=trajectory or "(none)",
            )
        except Exception as exc:  # any provider or parsing failure is the judge's
            raise JudgeError(f"{type(exc).__name__}: {exc}") from exc
        if isinstance(result, list):
            result = result[0] if result else {}
        raw = result.get("score") if isinstance(result, dict) else None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise JudgeError(f"no numeric score in {result!r}"[:300])
        value = min(1.0, max(0.0, float(raw)))
        return JudgeVerdict(score=value, reason=str(result.get("comment") or ""))
