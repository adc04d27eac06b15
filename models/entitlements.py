"""What passflow learned from Adobe Pass: sessions, profiles, decisions, logouts.

Each row names its job and device, so a job can be resumed from its records and operations can
read the entitlement history by device, MVPD, resource and time.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from passflow.crypto import Cipher


class SessionStatus(enum.StrEnum):
    PENDING = "pending"
    AUTHENTICATED = "authenticated"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    FAILED = "failed"


class AuthSession(Base):
    __tablename__ = "auth_sessions"
    __table_args__ = (
        UniqueConstraint("service_provider", "code"),
        Index("ix_auth_sessions_device_created", "device_id", "created_at"),
        Index("ix_auth_sessions_due", "status", "next_poll_at"),
        Index("ix_auth_sessions_created_at", "created_at"),  # figures by time (models.stats)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    service_provider: Mapped[str] = mapped_column(String(200))
    # A live code signs in whoever types it first, and the URL holds it: neither is stored in
    # the clear. The column `code` holds the code's keyed digest (what look-ups match; rows of
    # releases before 0.5.0 hold the code itself until `passflow rotate-key` seals them), the
    # code and URL themselves are encrypted with PASSFLOW_SECRET_KEY.
    code_key: Mapped[str] = mapped_column("code", String(64))
    code_enc: Mapped[str | None] = mapped_column(Text)
    url_enc: Mapped[str | None] = mapped_column(Text)
    url_clear: Mapped[str | None] = mapped_column("url", String(1000))  # before 0.5.0 only
    mvpd: Mapped[str | None] = mapped_column(String(200))
    adobe_session_id: Mapped[str | None] = mapped_column(String(100))
    not_before: Mapped[datetime | None]
    not_after: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(32), default=SessionStatus.PENDING)
    stop_reason: Mapped[str | None] = mapped_column(String(200))
    next_poll_at: Mapped[datetime | None]
    polls: Mapped[int] = mapped_column(default=0)
    # The primary-screen flow starts polling once the user reaches redirectUrl (checklist).
    polling_started_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def seal(self, cipher: Cipher, code: str, url: str) -> None:
        self.code_key = cipher.digest(normal_code(code))
        self.code_enc, self.url_enc = cipher.encrypt(code), cipher.encrypt(url)
        self.url_clear = None

    def code(self, cipher: Cipher) -> str:
        return cipher.decrypt(self.code_enc) if self.code_enc else self.code_key

    def url(self, cipher: Cipher) -> str | None:
        return cipher.decrypt(self.url_enc) if self.url_enc else self.url_clear

    @classmethod
    def has_code(cls, cipher: Cipher, code: str) -> ColumnElement[bool]:
        """Matches the session of `code` (as typed: case and spaces aside), sealed under any
        configured key, or stored in the clear by an earlier release."""
        typed = normal_code(code)
        return cls.code_key.in_([*cipher.digests(typed), typed])


def normal_code(typed: str) -> str:
    """An activation code as typed, forgivingly: case, spaces, dashes, dots and underscores do
    not matter (Adobe Pass's codes are letters and digits)."""
    return re.sub(r"[\s\-_.]", "", typed).upper()


class Profile(Base):
    __tablename__ = "profiles"
    __table_args__ = (
        UniqueConstraint("job_id", "mvpd"),
        Index("ix_profiles_device_created", "device_id", "created_at"),
        Index("ix_profiles_mvpd_created", "mvpd", "created_at"),
        Index("ix_profiles_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    service_provider: Mapped[str] = mapped_column(String(200))
    mvpd: Mapped[str] = mapped_column(String(200))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    issuer: Mapped[str | None] = mapped_column(String(200))
    type: Mapped[str | None] = mapped_column(String(64))
    # User metadata is personal data: stored encrypted, never logged.
    attributes_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set by a logout: the profile is not reused after it.
    logged_out_at: Mapped[datetime | None]
    # A single sign-on profile's user, keyed (HMAC of the MVPD and its userID, not reversible):
    # a single logout on one app ends the same user's profiles of every app and device.
    identity_key: Mapped[str | None] = mapped_column(String(64), index=True)


class DecisionKind(enum.StrEnum):
    PREAUTHORIZE = "preauthorize"
    AUTHORIZE = "authorize"


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("job_id", "kind", "resource"),
        Index("ix_decisions_device_created", "device_id", "created_at"),
        Index("ix_decisions_mvpd_created", "mvpd", "created_at"),
        Index("ix_decisions_resource_created", "resource", "created_at"),
        Index("ix_decisions_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    service_provider: Mapped[str] = mapped_column(String(200))
    mvpd: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    resource: Mapped[str] = mapped_column(String(500))
    decision: Mapped[str] = mapped_column(String(8))  # Permit | Deny
    source: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_action: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    media_token_enc: Mapped[str | None] = mapped_column(Text)
    token_not_before: Mapped[datetime | None]
    token_not_after: Mapped[datetime | None]
    # The decision's own validity (its notBefore, notAfter), apart from its media token's:
    # a Permit is reused from passflow's store only inside it.
    not_before: Mapped[datetime | None]
    not_after: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Logout(Base):
    __tablename__ = "logouts"
    __table_args__ = (
        UniqueConstraint("job_id", "mvpd"),
        Index("ix_logouts_device_created", "device_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    service_provider: Mapped[str] = mapped_column(String(200))
    mvpd: Mapped[str] = mapped_column(String(200))
    action_name: Mapped[str] = mapped_column(String(64))
    action_type: Mapped[str] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(String(2000))
    # A single logout: the single sign-on methods whose headers went with it (e.g.
    # "platformSSO"), whose profiles Adobe Pass ended for every app of the user; None: the
    # device's own logout.
    single_sign_on: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
