"""Evaluations: datasets beside skills, scorers, an LLM judge, reports and a CI gate.

``dataset`` (the ``*.eval.yaml`` format), ``runner`` (cases through the real runtime),
``scorers`` and ``judge`` (verdicts), ``results`` (summaries, JSON, baseline gate),
``report`` (table and HTML), ``feedback`` (Slack 👎 → draft cases, weekly stats) and
``cli`` (``switchboard eval``). See docs/evals.md.
"""
