"""Step names as the steps are called: authentication.check_profiles is profiles.check.

Revision ID: 5c1e9f0b7a21
Revises: 03dad7a457e8
Create Date: 2026-12-01 22:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5c1e9f0b7a21"
down_revision = "03dad7a457e8"
branch_labels = None
depends_on = None

RENAMED = {"authentication.check_profiles": "profiles.check"}


def _rename(mapping: dict[str, str]) -> None:
    jobs = sa.table("jobs", sa.column("current_step", sa.String))
    steps = sa.table("job_steps", sa.column("step", sa.String))
    for old, new in mapping.items():
        op.execute(jobs.update().where(jobs.c.current_step == old).values(current_step=new))
        op.execute(steps.update().where(steps.c.step == old).values(step=new))


def upgrade() -> None:
    _rename(RENAMED)


def downgrade() -> None:
    _rename({new: old for old, new in RENAMED.items()})
