"""The one runtime API: run a skill on a thread, resume it with an approval decision.

The Slack bot, the scheduler, the console, the sandbox and the evaluations all call
:class:`Runtime`. It routes the message, checks access, takes the thread's lease (two
messages on one thread never run at once; the second waits and then sees the first's
answer in memory), runs the skill's LangGraph agent with the Redis checkpointer, records
the run, and returns a typed :class:`~skills.outcomes.Outcome`.

Authorization happens here, for the run's :class:`~skills.context.Principal`: which skills
it may use (the skill's ``access``, guests and external people refused unless the skill
opts in), and which conversations its tools may read (a
:class:`~skills.access.ConversationReader` over the caller's reader and membership port,
the only Slack reader a tool sees). Each skill has its own memory in a thread
(:meth:`ThreadRef.memory_id <skills.context.ThreadRef.memory_id>`), so naming another skill
never hands it what an earlier skill read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from langchain.agents.middleware import AgentMiddleware
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import InvalidUpdateError
from langgraph.types import Command, Interrupt

from skills import logcontext, tracing
from skills.access import ConversationReader
from skills.agents import (
    approval_policy_view,
    build_agent,
    interrupt_config,
    pii_middleware,
    skill_tools,
)
from skills.context import (
    AuditSink,
    ConversationAccess,
    ExecutionLedger,
    HttpPolicy,
    Principal,
    RunContext,
    SlackReader,
    ThreadRef,
)
from skills.errors import NothingToResume, RunFailed, ThreadBusy
from skills.limits import SkillGate
from skills.mcp import McpToolbox
from skills.models.masked import ensure_masked, unmasked
from skills.models.offline import SWITCH_HINT, OfflineChatModel, understands
from skills.outcomes import ApprovalPolicyView, ApprovalRequest, Decision, Outcome, Refusal, Reply
from skills.pii import mask_obj, mask_text
from skills.pricing import PriceTable
from skills.registry import Skill, SkillRegistry
from skills.router import Route, Router
from skills.sampling import SampledTurn, TurnSampler
from storage.checkpoint import reading_once
from storage.locks import RedisLocks
from storage.runs import ChannelDefaults, RunStore, ThreadOwner, ThreadSkills, Usage
from storage.transient import is_transient

log = logging.getLogger(f"switchboard.{__name__}")

ModelFactory = Callable[[str], BaseChatModel]
#: Receives the answer's text as the model produces it (for streaming to Slack).
TextSink = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Tunables with production defaults; the CLI fills them from settings."""

    default_model: str = "offline"
    router_model: str | None = None  # None: the default model routes
    fallback_models: tuple[str, ...] = ()
    model_call_limit: int = 12
    tool_call_limit: int = 20
    tool_result_max_chars: int = 24_000  # what the model sees of one tool result
    model_retries: int = 2
    retry_initial_delay: float = 0.5
    summarize_after_tokens: int = 6000
    summarize_keep_messages: int = 12
    thread_lease_ttl: timedelta = timedelta(seconds=30)
    thread_wait_timeout: float = 600.0
    max_concurrent_runs: int = 16
    http_policy: HttpPolicy = field(default_factory=HttpPolicy)
    pii_key: bytes = field(default_factory=lambda: uuid.uuid4().bytes + uuid.uuid4().bytes)
    prices: PriceTable = field(default_factory=PriceTable.defaults)  # SWITCHBOARD_MODEL_PRICES


@dataclass(frozen=True, slots=True)
class RunFinished:
    """What observers (metrics) learn about each finished run."""

    skill: str
    outcome: str  # reply | approval | refusal | error
    trigger: str
    seconds: float
    usage: Usage
    cost_usd: float | None = None  # None: a model without a price (SWITCHBOARD_MODEL_PRICES)


RunObserver = Callable[[RunFinished], None]


@dataclass(slots=True)
class _RunState:
    run_id: str
    skill: Skill
    model: str
    usage: UsageMetadataCallbackHandler
    started: float = field(default_factory=time.monotonic)
    started_at: datetime | None = None  # as recorded in the run's row


class _UsageHandler(UsageMetadataCallbackHandler):
    """Token usage of a run, collected inline: the stock handler is dispatched through a
    thread pool for every chain event (14 hand-offs per run), which costs more than it
    collects."""

    run_inline = True
    ignore_chain = True
    ignore_retriever = True
    ignore_agent = True


