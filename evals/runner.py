"""Runs datasets through the same `Runtime` the bot uses, one fresh thread per attempt.

For each dataset the runner builds a registry (built-in skills plus ``skills_dirs``, with
the dataset's access overrides), an HTTP client whose transport answers from the
dataset's recorded responses — nothing leaves the process, whatever URL a tool renders —
and a `Runtime` over the evaluation's own SQL database and Redis, with its clock fixed at
the dataset's ``now``. The runtime is built by the composition root's builder (a
:class:`RuntimeBuilder` handed in), so it is production's: the same approval ledger, audit
log, skill gate and fallback models. Each attempt gets a sample Slack workspace (plus the
case's messages), runs the case's earlier turns, then the case's message, and approves a
gated call only when the case says ``approve: true`` — through the approval service, as a
click on the card would: the request is stored, approvers the policy lists (never the
requester) vote until the quorum is met, and the run resumes with the ledger. The
thread's messages give the trajectory; the run records give tokens; `evals.scorers` and
the judge give the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from evals.cassette import REPLAY_BASE_URL, Cassette, CassetteTransport, cassette_path
from evals.dataset import Case, Dataset, HttpRoute, Script, SlackMessageSpec
from evals.judge import Judge, JudgeError
from evals.results import AttemptResult, CaseResult, EvalRun, estimate_cost
from evals.scorers import CallStatus, CheckResult, Observation, ToolCallRecord, score
from evals.simulator import (
    Exchange,
    ModelSimulator,
    ScriptedSimulator,
    Simulator,
    SimulatorError,
)
from evals.wiring import WIRING_MODEL, WIRING_ROUTER, PlayedChatModel, ScriptError, ScriptPlayer
from skills.approvals import ApprovalService
from skills.catalog import load_registry
from skills.context import Actor, HttpPolicy, ThreadRef
from skills.models import load_chat_model
from skills.outcomes import ApprovalRequest, Outcome, Refusal, Reply
from skills.pii import mask_text
from skills.registry import Access, Skill, SkillRegistry
from skills.runtime import ModelFactory, Runtime
from skills.sample import StaticSlackReader, WorkspaceChannel
from skills.spec import load_spec_file
from storage.keys import Keys
from storage.redis import create_redis
from storage.runs import RunStore
from storage.sql import create_engine, session_factory, upgrade

__all__ = [
    "ApprovalStalled",
    "CassetteOptions",
    "EvalRunner",
    "EvalRuntime",
    "EvalStores",
    "FixtureTransport",
    "HistoryPaused",
    "Mode",
    "RuntimeBuilder",
    "embedded_stores",
    "fixture_url",
]

log = logging.getLogger(f"switchboard.{__name__}")

MAX_APPROVALS = 5
"""How many approvals in a row an ``approve: true`` case may go through."""
FIXTURE_DOMAIN = "fixture.invalid"  # .invalid never resolves (RFC 2606)


@dataclass(frozen=True, slots=True)
class EvalStores:
    """Where evaluation runs keep their state: their own SQL database and Redis."""

    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys


class EvalRuntime(Protocol):
    """A runtime and the approval service over it (what a :class:`RuntimeBuilder` gives)."""

    @property
    def runtime(self) -> Runtime: ...

    @property
    def approvals(self) -> ApprovalService: ...


class RuntimeBuilder(Protocol):
    """Builds production's runtime over ``stores`` (the composition root's builder).

    ``config`` sets :class:`~skills.runtime.RuntimeConfig` fields the evaluation decides
    (its model, router, concurrency, fixture hosts, PII key); the rest is production's.
    """

    def __call__(
        self,
        *,
        stores: EvalStores,
        registry: SkillRegistry,
        http: httpx.AsyncClient,
        model_factory: ModelFactory,
        clock: Callable[[], datetime],
        **config: Any,
    ) -> EvalRuntime: ...


@contextlib.asynccontextmanager
async def embedded_stores(folder: Path | None = None) -> AsyncIterator[EvalStores]:
    """A throw-away SQLite database (in ``folder`` or a temporary one) and in-process Redis,
    so evaluations never write run records or checkpoints into a real deployment."""
    with tempfile.TemporaryDirectory(prefix="switchboard-eval-") as scratch:
        base = folder or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        url = f"sqlite+aiosqlite:///{base / 'eval.db'}"
        await upgrade(url)
        engine = create_engine(url)
        redis = create_redis(None)
        try:
            yield EvalStores(
                sessions=session_factory(engine),
                redis=redis,
                keys=Keys(prefix=f"sbeval-{uuid.uuid4().hex[:8]}"),
            )
        finally:
            await redis.aclose()
            await engine.dispose()


def fixture_url(variable: str) -> str:
    """The base URL a dataset's ``http`` variable is set to, e.g. ``CRM_URL`` →
    ``http://crm-url.fixture.invalid``."""
    return f"http://{variable.lower().replace('_', '-')}.{FIXTURE_DOMAIN}"


