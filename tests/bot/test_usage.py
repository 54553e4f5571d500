"""Cost on run records and metrics, ``/switchboard admin usage`` and ``switchboard usage``.

Through the signed app on both backends: runs of a scripted model whose usage is fixed
(590 input, 10 output tokens a call), priced by a price file at $2 / $10 per million
tokens, so each run costs exactly $0.00128. A model without a price leaves the cost
unknown (NULL, an "unpriced" count) instead of pretending it was free.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from sqlalchemy import select
from typer.testing import CliRunner

from skills.models import load_chat_model
from storage.models import Run
from storage.runs import Usage
from switchboard.cli import app as cli
from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel
from tests.fakes.openai_server import FakeOpenAIServer, Reply

RUN_COST = (590 * 2.0 + 10 * 10.0) / 1_000_000  # 0.00128


def priced_call() -> AIMessage:
    return AIMessage(
        content="Sure, here it is.",
        usage_metadata={"input_tokens": 590, "output_tokens": 10, "total_tokens": 600},
    )


def price_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  scripted: {input: 2.0, output: 10.0}\n")
    return path


async def usage_bot(make_bot: BotFactory, tmp_path: Path, *, priced: bool = True) -> BotEnv:
    model = ScriptedChatModel([], default=priced_call())
    prices = {"SWITCHBOARD_MODEL_PRICES": str(price_file(tmp_path))} if priced else {}
    return await make_bot(
        {"offline": model},
        SWITCHBOARD_ADMIN_USERGROUP="S0LEADS",  # U0CAROL is in it
        SWITCHBOARD_USER_RATE="off",
        **prices,
    )


async def three_runs(env: BotEnv) -> None:
    for user, channel in (("U0SAM", "C0GENERAL"), ("U0DEV", "C0GENERAL"), ("U0SAM", "C0PAYMENTS")):
        await env.mention("ask what is new?", user=user, channel=channel)
        await env.idle()


async def runs(env: BotEnv) -> list[Run]:
    async with env.services.sessions() as session:
        return list(await session.scalars(select(Run).order_by(Run.started_at)))


def sample(env: BotEnv, name: str, **labels: str) -> float | None:
    return env.bot.metrics.registry.get_sample_value(name, labels)


async def admin(env: BotEnv, text: str, user: str = "U0CAROL") -> str:
    response = await env.command(f"admin {text}", user=user)
    assert response.status_code == 200
    return str(response.json()["text"])


async def test_runs_record_their_cost_and_the_metric_counts_it(
    make_bot: BotFactory, tmp_path: Path
) -> None:
    env = await usage_bot(make_bot, tmp_path)
    await three_runs(env)

    rows = await runs(env)
    assert [r.outcome for r in rows] == ["reply"] * 3
    assert all(r.cost_usd == pytest.approx(RUN_COST) for r in rows)
    assert sample(env, "switchboard_model_cost_usd_total", skill="ask") == pytest.approx(
        3 * RUN_COST
    )
    assert sample(env, "switchboard_model_unpriced_runs_total", skill="ask") is None
    metrics = (await env.http.get("/metrics")).text
    assert 'switchboard_model_cost_usd_total{skill="ask"}' in metrics


async def test_admin_usage_is_a_table_by_skill_person_and_channel(
    make_bot: BotFactory, tmp_path: Path
) -> None:
    env = await usage_bot(make_bot, tmp_path)
    await three_runs(env)
    # A run from ten days ago is outside the default week and inside --days 30.
    old = await env.services.runs.start(
        skill="ask",
        thread_id="T0FAKE:C0GENERAL:1.0",
        actor="U0DEV",
        channel_id="C0GENERAL",
        model="offline",
        trigger="message",
        started_at=datetime.now(UTC) - timedelta(days=10),
    )
    await env.services.runs.finish(old, outcome="reply", usage=Usage(1000, 0, 1000), cost_usd=0.5)

    text = await admin(env, "usage")
    assert text.startswith("*Usage in the last 7 days*")
    assert "3 runs · 1,770 in / 30 out tokens · $0.0038" in text
    assert "*By skill*\n• *ask* — 3 runs · 1,770 in / 30 out tokens · $0.0038" in text
    assert "• <@U0SAM> — 2 runs · 1,180 in / 20 out tokens · $0.0026" in text
    assert "• <@U0DEV> — 1 run · 590 in / 10 out tokens · $0.0013" in text
    assert "• <#C0GENERAL> — 2 runs" in text and "• <#C0PAYMENTS> — 1 run " in text
    assert "without a price" not in text
    # The by-person table comes most expensive first.
    assert text.index("<@U0SAM>") < text.index("<@U0DEV>")

    month = await admin(env, "usage --days 30")
    assert month.startswith("*Usage in the last 30 days*")
    assert "4 runs · 2,770 in / 30 out tokens · $0.50" in month
    assert month.index("<@U0DEV>") < month.index("<@U0SAM>")  # the old run cost $0.50
    assert (await admin(env, "usage --days=1")).startswith("*Usage in the last 1 day*")


@pytest.mark.parametrize("args", ["--days", "--days 0", "--days 400", "--days two", "--weeks 2"])
async def test_admin_usage_bad_arguments_get_the_usage_line(
    make_bot: BotFactory, tmp_path: Path, args: str
) -> None:
    env = await usage_bot(make_bot, tmp_path)
    text = await admin(env, f"usage {args}")
    assert text == (
        "Usage: `/switchboard admin usage [--days N]` — runs, tokens and cost by skill, "
        "person and channel"
    )


async def test_a_model_without_a_price_is_unknown_not_free(
    make_bot: BotFactory, tmp_path: Path
) -> None:
    env = await usage_bot(make_bot, tmp_path, priced=False)  # "scripted" has no default price
    await env.mention("ask what is new?")
    await env.idle()

    [row] = await runs(env)
    assert row.outcome == "reply" and row.input_tokens == 590 and row.cost_usd is None
    assert sample(env, "switchboard_model_unpriced_runs_total", skill="ask") == 1.0
    assert sample(env, "switchboard_model_cost_usd_total", skill="ask") is None
    text = await admin(env, "usage")
    assert "1 run · 590 in / 10 out tokens · cost unknown" in text and "$0.00" not in text
    assert "1 run used a model without a price" in text


async def test_cli_usage_table_and_json(
    make_bot: BotFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await usage_bot(make_bot, tmp_path)
    await three_runs(env)
    monkeypatch.setenv("DATABASE_URL", make_bot.database_url)
    monkeypatch.setenv("SWITCHBOARD_AUDIT_KEY", "test-audit-key-0123456789abcdef-0123")
    runner = CliRunner()

    result = await asyncio.to_thread(runner.invoke, cli, ["usage", "--by", "user", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["by"] == "user" and report["days"] == 7 and report["currency"] == "USD"
    by_user = {r["user"]: r for r in report["rows"]}
    assert by_user["U0SAM"]["runs"] == 2 and by_user["U0DEV"]["runs"] == 1
    assert by_user["U0SAM"]["cost_usd"] == pytest.approx(2 * RUN_COST)
    assert report["total"]["runs"] == 3 and report["total"]["unpriced_runs"] == 0
    assert report["total"]["cost_usd"] == pytest.approx(3 * RUN_COST)

    table = await asyncio.to_thread(runner.invoke, cli, ["usage", "--by", "channel"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].startswith("Usage in the last 7 days")
    assert lines[1].split() == [
        "CHANNEL", "RUNS", "FAILED", "INPUT", "TOKENS", "OUTPUT", "TOKENS", "COST", "(USD)",
        "UNPRICED",
    ]  # fmt: skip
    assert lines[2].split() == ["C0GENERAL", "2", "0", "1,180", "20", "0.0026", "0"]
    assert lines[-1].split() == ["TOTAL", "3", "0", "1,770", "30", "0.0038", "0"]

    bad = await asyncio.to_thread(runner.invoke, cli, ["usage", "--by", "team"])
    assert bad.exit_code == 2 and "--by" in bad.output
    bad_days = await asyncio.to_thread(runner.invoke, cli, ["usage", "--days", "0"])
    assert bad_days.exit_code == 2


async def test_a_real_provider_client_is_priced_from_the_default_table(
    make_bot: BotFactory,
) -> None:
    """The OpenAI client against a local OpenAI-compatible server: the usage it reports
    under the model name it reports is priced by the built-in list price of gpt-4.1-mini
    ($0.40 / $1.60 per million tokens)."""
    with FakeOpenAIServer(
        default=Reply(content="Noted.", prompt_tokens=1000, completion_tokens=200)
    ) as server:
        env_vars = {"OPENAI_BASE_URL": server.base_url}
        env = await make_bot(
            lambda _name: load_chat_model("openai:gpt-4.1-mini", env=env_vars),
            SWITCHBOARD_USER_RATE="off",
        )
        await env.mention("ask what is new?")
        await env.idle()
        assert server.requests, "the model was called"

    [row] = await runs(env)
    assert (row.outcome, row.input_tokens, row.output_tokens) == ("reply", 1000, 200)
    assert row.cost_usd == pytest.approx((1000 * 0.40 + 200 * 1.60) / 1_000_000)
    assert sample(env, "switchboard_model_cost_usd_total", skill="ask") == pytest.approx(
        row.cost_usd
    )
