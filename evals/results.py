"""Evaluation results: per attempt, per case, per skill; JSON in and out; the regression gate.

The JSON written by ``switchboard eval`` (``results.json``) is also what ``--baseline`` and
``--save-baseline`` read and write, so a stored run is a baseline as it is.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from evals.scorers import CheckResult

__all__ = [
    "PRICES",
    "AttemptResult",
    "CaseResult",
    "EvalRun",
    "GateResult",
    "SkillSummary",
    "compare",
    "estimate_cost",
    "load_results",
    "summarize",
]

RESULTS_VERSION: Final = 1

PRICES: Final[Mapping[str, tuple[float, float]]] = {
    # model string prefix → USD per million (input, output) tokens; longest prefix wins.
    "offline": (0.0, 0.0),
    "wiring": (0.0, 0.0),  # scripted turns: the tokens are estimates, nothing is billed
    "ollama:": (0.0, 0.0),
    "openai:gpt-4.1-nano": (0.10, 0.40),
    "openai:gpt-4.1-mini": (0.40, 1.60),
    "openai:gpt-4.1": (2.00, 8.00),
    "openai:gpt-4o-mini": (0.15, 0.60),
    "openai:gpt-4o": (2.50, 10.00),
    "openai:gpt-5-nano": (0.05, 0.40),
    "openai:gpt-5-mini": (0.25, 2.00),
    "openai:gpt-5": (1.25, 10.00),
    "anthropic:claude-3-5-haiku": (0.80, 4.00),
    "anthropic:claude-haiku-4": (1.00, 5.00),
    "anthropic:claude-sonnet-4": (3.00, 15.00),
    "anthropic:claude-opus-4": (15.00, 75.00),
    "google_vertexai:gemini-2.5-flash": (0.30, 2.50),
    "google_vertexai:gemini-2.5-pro": (1.25, 10.00),
}
"""Approximate list prices, for comparing runs rather than for invoices."""


def estimate_cost(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """Estimated USD for the tokens, or None when the model is not in `PRICES`."""
    matches = [prefix for prefix in PRICES if model.startswith(prefix)]
    if not matches:
        return None
    per_input, per_output = PRICES[max(matches, key=len)]
    return (input_tokens * per_input + output_tokens * per_output) / 1_000_000


@dataclass(slots=True)
class AttemptResult:
    """One run of one case."""

    passed: bool
    outcome: str
    route: str | None
    answer: str
    calls: list[dict[str, Any]]
    checks: list[CheckResult]
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    error: str | None = None
    turns: int | None = None  # user simulation: messages the simulated person sent
    conversation: list[dict[str, str]] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and not c.skipped]

    def check(self, kind: str) -> list[CheckResult]:
        return [c for c in self.checks if c.kind == kind and not c.skipped]


@dataclass(slots=True)
class CaseResult:
    """A case and its attempts (``--repeat`` gives several)."""

    skill: str
    dataset: str
    case_id: str
    message: str
    description: str
    expected_route: str | None
    expected_trajectory: list[str]
    trajectory_mode: str | None
    attempts: list[AttemptResult]
    line: int | None = None
    known_issue: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: str = "quality:model"  # which mode and source produced the result

    @property
    def key(self) -> str:
        return f"{self.skill}/{self.case_id}"

    @property
    def passed(self) -> bool:
        """Every attempt passed (pass^k): what the gate and the pass rate count."""
        return bool(self.attempts) and all(a.passed for a in self.attempts)

    @property
    def passed_any(self) -> bool:
        """At least one attempt passed (pass@k)."""
        return any(a.passed for a in self.attempts)

    @property
    def counts(self) -> bool:
        """Whether the case counts towards pass rates (a failing known issue does not)."""
        return self.known_issue is None or self.passed


@dataclass(slots=True)
class SkillSummary:
    skill: str
    cases: int
    passed: int
    known_issues: int
    pass_rate: float
    pass_at_k: float
    attempt_pass_rate: float
    route_accuracy: float | None
    trajectory_match: float | None
    judge_score: float | None
    latency_p50_ms: float
    latency_p95_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


@dataclass(slots=True)
class EvalRun:
    """A whole evaluation: settings, cases, and summaries per skill and overall."""

    started_at: str
    model: str
    judge_model: str | None
    repeat: int
    cases: list[CaseResult]
    duration_s: float = 0.0
    mode: str = "quality"  # quality | wiring
    source: str = "model"  # model | script | cassette
    cassettes: list[str] = field(default_factory=list)

    @property
    def mode_label(self) -> str:
        """How reports name what produced the numbers."""
        if self.mode == "wiring":
            how = "recorded cassette" if self.source == "cassette" else "scripted model turns"
            return f"wiring mode ({how}; checks the plumbing, not the model's quality)"
        return f"quality mode (model {self.model})"

    def summaries(self) -> list[SkillSummary]:
        skills = sorted({c.skill for c in self.cases})
        return [summarize([c for c in self.cases if c.skill == s], s) for s in skills]

    def overall(self) -> SkillSummary:
        return summarize(self.cases, "all")

    @property
    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed and c.known_issue is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RESULTS_VERSION,
            "mode": self.mode,
            "source": self.source,
            "mode_label": self.mode_label,
            "cassettes": self.cassettes,
            "started_at": self.started_at,
            "model": self.model,
            "judge_model": self.judge_model,
            "repeat": self.repeat,
            "duration_s": round(self.duration_s, 3),
            "summary": {
                "overall": asdict(self.overall()),
                "skills": {s.skill: asdict(s) for s in self.summaries()},
            },
            "cases": [
                {**asdict(case), "key": case.key, "passed": case.passed, "counts": case.counts}
                for case in self.cases
            ],
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")


def _ratio(values: Iterable[bool]) -> float | None:
    items = list(values)
    return sum(items) / len(items) if items else None


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[rank]


def summarize(cases: Sequence[CaseResult], skill: str) -> SkillSummary:
    """Pass rates, route and trajectory accuracy, judge score, latency, tokens and cost."""
    counted = [c for c in cases if c.counts]
    attempts = [a for c in counted for a in c.attempts]
    every = [a for c in cases for a in c.attempts]
    latencies = [a.latency_ms for a in every]
    routes = [r.passed for a in attempts for r in a.check("route")]
    trajectories = [r.passed for a in attempts for r in a.check("trajectory")]
    judged = [r.score for a in attempts for r in a.check("rubric") if r.score is not None]
    costs = [a.cost_usd for a in every]
    return SkillSummary(
        skill=skill,
        cases=len(cases),
        passed=sum(c.passed for c in counted),
        known_issues=sum(1 for c in cases if not c.counts),
        pass_rate=_ratio(c.passed for c in counted) or 0.0,
        pass_at_k=_ratio(c.passed_any for c in counted) or 0.0,
        attempt_pass_rate=_ratio(a.passed for a in attempts) or 0.0,
        route_accuracy=_ratio(routes),
        trajectory_match=_ratio(trajectories),
        judge_score=statistics.fmean(judged) if judged else None,
        latency_p50_ms=_percentile(latencies, 0.5),
        latency_p95_ms=_percentile(latencies, 0.95),
        input_tokens=sum(a.input_tokens for a in every),
        output_tokens=sum(a.output_tokens for a in every),
        cost_usd=None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
    )


# --------------------------------------------------------------------------- baseline gate


class BaselineError(Exception):
    """A baseline file is missing or not an evaluation results file."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(f"{path}: {problem}")


