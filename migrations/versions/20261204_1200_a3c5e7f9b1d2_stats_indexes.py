"""Indexes on the times the console's figures count by (expand only: indexes, no data).

Revision ID: a3c5e7f9b1d2
Revises: f2b4c6d8e0a1
Create Date: 2026-12-04 12:00:00
"""

from __future__ import annotations

from alembic import op

revision = "a3c5e7f9b1d2"
down_revision = "f2b4c6d8e0a1"
branch_labels = None
depends_on = None
EXPAND_ONLY = True  # passflow.database: the code of the revision before runs on this one
LOSES: list[tuple[str, str]] = []  # indexes only

# (index, table, column): GET /v1/stats/... and the console's overview count over these.
INDEXES = [
    ("ix_decisions_created_at", "decisions", "created_at"),
    ("ix_auth_sessions_created_at", "auth_sessions", "created_at"),
    ("ix_profiles_created_at", "profiles", "created_at"),
    ("ix_job_steps_started_at", "job_steps", "started_at"),
    ("ix_job_steps_finished_at", "job_steps", "finished_at"),
    ("ix_webhook_deliveries_created_at", "webhook_deliveries", "created_at"),
]


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
