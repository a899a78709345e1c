"""ftp_users and uploads: the embedded FTP server's accounts and the facts of each upload

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ftp_users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("grp", sa.String(64), nullable=False),
        sa.Column("perms", sa.String(64), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
    )
    op.create_table(
        "uploads",
        sa.Column("dedupe", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("protocol", sa.String(8), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("grp", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("uploads")
    op.drop_table("ftp_users")
