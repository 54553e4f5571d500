"""An in-process OTLP/HTTP trace receiver: what a collector would get, decoded.

A small HTTP server on loopback that accepts ``POST /v1/traces`` with an
``ExportTraceServiceRequest`` (protobuf, as ``opentelemetry-exporter-otlp-proto-http``
sends it), decodes it with ``opentelemetry-proto`` and keeps every span, plus the raw
bodies (a test searches those for anything that must never leave, such as a card number).

    with OtlpReceiver() as receiver:
        ... OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url ...
        tree = receiver.tree()          # printable span tree
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from switchboard.local_server import LocalHandler, LocalServer

__all__ = ["OtlpReceiver", "ReceivedSpan"]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector saw it, attributes decoded to Python values."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: int
    service: str
    start: int
    end: int

    @classmethod
    def decode(cls, span: Span, service: str) -> ReceivedSpan:
        return cls(
            name=span.name,
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_id=span.parent_span_id.hex(),
            kind=span.kind,
            attributes={a.key: _value(a.value) for a in span.attributes},
            events=[(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in span.events],
            status_code=span.status.code,
            service=service,
            start=span.start_time_unix_nano,
            end=span.end_time_unix_nano,
        )


class _Handler(LocalHandler["OtlpReceiver"]):
    def do_POST(self) -> None:
        body = self.read_body()
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        request = ExportTraceServiceRequest.FromString(body)
        self.fake._store(body, request)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class OtlpReceiver(LocalServer):
    """The receiver; ``url`` is the value for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""

    handler = _Handler
    thread_name = "otlp-receiver"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.bodies: list[bytes] = []

    def _store(self, body: bytes, request: ExportTraceServiceRequest) -> None:
        spans: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            service = str(attributes.get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                spans.extend(ReceivedSpan.decode(s, service) for s in scope_spans.spans)
        with self._lock:
            self.bodies.append(body)
            self._spans.extend(spans)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def tree(self, trace_id: str | None = None) -> str:
        """The spans of one trace (the first received by default) as an indented tree."""
        spans = self.spans
        if not spans:
            return ""
        trace_id = trace_id or min(spans, key=lambda s: s.start).trace_id
        mine = sorted((s for s in spans if s.trace_id == trace_id), key=lambda s: s.start)
        ids = {s.span_id for s in mine}
        children: dict[str, list[ReceivedSpan]] = {}
        for span in mine:
            parent = span.parent_id if span.parent_id in ids else ""
            children.setdefault(parent, []).append(span)
        lines: list[str] = []

        def walk(parent: str, depth: int) -> None:
            for span in children.get(parent, []):
                millis = (span.end - span.start) / 1e6
                keys = (
                    "gen_ai.request.model",
                    "gen_ai.usage.input_tokens",
                    "gen_ai.usage.output_tokens",
                    "gen_ai.provider.name",
                )
                shown = {k: span.attributes[k] for k in keys if k in span.attributes}
                error = "  ERROR" if span.status_code == 2 else ""
                lines.append(
                    f"{'  ' * depth}{span.name}  {millis:.1f} ms{error}  {shown or ''}".rstrip()
                )
                walk(span.span_id, depth + 1)

        walk("", 0)
        return "\n".join(lines)
