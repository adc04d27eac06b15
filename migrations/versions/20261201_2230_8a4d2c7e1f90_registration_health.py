"""Registration health (token lifetime, granted scopes, a problem that stops work), Adobe's
429s counted per step, the MVPD selection's name and logo, profiles ended by a logout.

Revision ID: 8a4d2c7e1f90
Revises: 5c1e9f0b7a21
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base

revision = "8a4d2c7e1f90"
down_revision = "5c1e9f0b7a21"
branch_labels = None
depends_on = None
# What going below this revision deletes (passflow.database.downgrade_losses): counted first.
LOSES = [
    ("profile logouts (those profiles would look valid again)",
     "SELECT count(*) FROM profiles WHERE logged_out_at IS NOT NULL"),
]


def upgrade() -> None:
    with op.batch_alter_table("registrations") as batch:
        batch.add_column(sa.Column("token_lifetime_s", sa.Double(), nullable=True))
        batch.add_column(sa.Column("scopes", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("problem", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("problem_at", models.base.UTCDateTime(timezone=True),
                                   nullable=True))
    with op.batch_alter_table("job_steps") as batch:
        batch.add_column(sa.Column("rate_limited", sa.Integer(), nullable=False,
                                   server_default="0"))
    # The user's MVPD selection as the configuration names it (checklist, TV Provider
    # Selection Caching), and profiles ended by a logout (never reused after it).
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("last_mvpd_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("last_mvpd_logo_url", sa.String(length=1000), nullable=True))
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("logged_out_at", models.base.UTCDateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("logged_out_at")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("last_mvpd_logo_url")
        batch.drop_column("last_mvpd_name")
    with op.batch_alter_table("job_steps") as batch:
        batch.drop_column("rate_limited")
    with op.batch_alter_table("registrations") as batch:
        batch.drop_column("problem_at")
        batch.drop_column("problem")
        batch.drop_column("scopes")
        batch.drop_column("token_lifetime_s")
