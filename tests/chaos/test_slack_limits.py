"""A 429 storm from the Slack Web API while workers answer: every answer is posted, in
each thread in the order it was asked, none twice, none replaced by an apology.

The fake Web API rate-limits like Slack (N calls per second per method, 429 with
``Retry-After``) and, on top, answers the first burst of calls of any method with 429.
Prints what it counted (run with ``-s``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from bot.views.runs import WORKING_TEXT
from tests.chaos.harness import Deployment, receiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.timeout(180),
    pytest.mark.model_latency(0.3),
]

THREADS = 6
PER_THREAD = 4  # messages in each thread, from two people taking turns (never folded)
PEOPLE = ("U0SAM", "U0ANA")
WAVE = 12  # the first calls of each posting method answered 429 before any gets through


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_a_429_storm_delays_answers_but_posts_each_once_in_order(
    deployment: Deployment,
) -> None:
    slack = deployment.slack
    slack.add_user("U0ANA", "ana", real_name="Ana Lima")
    slack.set_members("C0GENERAL", ["U0SAM", "U0ANA"])
    async with receiver(deployment):
        deployment.start_workers("a", "b", concurrency=16)
        slack.rate_limit("chat.postMessage", limit=3, per=1.0)
        slack.rate_limit("chat.update", limit=3, per=1.0)
        for method in ("chat.postMessage", "chat.update", "reactions.add", "reactions.remove"):
            slack.fail_next(method, status=429, retry_after=2, times=WAVE)  # the first wave
        started = time.monotonic()
        roots: list[str] = []
        asked: dict[str, list[str]] = {}
        for n in range(THREADS):
            status, root = await deployment.mention(f"ask thread {n} message 0")
            assert status == 200
            roots.append(root)
            asked[root] = [f"thread {n} message 0"]
        for k in range(1, PER_THREAD):
            for n, root in enumerate(roots):
                text = f"thread {n} message {k}"
                status, _ = await deployment.mention(
                    f"ask {text}", user=PEOPLE[k % 2], thread_ts=root
                )
                assert status == 200
                asked[root].append(text)

        def settled() -> bool:
            return all(
                len(answers) >= PER_THREAD and WORKING_TEXT not in answers
                for answers in (deployment.thread_answers(root) for root in roots)
            )

        done = await wait_until(settled, 120)
        took = time.monotonic() - started
        await asyncio.sleep(3.0)  # late duplicates would show up now
        answers = {root: deployment.thread_answers(root) for root in roots}
    posted = sum(len(a) for a in answers.values())
    in_order = sum(
        1
        for root in roots
        if len(answers[root]) == PER_THREAD
        and all(q in a for q, a in zip(asked[root], answers[root], strict=True))
    )
    apologies = sum(1 for a in answers.values() for text in a if "reference `" in text)
    limited = slack.rate_limited("chat.postMessage") + slack.rate_limited("chat.update") + 4 * WAVE
    print(
        f"\n429 storm: asked={THREADS * PER_THREAD} in {THREADS} threads; bot messages="
        f"{posted} (expected {THREADS * PER_THREAD}); threads in order={in_order}/{THREADS}; "
        f"apologies={apologies}; 429s answered={limited}; all posted in {took:.1f} s"
    )
    assert done, "\n".join(f"{r}: {a}" for r, a in answers.items())
    assert posted == THREADS * PER_THREAD, answers
    assert apologies == 0, answers
    assert in_order == THREADS, {r: (asked[r], answers[r]) for r in roots}
