"""Prometheus metrics, in a registry owned by the app (nothing global, nothing at import)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from skills.reload import ReloadStatus
from skills.runtime import RunFinished
from storage.scores import Score

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
_RUN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0)
_CLAIM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# People decide in minutes to hours; a request expires after its expires_in (default 4 h).
_APPROVAL_BUCKETS = (10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 86400.0)
_LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
_SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class Metrics:
    """The counters and histograms ``GET /metrics`` exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "switchboard_slack_requests",
            "Slack requests received, by type and outcome.",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.ack_latency = Histogram(
            "switchboard_slack_ack_seconds",
            "Time from receiving a Slack request to acknowledging it.",
            ["type"],
            buckets=_ACK_BUCKETS,
            registry=self.registry,
        )
        self.runs = Counter(
            "switchboard_runs",
            "Skill runs, by skill and outcome.",
            ["skill", "outcome"],
            registry=self.registry,
        )
        self.run_latency = Histogram(
            "switchboard_run_seconds",
            "Time from a message to the bot's answer, by skill.",
            ["skill"],
            buckets=_RUN_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "switchboard_model_tokens",
            "Model tokens used, by skill and direction (input/output).",
            ["skill", "direction"],
            registry=self.registry,
        )
        self.cost = Counter(
            "switchboard_model_cost_usd",
            "What runs' model tokens cost, in US dollars by the price table "
            "(SWITCHBOARD_MODEL_PRICES), by skill.",
            ["skill"],
            registry=self.registry,
        )
        self.unpriced_runs = Counter(
            "switchboard_model_unpriced_runs",
            "Runs that used a model the price table has no price for (cost unknown), by skill.",
            ["skill"],
            registry=self.registry,
        )
        self.approval_wait = Histogram(
            "switchboard_approval_wait_seconds",
            "Time from an approval request to its decision, by skill and decision "
            "(approved, rejected, expired).",
            ["skill", "decision"],
            buckets=_APPROVAL_BUCKETS,
            registry=self.registry,
        )
        self.schedule_lateness = Histogram(
            "switchboard_schedule_lateness_seconds",
            "Time from a schedule's planned instant to its firing starting.",
            buckets=_LATENESS_BUCKETS,
            registry=self.registry,
        )
        self.slack_api_errors = Counter(
            "switchboard_slack_api_errors",
            "Slack Web API calls that failed after retries, by method and error.",
            ["method", "error"],
            registry=self.registry,
        )

        self.rate_limited = Counter(
            "switchboard_rate_limited",
            "Messages refused because a person or channel went over its rate limit.",
            registry=self.registry,
        )
        self.busy = Counter(
            "switchboard_busy_refusals",
            "Messages refused because the process had too much work in flight.",
            registry=self.registry,
        )
        self.skill_refusals = Counter(
            "switchboard_skill_refusals",
            "Runs refused by a skill's limits, by skill and reason (disabled, budget).",
            ["skill", "reason"],
            registry=self.registry,
        )

        # The run queue (names are a contract: the Helm chart's autoscaling reads them).
        self.queue_depth = Gauge(
            "switchboard_queue_depth",
            "Jobs waiting in the run queue and due, by queue.",
            ["queue"],
            registry=self.registry,
        )
        self.queue_oldest_age = Gauge(
            "switchboard_queue_oldest_age_seconds",
            "How long the oldest waiting job has waited, by queue.",
            ["queue"],
            registry=self.registry,
        )
        self.queue_scheduled = Gauge(
            "switchboard_queue_scheduled",
            "Jobs parked until later (a retry's backoff, an answer waiting out Slack's "
            "Retry-After), by queue; not in switchboard_queue_depth.",
            ["queue"],
            registry=self.registry,
        )
        self.runs_in_progress = Gauge(
            "switchboard_runs_in_progress",
            "Queue jobs this process is running now.",
            registry=self.registry,
        )
        self.scheduler_leader = Gauge(
            "switchboard_scheduler_leader",
            "1 while this process is the scheduler leader, else 0.",
            registry=self.registry,
        )
        self.claim_to_start = Histogram(
            "switchboard_queue_claim_to_start_seconds",
            "Time from enqueueing a job to a worker starting it.",
            buckets=_CLAIM_BUCKETS,
            registry=self.registry,
        )
        self.queue_retries = Counter(
            "switchboard_queue_retries",
            "Jobs put back in the queue: retried after a failure, handed back at shutdown, "
            "or taken from a stalled worker.",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "switchboard_queue_dead_letters",
            "Jobs that failed for good (no attempt left).",
            registry=self.registry,
        )
        self.busy_notices = Counter(
            "switchboard_queue_busy_notices",
            '"Busy, you\'re #N" notices posted for messages waiting past the patience.',
            registry=self.registry,
        )
        # Hot reload of skill specs (skills/reload.py).
        self.skill_reloads = Counter(
            "switchboard_skill_reloads",
            "Reloads of the skill specs after a file changed, by outcome (applied, partial, "
            "rejected: a file that does not validate keeps its previous version serving).",
            ["outcome"],
            registry=self.registry,
        )
        self.skill_spec_errors = Gauge(
            "switchboard_skill_spec_errors",
            "Spec problems (file:line field) in the skill folders as last loaded.",
            registry=self.registry,
        )

        # Online evaluation (skills/sampling.py, evals/online.py).
        self.online_samples = Counter(
            "switchboard_online_samples",
            "Production turns kept for online evaluation, by skill and reason (share: "
            "SWITCHBOARD_EVAL_SAMPLE; feedback: a 👎, always kept).",
            ["skill", "reason"],
            registry=self.registry,
        )
        self.online_scored = Counter(
            "switchboard_online_scored",
            "Sampled turns the judge graded, by skill and verdict (pass: every rubric "
            "passed; fail; error: the judge failed for good).",
            ["skill", "verdict"],
            registry=self.registry,
        )
        self.online_score = Histogram(
            "switchboard_online_score",
            "The judge's scores (0-1) of sampled turns, by skill and rubric.",
            ["skill", "rubric"],
            buckets=_SCORE_BUCKETS,
            registry=self.registry,
        )

    def observe_sample(self, skill: str, reason: str) -> None:
        """A turn sampler observer: count a turn kept for online evaluation."""
        self.online_samples.labels(skill=skill, reason=reason).inc()

    def observe_score(self, skill: str, verdict: str, scores: Sequence[Score]) -> None:
        """An online scorer observer: count the graded turn, and each rubric's score."""
        self.online_scored.labels(skill=skill, verdict=verdict).inc()
        for score in scores:
            self.online_score.labels(skill=skill, rubric=score.rubric).observe(score.score)

    def observe_reload(self, status: ReloadStatus) -> None:
        """A skill reloader observer: count the reload and how many spec problems remain."""
        if status.outcome != "loaded":
            self.skill_reloads.labels(outcome=status.outcome).inc()
        self.skill_spec_errors.set(len(status.issues))

    def observe_run(self, event: RunFinished) -> None:
        """A runtime observer: count the run and its tokens."""
        self.runs.labels(skill=event.skill, outcome=event.outcome).inc()
        self.tokens.labels(skill=event.skill, direction="input").inc(event.usage.input_tokens)
        self.tokens.labels(skill=event.skill, direction="output").inc(event.usage.output_tokens)
        if event.cost_usd is not None:
            self.cost.labels(skill=event.skill).inc(event.cost_usd)
        elif event.usage.input_tokens or event.usage.output_tokens:
            self.unpriced_runs.labels(skill=event.skill).inc()

    def observe_approval(self, *, skill: str, decision: str, seconds: float) -> None:
        """An approval request was decided (or expired) ``seconds`` after it was made."""
        self.approval_wait.labels(skill=skill, decision=decision).observe(max(0.0, seconds))

    def observe_lateness(self, seconds: float) -> None:
        """A schedule's firing started ``seconds`` after its planned instant."""
        self.schedule_lateness.observe(max(0.0, seconds))

    def observe_refusal(self, skill: str, reason: str) -> None:
        """A skill gate observer: count a run its limits refused."""
        self.skill_refusals.labels(skill=skill, reason=reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
