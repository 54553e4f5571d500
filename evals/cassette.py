"""Cassettes: a real provider's HTTP exchanges, recorded per case and replayed offline.

``switchboard eval run --record`` runs the datasets on a real OpenAI-compatible model and
writes, per dataset, ``cassettes/<skill>.cassette.json`` beside the dataset file: for
every case, each chat-completions request the runtime sent (already masked) and the
provider's answer, byte for byte (JSON or server-sent events). ``--replay`` serves the
answers from the file through the same runtime, with no network: a request is answered
only when its body is the one recorded, so a changed prompt, tool, argument or model
misses the cassette, and the case fails naming itself, the request and the first
difference (:class:`CassetteMiss`).

Bodies are compared as canonical JSON. Everything that reaches a prompt in an evaluation
is fixed (the dataset's ``now``, its Slack workspace, its HTTP fixtures, the PII key the
runner derives for recording), so the same code sends the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import httpx

from skills.pii import find_pii

__all__ = [
    "CASSETTE_VERSION",
    "Cassette",
    "CassetteError",
    "CassetteMiss",
    "CassetteTransport",
    "cassette_path",
    "first_difference",
]

CASSETTE_VERSION: Final = 1
REPLAY_BASE_URL: Final = "http://cassette.invalid/v1"  # .invalid never resolves (RFC 2606)


class CassetteError(Exception):
    """A cassette file is missing or unreadable."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(f"{path}: {problem}")


class CassetteMiss(Exception):
    """A request the cassette has no recording for (the message names case and cause)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def cassette_path(dataset_file: Path | None, skill: str, folder: Path | None = None) -> Path:
    """Where a dataset's cassette lives: ``folder`` if given, else ``cassettes/`` beside
    the dataset file; named after the dataset (``refunds.eval.yaml`` →
    ``refunds.cassette.json``)."""
    stem = skill
    if dataset_file is not None:
        stem = dataset_file.name.split(".eval.", 1)[0]
    base = (
        folder
        if folder is not None
        else (dataset_file.parent / "cassettes" if dataset_file is not None else Path("cassettes"))
    )
    return base / f"{stem}.cassette.json"


def _canonical(body: Any) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _key(method: str, path: str, body: Any) -> str:
    return hashlib.sha256(f"{method} {path} {_canonical(body)}".encode()).hexdigest()


def first_difference(recorded: Any, sent: Any, path: str = "") -> str | None:
    """Where two JSON values first differ, as ``messages[0].content: 'a…' ≠ 'b…'``."""
    if type(recorded) is not type(sent):
        return f"{path or '(body)'}: {_short(recorded)} ≠ {_short(sent)}"
    if isinstance(recorded, dict):
        for key in sorted(set(recorded) | set(sent)):
            where = f"{path}.{key}" if path else str(key)
            if key not in recorded:
                return f"{where}: new in this request"
            if key not in sent:
                return f"{where}: no longer sent"
            found = first_difference(recorded[key], sent[key], where)
            if found:
                return found
        return None
    if isinstance(recorded, list):
        for index, (a, b) in enumerate(zip(recorded, sent, strict=False)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        if len(recorded) != len(sent):
            return f"{path}: {len(recorded)} item(s) recorded, {len(sent)} sent"
        return None
    if recorded != sent:
        if isinstance(recorded, str) and isinstance(sent, str):
            recorded, sent = _from_divergence(recorded, sent)
        return f"{path or '(body)'}: recorded {_short(recorded)}, sent {_short(sent)}"
    return None


def _from_divergence(a: str, b: str, context: int = 12) -> tuple[str, str]:
    """Both strings from a little before where they first differ (``…`` marks the cut)."""
    index = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    if index is None:
        index = min(len(a), len(b))
    start = max(0, index - context)
    cut = "…" if start else ""
    return cut + a[start:], cut + b[start:]


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 90 else text[:87] + "…"


@dataclass(slots=True)
class Exchange:
    """One recorded request and its answer."""

    key: str
    method: str
    path: str
    request: Any
    status: int
    content_type: str
    body: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "method": self.method,
            "path": self.path,
            "request": self.request,
            "status": self.status,
            "content_type": self.content_type,
            "body": self.body,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Exchange:
        return cls(
            key=str(data["key"]),
            method=str(data.get("method", "POST")),
            path=str(data["path"]),
            request=data.get("request"),
            status=int(data.get("status", 200)),
            content_type=str(data.get("content_type", "application/json")),
            body=str(data.get("body", "")),
        )


@dataclass(slots=True)
class Cassette:
    """A dataset's recordings: case key → its exchanges, in the order they happened."""

    path: Path
    model: str = ""
    recorded_at: str = ""
    cases: dict[str, list[Exchange]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, path: Path) -> Cassette:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CassetteError(
                path, "no cassette; record one with `switchboard eval run --record`"
            ) from None
        except (OSError, ValueError) as exc:
            raise CassetteError(path, f"cannot read ({exc})") from None
        if not isinstance(data, dict) or data.get("version") != CASSETTE_VERSION:
            raise CassetteError(path, f"not a version {CASSETTE_VERSION} cassette")
        try:
            cases = {
                str(key): [Exchange.from_json(item) for item in items]
                for key, items in (data.get("cases") or {}).items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise CassetteError(path, f"malformed exchange ({exc})") from None
        return cls(
            path=path,
            model=str(data.get("model", "")),
            recorded_at=str(data.get("recorded_at", "")),
            cases=cases,
        )

    def start_case(self, case: str) -> None:
        """Forget what an earlier recording of ``case`` held (recording starts it over)."""
        with self._lock:
            self.cases[case] = []

    def add(self, case: str, exchange: Exchange) -> None:
        with self._lock:
            self.cases.setdefault(case, []).append(exchange)

    def save(self, *, model: str) -> None:
        with self._lock:
            document = {
                "version": CASSETTE_VERSION,
                "model": model,
                "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "cases": {
                    key: [e.to_json() for e in items] for key, items in sorted(self.cases.items())
                },
            }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