def load_results(path: Path) -> dict[str, Any]:
    """A results (baseline) file as plain JSON, checked for the fields the gate needs."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(path, f"cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise BaselineError(path, f"not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise BaselineError(path, "not an evaluation results file (no 'cases' list)")
    return data


@dataclass(frozen=True, slots=True)
class GateResult:
    """The regression gate's verdict against a baseline."""

    baseline_pass_rate: float
    pass_rate: float
    threshold: float
    newly_failing: tuple[str, ...]
    compared: int

    @property
    def dropped(self) -> bool:
        return self.baseline_pass_rate - self.pass_rate > self.threshold + 1e-9

    @property
    def failed(self) -> bool:
        return self.dropped or bool(self.newly_failing)

    def describe(self) -> str:
        lines = [
            f"baseline pass rate {self.baseline_pass_rate:.1%}, now {self.pass_rate:.1%} "
            f"over {self.compared} common case(s) (threshold {self.threshold:.1%})"
        ]
        if self.dropped:
            lines.append("pass rate dropped more than the threshold")
        lines.extend(
            f"regression: {key} passed in the baseline and fails now" for key in self.newly_failing
        )
        lines.append("gate: FAILED" if self.failed else "gate: passed")
        return "\n".join(lines)


def _counts(item: Mapping[str, Any]) -> bool:
    """`CaseResult.counts` for a stored case: a failing known issue does not count."""
    if "counts" in item:
        return bool(item["counts"])
    return item.get("known_issue") is None or bool(item.get("passed"))


def compare(baseline: Mapping[str, Any], run: EvalRun, *, threshold: float) -> GateResult:
    """Compare ``run`` with a stored run over the cases both contain.

    Pass rates use the table's definition (`summarize`): a failing known issue is left
    out, on either side; a case that now fails as a known issue is not a regression.
    """
    before: dict[str, bool] = {}
    counted_before: set[str] = set()
    for item in baseline.get("cases", []):
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            before[item["key"]] = bool(item.get("passed"))
            if _counts(item):
                counted_before.add(item["key"])
    now = {case.key: case.passed for case in run.cases}
    counted_now = {case.key for case in run.cases if case.counts}
    common = sorted(set(before) & set(now))
    newly_failing = tuple(
        key for key in common if before[key] and not now[key] and key in counted_now
    )
    rate_before = _ratio(before[k] for k in common if k in counted_before) or 0.0
    rate_now = _ratio(now[k] for k in common if k in counted_now) or 0.0
    return GateResult(
        baseline_pass_rate=rate_before,
        pass_rate=rate_now,
        threshold=threshold,
        newly_failing=newly_failing,
        compared=len(common),
    )
