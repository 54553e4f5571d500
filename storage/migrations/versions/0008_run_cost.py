"""run cost: what a run's tokens cost by the model price table, and usage by period

``cost_usd`` is NULL for runs before this revision and for runs of a model the price
table does not know (cost unknown, not 0). ``ix_runs_started_at`` serves the usage
reports (``switchboard usage``, ``/switchboard admin usage``), which read a time window
across every skill.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cost_usd", sa.Float(), nullable=True))
        batch_op.create_index("ix_runs_started_at", ["started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_started_at")
        batch_op.drop_column("cost_usd")
