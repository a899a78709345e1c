"""runs and schedules: one row per schedule firing (unique per slot) and per sweep; jobs.run_id, jobs.parent

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("schedule", sa.String(255), nullable=False),
        sa.Column("slot", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("why", sa.String(16), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("started", sa.Float(), nullable=False),
        sa.Column("listed", sa.Float()),
        sa.Column("finished", sa.Float()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("seen", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("counts", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.UniqueConstraint("schedule", "slot", name="uq_runs_slot"),
    )
    op.create_table(
        "schedules",
        sa.Column("schedule", sa.String(255), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("done", sa.Float()),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("parent", sa.Integer(), nullable=True))
        batch.alter_column("hotfolder", type_=sa.String(255), existing_type=sa.String(64), existing_nullable=False)
        batch.create_index("ix_jobs_run_id", ["run_id"])
        batch.create_index("ix_jobs_parent", ["parent"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_parent")
        batch.drop_index("ix_jobs_run_id")
        batch.alter_column("hotfolder", type_=sa.String(64), existing_type=sa.String(255), existing_nullable=False)
        batch.drop_column("parent")
        batch.drop_column("run_id")
    op.drop_table("schedules")
    op.drop_table("runs")
