"""online evaluation: sampled production turns and their judge scores

``run_samples`` holds the turns picked for online evaluation (a share of them, and every
answer that got a 👎) with their PII-masked request and answer; ``run_scores`` holds one
judge verdict per sampled run and rubric. Both hang off ``runs`` (deleted with the run).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_samples",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("skill", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("thumbs_down", sa.Boolean(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_samples_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_samples")),
    )
    op.create_index(
        "ix_run_samples_skill_sampled_at", "run_samples", ["skill", "sampled_at"], unique=False
    )
    op.create_table(
        "run_scores",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("rubric", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("judge_model", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_scores_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_scores")),
        sa.UniqueConstraint("run_id", "rubric", name="uq_run_scores_run_id_rubric"),
    )
    op.create_index("ix_run_scores_created_at", "run_scores", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_run_scores_created_at", table_name="run_scores")
    op.drop_table("run_scores")
    op.drop_index("ix_run_samples_skill_sampled_at", table_name="run_samples")
    op.drop_table("run_samples")
