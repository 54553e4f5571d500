"""run queue inbox: acked messages waiting for (or being given) their answer

The queue engine's own tables (Procrastinate) are not Alembic's: ``switchboard migrate``
applies them with ``storage.runqueue.ensure_queue_schema`` on PostgreSQL (idempotent).

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_inbox",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("thread_key", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("placeholder_ts", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_inbox")),
        sa.UniqueConstraint("dedupe_key", name="uq_run_inbox_dedupe_key"),
    )
    op.create_index("ix_run_inbox_thread_key_status", "run_inbox", ["thread_key", "status"])
    op.create_index("ix_run_inbox_status_created_at", "run_inbox", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_run_inbox_status_created_at", table_name="run_inbox")
    op.drop_index("ix_run_inbox_thread_key_status", table_name="run_inbox")
    op.drop_table("run_inbox")
