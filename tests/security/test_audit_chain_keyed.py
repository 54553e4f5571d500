"""Finding 8: the audit chain is keyed, so SQL access alone cannot rewrite it.

The old chain was a bare SHA-256 anyone could recompute: the attack below changes who
approved a refund and recomputes every following hash, and the old ``audit verify``
passed. Now rows carry an HMAC under ``SWITCHBOARD_AUDIT_KEY`` (with ``key_id`` and
``hash_alg`` inside the MAC), so the same attack, a downgrade to bare hashes, a forged key
id and a swapped key all fail verification; cutting rows off the end, or a rewrite by
someone who has the key, is caught by an anchor (``audit export --head`` kept elsewhere,
``audit verify --anchor``). Rows from before the change are reported as unkeyed until
``audit adopt-legacy`` re-chains them (refusing if their bare chain is already broken).
The key is required outside embedded mode (exit 2, one line naming the variable); the
embedded default generates ``<db>.audit-key`` with mode 0600. On both SQL backends.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from storage.audit import (
    GENESIS,
    AuditChainBroken,
    AuditKeyring,
    AuditLog,
    embedded_key_file,
    entry_hash,
)
from storage.models import AuditEntry
from storage.sql import create_engine, downgrade, session_factory, upgrade
from switchboard.cli import app as cli
from switchboard.settings import ConfigError, Settings
from tests.conftest import Backend

KEY = "test-audit-key-0123456789abcdef-0123"
OLD_KEY = "older-audit-key-0123456789abcdef-9876"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def sql(backend: Backend) -> AsyncIterator[tuple[str, AsyncEngine]]:
    engine = create_engine(backend.database_url)
    try:
        yield backend.database_url, engine
    finally:
        await engine.dispose()


def _log(engine: AsyncEngine, keys: str = KEY) -> AuditLog:
    return AuditLog(sessions=session_factory(engine), keyring=AuditKeyring.parse(keys))


async def _refund_history(log: AuditLog) -> None:
    await log.append("requested", actor="U0SAM", request_id="r1", summary="refund 1001", at=T0)
    await log.append("approved", actor="U0CAROL", request_id="r1", at=T0 + timedelta(minutes=1))
    await log.append("executed", actor="U0CAROL", request_id="r1", at=T0 + timedelta(minutes=2))


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> list[AuditEntry]:
    async with sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


async def _rehash_bare(engine: AsyncEngine, *, downgrade: bool = False) -> None:
    """What an attacker with SQL access and no key can do: recompute bare hashes."""
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        rows = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        prev = GENESIS
        for row in rows:
            row.prev_hash = prev
            row.hash = entry_hash(
                prev_hash=prev,
                at=row.at,
                event=row.event,
                actor=row.actor,
                request_id=row.request_id,
                args_hash=row.args_hash,
                summary=row.summary,
            )
            if downgrade:
                row.hash_alg = "sha256"
            prev = row.hash
            await session.flush()


async def test_positive_control_an_untouched_chain_verifies(sql: tuple[str, AsyncEngine]) -> None:
    _, engine = sql
    log = _log(engine)
    await _refund_history(log)

    assert await log.verify() == (3, None)
    rows = await _rows(session_factory(engine))
    assert {r.hash_alg for r in rows} == {"hmac-sha256"}
    assert {r.key_id for r in rows} == {log.key_id}


async def test_rewriting_a_row_and_recomputing_the_chain_is_detected(
    sql: tuple[str, AsyncEngine],
) -> None:
    _, engine = sql
    log = _log(engine)
    await _refund_history(log)
    async with session_factory(engine).begin() as session:
        await session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(actor="U0MAL"))
    await _rehash_bare(engine)

    _, broken = await log.verify()

    assert broken is not None and broken.seq == 1 and "MAC" in broken.reason


async def test_downgrading_rows_to_bare_hashes_is_detected(sql: tuple[str, AsyncEngine]) -> None:
    _, engine = sql
    log = _log(engine)
    await _refund_history(log)
    await _rehash_bare(engine, downgrade=True)

    _, broken = await log.verify()

    assert broken is not None and broken.seq == 1 and "unkeyed" in broken.reason


async def test_a_forged_key_id_or_another_key_is_detected(sql: tuple[str, AsyncEngine]) -> None:
    _, engine = sql
    await _refund_history(_log(engine))

    _, other = await _log(engine, "another-key-0123456789abcdef-0123456").verify()
    async with session_factory(engine).begin() as session:
        await session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(key_id="0" * 16))
    _, forged = await _log(engine).verify()

    assert other is not None and "not configured" in other.reason
    assert forged is not None and forged.seq == 3


async def test_an_anchor_catches_a_cut_tail_and_a_rewrite_with_the_key(
    sql: tuple[str, AsyncEngine],
) -> None:
    _, engine = sql
    log = _log(engine)
    await _refund_history(log)
    head = await log.head()
    assert head is not None and head["seq"] == 3

    assert await log.verify(anchor=head["hash"]) == (3, None)  # positive control
    await log.append("vote", actor="U0LEAD", request_id="r1", at=T0 + timedelta(minutes=3))
    assert (await log.verify(anchor=head["hash"]))[1] is None  # growth keeps the anchor
    async with session_factory(engine).begin() as session:
        await session.execute(text("DELETE FROM audit_log WHERE seq >= 3"))
    _, cut = await log.verify(anchor=head["hash"])

    assert (await log.verify())[1] is None  # without an anchor a cut tail looks fine
    assert cut is not None and "anchor" in cut.reason


async def test_rotation_keeps_old_rows_verifiable(sql: tuple[str, AsyncEngine]) -> None:
    _, engine = sql
    await _refund_history(_log(engine, OLD_KEY))
    rotated = _log(engine, f"{KEY},{OLD_KEY}")
    await rotated.append("vote", actor="U0LEAD", request_id="r1", at=T0 + timedelta(hours=1))

    assert await rotated.verify() == (4, None)
    rows = await _rows(session_factory(engine))
    assert rows[-1].key_id == rotated.key_id != rows[0].key_id
    _, dropped = await _log(engine, KEY).verify()
    assert dropped is not None and dropped.seq == 1 and "not configured" in dropped.reason


# -- legacy rows: the migration and adopt-legacy --------------------------------------------


async def _legacy_history(url: str, engine: AsyncEngine, *, tamper: bool = False) -> None:
    """Rows as revision 0005 wrote them: bare hashes, no key id, no algorithm column."""
    await upgrade(url, "0005")
    prev = GENESIS
    async with engine.begin() as conn:
        for seq, (event, actor) in enumerate([("requested", "U0SAM"), ("approved", "U0CAROL")], 1):
            at = T0 + timedelta(minutes=seq)
            digest = entry_hash(
                prev_hash=prev,
                at=at,
                event=event,
                actor=actor,
                request_id="r0",
                args_hash=None,
                summary="",
            )
            await conn.execute(
                text(
                    "INSERT INTO audit_log (seq, at, event, actor, request_id, args_hash,"
                    " summary, prev_hash, hash) VALUES (:seq, :at, :event, :actor, 'r0', NULL,"
                    " '', :prev, :hash)"
                ),
                {
                    "seq": seq,
                    "at": at,
                    "event": event,
                    "actor": "U0MAL" if tamper and seq == 2 else actor,
                    "prev": prev,
                    "hash": digest,
                },
            )
            prev = digest
    await upgrade(url)


async def test_legacy_rows_are_unkeyed_until_adopted(sql: tuple[str, AsyncEngine]) -> None:
    url, engine = sql
    await _reset(url, engine)
    await _legacy_history(url, engine)
    log = _log(engine)
    await log.append("executed", actor="U0CAROL", request_id="r0", at=T0 + timedelta(hours=1))

    _, before = await log.verify()
    adopted = await log.adopt_legacy(by="cli:ops", at=T0 + timedelta(hours=2))
    count, after = await log.verify()

    assert before is not None and "unkeyed" in before.reason
    assert (adopted.legacy_rows, adopted.rechained_rows) == (2, 3)
    assert (count, after) == (4, None)
    last = (await _rows(session_factory(engine)))[-1]
    assert last.event == "adopted-legacy" and last.actor == "cli:ops"
    assert adopted.old_head in last.summary


async def test_adopt_legacy_refuses_a_tampered_legacy_chain(sql: tuple[str, AsyncEngine]) -> None:
    url, engine = sql
    await _reset(url, engine)
    await _legacy_history(url, engine, tamper=True)
    log = _log(engine)
    rows_before = [(r.hash, r.hash_alg) for r in await _rows(session_factory(engine))]

    with pytest.raises(AuditChainBroken, match="row 2"):
        await log.adopt_legacy(by="cli:ops")

    assert [(r.hash, r.hash_alg) for r in await _rows(session_factory(engine))] == rows_before


async def _reset(url: str, engine: AsyncEngine) -> None:
    """The backend fixture migrated to head; start these tests from an empty schema."""
    await downgrade(url, "base")


# -- configuration and the command line -----------------------------------------------------


def test_the_key_is_required_outside_embedded_mode() -> None:
    with pytest.raises(ConfigError) as missing:
        Settings.from_env({"DATABASE_URL": "postgresql://sb@db/sb"})
    with pytest.raises(ConfigError) as short:
        Settings.from_env({"DATABASE_URL": "postgresql://sb@db/sb", "SWITCHBOARD_AUDIT_KEY": "x"})

    assert missing.value.variable == short.value.variable == "SWITCHBOARD_AUDIT_KEY"
    assert "required when DATABASE_URL is not SQLite" in str(missing.value)
    assert "32" in str(short.value) and "\n" not in str(short.value)
    ok = Settings.from_env({"DATABASE_URL": "postgresql://sb@db/sb", "SWITCHBOARD_AUDIT_KEY": KEY})
    assert KEY not in repr(ok) and KEY not in repr(ok.audit_keyring())


def test_cli_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from switchboard.cli import main; main()", "audit", "verify"],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgresql://sb@127.0.0.1:9/sb"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "switchboard: SWITCHBOARD_AUDIT_KEY: required when DATABASE_URL is not SQLite"
    ]


def test_embedded_mode_generates_a_private_key_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}"
    settings = Settings.from_env({"DATABASE_URL": url})
    path = embedded_key_file(url)
    assert path == tmp_path / "sb.db.audit-key" and not path.exists()  # nothing at load

    first = settings.audit_keyring()
    again = Settings.from_env({"DATABASE_URL": url}).audit_keyring()

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first.current_id == again.current_id  # stable across restarts
    assert first.current.decode() == path.read_text().strip()


def test_cli_verify_anchor_export_head_and_adopt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("SWITCHBOARD_AUDIT_KEY", KEY)
    runner = CliRunner()

    empty = runner.invoke(cli, ["audit", "export", "--head"])
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.output) == {"seq": 0, "at": None, "hash": GENESIS, "key_id": None}

    async def seed() -> None:
        engine = create_engine(url)
        try:
            await _refund_history(_log(engine))
        finally:
            await engine.dispose()

    asyncio.run(seed())
    head = json.loads(runner.invoke(cli, ["audit", "export", "--head"]).output)
    intact = runner.invoke(cli, ["audit", "verify", "--anchor", head["hash"]])
    elsewhere = runner.invoke(cli, ["audit", "verify", "--anchor", "f" * 64])
    rows = [
        json.loads(line)
        for line in runner.invoke(cli, ["audit", "export"]).output.split("\n")
        if line
    ]
    adopted = runner.invoke(cli, ["audit", "adopt-legacy"])
    after = runner.invoke(cli, ["audit", "verify"])

    assert head["seq"] == 3
    assert intact.exit_code == 0 and "3 row(s) verified" in intact.output
    assert elsewhere.exit_code == 1 and "anchor" in elsewhere.output
    assert [r["hash_alg"] for r in rows] == ["hmac-sha256"] * 3
    assert adopted.exit_code == 0 and "0 of them unkeyed" in adopted.output
    assert after.exit_code == 0 and "4 row(s) verified" in after.output
