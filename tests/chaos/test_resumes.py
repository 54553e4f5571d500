"""Approval resumes on the run queue survive a worker SIGKILL during the approved call, and
a worker that loses its job to the stalled-job sweeper (paused: no heartbeats) and then
wakes up posts nothing.

Each test prints what it counted (run with ``-s`` to see it)."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.views import approvals as cards
from bot.views.runs import WORKING_TEXT
from storage.runqueue import ensure_queue_schema, libpq_dsn
from storage.sql import upgrade
from tests.bot.conftest import TEAM, sign
from tests.chaos.harness import Deployment, receiver
from tests.conftest import TEST_REDIS_URL, _real_redis, _reset_postgres
from tests.fakes.openai_server import FakeOpenAIServer, RecordedRequest, Reply, echo
from tests.fakes.slack_api import FakeSlackApi

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(420)]

SKILL = """\
name: payout
description: Pay out an order after approval.
instructions: You pay out orders. Call pay_order, then say what happened.
tools:
  - name: pay_order
    description: Pay out an order.
    http:
      method: POST
      url: "${PAY_URL}/payouts"
      json: {order_id: "{order_id}"}
    parameters:
      order_id: {type: string, pattern: "^[0-9]+$"}
    approval:
      approvers: {users: [U0CAROL]}
      quorum: 1
      four_eyes: true
      expires_in: 1h
