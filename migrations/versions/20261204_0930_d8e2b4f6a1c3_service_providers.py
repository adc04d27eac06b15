"""Several brands: the service providers a deployment serves beyond the configured one, each
with its software statement (expand only: a new table the revision before ignores).

Revision ID: d8e2b4f6a1c3
Revises: c4a1d9e2f7b3
Create Date: 2026-12-04 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base

revision = "d8e2b4f6a1c3"
down_revision = "c4a1d9e2f7b3"
branch_labels = None
depends_on = None
# What going below this revision deletes (passflow.database.downgrade_losses): counted first.
LOSES = [("added service providers (and their statements)",
          "SELECT count(*) FROM service_providers")]
EXPAND_ONLY = True  # passflow.database: the code of the revision before runs on this one


def upgrade() -> None:
    op.create_table(
        "service_providers",
        sa.Column("id", sa.String(length=200), primary_key=True),
        sa.Column("software_statement_enc", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("added_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(length=200), nullable=True),
        sa.Column("retired_at", models.base.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("service_providers")
