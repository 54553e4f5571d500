"""audit chain keyed with HMAC: which key signed a row and how

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Rows already in the table were chained with a bare SHA-256 and get ``hash_alg = sha256``
(and no ``key_id``); ``switchboard audit verify`` reports them as unkeyed until
``switchboard audit adopt-legacy`` re-chains them under SWITCHBOARD_AUDIT_KEY.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("hash_alg", sa.String(length=16), nullable=False, server_default="sha256")
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("hash_alg")
        batch_op.drop_column("key_id")
