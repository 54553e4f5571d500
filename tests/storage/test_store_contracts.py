"""Store-level contracts, on SQLite and on PostgreSQL.

The stores behind approvals, the audit chain, run records, thread ownership, channel
defaults and feedback were exercised only end to end. Each test here pins one promise a
caller relies on — the state machine, uniqueness under concurrent writers, ordering,
idempotency — so a storage change that breaks it fails here, next to the SQL, on both
backends (the ``engine`` fixture is parametrized by ``database_url``).
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.approvals import ApprovalStore, is_open
from storage.audit import GENESIS, AuditKeyring, AuditLog
from storage.feedback import FeedbackStore
from storage.runs import ChannelDefaults, RunStore, ThreadSkills, Usage
from storage.scores import ScoreStore
from storage.sql import session_factory

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KEY = "contract-test-audit-key-0123456789abcdef"


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


def _request(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "skill": "refunds",
        "thread_id": "T1:C1:1700000000.000100",
        "channel_id": "C1",
        "thread_ts": "1700000000.000100",
        "requester": "U_REQ",
        "tool": "issue_refund",
        "args": {"order_id": "1001", "amount": 25},
        "args_hash": "a" * 64,
        "interrupt_id": "int-1",
        "tool_call_id": "call-1",
        "policy": {"users": ["U_A", "U_B"], "usergroups": ["S_FIN"]},
        "quorum": 2,
        "created_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
    }
    fields.update(overrides)
    return fields


# -- ApprovalStore ------------------------------------------------------------------------


async def test_approval_quorum_counts_distinct_people(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ApprovalStore(sessions=sessions)
    row = await store.create(**_request())
    assert row.status == "pending" and is_open(row)

    first = await store.add_vote(row.id, "U_A", now=NOW)
    again = await store.add_vote(row.id, "U_A", now=NOW)
    second = await store.add_vote(row.id, "U_B", now=NOW + timedelta(seconds=5))
    late = await store.add_vote(row.id, "U_C", now=NOW + timedelta(seconds=9))

    assert (first.state, first.votes) == ("recorded", 1)
    assert (again.state, again.votes) == ("duplicate", 1)
    assert (second.state, second.votes) == ("approved", 2)
    assert late.state == "not_pending"
    assert await store.votes(row.id) == ["U_A", "U_B"]
    stored = await store.get(row.id)
    assert stored is not None
    assert (stored.status, stored.decided_by) == ("approved", "U_B")
    assert stored.decided_at == NOW + timedelta(seconds=5)


async def test_approval_concurrent_votes_reach_quorum_exactly_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ApprovalStore(sessions=sessions)
    row = await store.create(**_request(quorum=3))
    people = [f"U_{n}" for n in range(6)] + ["U_0", "U_1"]  # two double clicks
    results = await asyncio.gather(*(store.add_vote(row.id, who, now=NOW) for who in people))

    states = [result.state for result in results]
    assert states.count("approved") == 1, states
    assert states.count("recorded") == 2, states
    assert len(set(await store.votes(row.id))) == len(await store.votes(row.id)) == 3


async def test_approval_vote_on_unknown_request_is_a_lookup_error(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(LookupError):
        await ApprovalStore(sessions=sessions).add_vote("missing", "U_A", now=NOW)


async def test_approval_transition_is_won_by_exactly_one_caller(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ApprovalStore(sessions=sessions)
    row = await store.create(**_request())
    won = await asyncio.gather(
        *(
            store.transition(row.id, to="rejected", allowed_from={"pending"}, decided_by=f"U{n}")
            for n in range(8)
        )
    )
    assert won.count(True) == 1
    assert not await store.transition(row.id, to="approved", allowed_from={"pending"})
    stored = await store.get(row.id)
    assert stored is not None and stored.status == "rejected" and not is_open(stored)


async def test_approval_edit_chain_and_thread_listing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ApprovalStore(sessions=sessions)
    first = await store.create(**_request())
    await store.transition(first.id, to="superseded", allowed_from={"pending"})
    second = await store.create(
        **_request(edited_from=first.id, edited_by="U_ED", created_at=NOW + timedelta(minutes=1))
    )
    await store.add_vote(first.id, "U_A", now=NOW)  # not pending any more: not counted

    chain = await store.chain(second.id)
    assert [item.id for item in chain][-1] == second.id
    assert {item.id for item in chain} == {first.id, second.id}
    assert [item.id for item in await store.for_thread(first.thread_id)] == [first.id, second.id]
    assert await store.votes(first.id) == []  # a superseded request takes no votes
    voters = await store.voters([first.id, second.id])
    assert all(names == [] for names in voters.values()), voters


async def test_approval_expiry_and_stalled_queries(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ApprovalStore(sessions=sessions)
    soon = await store.create(**_request(expires_at=NOW + timedelta(minutes=5)))
    later = await store.create(**_request(expires_at=NOW + timedelta(hours=5)))
    decided = await store.create(**_request(quorum=1))
    await store.add_vote(decided.id, "U_A", now=NOW)

    due = await store.due_for_expiry(NOW + timedelta(minutes=10))
    assert [row.id for row in due] == [soon.id]
    assert later.id not in {row.id for row in due}
    stalled = await store.stalled(NOW + timedelta(minutes=2), older_than=timedelta(minutes=1))
    assert [row.id for row in stalled] == [decided.id]
    await store.update_fields(decided.id, completed_at=NOW + timedelta(minutes=1))
    assert await store.stalled(NOW + timedelta(minutes=2), older_than=timedelta(minutes=1)) == []


async def test_approval_open_for_respects_policy_and_four_eyes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ApprovalStore(sessions=sessions)
    by_user = await store.create(**_request(requester="U_A"))
    by_group = await store.create(**_request(policy={"usergroups": ["S_FIN"]}))

    waiting, mine = await store.open_for(approver="U_A", usergroups=[], requester="U_A")
    assert by_user.id not in {row.id for row in waiting}  # nobody approves their own request
    assert [row.id for row in mine] == [by_user.id]
    waiting, _ = await store.open_for(approver="U_Z", usergroups=["S_FIN"], requester="U_Z")
    assert {row.id for row in waiting} == {by_user.id, by_group.id}
    waiting, _ = await store.open_for(approver="U_Z", usergroups=["S_OTHER"], requester="U_Z")
    assert waiting == []


async def test_execution_ledger_is_exactly_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ApprovalStore(sessions=sessions)
    row = await store.create(**_request())
    # A crashed attempt leaves the row "started": a retry may call again, with the same key.
    starts = [await store.begin_execution(row.id, "idem-1") for _ in range(3)]
    assert starts == [None, None, None]
    execution = await store.execution(row.id)
    assert execution is not None
    assert (execution.state, execution.idempotency_key) == ("started", "idem-1")
    assert execution.attempts == 3

    await store.finish_execution(row.id, ok=True, result="refund re_1 issued")
    again = await store.begin_execution(row.id, "idem-1")
    assert again is not None and (again.state, again.ok, again.result) == (
        "succeeded",
        True,
        "refund re_1 issued",
    )


async def test_execution_attempts_count_every_concurrent_retry(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Replicas retrying one crashed call at once: each attempt is counted, none is lost
    # to a read-modify-write (the count is what an operator reads to see a call retried).
    store = ApprovalStore(sessions=sessions)
    row = await store.create(**_request())
    assert await store.begin_execution(row.id, "idem-1") is None
    starts = await asyncio.gather(*(store.begin_execution(row.id, "idem-1") for _ in range(12)))
    assert list(starts) == [None] * 12
    execution = await store.execution(row.id)
    assert execution is not None and execution.attempts == 13


# -- AuditLog -----------------------------------------------------------------------------


async def test_audit_chain_links_every_row_and_verifies(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    audit = AuditLog(sessions=sessions, keyring=AuditKeyring.parse(KEY))
    assert await audit.head() is None
    assert await audit.verify() == (0, None)

    rows = await asyncio.gather(
        *(audit.append("vote", actor=f"U{n}", request_id="R1", summary=f"#{n}") for n in range(10))
    )
    await audit.append("approved", actor="U9", request_id="R1", at=NOW)
    exported = [entry async for entry in audit.export()]

    assert [entry["seq"] for entry in exported] == sorted(entry["seq"] for entry in exported)
    assert exported[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(exported):
        assert after["prev_hash"] == before["hash"]
    assert len({row.hash for row in rows}) == 10
    assert await audit.verify() == (11, None)
    head = await audit.head()
    assert head is not None and head["hash"] == exported[-1]["hash"]
    assert head["key_id"] == audit.key_id
    assert [entry.event for entry in await audit.for_request("R1")][-1] == "approved"
    since = [entry async for entry in audit.export(NOW - timedelta(seconds=1))]
    assert since and all(entry["at"] >= (NOW - timedelta(seconds=1)).isoformat() for entry in since)


async def test_audit_rejects_unknown_events_and_other_keys(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    audit = AuditLog(sessions=sessions, keyring=AuditKeyring.parse(KEY))
    with pytest.raises(ValueError, match="unknown audit event"):
        await audit.append("deleted-everything", actor="U_X")
    await audit.append("requested", actor="U_REQ", request_id="R2")

    stranger = AuditLog(sessions=sessions, keyring=AuditKeyring.parse("z" * 40))
    count, broken = await stranger.verify()
    assert broken is not None and broken.seq == 1, (count, broken)


# -- RunStore, ThreadSkills, ChannelDefaults ---------------------------------------------


async def test_run_record_opens_and_closes_with_usage(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    runs = RunStore(sessions=sessions)
    run_id = await runs.start(
        skill="ask",
        thread_id="T1:C1:1.0",
        actor="U1",
        channel_id="C1",
        model="offline",
        trigger="mention",
        started_at=NOW,
    )
    running = await runs.get(run_id)
    assert running is not None and running.outcome == "running" and running.finished_at is None

    await runs.finish(
        run_id,
        outcome="answered",
        usage=Usage(10, 5, 15) + Usage(1, 1, 2),
        finished_at=NOW + timedelta(milliseconds=1500),
    )
    done = await runs.get(run_id)
    assert done is not None
    assert (done.outcome, done.latency_ms) == ("answered", 1500)
    assert (done.input_tokens, done.output_tokens, done.total_tokens) == (11, 6, 17)
    await runs.finish("missing", outcome="answered", usage=Usage())  # a no-op, not an error
    assert await runs.count() == 1


async def test_runs_for_thread_are_ordered_and_ids_are_respected(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    runs = RunStore(sessions=sessions)
    for n in (2, 0, 1):
        await runs.start(
            skill="ask",
            thread_id="T1:C1:2.0",
            actor="U1",
            channel_id=None,
            model="offline",
            trigger="dm",
            started_at=NOW + timedelta(seconds=n),
            run_id=f"run-{n}",
        )
    assert [run.id for run in await runs.for_thread("T1:C1:2.0")] == ["run-0", "run-1", "run-2"]
    assert await runs.for_thread("T1:C1:elsewhere") == []


async def test_thread_ownership_first_claim_wins_under_concurrency(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    owners = ThreadSkills(sessions=sessions)
    skills = ["ask", "refunds", "digest", "summarize"] * 3
    claimed = await asyncio.gather(*(owners.claim("T1:C1:3.0", skill) for skill in skills))
    assert len(set(claimed)) == 1
    assert await owners.get("T1:C1:3.0") == claimed[0]

    await owners.assign("T1:C1:3.0", "summarize")
    assert await owners.claim("T1:C1:3.0", "ask") == "summarize"
    await owners.assign("T1:C1:new", "digest")  # assign creates too
    assert await owners.get("T1:C1:new") == "digest"
    await owners.forget("T1:C1:3.0")
    assert await owners.get("T1:C1:3.0") is None
    assert await owners.claim("T1:C1:3.0", "ask") == "ask"


async def test_channel_defaults_set_replace_clear(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    defaults = ChannelDefaults(sessions=sessions)
    assert await defaults.get("C1") is None
    await defaults.set("C1", "refunds", set_by="U1")
    await defaults.set("C1", "digest", set_by="U2")
    await defaults.set("C2", "ask", set_by="U1")
    assert (await defaults.get("C1"), await defaults.get("C2")) == ("digest", "ask")
    await defaults.clear("C1")
    await defaults.clear("C1")  # idempotent
    assert (await defaults.get("C1"), await defaults.get("C2")) == (None, "ask")


# -- FeedbackStore ------------------------------------------------------------------------


async def test_feedback_one_verdict_per_person_per_message(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    feedback = FeedbackStore(sessions=sessions)
    since = datetime.now(UTC) - timedelta(minutes=1)
    where = {"skill": "ask", "thread_id": "T1:C1:4.0", "channel_id": "C1", "message_ts": "4.1"}

    clicks = await asyncio.gather(
        *(feedback.record(**where, user_id="U1", value="up") for _ in range(4))
    )
    assert len({row.id for row in clicks}) == 1
    changed = await feedback.record(**where, user_id="U1", value="down", run_id="run-9")
    assert changed.id == clicks[0].id and changed.value == "down"
    await feedback.record(**where, user_id="U2", value="up")

    long_comment = "x" * 5000
    assert await feedback.comment(
        channel_id="C1", message_ts="4.1", user_id="U1", comment=long_comment
    )
    assert not await feedback.comment(channel_id="C1", message_ts="4.1", user_id="U9", comment="?")
    rows = await feedback.since(since)
    assert sorted((row.user_id, row.value) for row in rows) == [("U1", "down"), ("U2", "up")]
    downs = await feedback.since(since, value="down")
    assert [row.user_id for row in downs] == ["U1"]
    assert downs[0].comment is not None and len(downs[0].comment) == 4000
    with pytest.raises(ValueError, match="'up' or 'down'"):
        await feedback.record(**where, user_id="U3", value="meh")


async def test_feedback_rows_carry_the_requester_and_filter(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    feedback = FeedbackStore(sessions=sessions)
    await RunStore(sessions=sessions).start(
        run_id="run-fb", skill="refunds", thread_id="T1:C1:5.0", actor="U_REQ",
        channel_id="C1", model="offline", trigger="message",
    )  # fmt: skip
    where = {"thread_id": "T1:C1:5.0", "channel_id": "C1", "user_id": "U1"}
    first = await feedback.record(
        **where, skill="refunds", message_ts="5.1", value="down", run_id="run-fb",
        request="refund [card ****1111]",
    )  # fmt: skip
    await feedback.record(**where, skill="ask", message_ts="5.2", value="up")
    assert first.run_id == "run-fb" and first.message_ts == "5.1" and first.requester is None
    rows = await feedback.rows()
    assert [(r.skill, r.requester, r.request) for r in rows] == [
        ("refunds", "U_REQ", "refund [card ****1111]"),
        ("ask", None, None),
    ]
    assert [r.skill for r in await feedback.rows(skills=["ask"])] == ["ask"]
    assert [r.skill for r in await feedback.rows(value="down")] == ["refunds"]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert await feedback.rows(since=later) == []


# -- ScoreStore (online evaluation) -------------------------------------------------------


async def _run(sessions: async_sessionmaker[AsyncSession], run_id: str, skill: str) -> None:
    await RunStore(sessions=sessions).start(
        run_id=run_id,
        skill=skill,
        thread_id=f"T1:C1:{run_id}",
        actor="U1",
        channel_id="C1",
        model="offline",
        trigger="message",
        started_at=NOW,
    )


async def test_samples_once_per_run_and_a_thumbs_down_marks_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    scores = ScoreStore(sessions=sessions)
    await _run(sessions, "run-a", "refunds")
    firsts = await asyncio.gather(
        *(
            scores.sample(
                run_id="run-a", skill="refunds", reason="share", request="q", answer="a", now=NOW
            )
            for _ in range(3)
        )
    )
    assert sorted(firsts) == [False, False, True]  # one writer wins; the job is queued once
    again = await scores.sample(
        run_id="run-a", skill="refunds", reason="feedback", request="q", answer="a",
        thumbs_down=True,
    )  # fmt: skip
    assert again is False
    sample = await scores.get("run-a")
    assert sample is not None
    assert (sample.reason, sample.thumbs_down, sample.status) == ("share", True, "pending")
    assert (sample.request, sample.answer, sample.sampled_at) == ("q", "a", NOW)
    # Filed under the run's own skill, whatever a (forged) feedback button said.
    await _run(sessions, "run-z", "refunds")
    assert await scores.sample(
        run_id="run-z", skill="ask", reason="feedback", request="q", answer="a", now=NOW
    )
    filed = await scores.get("run-z")
    assert filed is not None and filed.skill == "refunds"
    # No sample without its run record.
    assert not await scores.sample(
        run_id="no-such-run", skill="ask", reason="share", request="q", answer="a"
    )
    assert await scores.get("no-such-run") is None
    assert sorted(await scores.pending()) == ["run-a", "run-z"]


async def test_scores_are_stored_once_per_rubric(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    scores = ScoreStore(sessions=sessions)
    await _run(sessions, "run-b", "ask")
    await scores.sample(run_id="run-b", skill="ask", reason="share", request="q", answer="a")
    first = await scores.record(
        "run-b",
        scores=[("helpful", 0.9, True, "clear"), ("grounded", 0.4, False, "invented a date")],
        judge_model="openai:judge",
        now=NOW,
    )
    retried = await scores.record(
        "run-b", scores=[("helpful", 0.1, False, "second try")], judge_model="other", now=NOW
    )
    assert [(s.rubric, s.score, s.passed) for s in first] == [
        ("grounded", 0.4, False),
        ("helpful", 0.9, True),
    ]
    assert retried == first  # a retried job changes nothing
    assert first[1].judge_model == "openai:judge" and first[1].created_at == NOW
    sample = await scores.get("run-b")
    assert sample is not None and (sample.status, sample.scored_at) == ("scored", NOW)
    assert await scores.pending() == []

    await _run(sessions, "run-c", "ask")
    await scores.sample(run_id="run-c", skill="ask", reason="share", request="q", answer="a")
    await scores.close("run-c", status="unscored", detail="no judge model")
    closed = await scores.get("run-c")
    assert closed is not None and (closed.status, closed.detail) == ("unscored", "no judge model")


async def test_quality_per_skill_and_period(sessions: async_sessionmaker[AsyncSession]) -> None:
    scores = ScoreStore(sessions=sessions)
    feedback = FeedbackStore(sessions=sessions)
    day1 = NOW - timedelta(days=5)  # 2026-11-26: before any 👎 given today
    day2 = day1 + timedelta(days=1)
    plan = [  # run, skill, sampled at, verdicts (None: not scored)
        ("q1", "refunds", day1, [("helpful", 1.0, True), ("grounded", 0.8, True)]),
        ("q2", "refunds", day1, [("helpful", 0.2, False), ("grounded", 0.9, True)]),
        ("q3", "refunds", day1, None),
        ("q4", "refunds", day2, [("helpful", 0.6, True)]),
        ("q5", "ask", day2, [("helpful", 0.5, False)]),
    ]
    for run_id, skill, at, verdicts in plan:
        await _run(sessions, run_id, skill)
        await scores.sample(
            run_id=run_id, skill=skill, reason="share", request="q", answer="a", now=at
        )
        if verdicts is not None:
            await scores.record(
                run_id,
                scores=[(name, value, ok, None) for name, value, ok in verdicts],
                judge_model="j",
                now=at,
            )
    await feedback.record(
        skill="refunds", thread_id="T1:C1:q2", channel_id="C1", message_ts="9.1", user_id="U1",
        value="down", run_id="q2",
    )  # fmt: skip
    rows = await scores.quality(since=day1 - timedelta(days=1), period="day")
    today = datetime.now(UTC).date().isoformat()
    table = [(r.skill, r.period, r.sampled, r.scored, r.passed, r.thumbs_down) for r in rows]
    assert table == sorted(
        [
            ("ask", "2026-11-27", 1, 1, 0, 0),
            ("refunds", "2026-11-26", 3, 2, 1, 0),
            ("refunds", "2026-11-27", 1, 1, 1, 0),
            ("refunds", today, 0, 0, 0, 1),  # the 👎 counts on the day it was given
        ]
    )
    first = next(r for r in rows if r.period == "2026-11-26")
    assert first.mean_score == pytest.approx((1.0 + 0.8 + 0.2 + 0.9) / 4)
    assert first.pass_rate == 0.5
    weeks = await scores.quality(since=day1 - timedelta(days=1), period="week")
    assert {(r.skill, r.period, r.sampled) for r in weeks if r.sampled} == {
        ("ask", "2026-W48", 1),
        ("refunds", "2026-W48", 4),
    }
    assert await scores.quality(since=day2 + timedelta(days=400)) == []