class FixtureTransport(httpx.AsyncBaseTransport):
    """Answers every request from recorded responses; anything else gets a 404.

    Requests never reach a network: this transport is the HTTP client's only way out.
    """

    def __init__(self, routes: Mapping[str, Sequence[HttpRoute]]) -> None:
        self._routes = {
            (host.lower(), route.method, route.path): route
            for host, items in routes.items()
            for route in items
        }
        self.requests: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host.lower()
        self.requests.append((request.method, str(request.url)))
        route = self._routes.get(
            (host, request.method, request.url.raw_path.split(b"?")[0].decode())
        )
        if route is None:
            return httpx.Response(
                404, json={"error": f"no fixture for {request.method} {request.url.path}"}
            )
        if route.json_body is not None:
            return httpx.Response(route.status, json=route.json_body, headers=route.headers)
        return httpx.Response(route.status, text=route.text or "", headers=route.headers)


AttemptHook = Callable[[CaseResult | None], None]
"""Called after every attempt (with the case's result once its last attempt is done)."""

Mode = Literal["quality", "wiring"]
"""*quality*: the skills' real models (and the judge) — the score that matters;
*wiring*: deterministic, no provider — scripts or a cassette play the models."""

REPLAY_ENV: Mapping[str, str] = {"OPENAI_BASE_URL": REPLAY_BASE_URL, "OPENAI_API_KEY": "replay"}
"""What replayed OpenAI-compatible models are configured with: nothing is ever sent there
(the cassette transport answers), so no key or server is needed."""


@dataclass(frozen=True, slots=True)
class CassetteOptions:
    """Record (quality mode, real provider) or replay (wiring mode) cassettes.

    ``folder``: where cassettes go (default ``cassettes/`` beside each dataset);
    ``http_models``: for recording, the deployment's chat models over an HTTP client
    (the composition root's factory, so recorded runs use production's settings).
    """

    action: Literal["record", "replay"]
    folder: Path | None = None
    http_models: Callable[[httpx.AsyncClient], ModelFactory] | None = None
    upstream: httpx.AsyncBaseTransport | None = None  # recording: the real network


@dataclass(slots=True)
class _Attempt:
    """One attempt's models and what they noticed (scripts, cassettes)."""

    factory: ModelFactory
    default_model: str
    router_model: str | None
    player: ScriptPlayer | None = None
    transport: CassetteTransport | None = None
    client: httpx.AsyncClient | None = None

    def load(self, script: Script | None, label: str) -> None:
        if self.player is not None:
            self.player.load(script, label=label)

    def checks(self) -> list[CheckResult]:
        """The ``script`` check (wiring scripts) or ``cassette`` check (record/replay)."""
        if self.player is not None:
            problems = self.player.finish()
            return [
                CheckResult(
                    "script",
                    "script played as written, model inputs masked",
                    not problems,
                    "; ".join(problems),
                )
            ]
        if self.transport is not None:
            problems = [*self.transport.misses, *self.transport.problems]
            return [
                CheckResult(
                    "cassette",
                    "model exchanges match the cassette, requests masked",
                    not problems,
                    "; ".join(problems),
                )
            ]
        return []

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


