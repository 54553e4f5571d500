"""Online evaluation wiring: the judge and the scorer a worker runs sampled turns through.

The sampler itself (``skills.sampling.TurnSampler``) is opened with the services; the
scorer (``evals.online.OnlineScorer``) is the run queue's handler of
:data:`~skills.sampling.SCORE_KIND` jobs, built here from the settings: the judge is
``SWITCHBOARD_JUDGE_MODEL``, loaded like every other model. Like ``eval --judge-model``, the
judge runs only when it is configured (a judge call costs a model call): without it, or on
the offline model (which cannot judge), samples are stored and counted but left unscored.
"""

from __future__ import annotations

import logging
from pathlib import Path

from evals.judge import Judge, RubricJudge
from evals.online import DatasetRubrics, OnlineScorer
from skills.models import OfflineChatModel, unmasked
from skills.spec import builtin_dir
from switchboard.services import Services

__all__ = ["build_judge", "build_scorer"]

log = logging.getLogger(f"switchboard.{__name__}")


def build_judge(services: Services) -> Judge | None:
    """The online judge, or None when none is configured, it is the offline model, or it
    cannot be loaded (logged; samples stay unscored rather than failing)."""
    name = services.settings.judge_model
    if name is None:
        return None
    try:
        model = services.model_factory(name)
    except Exception as exc:
        log.warning("online judge %s not loaded: %s", name, exc)
        return None
    if isinstance(unmasked(model), OfflineChatModel):
        return None
    return RubricJudge(model=model, model_name=name)


def build_scorer(services: Services) -> OnlineScorer:
    """The scorer of sampled turns, grading on the ``online`` rubrics of the datasets
    beside the skills' specs (built-ins and ``SWITCHBOARD_SKILLS_DIR``)."""
    folders = [builtin_dir(), *map(Path, services.settings.skills_dirs)]
    return OnlineScorer(
        store=services.sampler.store,
        judge=build_judge(services),
        rubrics=DatasetRubrics(folders),
        observers=[services.metrics.observe_score],
    )
