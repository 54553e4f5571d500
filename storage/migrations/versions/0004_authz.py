"""authorization: who edited an approval request

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

An edited request records its editor, so the editor (and everyone who voted on an earlier
version) can be kept from approving it: four-eyes across a chain of edits.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edited_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.drop_column("edited_by")