class EvalRunner:
    """Runs datasets; see the module docstring. One runner per evaluation."""

    def __init__(
        self,
        *,
        stores: EvalStores,
        runtimes: RuntimeBuilder,
        model_factory: ModelFactory,
        model: str = "offline",
        force_model: bool = False,
        router_model: str | None = None,
        judge: Judge | None = None,
        simulator: Simulator | None = None,
        mode: Mode = "quality",
        cassettes: CassetteOptions | None = None,
        repeat: int = 1,
        concurrency: int = 4,
        skills_dirs: Sequence[str | Path] = (),
        specs: Sequence[Path] = (),
        on_attempt: AttemptHook | None = None,
    ) -> None:
        if repeat < 1 or concurrency < 1:
            raise ValueError("repeat and concurrency must be at least 1")
        if cassettes is not None and (cassettes.action == "replay") != (mode == "wiring"):
            raise ValueError("cassettes are recorded in quality mode and replayed in wiring mode")
        if cassettes is not None and cassettes.action == "record" and cassettes.http_models is None:
            raise ValueError("recording needs http_models")
        self._stores = stores
        self._runtimes = runtimes
        self._model_factory = model_factory
        self._model = model
        self._force_model = force_model
        self._router_model = router_model
        self._judge = judge if mode == "quality" else None
        self._simulator = simulator
        self._mode: Mode = mode
        self._cassettes = cassettes
        self._repeat = repeat
        self._gate = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._skills_dirs = list(skills_dirs)
        # Spec files that replace the loaded skill of the same name (a new version compared
        # with the one served; its rollout share does not matter here), or add one.
        self._specs = list(specs)
        self._on_attempt = on_attempt or (lambda _result: None)
        self._open: dict[str, Cassette] = {}

    @property
    def source(self) -> str:
        """What played the models: ``model`` (quality), ``script`` or ``cassette`` (wiring)."""
        if self._mode == "quality":
            return "model"
        return "cassette" if self._cassettes is not None else "script"

    async def run(self, datasets: Sequence[Dataset]) -> EvalRun:
        """Every case of every dataset, ``repeat`` times; results in dataset order."""
        started = datetime.now(UTC)
        clock = time.perf_counter()
        results: list[CaseResult] = []
        for dataset in datasets:
            results.extend(await self._run_dataset(dataset))
        recorded = self._cassettes is not None and self._cassettes.action == "record"
        if recorded:
            for cassette in self._open.values():
                cassette.save(model=self._model)
        return EvalRun(
            started_at=started.isoformat(timespec="seconds"),
            model=self._model if self.source != "script" else WIRING_MODEL,
            judge_model=self._judge.model_name if self._judge is not None else None,
            repeat=self._repeat,
            cases=results,
            duration_s=time.perf_counter() - clock,
            mode=self._mode,
            source=self.source,
            cassettes=sorted(str(c.path) for c in self._open.values()),
        )

    # -- per dataset ----------------------------------------------------------------------

    async def _run_dataset(self, dataset: Dataset) -> list[CaseResult]:
        env = {**dataset.env, **{name: fixture_url(name) for name in dataset.http}}
        hosts = {httpx.URL(fixture_url(name)).host: routes for name, routes in dataset.http.items()}
        registry = self._registry(dataset, env)
        transport = FixtureTransport(hosts)
        cassette = self._cassette(dataset)
        async with httpx.AsyncClient(transport=transport, follow_redirects=False) as http:
            tasks = [
                self._run_case(registry, http, dataset, case, cassette) for case in dataset.cases
            ]
            return list(await asyncio.gather(*tasks))

    def _cassette(self, dataset: Dataset) -> Cassette | None:
        if self._cassettes is None:
            return None
        path = cassette_path(dataset.path, dataset.skill, self._cassettes.folder)
        if self._cassettes.action == "record":
            cassette = self._open.get(str(path)) or Cassette(path=path)
        else:
            cassette = self._open.get(str(path)) or Cassette.load(path)
        self._open[str(path)] = cassette
        return cassette

    def _registry(self, dataset: Dataset, env: Mapping[str, str]) -> SkillRegistry:
        loaded = load_registry(self._skills_dirs, env=env)
        for issue in loaded.issues:
            log.warning("eval %s: skill spec error: %s", dataset.name, issue)
        variants = {
            spec.name: Skill.from_spec(spec)
            for spec in (load_spec_file(path, env=env) for path in self._specs)
        }
        served = {skill.name: skill for skill in loaded.registry}
        skills: list[Skill] = []
        for skill in {**served, **variants}.values():
            override = dataset.access.get(skill.name)
            if override is not None:
                skill = replace(
                    skill,
                    access=Access(
                        channels=frozenset(override.channels),
                        users=frozenset(override.users),
                        usergroups=frozenset(override.usergroups),
                    ),
                )
            if self._force_model or self._mode == "wiring":
                skill = replace(skill, model=None)
            skills.append(skill)
        return SkillRegistry(skills)

    def _models(self, dataset: Dataset, case: Case, cassette: Cassette | None) -> _Attempt:
        """The models an attempt of ``case`` runs on, by mode and source."""
        key = f"{dataset.skill}/{case.id}"
        if self._mode == "wiring" and cassette is None:
            player = ScriptPlayer(case=key, default_route=dataset.expected_route(case))

            def played(name: str) -> BaseChatModel:
                return PlayedChatModel(player, name=name)

            return _Attempt(played, WIRING_MODEL, WIRING_ROUTER, player=player)
        if cassette is None:
            return _Attempt(self._model_factory, self._model, self._router_model)
        assert self._cassettes is not None
        if self._cassettes.action == "replay":
            transport = CassetteTransport(cassette, key, mode="replay")
            client = httpx.AsyncClient(transport=transport)

            def replayed(name: str) -> BaseChatModel:
                return load_chat_model(name, env=REPLAY_ENV, http_async_client=client)

            return _Attempt(
                replayed,
                cassette.model or self._model,
                None,
                transport=transport,
                client=client,
            )
        assert self._cassettes.http_models is not None
        upstream = self._cassettes.upstream or httpx.AsyncHTTPTransport()
        transport = CassetteTransport(cassette, key, mode="record", upstream=upstream)
        client = httpx.AsyncClient(transport=transport, timeout=120)
        return _Attempt(
            self._cassettes.http_models(client),
            self._model,
            self._router_model,
            transport=transport,
            client=client,
        )

    def _runtime(
        self,
        dataset: Dataset,
        registry: SkillRegistry,
        http: httpx.AsyncClient,
        models: _Attempt,
    ) -> EvalRuntime:
        hosts = tuple(httpx.URL(fixture_url(name)).host for name in dataset.http)
        now = dataset.now
        return self._runtimes(
            stores=self._stores,
            registry=registry,
            http=http,
            model_factory=models.factory,
            clock=lambda: now,
            default_model=models.default_model,
            router_model=models.router_model,
            max_concurrent_runs=self._concurrency,
            http_policy=HttpPolicy(allowed_hosts=hosts or (f"*.{FIXTURE_DOMAIN}",)),
            # Fixed per dataset: the PII tokens in prompts are then the same on every run,
            # which a cassette's replay needs. Evaluation stores are thrown away.
            pii_key=hashlib.sha256(f"switchboard-eval|{dataset.name}".encode()).digest(),
            # The evaluation owns retries: a failed model call is the case's finding.
            fallback_models=(),
        )

    # -- per case ------------------------------------------------------------------------

    async def _run_case(
        self,
        registry: SkillRegistry,
        http: httpx.AsyncClient,
        dataset: Dataset,
        case: Case,
        cassette: Cassette | None,
    ) -> CaseResult:
        attempts: list[AttemptResult] = []
        for index in range(self._repeat):
            async with self._gate:
                attempts.append(await self._attempt(registry, http, dataset, case, cassette, index))
            if len(attempts) < self._repeat:
                self._on_attempt(None)
        expected = case.expect.trajectory
        result = CaseResult(
            skill=dataset.skill,
            dataset=dataset.name,
            case_id=case.id,
            message=case.request,
            description=case.description,
            expected_route=dataset.expected_route(case),
            expected_trajectory=[c.describe() for c in expected.calls] if expected else [],
            trajectory_mode=expected.mode if expected else None,
            attempts=attempts,
            line=case.line,
            known_issue=case.known_issue,
            tags=list(case.tags),
            mode=f"{self._mode}:{self.source}",
        )
        self._on_attempt(result)
        return result

    async def _attempt(
        self,
        registry: SkillRegistry,
        http: httpx.AsyncClient,
        dataset: Dataset,
        case: Case,
        cassette: Cassette | None,
        index: int,
    ) -> AttemptResult:
        started = time.perf_counter()
        models = self._models(dataset, case, cassette)
        built = self._runtime(dataset, registry, http, models)
        try:
            observation, tokens, turns = await self._observe(built, models, dataset, case, index)
        except Exception as exc:  # one broken case must not stop the evaluation
            if not isinstance(exc, ScriptError | SimulatorError):
                log.exception("eval case %s/%s failed", dataset.skill, case.id)
            observation = Observation(
                outcome="error", route=None, answer="", error=f"{type(exc).__name__}: {exc}"
            )
            tokens = (0, 0, 0.0)
            turns = None
        finally:
            await models.close()
        latency_ms = (time.perf_counter() - started) * 1000
        checks = score(observation, case.expect, route=dataset.expected_route(case))
        checks.extend(models.checks())
        if case.simulated:
            checks.extend(_simulation_checks(case, turns))
        checks.append(await self._rubric(case, observation))
        passed = all(c.passed or c.skipped for c in checks)
        return AttemptResult(
            passed=passed,
            outcome=observation.outcome,
            route=observation.route,
            answer=observation.answer,
            calls=[{"name": c.name, "args": c.args, "status": c.status} for c in observation.calls],
            checks=checks,
            latency_ms=round(latency_ms, 2),
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            cost_usd=tokens[2],
            error=observation.error,
            turns=turns.count if turns is not None else None,
            conversation=turns.transcript if turns is not None else [],
        )

    async def _rubric(self, case: Case, observation: Observation) -> CheckResult:
        rubric = case.expect.rubric
        if rubric is None:
            return CheckResult("rubric", "rubric", True, "no rubric", skipped=True)
        if self._mode == "wiring":
            return CheckResult("rubric", "rubric", True, "wiring mode: not judged", skipped=True)
        if self._judge is None:
            return CheckResult("rubric", "rubric", True, "no judge model set", skipped=True)
        if observation.outcome == "error":
            return CheckResult("rubric", "rubric", False, "the run failed")
        try:
            verdict = await self._judge.grade(
                rubric=rubric,
                request=case.request,
                answer=observation.answer,
                trajectory="\n".join(c.describe() for c in observation.calls),
            )
        except JudgeError as exc:
            return CheckResult("rubric", "rubric", False, str(exc))
        threshold = case.expect.rubric_threshold
        return CheckResult(
            "rubric",
            f"rubric score ≥ {threshold:g}",
            verdict.score >= threshold,
            verdict.reason,
            score=verdict.score,
        )

    async def _observe(
        self, built: EvalRuntime, models: _Attempt, dataset: Dataset, case: Case, index: int
    ) -> tuple[Observation, tuple[int, int, float | None], _Conversation | None]:
        runtime = built.runtime
        reader = StaticSlackReader.sample(dataset.now)
        channel = case.channel or dataset.channel
        thread_ts = _seed_slack(reader, dataset, case, channel)
        actor = _actor(reader, case.actor or dataset.actor)
        # The team part keeps every attempt's thread apart, even when the case declares
        # the same Slack thread (same ts) as another attempt; it is derived, not random,
        # so prompts that quote the thread are the same on every run (cassettes).
        seed = f"{dataset.name}|{case.id}|{index}".encode()
        team = "EVAL" + hashlib.sha256(seed).hexdigest()[:10].upper()
        thread = ThreadRef(team=team, channel=channel, thread_ts=thread_ts)
        for number, turn in enumerate(case.history, start=1):
            who = _actor(reader, turn.user) if turn.user else actor
            models.load(turn.script, f"history[{number - 1}]")
            seeded = await runtime.run(
                thread=thread,
                message=turn.text,
                actor=who,
                slack=reader,
                skill=turn.skill or case.skill,
            )
            if isinstance(seeded, ApprovalRequest):
                raise HistoryPaused(turn.text)

        runs = RunStore(sessions=self._stores.sessions)
        runs_before = len(await runs.for_thread(thread.thread_id))
        messages_before = len(await runtime.history(thread))

        async def send(text: str, script: Script | None, label: str) -> Outcome:
            models.load(script, label)
            outcome = await runtime.run(
                thread=thread, message=text, actor=actor, slack=reader, skill=case.skill
            )
            approvals = 0
            while (
                isinstance(outcome, ApprovalRequest) and case.approve and approvals < MAX_APPROVALS
            ):
                approvals += 1
                outcome = await _approve(built.approvals, outcome, reader=reader, requester=actor)
            return outcome

        conversation: _Conversation | None = None
        if case.simulated:
            conversation = await self._converse(case, send, models)
            assert conversation.last is not None  # _converse raises when nothing was said
            outcome = conversation.last
        else:
            outcome = await send(case.message, case.script, "message")

        messages = (await runtime.history(thread))[messages_before:]
        records = (await runs.for_thread(thread.thread_id))[runs_before:]
        input_tokens = sum(r.input_tokens for r in records)
        output_tokens = sum(r.output_tokens for r in records)
        costs = [estimate_cost(r.model, r.input_tokens, r.output_tokens) for r in records]
        cost = None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)
        observation = _observation(outcome, messages)
        if conversation is not None:
            # Policy holds for every answer of the conversation, not only the last one.
            observation = replace(observation, answer="\n\n".join(conversation.answers))
        return observation, (input_tokens, output_tokens, cost), conversation

    def _simulator_for(self, models: _Attempt) -> Simulator:
        """Scripted moves (wiring scripts); else a model plays the person: the given
        simulator, or (recording, replaying, or none given) the run's model through the
        attempt's models, so a cassette holds the simulated person's turns too."""
        if models.player is not None:
            return ScriptedSimulator()
        if self._simulator is not None and models.transport is None:
            return self._simulator
        return ModelSimulator(
            model=models.factory(models.default_model), model_name=models.default_model
        )

    async def _converse(
        self,
        case: Case,
        send: Callable[[str, Script | None, str], Awaitable[Outcome]],
        models: _Attempt,
    ) -> _Conversation:
        simulator = self._simulator_for(models)
        exchanges: list[Exchange] = []
        conversation = _Conversation()
        while True:
            move = await simulator.next(case, exchanges)
            if move.done:
                conversation.goal_reached = move.goal_reached
                conversation.reason = move.reason
                break
            if len(exchanges) >= case.max_turns:
                conversation.reason = f"no verdict after {case.max_turns} message(s)"
                break
            assert move.message is not None
            outcome = await send(move.message, move.script, f"simulation turn {len(exchanges) + 1}")
            answer = _answer_text(outcome)
            exchanges.append(Exchange(user=move.message, assistant=answer))
            conversation.add(move.message, answer, outcome)
        if conversation.last is None:
            raise SimulatorError("the simulated user stopped before saying anything")
        return conversation


