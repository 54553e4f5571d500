"""Online evaluation, the sampling half: which production turns get scored.

When a turn ends with an answer, :class:`TurnSampler` decides whether to keep it: a share
of turns (``SWITCHBOARD_EVAL_SAMPLE``, 0 = none) picked by a hash of the run id, so the
decision is the same on every replica and in every retry. A turn whose answer gets a 👎
is always kept. A kept turn is stored with its PII-masked request and answer
(:class:`storage.scores.ScoreStore`) and a scoring job is queued on the run queue
(:data:`SCORE_KIND`); the job (``evals.online``) runs the judge later, on a worker.

Nothing here is on the turn's path: :meth:`TurnSampler.offer` decides in microseconds and
writes in a background task, so a sampled turn is answered exactly as fast as another.
A sample whose job could not be queued stays ``pending`` and is queued again by
:meth:`TurnSampler.recover` when a worker starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from storage.scores import SampleReason, ScoreStore

__all__ = ["SCORE_KIND", "SampledTurn", "TurnSampler", "picks"]

log = logging.getLogger(f"switchboard.{__name__}")

#: The run queue's work kind of a scoring job (payload ``{"run_id": …}``).
SCORE_KIND = "online_score"


class Deferrer(Protocol):
    """The part of the run queue the sampler uses (``storage.runqueue.RunQueue``)."""

    async def defer(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        lock: str | None = None,
        queueing_lock: str | None = None,
        delay: timedelta | None = None,
    ) -> int | None: ...


@dataclass(frozen=True, slots=True)
class SampledTurn:
    """A turn offered for sampling: its run and its masked request and answer."""

    run_id: str
    skill: str
    request: str
    answer: str


#: Told of each kept sample: ``(skill, reason)`` (metrics).
SampleObserver = Callable[[str, SampleReason], None]


def picks(run_id: str, share: float) -> bool:
    """Whether a run is in the sampled ``share`` (0…1): a stable hash of its id, so every
    process makes the same decision about the same run."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    digest = hashlib.sha256(f"switchboard-eval-sample\x00{run_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


class TurnSampler:
    """Keeps sampled turns and queues their scoring (see the module docstring)."""

    def __init__(
        self,
        *,
        store: ScoreStore,
        queue: Deferrer,
        share: float = 0.0,
        observers: Iterable[SampleObserver] = (),
    ) -> None:
        if not 0 <= share <= 1:
            raise ValueError("the sampled share is between 0 and 1")
        self.store = store
        self.share = share
        self._queue = queue
        self._observers = list(observers)
        self._tasks: set[asyncio.Task[Any]] = set()

    def offer(self, turn: SampledTurn) -> bool:
        """A turn ended with an answer: keep it if it is in the share (in the background);
        True when it is."""
        if not picks(turn.run_id, self.share):
            return False
        task = asyncio.get_running_loop().create_task(
            self._keep(turn, reason="share"), name=f"sample-{turn.run_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    async def thumbs_down(self, turn: SampledTurn) -> bool:
        """Someone gave the turn's answer a 👎: keep it whatever the share (a turn sampled
        before is only marked). True when a scoring job was queued now."""
        return await self._keep(turn, reason="feedback")

    async def recover(self, *, older_than: timedelta = timedelta(minutes=1)) -> int:
        """Queue again the samples still pending (their job was never queued, or lost);
        how many were queued."""
        queued = 0
        try:
            pending = await self.store.pending(older_than=older_than)
        except Exception as exc:  # a store blip at start-up: the next start tries again
            log.warning("pending samples not read: %s: %s", type(exc).__name__, exc)
            return 0
        for run_id in pending:
            if await self._defer(run_id):
                queued += 1
        return queued

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait for samples being written (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def _keep(self, turn: SampledTurn, *, reason: SampleReason) -> bool:
        try:
            created = await self.store.sample(
                run_id=turn.run_id,
                skill=turn.skill,
                reason=reason,
                request=turn.request,
                answer=turn.answer,
                thumbs_down=reason == "feedback",
            )
        except Exception as exc:  # a sample is never worth failing anything for
            log.warning("turn not sampled: %s: %s", type(exc).__name__, exc)
            return False
        if not created:
            return False
        for observer in self._observers:
            try:
                observer(turn.skill, reason)
            except Exception:
                log.exception("sample observer failed")
        return await self._defer(turn.run_id)

    async def _defer(self, run_id: str) -> bool:
        try:
            await self._queue.defer(
                SCORE_KIND, {"run_id": run_id}, queueing_lock=f"{SCORE_KIND}:{run_id}"
            )
        except Exception as exc:  # the sample stays pending; recover() queues it later
            log.warning("scoring of run %s not queued: %s: %s", run_id, type(exc).__name__, exc)
            return False
        return True

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
