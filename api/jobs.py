"""/v1/jobs: a job, the jobs by filter, cancel, retry (one, or every failed job of a filter),
and a primary screen's landing (docs/api.md, "Jobs")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from api.activation import start_polling
from api.auth import Access, actor, brand_allowed, brands_of, personal_cipher
from api.queries import Cursor, Limit, Text, known_query
from api.schemas import PRINTABLE, Instant, JobsPage, JobView, Landed, RetryFilter, RetryReport
from models import Job, JobStatus, audit
from models.db import session_scope
from models.history import JobQuery, jobs_page
from passflow.crypto import Cipher
from passflow.events import EventType
from worker import dispatch, jobs
from worker.views import job_view


def build_router(access: Access, cipher: Cipher) -> APIRouter:
    router = APIRouter(tags=["jobs"])

    def visible(request: Request, job_id: str) -> None:
        """404 for a job that does not exist and for one of a brand the token may not see."""
        with session_scope() as session:
            job = session.get(Job, job_id)
            if job is None or not brand_allowed(request, job.service_provider):
                raise HTTPException(404, "job not found")

    def view(request: Request, job_id: str) -> JobView:
        with session_scope() as session:
            return JobView.model_validate(job_view(session, session.get_one(Job, job_id),
                                                   personal_cipher(request, cipher)))

    @router.get("/v1/jobs/{job_id}", dependencies=access.read)
    def get_job(job_id: str, request: Request) -> JobView:
        visible(request, job_id)
        return view(request, job_id)

    @router.delete("/v1/jobs/{job_id}", dependencies=access.admin)
    def cancel_job(job_id: str, request: Request) -> JobView:
        """Cancel a job that is not final yet (a pending poll stops at once); audited, and the
        job's error says who cancelled it."""
        visible(request, job_id)
        with session_scope() as session:
            if not jobs.cancel(session, [job_id], message=f"cancelled by {actor(request)}"):
                raise HTTPException(409, f"job is already {session.get_one(Job, job_id).status}")
            audit.record(session, actor(request), "job.cancel", job_id)
        return view(request, job_id)

    @router.get("/v1/jobs", dependencies=[*access.read, known_query(
        "status", "type", "device_id", "event_id", "since", "until", "limit", "cursor",
        "service_provider", "step", "mvpd")])
    def list_jobs(
        request: Request,
        status: JobStatus | None = None,
        type: EventType | None = None,  # noqa: A002 (the contract's name)
        service_provider: Text = None,
        device_id: Text = None,
        event_id: Text = None,
        step: Annotated[str | None, Query(max_length=64, pattern=PRINTABLE)] = None,
        mvpd: Text = None,
        since: Instant | None = None,
        until: Instant | None = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> JobsPage:
        """Jobs newest first; an event id finds its first job and every retry of it; `step`:
        jobs that ran that step or are at it (a failed job: the steps it ran)."""
        query = JobQuery(status=status, type=type, device_id=device_id, event_id=event_id,
                         since=since, until=until, limit=limit, cursor=cursor,
                         service_provider=service_provider, step=step, mvpd=mvpd,
                         service_providers=brands_of(request))
        with session_scope() as session:
            found, next_cursor = jobs_page(session, query)
        return JobsPage(jobs=found, next_cursor=next_cursor)

    @router.post("/v1/jobs/retry", dependencies=access.admin)
    def retry_jobs(given: RetryFilter, request: Request) -> RetryReport:
        """Run again every failed job the filter matches that no job retries yet (at most
        `limit` a call, newest first; `left` says how many more match): each retried as one
        job is, and the whole act audited with its filter and counts. `dry_run` only counts
        them, by error code."""
        query = JobQuery(**given.model_dump(exclude={"dry_run", "limit"}),
                         service_providers=brands_of(request))
        return RetryReport.model_validate(dispatch.retry_many(
            query, requested_by=actor(request), dry_run=given.dry_run, limit=given.limit))

    @router.post("/v1/jobs/{job_id}/retry", status_code=201, dependencies=access.admin)
    def retry_job(job_id: str, request: Request) -> JobView:
        """Run a failed job again: a new job for the same event, linked to it (`retry_of`)
        and saying who asked (`requested_by`); the failed one stays in the history."""
        visible(request, job_id)
        try:
            new_id = dispatch.retry(job_id, requested_by=actor(request))
        except LookupError as exc:
            raise HTTPException(404, "job not found") from exc
        except jobs.NotRetryable as exc:
            raise HTTPException(409, str(exc)) from exc
        return view(request, new_id)

    @router.post("/v1/jobs/{job_id}/landed", dependencies=access.ingest)
    def landed(job_id: str) -> Landed:
        """The app's own redirect page was reached: start polling now (primary screen)."""
        with session_scope() as session:
            if session.get(Job, job_id) is None:
                raise HTTPException(404, "job not found")
        return Landed(job_id=job_id, polling=start_polling(job_id))

    return router