class HistoryPaused(Exception):
    """An earlier turn of a case paused for approval, so the case cannot go on."""

    def __init__(self, text: str) -> None:
        super().__init__(f"the history turn {text[:60]!r} paused for approval")


class ApprovalStalled(Exception):
    """An ``approve: true`` case's request could not be approved (why: a sentence)."""

    def __init__(self, tool: str, why: str) -> None:
        super().__init__(f"approving {tool} failed: {why}")


async def _approve(
    approvals: ApprovalService,
    request: ApprovalRequest,
    *,
    reader: StaticSlackReader,
    requester: Actor,
) -> Outcome:
    """Approve ``request`` as production does: store it, let distinct approvers the policy
    lists (never the requester) vote until the quorum is met, resume through the ledger."""
    thread = request.thread
    row = await approvals.open(request, channel=thread.channel, thread_ts=thread.thread_ts)
    why = "no approver the policy lists is in the workspace"
    for approver in _approvers(reader, request):
        decided = await approvals.approve(row.id, _actor(reader, approver))
        if decided.kind == "recorded":
            continue
        if decided.kind != "approved":
            why = decided.message
            break
        done = await approvals.complete(decided.row, requester=requester, slack=reader)
        if done.outcome is None:
            raise ApprovalStalled(request.tool, "the run was no longer waiting")
        return done.outcome
    raise ApprovalStalled(request.tool, why)


