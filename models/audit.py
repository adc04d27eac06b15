"""Who did what, when: one row per action that changes state (a retry, a cancel, a forget, a
registration, a token created or revoked, a brand added or retired), written in the same
transaction as the change. `passflow audit` and a job's view read it."""

from __future__ import annotations

import getpass
import os
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utc_text, utcnow


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target", "target"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # "api:<token name>", or "cli:<OS user>" ("cli:<OS user> as <name>" with --as).
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))  # e.g. job.retry, device.forget
    target: Mapped[str] = mapped_column(String(300))  # what it acted on: a job, a device...
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def record(session: Session, actor: str, action: str, target: str, **detail: Any) -> None:
    """An audit row in the caller's transaction: it stands or falls with the change."""
    session.add(AuditEntry(actor=actor[:200], action=action, target=target[:300],
                           detail={k: v for k, v in detail.items() if v is not None}))


def cli_actor(as_name: str | None = None) -> str:
    """The operator at a terminal: the OS account running the command (from the process, not
    the forgeable $USER), and the person it names with --as when the account is shared."""
    try:
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}" + (f" as {as_name}" if as_name else "")


def entries(session: Session, *, target: str | None = None,
            limit: int = 50) -> list[dict[str, Any]]:
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    return [{"at": utc_text(e.at), "actor": e.actor, "action": e.action, "target": e.target,
             "detail": e.detail} for e in session.scalars(query)]
