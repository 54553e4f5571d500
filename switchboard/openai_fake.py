"""A local HTTP server that speaks OpenAI chat completions, for provider-path tests and
the benchmarks (bench/ never imports tests/, so it lives here beside :mod:`switchboard.testing`).

It answers `POST /v1/chat/completions` from a script, as JSON or, for `"stream": true`,
as server-sent events (`data: {...}` chunks then `data: [DONE]`), tool calls and usage
included, and records every request so tests can check what the model was sent:

    with FakeOpenAIServer([Reply.tool("lookup_order", order_id="42"), Reply.text("Paid.")]) as srv:
        model = load_chat_model("openai:gpt-4.1-mini", env={"OPENAI_BASE_URL": srv.base_url})
        ...
        assert srv.requests[1].messages[-1]["role"] == "tool"
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from switchboard.local_server import LocalHandler, LocalServer

__all__ = ["FakeOpenAIServer", "RecordedRequest", "Reply", "echo"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer: text, tool calls, or an HTTP error."""

    content: str = ""
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    status: int = 200
    error: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @classmethod
    def text(cls, content: str) -> Reply:
        return cls(content=content)

    @classmethod
    def tool(cls, name: str, /, **args: Any) -> Reply:
        return cls(tool_calls=((name, args),))

    @classmethod
    def fail(cls, status: int, message: str = "scripted failure") -> Reply:
        return cls(status=status, error=message)


ScriptItem = Reply | Callable[["RecordedRequest"], Reply]


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def tool_names(self) -> list[str]:
        return [tool["function"]["name"] for tool in self.body.get("tools") or []]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


class FakeOpenAIServer(LocalServer):
    """An OpenAI-compatible chat server on 127.0.0.1 with an ephemeral port.

    Use as a context manager (or `start()`/`stop()`). `base_url` ends in `/v1`, as
    `OPENAI_BASE_URL` does. A request beyond the script gets HTTP 500, so a test that
    calls the model more often than it planned fails loudly.
    """

    thread_name = "fake-openai"

    def __init__(
        self,
        replies: Iterable[ScriptItem] = (),
        *,
        model: str = "gpt-fake",
        latency: float = 0.0,
        default: ScriptItem | None = None,
    ) -> None:
        """``latency``: seconds every answer takes (the server answers requests in parallel,
        like a provider); ``default``: the reply once the script is used up (load tests)."""
        super().__init__()
        self.model = model
        self.latency = latency
        self.default = default
        self._script: list[ScriptItem] = list(replies)
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # ------------------------------------------------------------------ script

    def script(self, *replies: ScriptItem) -> None:
        """Append replies to the script."""
        with self._lock:
            self._script.extend(replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every chat-completions request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def _answer(self, request: RecordedRequest) -> tuple[int, Reply]:
        with self._lock:
            self._requests.append(request)
            number = len(self._requests)
            item = self._script[number - 1] if number <= len(self._script) else self.default
        if self.latency:
            time.sleep(self.latency)  # on this request's own server thread
        if item is None:
            return number, Reply.fail(500, f"no scripted reply left for request #{number}")
        return number, item(request) if callable(item) else item


class _Handler(LocalHandler["FakeOpenAIServer"]):
    protocol_version = "HTTP/1.0"  # close after each response: SSE ends at EOF

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            fake = self.fake
            self._json(200, {"object": "list", "data": [{"id": fake.model, "object": "model"}]})
        else:
            self._json(404, _error("not found", "invalid_request_error"))

    def do_POST(self) -> None:
        raw = self.read_body()
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, _error("not found", "invalid_request_error"))
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, _error("body is not JSON", "invalid_request_error"))
            return
        request = RecordedRequest(
            method="POST",
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        number, reply = self.fake._answer(request)
        if reply.status != 200:
            # openai's client honours retry-after-ms, which keeps retry tests fast.
            self._json(reply.status, _error(reply.error, "server_error"), {"retry-after-ms": "10"})
            return
        model = str(body.get("model") or self.fake.model)
        completion = _Completion(number, model, reply, body)
        if request.stream:
            self._sse(completion.chunks())
        else:
            self._json(200, completion.whole())

    def _json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self.send_json(status, payload, headers)

    def _sse(self, events: Iterable[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


FakeOpenAIServer.handler = _Handler


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class _Completion:
    """Renders one scripted reply as a chat completion, whole or as stream chunks."""

    def __init__(self, number: int, model: str, reply: Reply, body: dict[str, Any]) -> None:
        self.id = f"chatcmpl-fake-{number}"
        self.number = number
        self.model = model
        self.reply = reply
        self.body = body

    def _tool_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "id": f"call_fake_{self.number}_{index}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for index, (name, args) in enumerate(self.reply.tool_calls)
        ]

    def _usage(self) -> dict[str, int]:
        prompt = self.reply.prompt_tokens
        if prompt is None:
            prompt = len(json.dumps(self.body.get("messages") or [])) // 4
        completion = self.reply.completion_tokens
        if completion is None:
            completion = (len(self.reply.content) + len(json.dumps(self._tool_calls()))) // 4
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _finish_reason(self) -> str:
        return "tool_calls" if self.reply.tool_calls else "stop"

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": 1700000000, "model": self.model}

    def whole(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.reply.content or None}
        if self.reply.tool_calls:
            message["tool_calls"] = self._tool_calls()
        return {
            **self._envelope("chat.completion"),
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish_reason()}],
            "usage": self._usage(),
        }

    def chunks(self) -> Iterator[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **self._envelope("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        yield chunk({"role": "assistant", "content": ""})
        words = self.reply.content.split(" ")
        for index, word in enumerate(words):
            if word or index:
                yield chunk({"content": word if index == 0 else " " + word})
        for index, call in enumerate(self._tool_calls()):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            head = {"id": call["id"], "type": "function"}
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            **head,
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
            for part in (arguments[:half], arguments[half:]):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
        yield chunk({}, self._finish_reason())
        if (self.body.get("stream_options") or {}).get("include_usage"):
            yield {**self._envelope("chat.completion.chunk"), "choices": [], "usage": self._usage()}


def echo(request: RecordedRequest) -> Reply:
    """The model's answer names the question, so a test can match answers to messages."""
    user = [m for m in request.messages if m.get("role") == "user"]
    content = user[-1].get("content", "") if user else ""
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content)
    return Reply.text(f"answer to: {str(content).strip()[:80]}")