#: The result a tool call gets when its turn was stopped before the tool finished.
CANCELLED_TOOL_RESULT = "Cancelled: the turn was stopped before this tool finished."
#: The result given to a call that waited for approval while its skill was changed so that
#: the call is no longer gated (or the tool is gone): it is never run on a stale decision.
SKILL_CHANGED_TOOL_RESULT = (
    "Not run: the skill was changed while this call waited for approval, and the new "
    "version no longer offers it with an approval."
)


def _new_ref() -> str:
    return uuid.uuid4().hex[:10]


class Runtime:
    """Runs skills. Construct once per process; it is safe to share between tasks."""

    def __init__(
        self,
        *,
        registry: SkillRegistry,
        checkpointer: BaseCheckpointSaver[Any],
        locks: RedisLocks,
        runs: RunStore,
        threads: ThreadSkills,
        channels: ChannelDefaults,
        model_factory: ModelFactory,
        middleware_factory: Callable[[], list[AgentMiddleware[Any, Any, Any]]] | None = None,
        http: httpx.AsyncClient | None = None,
        config: RuntimeConfig | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        observers: list[RunObserver] | None = None,
        ledger: ExecutionLedger | None = None,
        audit: AuditSink | None = None,
        gate: SkillGate | None = None,
        mcp: McpToolbox | None = None,
        sampler: TurnSampler | None = None,
    ) -> None:
        self.registry = registry
        self._checkpointer = checkpointer
        self._locks = locks
        self._runs = runs
        self._threads = threads
        self.channels = channels
        self._model_factory = model_factory
        self._extra_middleware = middleware_factory or (lambda: [])
        self._http = http
        self.config = config or RuntimeConfig()
        self._clock = clock
        self.observers: list[RunObserver] = list(observers or [])
        self._ledger = ledger
        self._audit = audit
        self.gate = gate  # kill switches and daily budgets, checked before each new run
        # Online evaluation: offered every answered turn, keeps a share for the judge.
        self.sampler = sampler
        # The skills' MCP tool servers; open_services loads them at start (McpToolbox.load).
        self.mcp = mcp or McpToolbox(policy=self.config.http_policy)
        self._graphs: dict[tuple[str, str], Any] = {}
        self._models: dict[str, BaseChatModel] = {}
        self._slots = asyncio.Semaphore(self.config.max_concurrent_runs)
        self._pii = pii_middleware(self.config.pii_key)
        self.router = Router(
            registry=registry,
            threads=threads,
            channels=channels,
            router_model=lambda: self.model(self.config.router_model or self.config.default_model),
        )

    # -- public API ---------------------------------------------------------------------

    def available_skills(self, actor: Principal, channel: str | None) -> list[Skill]:
        return self.registry.available_to(actor, channel)

    def check_access(self, name: str, actor: Principal, channel: str | None) -> Refusal | None:
        """None when ``actor`` may use the skill ``name`` in ``channel``; otherwise the
        refusal (which names the skills they may use). The one access check: a run asks
        it, and so does every surface that wants to refuse before it starts one."""
        return self._check_access(name, actor, self.available_skills(actor, channel))

    def offline_note(self) -> str | None:
        """For people talking to the offline model (the default model is ``offline``):
        one line on what it does and how to switch to a real one; None otherwise."""
        if not isinstance(unmasked(self.model(self.config.default_model)), OfflineChatModel):
            return None
        return (
            "_I'm running on the built-in offline model: it runs these examples and tool "
            "commands and summarises conversations, but doesn't answer questions._ " + SWITCH_HINT
        )

    def examples(self, skill: Skill) -> tuple[str, ...]:
        """The examples of ``skill`` worth showing: all of them on a real model; on the
        offline model only those it actually does something with (a YAML agent's example
        that would get the canned reply is not shown). Python skills compute their answer
        in code, so their examples work on any model."""
        if skill.spec is None or not skill.examples:
            return tuple(skill.examples)
        if not isinstance(
            unmasked(self.model(skill.model or self.config.default_model)), OfflineChatModel
        ):
            return tuple(skill.examples)
        tools = [convert_to_openai_tool(tool) for tool in skill_tools(skill)]
        return tuple(example for example in skill.examples if understands(example, tools))

    async def run(
        self,
        *,
        thread: ThreadRef,
        message: str,
        actor: Principal,
        skill: str | None = None,
        slack: SlackReader | None = None,
        trigger: str = "message",
        on_text: TextSink | None = None,
        access: ConversationAccess | None = None,
    ) -> Outcome:
        """Answer ``message`` (see :meth:`_run`), as one ``invoke_agent`` trace span."""
        with tracing.agent_span(skill=skill, trigger=trigger, thread_id=thread.thread_id):
            return await self._run(
                thread=thread,
                message=message,
                actor=actor,
                skill=skill,
                slack=slack,
                trigger=trigger,
                on_text=on_text,
                access=access,
            )

    async def resume(
        self,
        *,
        thread: ThreadRef,
        decision: Decision,
        actor: Principal,
        slack: SlackReader | None = None,
        on_text: TextSink | None = None,
        approval_id: str | None = None,
        access: ConversationAccess | None = None,
    ) -> Outcome:
        """Continue a paused run (see :meth:`_resume`), as one trace span."""
        with tracing.agent_span(
            skill=None, trigger="approval", thread_id=thread.thread_id, operation="resume"
        ):
            return await self._resume(
                thread=thread,
                decision=decision,
                actor=actor,
                slack=slack,
                on_text=on_text,
                approval_id=approval_id,
                access=access,
            )

    async def _run(
        self,
        *,
        thread: ThreadRef,
        message: str,
        actor: Principal,
        skill: str | None = None,
        slack: SlackReader | None = None,
        trigger: str = "message",
        on_text: TextSink | None = None,
        access: ConversationAccess | None = None,
    ) -> Outcome:
        """Answer ``message`` from ``actor`` on ``thread``; ``skill`` forces a skill.

        Tools read Slack through ``slack`` as ``actor``: the thread's own conversation,
        and others ``access`` says ``actor`` is a member of (without ``access``: a reader
        that is its own membership port, else only the thread's conversation).

        With ``on_text``, the answer's text is also passed on as it is generated; the
        returned :class:`Reply` still carries the whole, masked text.
        """
        allowed = self.available_skills(actor, thread.channel)
        if skill is not None:
            route = Route(skill=skill, text=message, reason="explicit")
        else:
            route = await self.router.route(
                thread_id=thread.thread_id, channel=thread.channel, text=message, candidates=allowed
            )
        refusal = self._check_access(route.skill, actor, allowed)
        if refusal is not None:
            log.info(
                "refused skill=%s actor=%s channel=%s", route.skill, actor.user_id, thread.channel
            )
            return refusal
        chosen = self.registry.get(route.skill)
        if self.gate is not None:
            limited = await self.gate.check(chosen)
            if limited is not None:
                return limited
        async with self._thread_turn(thread):
            # A paused run belongs to the thread's owner (the skill that last ran); each
            # skill's memory is its own, so ask the owner's, whichever skill was named.
            record = await self._threads.owner(thread.thread_id)
            owner = record.skill if record else None
            holder = self._version_for(record, thread)
            # The version that answers: the one this thread already runs on, or for a new
            # conversation the stable one or - within its share - the canary. The skill
            # is taken once here; a hot reload later in the turn does not change it.
            if holder is not None and holder.name == chosen.name:
                chosen = holder
            else:
                chosen = self.registry.pick(chosen.name, thread.thread_id)
            holder = holder or chosen
            # A thread nobody answered in yet has no checkpoint, so nothing paused on it:
            # the graph's own read is the only one. Otherwise ``reading_once`` makes the
            # graph reuse this read.
            pending = await self._pending(holder, thread) if record is not None else None
            if pending is not None:
                return Refusal(
                    reason=(
                        f"This conversation is waiting for approval of `{pending.value['name']}`."
                        " Approve or reject it first."
                    ),
                    skill=holder.name,
                )
            # The thread stays with its skill; naming another skill hands the thread over,
            # so follow-ups and approval decisions reach the skill that last ran. ``owner``
            # was read under the lease, so the store is written only when it changes (no
            # claim that fails on the existing row and reads it a third time).
            if owner is None:
                await self._threads.claim(thread.thread_id, chosen.name, version=chosen.version)
            elif (route.reason == "explicit" and owner != chosen.name) or (
                owner == chosen.name and record is not None and record.version != chosen.version
            ):
                await self._threads.assign(thread.thread_id, chosen.name, version=chosen.version)
            payload: Any = (
                {"messages": [HumanMessage(mask_text(route.text))]}
                if chosen.graph_factory is not None
                else self._pii.prepare_input(route.text)
            )
            outcome = await self._invoke(
                chosen, thread, actor, payload, _Slack(slack, access), trigger, on_text
            )
        if self.sampler is not None and isinstance(outcome, Reply) and outcome.run_id:
            # Decided now, written in the background: never part of the turn's latency.
            self.sampler.offer(
                SampledTurn(
                    run_id=outcome.run_id,
                    skill=outcome.skill,
                    request=mask_text(route.text),
                    answer=outcome.text,
                )
            )
        return outcome

    async def _resume(
        self,
        *,
        thread: ThreadRef,
        decision: Decision,
        actor: Principal,
        slack: SlackReader | None = None,
        on_text: TextSink | None = None,
        approval_id: str | None = None,
        access: ConversationAccess | None = None,
    ) -> Outcome:
        """Continue a run paused on an approval with ``decision``, reading as ``actor``
        (the requester) exactly as :meth:`run` does.

        ``approval_id`` names the approval request behind the decision: an approved call
        then carries an Idempotency-Key derived from it and is recorded in the ledger.
        """
        found = self._version_for(await self._threads.owner(thread.thread_id), thread)
        if found is None:
            raise NothingToResume(thread.thread_id)
        chosen = found
        async with self._thread_turn(thread):
            pending = await self._pending(chosen, thread, decision.interrupt_id)
            if pending is None:
                raise NothingToResume(thread.thread_id)
            tool = str(pending.value["name"])
            if not self._gates(chosen, tool):
                return await self._abandon(chosen, thread, tool)
            answer = decision.to_hitl(tool)
            if tracing.current() is not None:
                tracing.approval_wait(
                    tool=str(pending.value["name"]),
                    since=await self._paused_at(chosen, thread),
                    decision=decision.type,
                    approver=decision.actor,
                )
            command: Command[Any] = Command(resume={pending.id: answer})
            approvals: dict[str, str] = {}
            if approval_id and decision.type != "reject":
                approvals[str(pending.value.get("tool_call_id", ""))] = approval_id
            return await self._invoke(
                chosen,
                thread,
                actor,
                command,
                _Slack(slack, access),
                "approval",
                on_text,
                approvals,
            )

    async def pending_approval(self, thread: ThreadRef) -> ApprovalRequest | None:
        """The approval this thread is waiting for, if any."""
        chosen = self._version_for(await self._threads.owner(thread.thread_id), thread)
        if chosen is None:
            return None
        pending = await self._pending(chosen, thread)
        if pending is None:
            return None
        return self._approval(chosen, thread, "", pending, requester="")

    async def thread_skill(self, thread: ThreadRef) -> str | None:
        """The skill a thread belongs to, or None when Switchboard never answered in it."""
        return await self._threads.get(thread.thread_id)

    async def reset(self, thread: ThreadRef) -> None:
        """Forget the thread: every skill's checkpoints and which skill owned it.

        This is the mechanism; who may reset a conversation (not while someone else's
        approval is pending) is :meth:`skills.approvals.ApprovalService.reset`'s call.
        """
        async with self._thread_turn(thread):
            # Checkpoints from before per-skill memory were kept under the bare thread id.
            for thread_id in [
                thread.thread_id,
                *(thread.memory_id(n) for n in self.registry.names()),
            ]:
                await self._checkpointer.adelete_thread(thread_id)
            await self._threads.forget(thread.thread_id)

    async def settle_cancelled(self, thread: ThreadRef) -> int:
        """After a turn was cancelled (Stop, an interrupting message): give every tool call
        the last AI message left without a result a synthetic "cancelled" result, so the
        conversation stays valid for providers, which refuse a history where a tool call
        is not followed by its result. A thread paused on an approval keeps its pending
        call. Returns how many results were added."""
        owner = await self._threads.get(thread.thread_id)
        if owner is None or owner not in self.registry:
            return 0
        skill = self.registry.get(owner)
        graph = self._graph(skill)
        config = self._config(skill, thread)
        async with self._thread_turn(thread):
            state = await graph.aget_state(config)
            if not state or not state.values or tuple(getattr(state, "interrupts", None) or ()):
                return 0
            messages = list(state.values.get("messages", []))
            answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
            last_ai = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
            calls = last_ai.tool_calls if last_ai is not None else []
            missing = [call for call in calls if call["id"] not in answered]
            if not missing:
                return 0
            results = [
                ToolMessage(
                    content=CANCELLED_TOOL_RESULT,
                    tool_call_id=str(call["id"]),
                    name=call["name"],
                    status="error",
                )
                for call in missing
            ]
            try:
                await graph.aupdate_state(config, {"messages": results}, as_node="tools")
            except (ValueError, KeyError) as exc:  # a Python graph without a tools node
                log.warning("cancelled tool calls of %s not settled: %s", skill.name, exc)
                return 0
        log.info("settled %d cancelled tool call(s)", len(results), extra={"skill": skill.name})
        return len(results)

    async def history(self, thread: ThreadRef) -> list[BaseMessage]:
        """The messages remembered for ``thread`` (masked), oldest first."""
        owner = self._version_for(await self._threads.owner(thread.thread_id), thread)
        if owner is None:
            return []
        graph = self._graph(owner)
        state = await graph.aget_state(self._config(owner, thread))
        return list(state.values.get("messages", [])) if state and state.values else []

    def model(self, name: str) -> BaseChatModel:
        """A cached chat model for ``name`` (``offline``, ``openai:gpt-4.1-mini``…), behind
        the mask whatever the factory returned: every model the runtime uses (agents,
        router, summarization, fallbacks, Python graphs) masks its input."""
        if name not in self._models:
            self._models[name] = ensure_masked(self._model_factory(name))
        return self._models[name]

    def forget_stale(self) -> None:
        """Drop built agents of definitions no longer in the registry (after a reload);
        a turn in flight keeps its own reference to the agent it runs on."""
        registry = self.registry
        live = {skill.key for name in registry.names() for skill in registry.versions(name)}
        self._graphs = {k: g for k, g in self._graphs.items() if k[0] in live}
        self.mcp.retain(live)

    # -- internals ----------------------------------------------------------------------

    def _check_access(self, name: str, actor: Principal, allowed: list[Skill]) -> Refusal | None:
        names = tuple(s.name for s in allowed)
        if name not in self.registry:
            return Refusal(reason=f"There is no skill named `{name}`.", allowed_skills=names)
        if name in names:
            return None
        if not self.registry.get(name).access.admits(actor):
            who = (
                "guest accounts"
                if actor.is_guest
                else "people from other organizations (Slack Connect)"
            )
            return Refusal(
                reason=f"`{name}` isn't available to {who}. A workspace admin can enable it.",
                allowed_skills=names,
                skill=name,
            )
        return Refusal(reason=f"You can't use `{name}` here.", allowed_skills=names, skill=name)

    def _version_for(self, record: ThreadOwner | None, thread: ThreadRef) -> Skill | None:
        """The version of its skill an existing thread runs on (None: no owner, or the
        owner is no longer offered)."""
        if record is None or record.skill not in self.registry:
            return None
        return self.registry.pick(
            record.skill, thread.thread_id, existing=True, version=record.version
        )

    def _thread_turn(self, thread: ThreadRef) -> Any:
        return _ThreadTurn(self, thread)

    def _config(
        self, skill: Skill, thread: ThreadRef, callbacks: list[Any] | None = None
    ) -> RunnableConfig:
        configurable = {
            "thread_id": thread.memory_id(skill.name),
            "memory_ttl_seconds": int(skill.memory_ttl.total_seconds()),
        }
        config = RunnableConfig(configurable=configurable, recursion_limit=80)
        if callbacks:
            config["callbacks"] = callbacks
        return config

    async def _paused_at(self, skill: Skill, thread: ThreadRef) -> datetime | None:
        """When the thread's run paused (its last checkpoint), for the approval wait span."""
        state = await self._graph(skill).aget_state(self._config(skill, thread))
        created = getattr(state, "created_at", None)
        return datetime.fromisoformat(created) if isinstance(created, str) else None

    def _gates(self, skill: Skill, tool: str) -> bool:
        """Whether ``skill`` as served now still pauses ``tool`` for approval. A hot reload
        may have removed the tool or its approval while a call waited: resuming the new
        graph would then run the call whatever the decision (or fail on a missing tool)."""
        if skill.spec is None:  # Python graphs pause on their own interrupts
            return True
        # An MCP tool counts by its spec, whatever its server's state right now: a server
        # that is down for a moment has not changed the skill.
        declared = any(
            server.model_name(ref.name) == tool and ref.approval_policy is not None
            for server in skill.spec.mcp
            for ref in server.tools
        )
        return declared or tool in interrupt_config(skill) or tool in self.mcp.interrupts(skill)

    async def _abandon(self, skill: Skill, thread: ThreadRef, tool: str) -> Refusal:
        """Close a call that waited for approval of a tool its skill no longer gates: it
        gets a "not run" result, so the conversation goes on without it (a version with no
        tools at all has no tools step; its memory of the thread is dropped instead)."""
        graph = self._graph(skill)
        config = self._config(skill, thread)
        state = await graph.aget_state(config)
        messages = list(state.values.get("messages", [])) if state and state.values else []
        answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
        last_ai = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
        results = [
            ToolMessage(
                content=SKILL_CHANGED_TOOL_RESULT,
                tool_call_id=str(call["id"]),
                name=call["name"],
                status="error",
            )
            for call in (last_ai.tool_calls if last_ai is not None else [])
            if call["id"] not in answered
        ]
        try:
            await graph.aupdate_state(config, {"messages": results}, as_node="tools")
        except (ValueError, KeyError, InvalidUpdateError) as exc:
            log.warning("forgetting %s's memory of %s: %s", skill.name, thread.thread_id, exc)
            await self._checkpointer.adelete_thread(thread.memory_id(skill.name))
        log.info("approval of %s abandoned: %s no longer gates it", tool, skill.label)
        return Refusal(
            reason=(
                f"`{skill.name}` was changed while this request waited for approval, and "
                f"`{tool}` is no longer offered with an approval. Nothing was run; ask again "
                "if it is still needed."
            ),
            skill=skill.name,
        )

    async def _pending(
        self, skill: Skill, thread: ThreadRef, interrupt_id: str | None = None
    ) -> Interrupt | None:
        graph = self._graph(skill)
        state = await graph.aget_state(self._config(skill, thread))
        interrupts: tuple[Interrupt, ...] = tuple(getattr(state, "interrupts", ()) or ())
        for item in interrupts:
            if interrupt_id is None or item.id == interrupt_id:
                return item
        return None

    async def _invoke(
        self,
        skill: Skill,
        thread: ThreadRef,
        actor: Principal,
        payload: Any,
        slack: _Slack,
        trigger: str,
        on_text: TextSink | None = None,
        approvals: Mapping[str, str] | None = None,
    ) -> Outcome:
        model_name = skill.model or self.config.default_model
        if await self.mcp.refresh(skill):  # first load, or a degraded server came back
            self._graphs = {k: g for k, g in self._graphs.items() if k[0] != skill.key}
        graph = self._graph(skill)
        run = _RunState(
            run_id=uuid.uuid4().hex,
            skill=skill,
            model=model_name,
            usage=_UsageHandler(),
        )
        with logcontext.bound(run_id=run.run_id, skill=skill.name):
            return await self._invoke_run(
                run, graph, thread, actor, payload, slack, trigger, on_text, approvals
            )

    async def _invoke_run(
        self,
        run: _RunState,
        graph: Any,
        thread: ThreadRef,
        actor: Principal,
        payload: Any,
        slack: _Slack,
        trigger: str,
        on_text: TextSink | None,
        approvals: Mapping[str, str] | None,
    ) -> Outcome:
        skill, model_name = run.skill, run.model
        tracing.name_turn(skill=skill.name, run_id=run.run_id, model=model_name, trigger=trigger)
        run.started_at = self._clock()
        await self._runs.start(
            run_id=run.run_id,
            skill=skill.name,
            thread_id=thread.thread_id,
            actor=actor.user_id,
            channel_id=thread.channel,
            model=model_name,
            trigger=trigger,
            started_at=run.started_at,
            skill_version=skill.version,
        )
        reader = slack.reader(
            principal=actor, thread=thread, audit=self._audit, skill=skill.name, run_id=run.run_id
        )
        context = RunContext(
            run_id=run.run_id,
            skill=skill.name,
            thread=thread,
            actor=actor,
            slack=reader,
            http=self._http,
            http_policy=self.config.http_policy,
            clock=self._clock,
            approvals=dict(approvals or {}),
            ledger=self._ledger,
        )
        config = self._config(skill, thread, callbacks=[run.usage])
        # Carried by every LangChain run of this turn (LangSmith shows them as metadata).
        config["metadata"] = {
            "skill": skill.name,
            "thread_id": thread.thread_id,
            "run_id": run.run_id,
        }
        try:
            async with self._slots:
                # Python graphs compose their answer in code: only agents stream.
                if on_text is None or skill.graph_factory is not None:
                    # Checkpoint when the run ends (or pauses for an approval), not after
                    # every step: a crash mid-run loses that run's steps, not the thread.
                    result = await graph.ainvoke(
                        payload, config, context=context, version="v2", durability="exit"
                    )
                    value, interrupts = result.value, tuple(result.interrupts or ())
                else:
                    value, interrupts = await _stream(graph, payload, config, context, on_text)
        except Exception as exc:
            ref = _new_ref()
            transient = is_transient(exc, bare_os_errors=False)
            if transient:  # a store blipped (e.g. the checkpoint write): not the skill's fault
                log.warning(
                    "run interrupted ref=%s skill=%s thread=%s: %s",
                    ref,
                    skill.name,
                    thread.thread_id,
                    exc,
                )
            else:
                log.exception(
                    "run failed ref=%s skill=%s thread=%s", ref, skill.name, thread.thread_id
                )
            await self._runs.finish(
                run.run_id,
                outcome="error",
                usage=_usage(run.usage),
                error=mask_text(f"{type(exc).__name__}: {exc}")[:2000],
                error_ref=ref,
                finished_at=self._clock(),
                cost_usd=self._cost(run),
                started_at=run.started_at,
            )
            self._notify(run, "error", trigger)
            if transient:
                # The turn left no checkpoint (durability="exit"): the caller may run it
                # again once the store is back (a queued turn is retried, not apologised for).
                raise
            raise RunFailed(ref, cause=type(exc).__name__) from exc

        outcome: Outcome
        if interrupts:
            outcome = self._approval(skill, thread, run.run_id, interrupts[0], actor.user_id)
        else:
            outcome = Reply(
                skill=skill.name,
                thread=thread,
                text=mask_text(_final_text(value)),
                run_id=run.run_id,
                refused_reads=reader.refused if reader is not None else (),
            )
        await self._runs.finish(
            run.run_id,
            outcome=outcome.kind,
            usage=_usage(run.usage),
            finished_at=self._clock(),
            cost_usd=self._cost(run),
            started_at=run.started_at,
        )
        self._notify(run, outcome.kind, trigger)
        return outcome

    def _notify(self, run: _RunState, outcome: str, trigger: str) -> None:
        event = RunFinished(
            skill=run.skill.name,
            outcome=outcome,
            trigger=trigger,
            seconds=time.monotonic() - run.started,
            usage=_usage(run.usage),
            cost_usd=self._cost(run),
        )
        for observer in self.observers:
            try:
                observer(event)
            except Exception:  # an observer must never fail a run
                log.exception("run observer failed")

    def _cost(self, run: _RunState) -> float | None:
        """The run's cost so far from the price table; None if a model has no price."""
        return self.config.prices.cost(run.usage.usage_metadata)

    def _approval(
        self, skill: Skill, thread: ThreadRef, run_id: str, item: Interrupt, requester: str
    ) -> ApprovalRequest:
        value: dict[str, Any] = dict(item.value)
        tool_name = str(value.get("name", ""))
        policy, schema = self._policy_for(skill, tool_name)
        return ApprovalRequest(
            skill=skill.name,
            thread=thread,
            run_id=run_id,
            interrupt_id=item.id,
            tool_call_id=str(value.get("tool_call_id", "")),
            tool=tool_name,
            args=mask_obj(dict(value.get("args") or {})),
            policy=policy,
            requester=requester,
            description=str(value.get("description", "")),
            parameters_schema=schema,
            after_untrusted=bool(value.get("after_untrusted", False)),
        )

    def _policy_for(
        self, skill: Skill, tool_name: str
    ) -> tuple[ApprovalPolicyView, dict[str, Any]]:
        return self.mcp.policy_view(skill, tool_name) or approval_policy_view(skill, tool_name)

    def _graph(self, skill: Skill) -> Any:
        model_name = skill.model or self.config.default_model
        key = (skill.key, model_name)
        if key not in self._graphs:
            self._graphs[key] = self._build(skill, model_name)
        return self._graphs[key]

    def _build(self, skill: Skill, model_name: str) -> Any:
        model = self.model(model_name)
        if skill.graph_factory is not None:
            return skill.graph_factory(model, self._checkpointer)
        return build_agent(
            skill,
            model=model,
            pii=self._pii,
            checkpointer=self._checkpointer,
            config=self.config,
            fallbacks=[self.model(name) for name in self.config.fallback_models],
            extra_middleware=self._extra_middleware(),
            mcp_tools=self.mcp.tools(skill),
            mcp_interrupts=self.mcp.interrupts(skill),
        )


