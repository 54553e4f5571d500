"""Evaluation fixtures: throw-away stores, datasets from text, and scripted runners."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from langchain_core.language_models import BaseChatModel

from evals.dataset import Dataset, load_dataset_text
from evals.judge import Judge
from evals.runner import EvalRunner, EvalStores, embedded_stores
from skills.models.offline import OfflineChatModel
from switchboard.runtime import eval_runtimes
from switchboard.settings import Settings


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[EvalStores]:
    """SQLite in ``tmp_path`` and in-process Redis: the eval CLI's own defaults."""
    async with embedded_stores(tmp_path / "stores") as built:
        yield built


def dataset(text: str, name: str = "test.eval.yaml") -> Dataset:
    """A dataset from (dedented) YAML text."""
    return load_dataset_text(textwrap.dedent(text), filename=name)


def runner(
    stores: EvalStores,
    model: BaseChatModel | None = None,
    *,
    judge: Judge | None = None,
    repeat: int = 1,
) -> EvalRunner:
    """A runner whose skills use ``model`` (the router keeps the offline keyword scorer)."""
    chosen = model or OfflineChatModel()

    def factory(name: str) -> BaseChatModel:
        return OfflineChatModel() if name == "router" else chosen

    return EvalRunner(
        stores=stores,
        runtimes=eval_runtimes(Settings.from_env({})),
        model_factory=factory,
        model="scripted" if model is not None else "offline",
        router_model="router",
        judge=judge,
        repeat=repeat,
        concurrency=2,
    )
