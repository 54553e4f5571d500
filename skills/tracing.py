"""Traces: OpenTelemetry (one trace per turn, Slack request to Slack post) and LangSmith.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is
set; then :func:`setup_tracing`, called once at process start, exports over OTLP/HTTP
(protobuf) with the standard variables: ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_EXPORTER_OTLP_HEADERS`` … When
off, every helper here is a no-op that costs a function call.

The tree of a turn (GenAI semantic conventions where they exist)::

    slack.receive event_callback                 receiver (bot/http.py, bot/socket.py)
    ├── invoke_agent <skill>                     Runtime.run / resume: run id, trigger
    │   ├── chat <model>                         every model call: router, agent, summary
    │   │     gen_ai.operation.name, gen_ai.request.model, gen_ai.provider.name,
    │   │     gen_ai.usage.input_tokens / output_tokens, gen_ai.response.finish_reasons
    │   ├── execute_tool <tool>                  every tool call: gen_ai.tool.name, status
    │   └── approval_wait <tool>                 on resume: from the pause to the decision
    └── slack chat.postMessage                   every Web API call (bot/slack/client.py)

The agent's work runs in a task started while the receiver span is current, so its spans
join the receiver's trace (context propagates with the task). :func:`inject` and
:func:`extract` carry the same context as a W3C ``traceparent`` through a durable queue.

**LangSmith** is opt-in through its own variables (``LANGSMITH_TRACING=true``, …):
:func:`setup_langsmith` gives LangChain's tracer a client whose ``hide_inputs`` /
``hide_outputs`` hooks mask every run before it is sent; each run carries the skill, the
thread and Switchboard's run id as metadata (``Runtime`` puts them in the run config).
Run *errors* go through neither hook (the SDK routes them only through its
``anonymizer``); Switchboard's tool errors are tool results (outputs), so they are masked.

**Content.** Prompts, completions, tool arguments and results are recorded only with
``SWITCHBOARD_TRACE_CONTENT=true``, as span events, and then masked with the PII rules
(``skills.pii.mask_text``): card numbers, IBANs, e-mails and phones never leave. Errors are
always recorded by type with a masked message and stack (never the SDK's automatic
``record_exception``, which would copy the raw text).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import logging
import traceback
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.outputs import LLMResult
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from skills.pii import mask_obj, mask_text

__all__ = [
    "Tracing",
    "agent_span",
    "approval_wait",
    "current",
    "extract",
    "inject",
    "install",
    "name_turn",
    "receive_span",
    "setup_langsmith",
    "setup_tracing",
    "slack_call_span",
    "uninstall",
    "wrap_receiver",
]

log = logging.getLogger(f"switchboard.{__name__}")

SCOPE: Final = "switchboard"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})


@dataclass(slots=True)
class Tracing:
    """The process's tracer provider and whether content (masked) is recorded."""

    provider: TracerProvider
    content: bool = False
    tracer: trace.Tracer = field(init=False)

    def __post_init__(self) -> None:
        self.tracer = self.provider.get_tracer(SCOPE)

    def flush(self, timeout_millis: int = 5000) -> bool:
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.provider.shutdown()


# The installed tracing (None: off). Set once at start-up by setup_tracing (or by a test
# through install/uninstall); nothing here runs at import.
_current: Tracing | None = None
_handler: ContextVar[BaseCallbackHandler | None] = ContextVar(
    "switchboard_otel_handler", default=None
)
_hook_registered = False


def current() -> Tracing | None:
    """The installed tracing, or None when traces are off."""
    return _current


def _sampler(env: Mapping[str, str]) -> Sampler:
    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    try:
        ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    except ValueError:
        ratio = 1.0
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        log.warning("OTEL_TRACES_SAMPLER=%s is not supported; using parentbased_always_on", name)
    return samplers.get(name, ParentBased(ALWAYS_ON))


def _resource(env: Mapping[str, str]) -> Resource:
    attributes: dict[str, str] = {}
    for pair in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = value.strip()
    attributes["service.name"] = env.get(
        "OTEL_SERVICE_NAME", attributes.get("service.name", "switchboard")
    )
    return Resource(attributes)