"""


class PaymentsApi:
    """A payments API that honours ``Idempotency-Key`` the way real ones do (one effect per
    key, the first result replayed), and blocks every call until the test releases it."""

    def __init__(self) -> None:
        self.requests: list[str] = []  # idempotency keys, one per request received
        self.effects: dict[str, str] = {}  # key -> payout id: what really happened
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                key = self.headers.get("idempotency-key") or f"none-{uuid.uuid4().hex}"
                with api._lock:
                    api.requests.append(key)
                    payout = api.effects.setdefault(key, f"po_{len(api.effects) + 1}")
                api.release.wait(120)
                body = json.dumps({"payout": payout, "status": "paid"}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the caller died while we were blocked

        return Handler

    def __enter__(self) -> PaymentsApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


def payout_model(request: RecordedRequest) -> Reply:
    """Asks to pay order 42; after the tool ran, says what the tool returned."""
    last = request.messages[-1] if request.messages else {}
    if last.get("role") == "tool":
        return Reply.text(f"Payout done: {last.get('content')}")
    if "pay_order" in request.tool_names:
        return Reply.tool("pay_order", order_id="42")
    return echo(request)


@dataclass
class ApprovalDeployment(Deployment):
    extra: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{**self.extra, **extra})


@pytest.fixture
def payments() -> Iterator[PaymentsApi]:
    with PaymentsApi() as api:
        yield api


@pytest.fixture
async def approvals_deployment(
    postgres_url: str,
    slack: FakeSlackApi,
    tmp_path: Path,
    payments: PaymentsApi,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[ApprovalDeployment]:
    await _reset_postgres(postgres_url)
    await upgrade(postgres_url)
    await ensure_queue_schema(libpq_dsn(postgres_url))
    redis = await _real_redis()
    await redis.aclose()
    slack.add_user("U0CAROL", "carol", real_name="Carol Pereira")
    slack.add_channel("C0PAY", "payments", members=["U0SAM", "U0CAROL"])
    skills = tmp_path / "skills"
    skills.mkdir()
    (skills / "payout.yaml").write_text(SKILL)
    monkeypatch.setenv("PAY_URL", payments.base_url)  # ${PAY_URL} in this process (receiver)
    with FakeOpenAIServer(default=payout_model) as model:
        deployment = ApprovalDeployment(
            database_url=postgres_url,
            redis_url=TEST_REDIS_URL,
            redis_prefix=f"chaos-{uuid.uuid4().hex[:8]}",
            slack=slack,
            model=model,
            tmp=tmp_path,
            extra={
                "PAY_URL": payments.base_url,
                "SWITCHBOARD_SKILLS_DIR": str(skills),
                "SWITCHBOARD_HTTP_ALLOWED_HOSTS": payments.base_url.removeprefix("http://"),
            },
        )
        try:
            yield deployment
        finally:
            deployment.stop_all()


async def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return False


def _card(slack: FakeSlackApi) -> tuple[str, str] | None:
    """(card ts, request id) of the approval card, once posted."""
    for call in slack.calls("chat.postMessage"):
        blocks = call.args.get("blocks") or []
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
        for block in blocks:
            for element in block.get("elements") or []:
                if element.get("action_id") == cards.APPROVE:
                    return str(call.response["ts"]), str(element["value"])
    return None


async def _click_approve(deployment: Deployment, request_id: str, card_ts: str) -> int:
    assert deployment.http is not None
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": "U0CAROL"},
        "channel": {"id": "C0PAY"},
        "message": {"ts": card_ts},
        "actions": [{"action_id": cards.APPROVE, "value": request_id, "type": "button"}],
        "trigger_id": "1.2.3",
    }
    body = urlencode({"payload": json.dumps(payload)})
    headers = {"content-type": "application/x-www-form-urlencoded", **sign(body)}
    response = await deployment.http.post("/slack/events", content=body, headers=headers)
    return response.status_code


async def test_sigkill_after_an_approval_during_the_tool_call_executes_once(
    approvals_deployment: ApprovalDeployment, payments: PaymentsApi
) -> None:
    """Worker A runs the approved call; the payments API holds it; A is SIGKILLed. Worker B
    re-claims the resume job (the sweeper, after A's heartbeats stop), resumes under the
    same claim, calls again with the same Idempotency-Key (the ledger's crash window), and
    posts the answer and the card's final state once."""
    deployment = approvals_deployment
    slack = deployment.slack
    async with receiver(deployment):
        a = deployment.start_worker("a", concurrency=8)
        status, root = await deployment.mention("payout order 42", channel="C0PAY")
        assert status == 200
        assert await wait_until(lambda: _card(slack) is not None, 60), a.output()[-3000:]
        card = _card(slack)
        assert card is not None
        card_ts, request_id = card
        assert await _click_approve(deployment, request_id, card_ts) == 200
        assert await wait_until(lambda: len(payments.requests) >= 1, 60), a.output()[-3000:]
        a.signal(signal.SIGKILL)
        a.wait(10)
        killed = len(slack.calls())
        killed_at = time.monotonic()
        b = deployment.start_worker("b", concurrency=8)
        retried = await wait_until(lambda: len(payments.requests) >= 2, 90)
        payments.release.set()

        def answers() -> list[dict[str, Any]]:
            return [
                m
                for m in slack.messages("C0PAY", root)
                if str(m.get("text", "")).startswith("Payout done")
            ]

        answered = await wait_until(lambda: len(answers()) >= 1, 60)
        took = time.monotonic() - killed_at
        await asyncio.sleep(3.0)  # a second answer or update would show up here
        after = slack.calls()[killed:]
        card_updates = [
            c for c in after if c.method == "chat.update" and c.args.get("ts") == card_ts
        ]
        final_posts = [
            c
            for c in after
            if c.method == "chat.postMessage"
            and str(c.args.get("text", "")).startswith("Payout done")
        ]
        placeholders = [m for m in slack.messages("C0PAY", root) if m.get("text") == WORKING_TEXT]
    print(
        f"\nSIGKILL during the approved call: requests to the API={len(payments.requests)} "
        f"(idempotency keys {len(set(payments.requests))}), payouts executed="
        f"{len(payments.effects)}; answers in the thread={len(answers())}; answer posts after "
        f"the kill={len(final_posts)}; card updates after the kill={len(card_updates)}; "
        f"answered {took:.1f} s after the kill"
    )
    assert retried, b.output()[-3000:]
    assert answered, b.output()[-3000:]
    assert len(payments.effects) == 1  # executed once
    assert len(set(payments.requests)) == 1  # the retry carried the same key
    assert len(answers()) == 1 and len(final_posts) == 1
    assert len(card_updates) == 1
    assert "✅" in str(card_updates[0].args.get("text", ""))
    assert not placeholders


async def test_a_paused_worker_that_lost_its_turn_posts_nothing_when_it_wakes(
    approvals_deployment: ApprovalDeployment,
) -> None:
    """Fencing: worker A takes a turn, posts its placeholder and is SIGSTOPped (no CPU, no
    heartbeats) while its model call is in flight. B's sweeper gives the job to B, which
    answers in the same placeholder. A is then SIGCONTed: its model answer arrives, its
    attempt is stale, and it posts and updates nothing."""
    deployment = approvals_deployment
    slack = deployment.slack
    deployment.model.latency = 4.0
    async with receiver(deployment):
        a = deployment.start_worker("a", concurrency=4)
        status, _ = await deployment.mention("ask are you there")
        assert status == 200
        assert await wait_until(lambda: len(deployment.model.requests) >= 1, 60)
        a.signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        b = deployment.start_worker("b", concurrency=4)
        answered = await wait_until(lambda: deployment.count().answered == 1, 90)
        took = time.monotonic() - stopped_at
        before_wake = len(slack.calls())
        a.signal(signal.SIGCONT)
        await asyncio.sleep(12.0)  # A's model call returns and its turn would render now
        shown = {"chat.postMessage", "chat.update"}
        from_a = [c for c in slack.calls()[before_wake:] if c.method in shown]
        counts = deployment.count()
        log_a = a.output()
    superseded = log_a.count("was re-claimed elsewhere")
    print(
        f"\nSIGSTOP past the heartbeat timeout, then SIGCONT: {counts}; answered by B "
        f"{took:.1f} s after the stop; posts/updates after A woke={len(from_a)}; "
        f"A's attempts fenced out={superseded}"
    )
    assert answered, b.output()[-3000:]
    assert counts.duplicates == 0 and counts.unanswered == 0 and counts.wrong == 0
    assert from_a == []
    assert superseded == 1, log_a[-3000:]
