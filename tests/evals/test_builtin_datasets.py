"""The CI smoke gate: every built-in dataset passes on the offline model."""

from __future__ import annotations

from evals.dataset import discover_datasets, load_dataset
from evals.runner import EvalStores
from skills.spec import builtin_dir
from tests.evals.conftest import runner


async def test_builtin_datasets_pass_on_the_offline_model(stores: EvalStores) -> None:
    datasets = [load_dataset(path) for path in discover_datasets([builtin_dir()])]
    run = await runner(stores).run(datasets)
    failures = {
        case.key: [f"{c.name}: {c.detail}" for a in case.attempts for c in a.failed_checks]
        for case in run.failures
    }
    assert failures == {}
    assert len(run.cases) >= 60
    # adversarial cases really ran: gated refunds never executed, access was refused
    by_key = {case.key: case for case in run.cases}
    assert by_key["refunds/injection-in-tool-result"].attempts[0].calls[0]["name"] == (
        "lookup_order"
    )
    assert by_key["refunds/refund-needs-approval"].attempts[0].outcome == "approval"
    assert by_key["refunds/access-wrong-channel"].attempts[0].outcome == "refusal"
