"""Secrets: a value expanded from ``${ENV}`` never reaches the model, Slack, logs or storage.

A careless (or hostile) target echoes what it received: the API key the spec sends in the
JSON body, percent-encoded in a URL, JSON-escaped, in a success and in an error. The attack
runs through the whole app on both backends; the test then searches every place the text
could have gone: the model's requests, every Slack Web API call, the log records, the SQL
``runs`` rows and every Redis value (checkpoints included).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from storage.models import Run
from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget
from tests.security.conftest import requests_text, tool_results, write_skill

API_KEY = "sk_live_51Hx/9kQ+Zq8w7e6r5t4"

SKILL = """\
name: payouts
description: Schedule payouts with the payments provider.
instructions: Schedule payouts.
tools:
  - name: create_payout
    description: Create a payout.
    http:
      method: POST
      url: "${PSP_URL}/payouts"
      json: {amount: "{amount}", auth: {api_key: "${PSP_KEY}"}}
    parameters:
      amount: {type: number}
    approval: none
  - name: payout_status
    description: Status of a payout.
    http:
      method: GET
      url: "${PSP_URL}/payouts/{payout_id}"
      json: {credentials: "${PSP_KEY}"}
    parameters:
      payout_id: {type: string}
"""


@pytest.fixture
def psp() -> Iterator[HttpTarget]:
    with HttpTarget() as server:
        echoed = {
            "received": {"api_key": API_KEY},
            "debug": f"key={quote(API_KEY, safe='')}",
            "escaped": json.dumps(API_KEY)[1:-1],
        }
        server.route("POST", "/payouts", status=201, json=echoed)
        server.route("GET", "/payouts/po_1", status=403, text=f"key {API_KEY} may not read")
        yield server


async def attack(
    make_bot: BotFactory, psp: HttpTarget, tmp_path: Path
) -> tuple[BotEnv, ScriptedChatModel, str]:
    write_skill(tmp_path / "skills", SKILL)
    model = ScriptedChatModel(
        [
            tool_call("create_payout", amount=120),
            tool_call("payout_status", payout_id="po_1"),
            # the model repeats whatever the tools gave it, which is what a leak looks like
            lambda messages: reply(" | ".join(str(m.content) for m in messages[-2:])),
        ]
    )
    env = await make_bot(
        {"offline": model},
        skills_env={"PSP_URL": psp.base_url, "PSP_KEY": API_KEY},
        SWITCHBOARD_SKILLS_DIR=str(tmp_path / "skills"),
        SWITCHBOARD_HTTP_ALLOWED_HOSTS=psp.base_url.removeprefix("http://"),
    )
    _, ts = await env.mention("payouts pay out 120", channel="C0GENERAL")
    await env.idle()
    return env, model, ts


def forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), json.dumps(secret)[1:-1]]


async def redis_values(env: BotEnv) -> bytes:
    redis = env.services.redis
    out = []
    async for key in redis.scan_iter(match=f"{env.services.keys.prefix}:*"):
        kind = await redis.type(key)
        if kind == b"string":
            out.append(await redis.get(key) or b"")
        elif kind == b"hash":
            out.extend(v for pair in (await redis.hgetall(key)).items() for v in pair)
        elif kind == b"zset":
            out.extend(await redis.zrange(key, 0, -1))
    return b"\n".join(out)


async def test_secrets_echoed_from_json_bodies_are_scrubbed_everywhere(
    make_bot: BotFactory, psp: HttpTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        env, model, ts = await attack(make_bot, psp, tmp_path)

    # The target did get the key: the spec sends it, only never back out.
    assert [r.json()["auth"]["api_key"] for r in psp.requests if r.method == "POST"] == [API_KEY]
    created, status = tool_results(model)
    assert created.status == "success"
    assert json.loads(created.text) == {
        "received": {"api_key": "[redacted]"},
        "debug": "key=[redacted]",
        "escaped": "[redacted]",
    }
    assert status.status == "error"
    assert status.text == "HTTP 403 Forbidden from 127.0.0.1: key [redacted] may not read"

    async with env.services.sessions() as session:
        runs = (await session.execute(select(Run))).scalars().all()
    places = {
        "model requests": requests_text(model),
        "Slack": "\n".join(str(call) for call in env.slack.calls()),
        "logs": "\n".join(r.getMessage() for r in caplog.records),
        "SQL runs": "\n".join(f"{r.error} {r.outcome}" for r in runs),
        "Redis": (await redis_values(env)).decode("utf-8", "replace"),
    }
    for where, text in places.items():
        for form in forms(API_KEY):
            assert form not in text, f"the API key reached {where} as {form!r}"
    assert "[redacted]" in env.replies("C0GENERAL", ts)[-1]["text"]