@dataclass(frozen=True, slots=True)
class _Slack:
    """A caller's raw reader and membership port, until the run's reader is made."""

    source: SlackReader | None
    access: ConversationAccess | None

    def reader(
        self,
        *,
        principal: Principal,
        thread: ThreadRef,
        audit: AuditSink | None,
        skill: str,
        run_id: str,
    ) -> ConversationReader | None:
        if self.source is None:
            return None
        access = self.access
        if access is None and isinstance(self.source, ConversationAccess):
            access = self.source  # e.g. the static sample workspace knows its members
        return ConversationReader(
            source=self.source,
            principal=principal,
            current=thread.channel,
            access=access,
            audit=audit,
            skill=skill,
            run_id=run_id,
        )


class _ThreadTurn:
    """Holds the thread's lease for one turn; while it is held nobody else writes the
    thread's memory, so its checkpoint is read from the store once (``reading_once``: the
    pending-approval check and the graph share the read)."""

    def __init__(self, runtime: Runtime, thread: ThreadRef) -> None:
        self._runtime = runtime
        self._thread = thread
        self._cm: Any = None
        self._memo: contextlib.AbstractContextManager[None] | None = None

    async def __aenter__(self) -> None:
        cfg = self._runtime.config
        self._cm = self._runtime._locks.holding(
            f"thread:{self._thread.thread_id}",
            ttl=cfg.thread_lease_ttl,
            timeout=cfg.thread_wait_timeout,
        )
        try:
            await self._cm.__aenter__()
        except TimeoutError:
            raise ThreadBusy(self._thread.thread_id) from None
        self._memo = reading_once()
        self._memo.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._memo is not None:
                self._memo.__exit__(None, None, None)
        finally:
            await self._cm.__aexit__(*exc)