def traces_endpoint(env: Mapping[str, str]) -> str | None:
    """Where spans go (OTLP/HTTP), or None when tracing is off."""
    specific = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if specific:
        return specific
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return f"{base.rstrip('/')}/v1/traces" if base else None


def setup_tracing(
    env: Mapping[str, str], *, exporter: SpanExporter | None = None, set_global: bool = True
) -> Tracing | None:
    """Turn tracing on from the ``OTEL_*`` variables in ``env``; None (and nothing done)
    when no OTLP endpoint is set. Called once from the process's start-up; also makes the
    provider OpenTelemetry's global one so libraries' own spans join the same traces."""
    endpoint = traces_endpoint(env)
    if endpoint is None and exporter is None:
        return None
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint)
    provider = TracerProvider(resource=_resource(env), sampler=_sampler(env))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    tracing = Tracing(
        provider=provider,
        content=env.get("SWITCHBOARD_TRACE_CONTENT", "").strip().lower() in _TRUE,
    )
    install(tracing)
    if set_global:
        trace.set_tracer_provider(provider)
        atexit.register(provider.shutdown)
    log.info("tracing on: OTLP/HTTP to %s (content %s)", endpoint, tracing.content)
    return tracing


def install(tracing: Tracing) -> None:
    """Make ``tracing`` the one the helpers use (``setup_tracing`` does; tests too)."""
    global _current, _hook_registered
    if not _hook_registered:
        from langchain_core.tracers.context import register_configure_hook

        # While a turn runs, every LangChain run in it (router, agent, summary, tools)
        # gets the turn's handler, without threading callbacks through every call.
        register_configure_hook(_handler, inheritable=True)
        _hook_registered = True
    _current = tracing


def uninstall() -> None:
    """Turn the helpers off again (tests)."""
    global _current
    _current = None


# -- LangSmith -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-able stand-in for what LangChain hands LangSmith (messages, requests…)."""
    if hasattr(value, "model_dump"):
        try:
            return value.model_dump(mode="json")
        except (TypeError, ValueError):
            return repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return repr(value)


def _mask_run_data(data: dict[str, Any]) -> dict[str, Any]:
    """LangSmith's hide_inputs / hide_outputs hook: the run's data as plain JSON with every
    string masked (PII rules). Objects are flattened first - a message or a model request
    would otherwise be serialized after the hook, unmasked."""
    masked = mask_obj(json.loads(json.dumps(data, default=_plain, ensure_ascii=False)))
    return masked if isinstance(masked, dict) else {}


def setup_langsmith(env: Mapping[str, str]) -> Any | None:
    """With ``LANGSMITH_TRACING=true``, make LangChain's LangSmith tracer send through a
    client whose ``hide_inputs`` / ``hide_outputs`` hooks mask every run's inputs and
    outputs before they leave (LangChain itself turns tracing on from the same variable;
    ``LANGSMITH_API_KEY``, ``LANGSMITH_ENDPOINT`` and ``LANGSMITH_PROJECT`` as usual).
    Returns the client, or None when LangSmith is off. Called once at start-up."""
    switch = env.get("LANGSMITH_TRACING", env.get("LANGCHAIN_TRACING_V2", ""))
    if switch.strip().lower() not in _TRUE:
        return None
    from langsmith import Client, run_trees

    client = Client(
        api_url=env.get("LANGSMITH_ENDPOINT") or None,
        api_key=env.get("LANGSMITH_API_KEY") or None,
        hide_inputs=_mask_run_data,
        hide_outputs=_mask_run_data,
    )
    # The client LangChain's tracer uses when it is not given one (get_cached_client).
    run_trees.configure(client=client)
    log.info(
        "LangSmith tracing on (project %s), inputs and outputs masked",
        env.get("LANGSMITH_PROJECT", "default"),
    )
    return client


# -- propagation -------------------------------------------------------------------------


def inject() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``), for a queued job."""
    carrier: dict[str, str] = {}
    if _current is not None:
        propagate.inject(carrier)
    return carrier


@contextlib.contextmanager
def extract(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Continue the trace ``carrier`` (from :func:`inject`) while the block runs."""
    if _current is None or not carrier:
        yield
        return
    token = otel_context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)


