"""The registered application: DCR client credentials and the current access token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Registration(Base):
    """One row per (Adobe Pass base URL, software statement): see AdobePass.registration_key."""

    __tablename__ = "registrations"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    base_url: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str | None] = mapped_column(String(200))
    client_secret_enc: Mapped[str | None] = mapped_column(Text)
    access_token_enc: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None]
    # The token's lifetime as issued (expires_in): it is renewed in the last tenth of it.
    token_lifetime_s: Mapped[float | None]
    # The scopes Adobe granted the client (space-separated).
    scopes: Mapped[str | None] = mapped_column(String(500))
    # Why the registration cannot be used (the client was revoked, a scope is missing): every
    # job that needs Adobe Pass fails with it until an operator runs `passflow register`.
    problem: Mapped[str | None] = mapped_column(String(500))
    problem_at: Mapped[datetime | None]
    registered_at: Mapped[datetime | None]
    registrations: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ServiceProvider(Base):
    """A brand (an Adobe service provider) the deployment serves beyond the configured
    PASSFLOW_SERVICE_PROVIDER, with its own software statement (encrypted like client secrets):
    `passflow service-providers add/list/retire`. A retired one takes no new events; its jobs
    already accepted still finish."""

    __tablename__ = "service_providers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    software_statement_enc: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    added_by: Mapped[str | None] = mapped_column(String(200))
    retired_at: Mapped[datetime | None]


class Installation(Base):
    """The database's identity, written once by its first migration: the sweeper's lease and
    the fleet's health are keyed on it, not on how a process spells the database's URL (a
    rotated password, a pooler on another port)."""

    __tablename__ = "installation"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SchemaCompat(Base):
    """The code heads that run on the schema at `revision` (written by `passflow db upgrade`):
    its own, and the one before when its migration only adds (expand): an older process still
    running, or restarting, during a rolling upgrade is accepted."""

    __tablename__ = "schema_compat"

    revision: Mapped[str] = mapped_column(String(64), primary_key=True)
    runs_with: Mapped[str] = mapped_column(String(500))
