"""The model price table: how names match, what a file may say, and unknown ≠ free."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skills.pricing import DEFAULT_PRICES, ModelPrice, PriceError, PriceTable
from switchboard.settings import ConfigError, Settings


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4.1-mini", "gpt-4.1-mini"),
        ("openai:gpt-4.1-mini", "gpt-4.1-mini"),  # a SWITCHBOARD_MODEL string
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),  # what the API reports back
        ("GPT-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longer key, not gpt-4o
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic:claude-haiku-4-5", "claude-haiku-4-5"),
        ("gemini-2.5-flash-001", "gemini-2.5-flash"),
        ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ("offline", "offline"),
    ],
)
def test_known_names_match_their_price(name: str, expected: str) -> None:
    assert PriceTable.defaults().price(name) == DEFAULT_PRICES[expected]


@pytest.mark.parametrize(
    "name",
    ["gpt-4.1-turbo", "gpt-4", "llama3", "ollama:llama3:8b", "scripted", "gpt-4o-audio-preview"],
)
def test_unknown_names_have_no_price(name: str) -> None:
    assert PriceTable.defaults().price(name) is None


def test_cost_per_million_and_unknown_is_none_not_zero() -> None:
    table = PriceTable({"gpt-4.1-mini": ModelPrice(0.40, 1.60)})
    usage = {"gpt-4.1-mini-2025-04-14": {"input_tokens": 1_000_000, "output_tokens": 500_000}}
    assert table.cost(usage) == pytest.approx(0.40 + 0.80)
    assert table.cost({}) == 0.0  # no model call costs nothing
    both = {**usage, "my-llm": {"input_tokens": 10, "output_tokens": 1}}
    assert table.cost(both) is None  # one unpriced model makes the whole cost unknown
    assert table.cost({"my-llm": {"input_tokens": 0, "output_tokens": 0}}) == 0.0


def test_a_file_adds_to_the_defaults_with_wildcards(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "models:\n"
        "  gpt-4.1-mini: {input: 0.30, output: 1.20}   # our negotiated price\n"
        "  my-vllm-*: {input: 0, output: 0}\n"
    )
    table = PriceTable.load(path)
    assert table.price("gpt-4.1-mini") == ModelPrice(0.30, 1.20)
    assert table.price("my-vllm-llama-70b") == ModelPrice(0.0, 0.0)
    assert table.price("gpt-4o") == DEFAULT_PRICES["gpt-4o"]  # defaults stay


def test_a_json_file_can_replace_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"defaults": False, "models": {"x": {"input": 1, "output": 2}}}))
    table = PriceTable.load(path)
    assert table.price("x") == ModelPrice(1.0, 2.0)
    assert table.price("gpt-4o") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [a, b]", "models: expected a mapping"),
        ("models:\n  m: {input: -1, output: 1}", "models.m.input: expected a number ≥ 0"),
        ("models:\n  m: {input: 1}", "models.m.output: expected a number ≥ 0"),
        ("models:\n  m: {input: 1, output: 1, cached: 0.1}", "models.m: expected {input"),
        ("models:\n  m: {input: yes, output: 1}", "models.m.input"),
        ("modles: {}", "unknown key 'modles'"),
        ("currency: EUR\nmodels: {}", "only USD"),
        ("models: {m: [", "not valid yaml"),
    ],
)
def test_bad_files_name_the_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(PriceError) as info:
        PriceTable.load(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_settings_refuse_a_bad_price_file_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SWITCHBOARD_MODEL_PRICES": str(tmp_path / "missing.yaml")})
    assert str(info.value).startswith("SWITCHBOARD_MODEL_PRICES: invalid value (")
    assert "cannot read" in str(info.value)
    good = tmp_path / "ok.yaml"
    good.write_text("models:\n  scripted: {input: 2, output: 10}\n")
    settings = Settings.from_env({"SWITCHBOARD_MODEL_PRICES": str(good)})
    assert settings.price_table().price("scripted") == ModelPrice(2.0, 10.0)
    assert Settings.from_env({}).price_table().price("scripted") is None
