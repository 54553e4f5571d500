"""The approval audit log: append-only and chained with a keyed MAC, so tampering shows.

Each row stores the MAC of the previous row (``prev_hash``) and its own MAC (``hash``):
HMAC-SHA256 under the audit key (``SWITCHBOARD_AUDIT_KEY``) over ``prev_hash`` and the
row's content, including which key signed it (``key_id``) and how (``hash_alg``).
Changing, deleting or reordering a row breaks the chain at that row; :meth:`AuditLog.verify`
finds the first broken one. Without the key nobody — not even someone with SQL access —
can write a row that verifies; with the key, rewriting history still changes the head,
which `export --head` lets you anchor somewhere else and `verify --anchor` checks.

``prev_hash`` is unique, so two writers that read the same head cannot both append after
it: the loser retries on the new head, and the chain stays linear under concurrency on
every backend.

Rows written before keyed chaining (migration 0006) carry ``hash_alg = "sha256"``: a bare
hash anyone can recompute. :meth:`AuditLog.verify` reports them as unkeyed (an attacker
could rewrite them, or downgrade a keyed row to one); :meth:`AuditLog.adopt_legacy` checks
their bare chain once and re-chains every row under the key, recording that as an
``adopted-legacy`` event.

Keys: `AuditKeyring` holds the current key (signs new rows) and older ones (verify rows
they signed). Each key is named by ``key_id``, the first 16 hex characters of an HMAC of a
fixed label under it — a fingerprint that does not reveal the key. The embedded default
(SQLite) keeps a generated key next to the database (`embedded_key_file`, mode 0600).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AuditEntry

__all__ = [
    "EVENTS",
    "GENESIS",
    "HMAC_SHA256",
    "LEGACY_SHA256",
    "Adopted",
    "AuditChainBroken",
    "AuditKeyError",
    "AuditKeyring",
    "AuditLog",
    "Broken",
    "check_audit_key",
    "embedded_key_file",
    "entry_hash",
    "entry_mac",
    "keyring_for",
]

GENESIS = "0" * 64
HMAC_SHA256: Final = "hmac-sha256"
LEGACY_SHA256: Final = "sha256"
MIN_KEY_CHARS: Final = 32
EVENTS = frozenset(
    {
        "requested",
        "approved",
        "rejected",
        "edited",
        "expired",
        "executed",
        "failed",
        "refused-click",
        "vote",
        # authorization (docs/security.md)
        "abandoned",
        "refused-read",
        "refused-reset",
        "refused-schedule",
        # the chain itself
        "adopted-legacy",
    }
)


class AuditKeyError(ValueError):
    """An audit key is missing, too short, or its key file cannot be used."""


def _key_id(key: bytes) -> str:
    return hmac.new(key, b"switchboard/audit/key-id/v1", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AuditKeyring:
    """The key that signs new rows, and every key whose rows can still be verified."""

    current_id: str
    keys: dict[str, bytes]

    @classmethod
    def from_secrets(cls, values: Iterable[str]) -> AuditKeyring:
        """Keys as configured: the first signs, the others (older ones) only verify."""
        raw = [value.strip() for value in values if value.strip()]
        if not raw:
            raise AuditKeyError("no audit key given")
        keys: dict[str, bytes] = {}
        for value in raw:
            if len(value) < MIN_KEY_CHARS:
                raise AuditKeyError(
                    f"each key must be at least {MIN_KEY_CHARS} characters "
                    "(e.g. `openssl rand -hex 32`)"
                )
            key = value.encode()
            keys.setdefault(_key_id(key), key)
        return cls(current_id=_key_id(raw[0].encode()), keys=keys)

    @classmethod
    def parse(cls, configured: str) -> AuditKeyring:
        """``SWITCHBOARD_AUDIT_KEY``: one key, or several separated by commas (current first)."""
        return cls.from_secrets(configured.split(","))

    @property
    def current(self) -> bytes:
        return self.keys[self.current_id]

    def __repr__(self) -> str:  # never print a key
        return f"AuditKeyring(current_id={self.current_id!r}, key_ids={sorted(self.keys)!r})"


def embedded_key_file(database_url: str) -> Path | None:
    """``<db>.audit-key`` beside an SQLite database file; None for other databases and
    in-memory SQLite."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        return None
    if url.database == ":memory:" or url.database.startswith("file::memory:"):
        return None
    return Path(url.database).with_name(Path(url.database).name + ".audit-key")