# -- spans ---------------------------------------------------------------------------------


def _masked(value: Any) -> Any:
    return mask_text(value) if isinstance(value, str) else value


def record_error(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed with the exception's type and its masked message and stack."""
    message = mask_text(str(exc))[:2000]
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    span.set_attribute("error.type", type(exc).__name__)
    span.add_event(
        "exception",
        {
            "exception.type": type(exc).__name__,
            "exception.message": message,
            "exception.stacktrace": mask_text(
                "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            )[:8000],
        },
    )


@contextlib.contextmanager
def _span(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span | None]:
    tracing = _current
    if tracing is None:
        yield None
        return
    with tracing.tracer.start_as_current_span(
        name,
        kind=kind,
        attributes={k: _masked(v) for k, v in (attributes or {}).items() if v is not None},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            record_error(span, exc)
            raise


def receive_span(request_type: str, *, transport: str) -> contextlib.AbstractContextManager[Any]:
    """The receiver's span for one Slack request (HTTP or Socket Mode)."""
    return _span(
        f"slack.receive {request_type}",
        kind=SpanKind.SERVER,
        attributes={"slack.request_type": request_type, "slack.transport": transport},
    )


def slack_call_span(method: str) -> contextlib.AbstractContextManager[Any]:
    """A span for one Slack Web API call (``chat.postMessage``…)."""
    return _span(
        f"slack {method}",
        kind=SpanKind.CLIENT,
        attributes={"slack.method": method, "server.address": "slack.com"},
    )


@contextlib.contextmanager
def agent_span(
    *, skill: str | None, trigger: str, thread_id: str, operation: str = "run"
) -> Iterator[Span | None]:
    """The span of one turn (``Runtime.run`` / ``resume``): every LangChain model and tool
    call inside becomes its child through the turn's callback handler."""
    tracing = _current
    if tracing is None:
        yield None
        return
    with _span(
        f"invoke_agent {skill or 'router'}",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": skill,
            "switchboard.trigger": trigger,
            "switchboard.operation": operation,
            "switchboard.thread_id": thread_id,
        },
    ) as span:
        assert span is not None
        token = _handler.set(_OtelHandler(tracing, trace.set_span_in_context(span)))
        try:
            yield span
        finally:
            _handler.reset(token)


def name_turn(*, skill: str, run_id: str, model: str, trigger: str) -> None:
    """Name the current turn's span after the skill that runs (known after routing)."""
    if _current is None:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"invoke_agent {skill}")
        span.set_attribute("gen_ai.agent.name", skill)
        span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("switchboard.run_id", run_id)
        span.set_attribute("switchboard.trigger", trigger)


def set_attributes(span: Span | None, **attributes: Any) -> None:
    """Set (masked) attributes on ``span`` when tracing is on."""
    if span is None:
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key.replace("__", "."), _masked(value))


def wrap_receiver(listener: Any, *, transport: str) -> Any:
    """A Socket Mode request listener ``(client, request)`` that runs in a receive span."""

    async def traced(client: Any, request: Any) -> None:
        with receive_span(str(getattr(request, "type", "unknown")), transport=transport):
            await listener(client, request)

    return traced


def approval_wait(
    *, tool: str, since: datetime | None, decision: str, approver: str | None
) -> None:
    """A span from the pause for approval (``since``) to now, in the resuming turn."""
    tracing = _current
    if tracing is None or since is None:
        return
    start = int(since.timestamp() * 1e9)
    span = tracing.tracer.start_span(
        f"approval_wait {tool}",
        start_time=start,
        attributes={
            "gen_ai.tool.name": tool,
            "switchboard.approval.decision": decision,
            "switchboard.approval.approver": approver or "",
        },
    )
    span.end()


# -- LangChain runs as spans -----------------------------------------------------------------


def _provider(metadata: Mapping[str, Any], serialized: Mapping[str, Any]) -> str:
    provider = metadata.get("ls_provider")
    if isinstance(provider, str) and provider:
        return provider
    ident = serialized.get("id") if isinstance(serialized, Mapping) else None
    return str(ident[-1]) if isinstance(ident, list) and ident else "unknown"


