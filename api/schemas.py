"""The API's answers as typed models: what the OpenAPI document shows, and what each route is
checked against before it answers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from models.base import in_utc

# No control characters (a NUL cannot even be compared in PostgreSQL).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

# A query's time: with its zone (else which instant is meant?), comparable in UTC.
Instant = Annotated[AwareDatetime, AfterValidator(in_utc)]


class Accepted(BaseModel):
    job_id: str
    status: str
    # Accepted, but departing from Adobe's pages (device info): said, never silent.
    warnings: list[str] | None = None


class ValidationProblem(BaseModel):
    field: str
    message: str
    type: str


class StepView(BaseModel):
    step: str
    status: str
    attempts: int
    failures: int
    rate_limited: int
    last_error: str | None
    started_at: str | None
    finished_at: str | None


class JobError(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: int | None = None
    code: str | None = None
    action: str | None = None
    message: str | None = None


class JobDelay(BaseModel):
    """A step no worker took for a while after it was due: an outage of the worker pool."""

    step: str
    queue: str
    late_s: int
    at: str | None
    reason: str


class JobView(BaseModel):
    """GET /v1/jobs/{job_id} (docs/api.md, "Jobs"): `result` by type (code and url, profile,
    profiles, decisions, logouts)."""

    job_id: str
    event_id: str
    type: str
    status: str
    device_id: str
    service_provider: str
    mvpd: str | None
    steps: list[StepView]
    result: dict[str, Any]
    error: JobError | None
    explained: dict[str, str] | None = None
    waiting_for: str | None
    delays: list[JobDelay] = []
    retry_of: str | None
    retried_by: list[str] = []
    requested_by: str | None
    actions: list[dict[str, Any]] = []
    created_at: str | None
    finished_at: str | None
    redacted: str | None = None


class JobSummary(BaseModel):
    job_id: str
    event_id: str
    type: str
    status: str
    device_id: str
    service_provider: str
    mvpd: str | None
    step: str | None
    created_at: str
    finished_at: str | None
    error_code: str | None
    error_action: str | None
    reason: str | None
    retry_of: str | None


Text = Annotated[str, Field(max_length=200, pattern=PRINTABLE)]


class RetryFilter(BaseModel):
    """POST /v1/jobs/retry: which failed jobs to run again (every field narrows; none: every
    failed job not retried yet), and whether only to count them."""

    model_config = ConfigDict(extra="forbid")

    error_code: Text | None = None
    type: Text | None = None
    mvpd: Text | None = None
    service_provider: Text | None = None
    device_id: Text | None = None
    step: Annotated[str | None, Field(max_length=64, pattern=PRINTABLE)] = None
    since: Instant | None = None
    until: Instant | None = None
    dry_run: bool = False
    limit: Annotated[int, Field(ge=1, le=500)] = 500


class RetriedJob(BaseModel):
    job_id: str
    new_job_id: str


class RefusedRetry(BaseModel):
    job_id: str
    reason: str


class RetryReport(BaseModel):
    """What a bulk retry matched (by error code), and what it did: the new jobs, the ones
    another retry took meanwhile, and how many matched beyond its limit (`left`)."""

    dry_run: bool
    matched: int
    by_error_code: dict[str, int]
    would_retry: int | None = None
    retried: list[RetriedJob]
    refused: list[RefusedRetry]
    left: int | None = None


class JobsPage(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None


class HistoryEntry(BaseModel):
    """One entry; each kind adds its own fields (a decision's `decision_kind`, a session's
    `code`, a job's `job_type`...)."""

    model_config = ConfigDict(extra="allow")
    kind: str
    device_id: str
    service_provider: str
    mvpd: str | None
    resource: str | None
    at: str
    job_id: str
    outcome: str | None = None
    error_code: str | None = None
    error_action: str | None = None
    reason: str | None = None


class HistoryPage(BaseModel):
    entries: list[HistoryEntry]
    next_cursor: str | None


class Landed(BaseModel):
    job_id: str
    polling: bool