def _read_or_create(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key


def check_audit_key(database_url: str, configured: str | None) -> None:
    """Raise `AuditKeyError` unless `keyring_for` will work, without touching any file."""
    if configured:
        AuditKeyring.parse(configured)
    elif not make_url(database_url).drivername.startswith("sqlite"):
        raise AuditKeyError("required when DATABASE_URL is not SQLite")


def keyring_for(database_url: str, configured: str | None) -> AuditKeyring:
    """The keyring to use: ``SWITCHBOARD_AUDIT_KEY`` when set; in embedded mode (SQLite)
    a key generated once into `embedded_key_file` (mode 0600); for in-memory SQLite a key
    for this process. Raises `AuditKeyError` for any other database without a key."""
    if configured:
        return AuditKeyring.parse(configured)
    path = embedded_key_file(database_url)
    if path is not None:
        try:
            return AuditKeyring.from_secrets([_read_or_create(path)])
        except OSError as exc:
            raise AuditKeyError(f"cannot use the key file {path}: {exc.strerror}") from None
    if make_url(database_url).drivername.startswith("sqlite"):
        return AuditKeyring.from_secrets([secrets.token_hex(32)])
    raise AuditKeyError("required when DATABASE_URL is not SQLite")


# ---------------------------------------------------------------------- row digests


def _canonical(
    *,
    at: datetime,
    event: str,
    actor: str,
    request_id: str | None,
    args_hash: str | None,
    summary: str,
    extra: dict[str, str] | None = None,
) -> str:
    content: dict[str, Any] = {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "event": event,
        "actor": actor,
        "request_id": request_id,
        "args_hash": args_hash,
        "summary": summary,
        **(extra or {}),
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    *,
    prev_hash: str,
    at: datetime,
    event: str,
    actor: str,
    request_id: str | None,
    args_hash: str | None,
    summary: str,
) -> str:
    """The bare SHA-256 of a row written before migration 0006 (``hash_alg = sha256``)."""
    canonical = _canonical(
        at=at,
        event=event,
        actor=actor,
        request_id=request_id,
        args_hash=args_hash,
        summary=summary,
    )
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def entry_mac(
    *,
    key: bytes,
    key_id: str,
    prev_hash: str,
    at: datetime,
    event: str,
    actor: str,
    request_id: str | None,
    args_hash: str | None,
    summary: str,
) -> str:
    """HMAC-SHA256 of a row under ``key``; the key id and algorithm are part of the MAC,
    so neither can be changed without the key."""
    canonical = _canonical(
        at=at,
        event=event,
        actor=actor,
        request_id=request_id,
        args_hash=args_hash,
        summary=summary,
        extra={"hash_alg": HMAC_SHA256, "key_id": key_id},
    )
    return hmac.new(key, f"{prev_hash}\n{canonical}".encode(), hashlib.sha256).hexdigest()


def _fields(row: AuditEntry) -> dict[str, Any]:
    return {
        "at": row.at,
        "event": row.event,
        "actor": row.actor,
        "request_id": row.request_id,
        "args_hash": row.args_hash,
        "summary": row.summary,
    }


@dataclass(frozen=True, slots=True)
class Broken:
    """The first row where the chain does not hold, and why."""

    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class Adopted:
    """What `AuditLog.adopt_legacy` did."""

    legacy_rows: int
    rechained_rows: int
    old_head: str
    new_head: str


class AuditLog:
    """The audit chain over SQL; ``keyring`` signs new rows and verifies old ones."""

    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], keyring: AuditKeyring
    ) -> None:
        self._sessions = sessions
        self._keyring = keyring

    @property
    def key_id(self) -> str:
        """The id of the key that signs new rows."""
        return self._keyring.current_id

    def _sign(self, prev: str, fields: dict[str, Any]) -> str:
        return entry_mac(
            key=self._keyring.current,
            key_id=self._keyring.current_id,
            prev_hash=prev,
            **fields,
        )

    async def append(
        self,
        event: str,
        *,
        actor: str,
        request_id: str | None = None,
        args_hash: str | None = None,
        summary: str = "",
        at: datetime | None = None,
    ) -> AuditEntry:
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        when = (at or datetime.now(UTC)).astimezone(UTC)
        for attempt in range(50):
            try:
                async with self._sessions.begin() as session:
                    return await self._append_in(
                        session,
                        event=event,
                        actor=actor,
                        request_id=request_id,
                        args_hash=args_hash,
                        summary=summary,
                        at=when,
                    )
            except (IntegrityError, OperationalError):
                # Another writer appended after the same head (or SQLite was busy): retry.
                await asyncio.sleep(min(0.005 * (attempt + 1), 0.1))
        raise RuntimeError("could not append to the audit log")

    async def _append_in(self, session: AsyncSession, **values: Any) -> AuditEntry:
        head = await session.scalar(
            select(AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        )
        prev = head or GENESIS
        fields = {**values, "summary": str(values["summary"])[:2000]}
        row = AuditEntry(
            **fields,
            prev_hash=prev,
            hash=self._sign(prev, fields),
            key_id=self._keyring.current_id,
            hash_alg=HMAC_SHA256,
        )
        session.add(row)
        await session.flush()
        return row

    def _check(self, row: AuditEntry, prev: str) -> str | None:
        """Why ``row`` does not verify after ``prev``, or None."""
        if row.prev_hash != prev:
            return "previous-hash link does not match"
        if row.hash_alg == LEGACY_SHA256:
            return (
                "unkeyed row (bare sha256, from before keyed chaining): anyone with SQL "
                "access could have written it; run `switchboard audit adopt-legacy` once "
                "after upgrading, after which an unkeyed row means tampering"
            )
        if row.hash_alg != HMAC_SHA256:
            return f"unknown hash algorithm {row.hash_alg!r}"
        key = self._keyring.keys.get(row.key_id or "")
        if key is None:
            return (
                f"signed with key id {row.key_id}, which is not configured (list older keys "
                "after the current one in SWITCHBOARD_AUDIT_KEY)"
            )
        expected = entry_mac(key=key, key_id=row.key_id or "", prev_hash=prev, **_fields(row))
        if not hmac.compare_digest(expected, row.hash):
            return "content does not match its MAC"
        return None

    async def verify(self, *, anchor: str | None = None) -> tuple[int, Broken | None]:
        """Check the whole chain: (rows checked, the first broken row or None).

        With ``anchor`` (a head hash exported earlier and kept elsewhere), a chain that
        verifies but no longer contains that hash is broken too: history was rewritten by
        someone holding the key, or rows were cut off at the end.
        """
        prev = GENESIS
        count = 0
        anchored = anchor is None
        async with aclosing(self._rows()) as rows:  # an early return releases the connection
            async for row in rows:
                count += 1
                reason = self._check(row, prev)
                if reason is not None:
                    return count, Broken(row.seq, reason)
                anchored = anchored or hmac.compare_digest(row.hash, anchor or "")
                prev = row.hash
        if not anchored:
            return count, Broken(0, f"anchor {anchor} is not in the chain")
        return count, None

    async def head(self) -> dict[str, Any] | None:
        """The last row's seq, time and hash (what to anchor elsewhere), None when empty."""
        async with self._sessions() as session:
            row = await session.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
        if row is None:
            return None
        return {"seq": row.seq, "at": row.at.isoformat(), "hash": row.hash, "key_id": row.key_id}

    async def adopt_legacy(self, *, by: str, at: datetime | None = None) -> Adopted:
        """Re-chain every row under the current key, once the bare-hash rows check out.

        The legacy rows' own chain (and every keyed row) must verify first, so tampering
        is not laundered into a valid MAC. Runs in one transaction, the table locked on
        PostgreSQL; ends with an ``adopted-legacy`` row naming the old head.
        """
        when = (at or datetime.now(UTC)).astimezone(UTC)
        async with self._sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                await session.execute(text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
            rows = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
            prev = GENESIS
            legacy = 0
            for row in rows:
                if row.hash_alg == LEGACY_SHA256:
                    legacy += 1
                    ok = row.prev_hash == prev and row.hash == entry_hash(
                        prev_hash=prev, **_fields(row)
                    )
                    reason = None if ok else "legacy row does not match its bare hash"
                else:
                    reason = self._check(row, prev)
                if reason is not None:
                    raise AuditChainBroken(Broken(row.seq, reason))
                prev = row.hash
            old_head = prev
            prev = GENESIS
            for row in rows:
                row.prev_hash = prev
                row.hash = self._sign(prev, _fields(row))
                row.key_id = self._keyring.current_id
                row.hash_alg = HMAC_SHA256
                prev = row.hash
                await session.flush()  # one row at a time: prev_hash and hash are unique
            event = await self._append_in(
                session,
                event="adopted-legacy",
                actor=by,
                request_id=None,
                args_hash=None,
                summary=(
                    f"re-chained {len(rows)} row(s) ({legacy} unkeyed) under key "
                    f"{self._keyring.current_id}; old head {old_head}"
                ),
                at=when,
            )
            return Adopted(legacy, len(rows), old_head, event.hash)

    async def export(self, since: datetime | None = None) -> AsyncIterator[dict[str, Any]]:
        async for row in self._rows(since):
            yield {
                "seq": row.seq,
                "at": row.at.isoformat(),
                "event": row.event,
                "actor": row.actor,
                "request_id": row.request_id,
                "args_hash": row.args_hash,
                "summary": row.summary,
                "prev_hash": row.prev_hash,
                "hash": row.hash,
                "key_id": row.key_id,
                "hash_alg": row.hash_alg,
            }

    async def for_request(self, request_id: str) -> list[AuditEntry]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.request_id == request_id)
                .order_by(AuditEntry.seq)
            )
            return list(rows)

    async def _rows(self, since: datetime | None = None) -> AsyncGenerator[AuditEntry]:
        async with self._sessions() as session:
            query = select(AuditEntry).order_by(AuditEntry.seq)
            if since is not None:
                query = query.where(AuditEntry.at >= since)
            result = await session.stream_scalars(query.execution_options(yield_per=500))
            async for row in result:
                yield row


class AuditChainBroken(Exception):
    """`AuditLog.adopt_legacy` refused: the chain is already broken at ``broken.seq``."""

    def __init__(self, broken: Broken) -> None:
        self.broken = broken
        super().__init__(f"audit log broken at row {broken.seq}: {broken.reason}")
