"""skill versions: the version each run ran on, and the one each thread stays on

``runs.skill_version`` is the skill spec's ``version:`` recorded on every run;
``thread_skills.skill_version`` keeps a conversation on the version that first answered
it while a canary rollout (``rollout: {canary: 10%}``) serves two versions side by side.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("skill_version", sa.String(length=64), nullable=True))
    with op.batch_alter_table("thread_skills") as batch:
        batch.add_column(sa.Column("skill_version", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("thread_skills") as batch:
        batch.drop_column("skill_version")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("skill_version")
