"""Who did what: the audit log of actions that change state (expand only: a new table).

Revision ID: f2b4c6d8e0a1
Revises: e5f7a9b1c2d4
Create Date: 2026-12-04 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base

revision = "f2b4c6d8e0a1"
down_revision = "e5f7a9b1c2d4"
branch_labels = None
depends_on = None
EXPAND_ONLY = True  # passflow.database: the code of the revision before runs on this one
# What going below this revision deletes (passflow.database.downgrade_losses): counted first.
LOSES = [("audit entries", "SELECT count(*) FROM audit_log")]


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_log_target", "audit_log", ["target"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_target", table_name="audit_log")
    op.drop_table("audit_log")
