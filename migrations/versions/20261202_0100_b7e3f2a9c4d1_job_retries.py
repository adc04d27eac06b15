"""Job retries: an event may have several jobs (its first and the retries an operator asked
for), each retry linked to the job it retries and saying who asked; jobs found by status; the
API request that accepted a job, for its logs.

Revision ID: b7e3f2a9c4d1
Revises: 8a4d2c7e1f90
Create Date: 2026-12-02 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b7e3f2a9c4d1"
down_revision = "8a4d2c7e1f90"
branch_labels = None
depends_on = None
# What going below this revision deletes (passflow.database.downgrade_losses): counted first.
LOSES = [
    ("retried jobs (with their decisions and records)",
     "SELECT count(*) FROM jobs WHERE retry_of IS NOT NULL"),
]


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_event_pk", type_="unique")
        batch.add_column(sa.Column("retry_of", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("requested_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))
        batch.create_foreign_key("fk_jobs_retry_of_jobs", "jobs", ["retry_of"], ["id"],
                                 ondelete="SET NULL")
        batch.create_unique_constraint("uq_jobs_retry_of", ["retry_of"])  # retried once
        batch.create_index("ix_jobs_event_pk", ["event_pk"])
        batch.create_index("ix_jobs_status_created", ["status", "created_at"])


def downgrade() -> None:
    # Retries go with the way back: an event has one job again.
    op.execute("DELETE FROM jobs WHERE retry_of IS NOT NULL")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_status_created")
        batch.drop_index("ix_jobs_event_pk")
        batch.drop_constraint("fk_jobs_retry_of_jobs", type_="foreignkey")
        batch.drop_constraint("uq_jobs_retry_of", type_="unique")
        batch.drop_column("request_id")
        batch.drop_column("requested_by")
        batch.drop_column("retry_of")
        batch.create_unique_constraint("uq_jobs_event_pk", ["event_pk"])
