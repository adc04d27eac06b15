"""Activation codes and authenticate URLs sealed: the code's keyed digest in `code` (what
look-ups match), code and URL encrypted beside it; `url` in the clear only on older rows.

Not expand-only: a release before it reads `code` as the code itself, so it cannot poll a
session this one creates. Upgrade with the workers of the older release stopped (the API may
roll as usual); rows written before stay readable, and `passflow rotate-key` seals them.

Revision ID: c6e8a0b2d4f6
Revises: b4d6f8a0c2e3
Create Date: 2026-12-08 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c6e8a0b2d4f6"
down_revision = "b4d6f8a0c2e3"
branch_labels = None
depends_on = None
LOSES: list[tuple[str, str]] = [
    ("sealed activation codes (their sessions cannot be polled after the downgrade)",
     "SELECT count(*) FROM auth_sessions WHERE code_enc IS NOT NULL"),
]


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("code_enc", sa.Text(), nullable=True))
        batch.add_column(sa.Column("url_enc", sa.Text(), nullable=True))
        batch.alter_column("url", existing_type=sa.String(1000), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE auth_sessions SET url = '' WHERE url IS NULL")
    with op.batch_alter_table("auth_sessions") as batch:
        batch.alter_column("url", existing_type=sa.String(1000), nullable=False)
        batch.drop_column("url_enc")
        batch.drop_column("code_enc")