def _messages_json(messages: list[BaseMessage]) -> str:
    return json.dumps(
        [{"role": m.type, "content": m.content} for m in messages], ensure_ascii=False, default=str
    )


class _OtelHandler(BaseCallbackHandler):
    """Turns the LangChain runs of one turn into child spans of its ``invoke_agent``."""

    run_inline = True  # called in the run's own task: no thread hand-off per event
    ignore_chain = True
    ignore_retriever = True  # (tool events count as "agent" events: not ignored)

    def __init__(self, tracing: Tracing, parent: otel_context.Context) -> None:
        self._tracing = tracing
        self._parent = parent
        self._spans: dict[UUID, Span] = {}

    def _start(self, run_id: UUID, name: str, kind: SpanKind, attributes: dict[str, Any]) -> Span:
        span = self._tracing.tracer.start_span(
            name,
            context=self._parent,
            kind=kind,
            attributes={k: _masked(v) for k, v in attributes.items() if v is not None},
        )
        self._spans[run_id] = span
        return span

    def _content(self, span: Span, event: str, key: str, text: str) -> None:
        if self._tracing.content:
            span.add_event(event, {key: mask_text(text)[:16000]})

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metadata = metadata or {}
        params = kwargs.get("invocation_params") or {}
        model = str(
            metadata.get("ls_model_name")
            or params.get("model")
            or params.get("model_name")
            or _provider(metadata, serialized)
        )
        span = self._start(
            run_id,
            f"chat {model}",
            SpanKind.CLIENT,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                "gen_ai.provider.name": _provider(metadata, serialized),
                "gen_ai.request.temperature": metadata.get("ls_temperature"),
                "switchboard.node": metadata.get("langgraph_node"),
            },
        )
        for batch in messages:
            self._content(
                span,
                "gen_ai.client.inference.input",
                "gen_ai.input.messages",
                _messages_json(batch),
            )

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._spans.pop(run_id, None)
        if span is None:
            return
        reasons: list[str] = []
        usage = {"input_tokens": 0, "output_tokens": 0}
        outputs: list[BaseMessage] = []
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                info = generation.generation_info or {}
                reason = info.get("finish_reason")
                if isinstance(message, BaseMessage):
                    outputs.append(message)
                    meta = getattr(message, "usage_metadata", None) or {}
                    for key in usage:
                        usage[key] += int(meta.get(key, 0) or 0)
                    reason = reason or message.response_metadata.get("finish_reason")
                    model = message.response_metadata.get("model_name")
                    if model:
                        span.set_attribute("gen_ai.response.model", str(model))
                if reason:
                    reasons.append(str(reason))
        span.set_attribute("gen_ai.usage.input_tokens", usage["input_tokens"])
        span.set_attribute("gen_ai.usage.output_tokens", usage["output_tokens"])
        if reasons:
            span.set_attribute("gen_ai.response.finish_reasons", reasons)
        if outputs:
            self._content(
                span,
                "gen_ai.client.inference.output",
                "gen_ai.output.messages",
                _messages_json(outputs),
            )
        span.end()

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._spans.pop(run_id, None)
        if span is not None:
            record_error(span, error)
            span.end()

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = str(serialized.get("name") or kwargs.get("name") or "tool")
        span = self._start(
            run_id,
            f"execute_tool {name}",
            SpanKind.INTERNAL,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": kwargs.get("tool_call_id"),
            },
        )
        self._content(span, "gen_ai.tool.input", "gen_ai.tool.call.arguments", input_str)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._spans.pop(run_id, None)
        if span is None:
            return
        if isinstance(output, ToolMessage):
            if output.tool_call_id:
                span.set_attribute("gen_ai.tool.call.id", output.tool_call_id)
            if output.status == "error":
                span.set_status(Status(StatusCode.ERROR, "tool error"))
                span.set_attribute("error.type", "tool_error")
            text = output.text if isinstance(output.content, list) else str(output.content)
        else:
            text = str(output)
        self._content(span, "gen_ai.tool.output", "gen_ai.tool.call.result", text)
        span.end()

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._spans.pop(run_id, None)
        if span is not None:
            record_error(span, error)
            span.end()
