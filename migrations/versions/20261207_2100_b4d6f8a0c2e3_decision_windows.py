"""A decision's own window (notBefore, notAfter), a single sign-on profile's identity key and
the brands a token is limited to (expand only: nullable columns and an index).

Revision ID: b4d6f8a0c2e3
Revises: a3c5e7f9b1d2
Create Date: 2026-12-07 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base

revision = "b4d6f8a0c2e3"
down_revision = "a3c5e7f9b1d2"
branch_labels = None
depends_on = None
EXPAND_ONLY = True  # passflow.database: the code of the revision before runs on this one
LOSES: list[tuple[str, str]] = [
    ("decisions' windows", "SELECT count(*) FROM decisions WHERE not_after IS NOT NULL"),
    ("single sign-on identity keys",
     "SELECT count(*) FROM profiles WHERE identity_key IS NOT NULL"),
    ("tokens limited to brands",
     "SELECT count(*) FROM api_tokens WHERE service_providers IS NOT NULL"),
]


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("not_before", models.base.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("not_after", models.base.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("identity_key", sa.String(64), nullable=True))
    op.create_index("ix_profiles_identity_key", "profiles", ["identity_key"])
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("service_providers", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("service_providers")
    op.drop_index("ix_profiles_identity_key", table_name="profiles")
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("identity_key")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("not_after")
        batch.drop_column("not_before")
