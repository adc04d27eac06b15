"""The database's identity (written once) and the code heads each schema revision runs with
(expand only: new tables the revision before ignores).

Revision ID: e5f7a9b1c2d4
Revises: d8e2b4f6a1c3
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

import models.base

revision = "e5f7a9b1c2d4"
down_revision = "d8e2b4f6a1c3"
branch_labels = None
depends_on = None
EXPAND_ONLY = True  # passflow.database: the code of the revision before runs on this one


def upgrade() -> None:
    installation = op.create_table(
        "installation",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "schema_compat",
        sa.Column("revision", sa.String(length=64), primary_key=True),
        sa.Column("runs_with", sa.String(length=500), nullable=False),
    )
    from models.base import utcnow

    op.bulk_insert(installation, [{"id": str(uuid.uuid4()), "created_at": utcnow()}])


def downgrade() -> None:
    op.drop_table("schema_compat")
    op.drop_table("installation")
