"""Single logout: a logout made with the device's single sign-on headers says which (expand
only: a nullable column; the revision before reads and writes around it).

Revision ID: c4a1d9e2f7b3
Revises: b7e3f2a9c4d1
Create Date: 2026-12-04 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c4a1d9e2f7b3"
down_revision = "b7e3f2a9c4d1"
branch_labels = None
depends_on = None
# What going below this revision deletes (passflow.database.downgrade_losses): counted first.
LOSES = [("single logout marks", "SELECT count(*) FROM logouts WHERE single_sign_on IS NOT NULL")]
EXPAND_ONLY = True  # passflow.database: the code of the revision before runs on this one


def upgrade() -> None:
    with op.batch_alter_table("logouts") as batch:
        batch.add_column(sa.Column("single_sign_on", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("logouts") as batch:
        batch.drop_column("single_sign_on")
