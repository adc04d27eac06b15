"""Devices, the events the backend sends, and the jobs and steps they become."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow

if TYPE_CHECKING:
    from models.entitlements import AuthSession


def new_id() -> str:
    return str(uuid.uuid4())


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING_FOR_USER = "waiting_for_user"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.EXPIRED,
                            JobStatus.CANCELLED})


class StepStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the device's stable id
    last_info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_ip: Mapped[str | None] = mapped_column(String(64))
    last_port: Mapped[int | None]
    last_mvpd: Mapped[str | None] = mapped_column(String(200))
    # The selection as the configuration shows it (checklist, TV Provider Selection Caching).
    last_mvpd_name: Mapped[str | None] = mapped_column(String(200))
    last_mvpd_logo_url: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)  # idempotency key
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_device_created", "device_id", "created_at"),
        # The sweeper looks for work that is due and not leased.
        Index("ix_jobs_due", "next_run_at"),
        Index("ix_jobs_event_pk", "event_pk"),
        Index("ix_jobs_status_created", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # An event's first job, and any retries of it (`retry_of` set).
    event_pk: Mapped[str] = mapped_column(ForeignKey("events.id"))
    type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default=JobStatus.QUEUED)
    service_provider: Mapped[str] = mapped_column(String(200))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    mvpd: Mapped[str | None] = mapped_column(String(200))
    # The step to run next; NULL once the job is final.
    current_step: Mapped[str | None] = mapped_column(String(64))
    next_run_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    # Set when the job's message was handed to the broker (the outbox relay's mark).
    dispatched_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Internal progress of a step between runs (retry rounds...), never shown to users.
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]
    # A retry: the failed job it retries (once: unique), and who asked (an operator's token,
    # the CLI).
    retry_of: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"),
                                                 unique=True)
    requested_by: Mapped[str | None] = mapped_column(String(200))
    # The API request that accepted the event (X-Request-ID), carried into the steps' logs.
    request_id: Mapped[str | None] = mapped_column(String(64))

    event: Mapped[Event] = relationship()
    device: Mapped[Device] = relationship()
    steps: Mapped[list[JobStep]] = relationship(
        back_populates="job", order_by="JobStep.id", cascade="all, delete-orphan"
    )
    # An authentication job's session (polling loads it with the job).
    auth_session: Mapped[AuthSession | None] = relationship(uselist=False, viewonly=True)


class JobStep(Base):
    __tablename__ = "job_steps"
    __table_args__ = (
        UniqueConstraint("job_id", "step"),
        Index("ix_job_steps_started_at", "started_at"),  # figures by time (models.stats)
        Index("ix_job_steps_finished_at", "finished_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default=StepStatus.RUNNING)
    attempts: Mapped[int] = mapped_column(default=0)  # runs, including reruns after waits
    failures: Mapped[int] = mapped_column(default=0)  # retryable errors, bounded
    rate_limited: Mapped[int] = mapped_column(default=0)  # Adobe's 429s, bounded likewise
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="steps")


class WebhookDelivery(Base):
    """One notification of a job to PASSFLOW_WEBHOOK_URL, written with the job's transition."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("job_id", "kind"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))  # job.waiting_for_user | job.finished
    status: Mapped[str] = mapped_column(String(16), default="pending")  # delivered | failed
    attempts: Mapped[int] = mapped_column(default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class ApiToken(Base):
    """A bearer token of the HTTP API. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    scope: Mapped[str] = mapped_column(String(16))  # ingest | read | admin
    # The brands (service providers) the token may act for and read, comma-separated; None:
    # every brand.
    service_providers: Mapped[str | None] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
