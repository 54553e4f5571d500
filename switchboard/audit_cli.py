"""``switchboard audit …``: check, export and adopt the keyed audit chain (storage.audit).

    switchboard audit verify [--anchor HASH]   exit 1 naming the first broken row
    switchboard audit export [--since DATE]    JSON lines, oldest first
    switchboard audit export --head            the head (seq, time, hash) to anchor elsewhere
    switchboard audit adopt-legacy             re-chain pre-HMAC rows under the key, once

The commands are a Typer sub-app built by `audit_commands`; the CLI registers it and hands
it its settings loader, so this module needs nothing from the CLI module itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import NoReturn, Protocol, TypeVar

import typer

from storage.audit import GENESIS, AuditChainBroken, AuditKeyring, AuditLog
from storage.sql import create_engine, session_factory, upgrade

__all__ = ["AuditSettings", "audit_commands"]

T = TypeVar("T")


class AuditSettings(Protocol):
    """What the audit commands read from the settings."""

    @property
    def database_url(self) -> str: ...

    @property
    def uses_embedded_sql(self) -> bool: ...

    def audit_keyring(self) -> AuditKeyring: ...


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"switchboard: {message}", err=True)
    raise typer.Exit(code)


def audit_commands(load_settings: Callable[[], AuditSettings]) -> typer.Typer:
    """The ``audit`` sub-app; ``load_settings`` exits 2 on a bad variable, as everywhere."""
    audit_app = typer.Typer(
        help="Check, export and adopt the keyed approval audit log.", no_args_is_help=True
    )

    @contextlib.asynccontextmanager
    async def _log(settings: AuditSettings) -> AsyncIterator[AuditLog]:
        keyring = settings.audit_keyring()
        if settings.uses_embedded_sql:
            await upgrade(settings.database_url)
        engine = create_engine(settings.database_url)
        try:
            yield AuditLog(sessions=session_factory(engine), keyring=keyring)
        finally:
            await engine.dispose()

    def _run(work: Callable[[AuditLog], Awaitable[T]]) -> T:
        settings = load_settings()

        async def main() -> T:
            async with _log(settings) as log:
                return await work(log)

        try:
            return asyncio.run(main())
        except OSError as exc:
            _fail(f"DATABASE_URL: cannot connect ({type(exc).__name__})")
        except AuditChainBroken as exc:
            _fail(f"{exc}; nothing was changed")

    @audit_app.command("verify")
    def verify(
        anchor: str = typer.Option(
            None, "--anchor", help="a head hash exported earlier (`audit export --head`)"
        ),
    ) -> None:
        """Check every row's MAC and link; exit 1 naming the first broken row."""
        count, broken = _run(lambda log: log.verify(anchor=anchor))
        if broken is not None:
            where = f"row {broken.seq}" if broken.seq else "the head"
            _fail(f"audit log broken at {where}: {broken.reason}")
        suffix = f", anchor {anchor[:12]}… found" if anchor else ""
        typer.echo(f"audit log intact: {count} row(s) verified{suffix}")

    @audit_app.command("export")
    def export(
        since: str = typer.Option(
            None, "--since", help="ISO date or datetime (UTC), e.g. 2026-11-01"
        ),
        head: bool = typer.Option(
            False, "--head", help="print only the head (seq, time, hash) for anchoring"
        ),
    ) -> None:
        """Write the audit log as JSON lines to standard output (or just its head)."""
        start: datetime | None = None
        if since:
            try:
                start = datetime.fromisoformat(since)
            except ValueError:
                _fail(f"--since: expected an ISO date such as 2026-11-01, got {since!r}", 2)
            if start.tzinfo is None:
                start = start.replace(tzinfo=UTC)

        async def _export(log: AuditLog) -> None:
            if head:
                row = await log.head()
                empty = {"seq": 0, "at": None, "hash": GENESIS, "key_id": None}
                typer.echo(json.dumps(row or empty))
                return
            async for item in log.export(start):
                typer.echo(json.dumps(item, ensure_ascii=False))

        _run(_export)

    @audit_app.command("adopt-legacy")
    def adopt_legacy() -> None:
        """Re-chain rows from before keyed chaining under SWITCHBOARD_AUDIT_KEY (once, after
        upgrading); their bare-hash chain must verify first. Recorded as an audit event."""
        by = f"cli:{getpass.getuser()}"
        done = _run(lambda log: log.adopt_legacy(by=by))
        typer.echo(
            f"re-chained {done.rechained_rows} row(s), {done.legacy_rows} of them unkeyed; "
            f"old head {done.old_head}, new head {done.new_head}"
        )

    return audit_app