class CassetteTransport(httpx.AsyncBaseTransport):
    """One attempt's model HTTP: recorded through ``upstream``, or replayed.

    Findings for the attempt's checks: ``misses`` (replay requests with no recording) and
    ``problems`` (personal data in a request body, which the runtime must have masked).
    """

    def __init__(
        self,
        cassette: Cassette,
        case: str,
        *,
        mode: Literal["record", "replay"],
        upstream: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if mode == "record" and upstream is None:
            raise ValueError("recording needs an upstream transport")
        self._cassette = cassette
        self._case = case
        self._mode = mode
        self._upstream = upstream
        self._sent = 0
        self._used: set[int] = set()
        self.misses: list[str] = []
        self.problems: list[str] = []
        if mode == "record":
            cassette.start_case(case)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raw = await request.aread()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = request.url.path
        self._sent += 1
        self._inspect(body)
        key = _key(request.method, path, body)
        if self._mode == "record":
            assert self._upstream is not None
            response = await self._upstream.handle_async_request(request)
            content = await response.aread()
            content_type = response.headers.get("content-type", "application/json")
            self._cassette.add(
                self._case,
                Exchange(
                    key=key,
                    method=request.method,
                    path=path,
                    request=body,
                    status=response.status_code,
                    content_type=content_type,
                    body=content.decode("utf-8"),
                ),
            )
            return httpx.Response(
                response.status_code, headers={"content-type": content_type}, content=content
            )
        return self._replay(request.method, path, body, key)

    def _inspect(self, body: Any) -> None:
        text = body if isinstance(body, str) else _canonical(body)
        found = find_pii(text)
        if found:
            kinds = ", ".join(sorted({m.kind for m in found}))
            problem = f"model request #{self._sent} carried unmasked personal data ({kinds})"
            self.problems.append(problem)

    def _replay(self, method: str, path: str, body: Any, key: str) -> httpx.Response:
        recorded = self._cassette.cases.get(self._case)
        where = self._cassette.path
        if recorded is None:
            message = (
                f"{self._case}: {where} has no recording of this case; record it with "
                "`switchboard eval run --record`"
            )
        else:
            for index, exchange in enumerate(recorded):
                if index not in self._used and exchange.key == key:
                    self._used.add(index)
                    return httpx.Response(
                        exchange.status,
                        headers={"content-type": exchange.content_type},
                        content=exchange.body.encode("utf-8"),
                    )
            position = self._sent - 1
            counterpart = recorded[position] if position < len(recorded) else None
            if counterpart is None:
                why = f"only {len(recorded)} model request(s) were recorded"
            else:
                why = (
                    first_difference(counterpart.request, body)
                    or "same body as a request already replayed"
                )
            message = (
                f"{self._case}: model request #{self._sent} is not in {where} "
                f"(the prompt, tools or model changed since it was recorded; {why}); "
                "re-record with `switchboard eval run --record`"
            )
        if message not in self.misses:
            self.misses.append(message)
        return httpx.Response(
            400,
            json={"error": {"message": message, "type": "cassette_miss", "code": None}},
        )