async def _stream(
    graph: Any, payload: Any, config: RunnableConfig, context: RunContext, on_text: TextSink
) -> tuple[Any, tuple[Interrupt, ...]]:
    """Run ``graph`` streaming the answer's tokens; returns the final state and interrupts."""
    value: Any = None
    async for mode, chunk in graph.astream(
        payload, config, context=context, stream_mode=["messages", "values"], durability="exit"
    ):
        if mode == "values":
            value = chunk
            continue
        message, metadata = chunk
        node = str(metadata.get("langgraph_node", ""))
        # Middleware nodes (e.g. summarisation) call models too; only the answer streams.
        if "Middleware" in node or not isinstance(message, AIMessageChunk):
            continue
        if message.tool_call_chunks:
            continue
        text = message.text
        if text:
            await on_text(str(text))
    state = await graph.aget_state(config)
    interrupts: tuple[Interrupt, ...] = tuple(getattr(state, "interrupts", ()) or ())
    return value, interrupts


def _usage(handler: UsageMetadataCallbackHandler) -> Usage:
    total = Usage()
    for meta in handler.usage_metadata.values():
        total = total + Usage(
            int(meta.get("input_tokens", 0)),
            int(meta.get("output_tokens", 0)),
            int(meta.get("total_tokens", 0)),
        )
    return total


def _final_text(value: Any) -> str:
    messages = value.get("messages", []) if isinstance(value, dict) else []
    for message in reversed(messages):
        if isinstance(message, AIMessage) and not message.tool_calls:
            return str(message.text).strip() or "(no answer)"
    return "(no answer)"
