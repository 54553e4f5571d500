"""Model prices: token usage → cost, per model, in US dollars per million tokens.

A run's token usage arrives per model name as the provider reports it
(``gpt-4.1-mini-2025-04-14``, ``claude-sonnet-4-5-20250929``…); :class:`PriceTable` finds
the price for such a name and turns the usage into a cost. A model it has no price for
makes the cost **unknown** (``None``), never 0: a dashboard that shows 0 for an unpriced
model hides exactly the spend nobody planned for.

Matching a name, after dropping a ``provider:`` prefix and lower-casing:

1. the exact key;
2. a key followed by a date or version suffix (``-2025-04-14``, ``-20250929``, ``@001``,
   ``-latest``): ``gpt-4o`` prices ``gpt-4o-2024-08-06`` but not ``gpt-4o-mini``;
3. a key ending in ``*`` is a plain prefix (``my-finetune-*``); the longest one wins.

``SWITCHBOARD_MODEL_PRICES`` names a YAML or JSON file that adds to (or, with
``defaults: false``, replaces) :data:`DEFAULT_PRICES`::

    models:
      gpt-4.1-mini: {input: 0.40, output: 1.60}     # USD per 1M input / output tokens
      my-vllm-*:    {input: 0, output: 0}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULT_PRICES", "ModelPrice", "PriceError", "PriceTable"]


class PriceError(ValueError):
    """The price file cannot be read or has a bad entry; the message names it."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """US dollars per million input and output tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


#: List prices (USD per 1M tokens, standard tier, no caching or batch discounts) of the
#: models people most often point Switchboard at. Your contract may differ: override
#: them with SWITCHBOARD_MODEL_PRICES. ``offline`` (the built-in model) is free.
DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "offline": ModelPrice(0.0, 0.0),
    # OpenAI
    "gpt-5": ModelPrice(1.25, 10.00),
    "gpt-5-mini": ModelPrice(0.25, 2.00),
    "gpt-5-nano": ModelPrice(0.05, 0.40),
    "gpt-4.1": ModelPrice(2.00, 8.00),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60),
    "gpt-4.1-nano": ModelPrice(0.10, 0.40),
    "gpt-4o": ModelPrice(2.50, 10.00),
    "gpt-4o-mini": ModelPrice(0.15, 0.60),
    "o3": ModelPrice(2.00, 8.00),
    "o4-mini": ModelPrice(1.10, 4.40),
    # Anthropic
    "claude-opus-4-1": ModelPrice(15.00, 75.00),
    "claude-opus-4": ModelPrice(15.00, 75.00),
    "claude-sonnet-4-5": ModelPrice(3.00, 15.00),
    "claude-sonnet-4": ModelPrice(3.00, 15.00),
    "claude-haiku-4-5": ModelPrice(1.00, 5.00),
    "claude-3-5-haiku": ModelPrice(0.80, 4.00),
    # Google (prompts up to 200k tokens)
    "gemini-2.5-pro": ModelPrice(1.25, 10.00),
    "gemini-2.5-flash": ModelPrice(0.30, 2.50),
    "gemini-2.5-flash-lite": ModelPrice(0.10, 0.40),
}

# What may follow a key for it to still name the same model: a release date or version.
_SUFFIX = re.compile(r"^[-@](\d{4}-\d{2}-\d{2}|\d{3,8}|latest|v\d+(:\d+)?)$")


def _normalize(name: str) -> str:
    name = name.strip().lower()
    provider, sep, rest = name.partition(":")
    # ``openai:gpt-4.1`` → ``gpt-4.1``; ``ollama:llama3:8b`` keeps its tag.
    return rest if sep and provider.isidentifier() and rest else name


class PriceTable:
    """Prices by model name; see the module docstring for how names match."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._exact: dict[str, ModelPrice] = {}
        self._prefixes: list[tuple[str, ModelPrice]] = []
        for key, price in prices.items():
            norm = _normalize(key)
            if norm.endswith("*"):
                self._prefixes.append((norm[:-1], price))
            else:
                self._exact[norm] = price
        self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)

    @classmethod
    def defaults(cls) -> PriceTable:
        return cls(DEFAULT_PRICES)

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """The defaults with the file's entries on top (``defaults: false``: the file only).
        Raises :class:`PriceError` naming the file and the entry."""
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceError(f"{source}: cannot read ({exc.strerror or exc})") from None
        try:
            data = json.loads(text) if source.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise PriceError(
                f"{source}: not valid {source.suffix.lstrip('.') or 'YAML'}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        return cls(parse_prices(data, source=str(source)))

    def price(self, model: str) -> ModelPrice | None:
        """The price of ``model``, or None when the table does not know it."""
        name = _normalize(model)
        if name in self._exact:
            return self._exact[name]
        best: tuple[int, ModelPrice] | None = None
        for key, price in self._exact.items():
            suffix_ok = name.startswith(key) and _SUFFIX.match(name[len(key) :])
            if suffix_ok and (best is None or len(key) > best[0]):
                best = (len(key), price)
        if best is not None:
            return best[1]
        for prefix, price in self._prefixes:
            if name.startswith(prefix):
                return price
        return None

    def cost(self, usage_by_model: Mapping[str, Mapping[str, Any]]) -> float | None:
        """The cost of a run's usage (``{model name: {input_tokens, output_tokens}}``, as
        LangChain's usage callback collects it); None if any model that used tokens has
        no price. No usage at all costs 0."""
        total = 0.0
        for model, usage in usage_by_model.items():
            input_tokens = int(usage.get("input_tokens", 0) or 0)
            output_tokens = int(usage.get("output_tokens", 0) or 0)
            if not input_tokens and not output_tokens:
                continue
            price = self.price(model)
            if price is None:
                return None
            total += price.cost(input_tokens, output_tokens)
        return total


def parse_prices(data: Any, *, source: str) -> dict[str, ModelPrice]:
    """The price entries of a loaded price file, on top of the defaults unless it says
    ``defaults: false``."""
    if not isinstance(data, Mapping):
        raise PriceError(f"{source}: expected a mapping with a 'models' key")
    unknown = set(data) - {"models", "defaults", "currency"}
    if unknown:
        raise PriceError(f"{source}: unknown key {sorted(unknown)[0]!r} (models, defaults)")
    currency = str(data.get("currency", "USD")).upper()
    if currency != "USD":
        raise PriceError(f"{source}: currency: only USD is supported, not {currency!r}")
    include = data.get("defaults", True)
    if not isinstance(include, bool):
        raise PriceError(f"{source}: defaults: expected true or false")
    models = data.get("models") or {}
    if not isinstance(models, Mapping):
        raise PriceError(f"{source}: models: expected a mapping of model name to prices")
    prices: dict[str, ModelPrice] = dict(DEFAULT_PRICES) if include else {}
    for name, entry in models.items():
        where = f"{source}: models.{name}"
        if not isinstance(entry, Mapping) or set(entry) - {"input", "output"}:
            raise PriceError(f"{where}: expected {{input: USD per 1M, output: USD per 1M}}")
        values = []
        for field in ("input", "output"):
            value = entry.get(field)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise PriceError(f"{where}.{field}: expected a number ≥ 0 (USD per 1M tokens)")
            values.append(float(value))
        prices[str(name)] = ModelPrice(*values)
    return prices
