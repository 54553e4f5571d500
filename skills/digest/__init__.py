"""The ``digest`` skill: a summary of a channel with numbers computed by code.

A Python skill (a LangGraph graph rather than a YAML agent), shaped like
langchain-ai/react-agent: ``graph.py`` (the graph), ``state.py``, ``prompts.py``, and
``stats.py`` (the numbers, as pure functions).

    digest                                   this channel, last 24 hours
    digest #C0PAYALERTS 12h                  another channel, by id
    digest <#C0PAYALERTS|payments-alerts> last 3 days
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.types import Checkpointer

from skills.digest.graph import DigestRequest, build_digest_graph, parse_request
from skills.registry import Skill

__all__ = ["DIGEST_SKILL", "DigestRequest", "build_digest_graph", "parse_request"]


def _factory(model: BaseChatModel, checkpointer: Checkpointer) -> Any:
    return build_digest_graph(model, checkpointer=checkpointer)


def _reads(text: str) -> tuple[str, ...]:
    """The channel a request names (none: the run's own)."""
    channel = parse_request(text).channel
    return (channel,) if channel else ()


DIGEST_SKILL = Skill(
    name="digest",
    description=(
        "Summarise a Slack channel over the last hours or days (default: this channel, last 24 "
        "hours): "
        "what happened, busiest threads, unanswered questions, who was active."
    ),
    examples=(
        "digest",
        "digest #payments-alerts 12h",
        "what did I miss in this channel today?",
    ),
    graph_factory=_factory,
    reads=_reads,
)
"""The registry entry (`skills.catalog.python_skills`)."""
