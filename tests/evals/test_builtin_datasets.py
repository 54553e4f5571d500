"""The CI gate: every built-in dataset passes in wiring mode (scripted model turns through
the real runtime), and the datasets are written in the words people type."""

from __future__ import annotations

import re

import pytest

from evals.dataset import discover_datasets, load_dataset
from evals.runner import EvalRunner, EvalStores
from skills.models.offline import OfflineChatModel
from skills.spec import builtin_dir
from switchboard.runtime import eval_runtimes
from switchboard.settings import Settings

# The offline model's command syntax: `refunds lookup_order order_id=1001`, `digest 24h`.
COMMAND_SYNTAX = re.compile(r"\b[a-z_]+=\S|\b(?:lookup_order|issue_refund|slack_\w+|time_now)\b")


def _datasets() -> list:
    return [load_dataset(path) for path in discover_datasets([builtin_dir()])]


@pytest.mark.timeout(600)  # 75 cases through the whole runtime, on a loaded machine
async def test_builtin_datasets_pass_in_wiring_mode(stores: EvalStores) -> None:
    runner = EvalRunner(
        stores=stores,
        runtimes=eval_runtimes(Settings.from_env({})),
        model_factory=lambda name: OfflineChatModel(),  # never asked: scripts play the models
        mode="wiring",
        concurrency=4,
    )
    run = await runner.run(_datasets())
    failures = {
        case.key: [f"{c.name}: {c.detail}" for a in case.attempts for c in a.failed_checks]
        for case in run.cases
        if not case.passed
    }
    assert failures == {}
    assert len(run.cases) >= 70
    assert run.mode == "wiring" and run.source == "script" and run.model == "wiring"
    assert {case.mode for case in run.cases} == {"wiring:script"}
    by_key = {case.key: case for case in run.cases}
    # adversarial paths really ran: gated refunds never executed, access was refused,
    # a refund past the tool's maximum never reached approvers
    gated = by_key["refunds/refund-needs-approval"].attempts[0]
    assert gated.outcome == "approval"
    assert [c["status"] for c in gated.calls] == ["ok", "gated"]
    assert by_key["refunds/refund-approved-runs-once"].attempts[0].calls[-1]["status"] == "ok"
    assert by_key["refunds/access-wrong-channel"].attempts[0].outcome == "refusal"
    assert by_key["refunds/amount-over-the-maximum"].attempts[0].calls[0]["status"] == "error"
    # the script's answer repeated a card number raw; what came out is masked
    leaked = by_key["refunds/pii-in-tool-result"].attempts[0].answer
    assert "4111 1111 1111 1111" not in leaked and "****1111" in leaked
    # one simulated conversation per built-in skill, each over several messages
    simulated = [case for case in run.cases if case.attempts[0].turns is not None]
    assert {case.skill for case in simulated} == {"ask", "digest", "refunds", "summarize"}
    assert all((case.attempts[0].turns or 0) >= 2 for case in simulated)


def test_builtin_cases_are_natural_messages() -> None:
    for dataset in _datasets():
        for case in dataset.cases:
            texts = [case.message, *(t.text for t in case.history)]
            texts += [s.user for s in case.simulation if s.user]
            for text in texts:
                assert not COMMAND_SYNTAX.search(text), f"{dataset.name} {case.id}: {text!r}"


def test_every_builtin_case_that_reaches_a_model_has_a_script() -> None:
    for dataset in _datasets():
        for case in dataset.cases:
            if case.expect.refusal or case.simulated:
                continue
            if case.script is None:
                # only the digest's empty or unreadable windows answer without the model
                assert dataset.skill == "digest", f"{dataset.name} {case.id} has no script"