# --------------------------------------------------------------------------- simulation


@dataclass(slots=True)
class _Conversation:
    """A simulated conversation as it went: messages, answers, the verdict."""

    transcript: list[dict[str, str]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    last: Outcome | None = None
    goal_reached: bool = False
    reason: str = ""

    @property
    def count(self) -> int:
        return len(self.answers)

    def add(self, user: str, answer: str, outcome: Outcome) -> None:
        self.transcript.append({"user": mask_text(user), "assistant": answer})
        self.answers.append(answer)
        self.last = outcome


def _answer_text(outcome: Outcome) -> str:
    if isinstance(outcome, Reply):
        return outcome.text
    if isinstance(outcome, ApprovalRequest):
        args = json.dumps(outcome.args, sort_keys=True, ensure_ascii=False, default=str)
        return f"approval requested: {outcome.tool} {args}"
    assert isinstance(outcome, Refusal)
    return outcome.reason


def _simulation_checks(case: Case, conversation: _Conversation | None) -> list[CheckResult]:
    """Goal reached (as the simulated person judged it) within ``max_turns`` messages."""
    if conversation is None:
        return [CheckResult("goal", "goal reached", False, "the conversation did not run")]
    want = case.expect.goal_reached
    verdict = "reached" if conversation.goal_reached else "not reached"
    detail = f"{verdict} after {conversation.count} message(s)"
    if conversation.reason:
        detail += f": {conversation.reason}"
    return [
        CheckResult(
            "goal",
            "goal reached" if want else "goal not reached",
            conversation.goal_reached == want,
            detail,
        ),
        CheckResult(
            "turns",
            f"at most {case.max_turns} message(s)",
            conversation.count <= case.max_turns,
            f"{conversation.count} message(s)",
        ),
    ]


# --------------------------------------------------------------------------- helpers


def _ensure_channel(reader: StaticSlackReader, channel: str) -> None:
    if channel not in reader.workspace.channels:
        reader.add_channel(WorkspaceChannel(channel, channel.lower()))


def _seed_slack(reader: StaticSlackReader, dataset: Dataset, case: Case, channel: str) -> str:
    """Post the case's channel history and thread; returns the thread's ts to run in."""
    _ensure_channel(reader, channel)

    def post(item: SlackMessageSpec, thread_ts: str | None = None) -> str:
        where = item.channel or channel
        _ensure_channel(reader, where)
        at = dataset.now - timedelta(minutes=item.minutes_ago)
        return reader.add_message(where, item.user, item.text, at=at, thread_ts=thread_ts).ts

    for item in case.channel_history:
        post(item)
    if case.thread:
        root = post(case.thread[0].model_copy(update={"channel": channel}))
        for item in case.thread[1:]:
            post(item.model_copy(update={"channel": channel}), thread_ts=root)
        return root
    # No declared thread: a ts of its own, just after `now`, that no sample message uses.
    return f"{dataset.now.timestamp() + 1:.6f}"


def _actor(reader: StaticSlackReader, user_id: str) -> Actor:
    """The person as the workspace knows them: name, time zone, user groups."""
    workspace = reader.workspace
    user = workspace.users.get(user_id)
    groups = frozenset(g.id for g in workspace.usergroups.values() if user_id in g.members)
    return Actor(
        user_id=user_id,
        name=user.name if user else user_id,
        tz=(user.tz if user and user.tz else "UTC"),
        usergroups=groups,
        is_bot=bool(user and user.is_bot),
    )


def _approvers(reader: StaticSlackReader, request: ApprovalRequest) -> list[str]:
    """The people the policy lets approve, in its order, without the requester
    (four-eyes) or repeats."""
    candidates = list(request.policy.users)
    for group in request.policy.usergroups:
        found = reader.workspace.usergroups.get(group)
        candidates.extend(sorted(found.members) if found else ())
    return [u for u in dict.fromkeys(candidates) if u != request.requester]


def _observation(outcome: Outcome, messages: Sequence[BaseMessage]) -> Observation:
    pending = outcome if isinstance(outcome, ApprovalRequest) else None
    calls = tuple(_calls(messages, pending))
    if isinstance(outcome, Reply):
        return Observation("reply", outcome.skill, outcome.text, calls)
    if isinstance(outcome, ApprovalRequest):
        args = json.dumps(outcome.args, sort_keys=True, ensure_ascii=False, default=str)
        answer = f"approval requested: {outcome.tool} {args}"
        return Observation("approval", outcome.skill, answer, calls, approval_tool=outcome.tool)
    assert isinstance(outcome, Refusal)
    return Observation("refusal", outcome.skill, outcome.reason, calls)


def _calls(
    messages: Sequence[BaseMessage], pending: ApprovalRequest | None
) -> list[ToolCallRecord]:
    """The tool calls in ``messages``, in order, with what became of each."""
    results = {m.tool_call_id: m.status for m in messages if isinstance(m, ToolMessage)}
    records: list[ToolCallRecord] = []
    for message in messages:
        if not isinstance(message, AIMessage):
            continue
        for call in message.tool_calls:
            call_id = call.get("id") or ""
            status: CallStatus
            if call_id in results:
                status = "error" if results[call_id] == "error" else "ok"
            elif pending is not None and (
                call_id == pending.tool_call_id or call["name"] == pending.tool
            ):
                status = "gated"
            else:
                status = "pending"
            records.append(ToolCallRecord(call["name"], _masked(call.get("args") or {}), status))
    return records


def _masked(args: Mapping[str, Any]) -> dict[str, Any]:
    return {k: mask_text(v) if isinstance(v, str) else v for k, v in args.items()}
