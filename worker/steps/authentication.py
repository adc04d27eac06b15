"""Cookbook steps 2 and 3 of authentication.requested: profiles, configuration, session."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urljoin

from sqlalchemy import select, update

from models import FINAL_STATUSES, AuthSession, Device, Job, JobStatus, SessionStatus, utcnow
from worker import webhooks
from worker.jobs import Outcome, step
from worker.queues import Queue
from worker.steps.base import StepContext, from_millis, save_profile

DEFAULT_SESSION_S = 1800  # when Adobe leaves notAfter out: "e.g., 30 minutes" (FAQ)


@step("authentication.check_profiles", Queue.AUTHENTICATION)
def check_profiles(ctx: StepContext) -> Outcome:
    """An app that is already authenticated needs no new session (cookbook step 2)."""
    now_ms = utcnow().timestamp() * 1000
    valid = [p for p in ctx.adobe.profiles.list(ctx.sp, device=ctx.device)
             if p.not_after > now_ms and (ctx.job.mvpd in (None, p.mvpd))]
    if valid:
        # Several profiles: take the one valid longest (checklist, multiple profiles support).
        save_profile(ctx, max(valid, key=lambda p: p.not_after))
        return Outcome(JobStatus.SUCCEEDED, result={"already_authenticated": True})
    return Outcome(JobStatus.RUNNING, next_step="configuration.retrieve")


@step("configuration.retrieve", Queue.AUTHENTICATION)
def retrieve_configuration(ctx: StepContext) -> Outcome:
    """The provider list, cached a few minutes; a chosen MVPD must be integrated."""
    config = ctx.configuration()
    mvpd = ctx.job.mvpd
    if mvpd is not None:
        if config.mvpd(mvpd) is None:
            return Outcome(JobStatus.FAILED, error={
                "status": None, "code": "invalid_parameter_mvpd", "action": "none",
                "message": f"{mvpd} is not integrated with {ctx.sp}"})
        ctx.device_row.last_mvpd = mvpd
    return Outcome(JobStatus.RUNNING, next_step="sessions.create")


def _supersede_older_sessions(ctx: StepContext) -> None:
    """A new code stops polling of the device's previous one (checklist)."""
    older = list(ctx.session.scalars(select(AuthSession.job_id).where(
        AuthSession.device_id == ctx.job.device_id, AuthSession.service_provider == ctx.sp,
        AuthSession.status == SessionStatus.PENDING, AuthSession.job_id != ctx.job.id)))
    if not older:
        return
    reason = f"superseded by job {ctx.job.id}"
    ctx.session.execute(update(AuthSession).where(
        AuthSession.job_id.in_(older), AuthSession.status == SessionStatus.PENDING).values(
        status=SessionStatus.SUPERSEDED, stop_reason=reason, next_poll_at=None))
    cancelled = list(ctx.session.scalars(select(Job.id).where(
        Job.id.in_(older), Job.status.not_in([s.value for s in FINAL_STATUSES]))))
    ctx.session.execute(update(Job).where(Job.id.in_(cancelled)).values(
        status=JobStatus.CANCELLED, current_step=None, next_run_at=None, finished_at=utcnow(),
        lease_owner=None, lease_until=None,
        error={"status": None, "code": "superseded", "action": "none", "message": reason}))
    for job_id in cancelled:
        webhooks.record(ctx.session, job_id, "job.finished")


@step("sessions.create", Queue.AUTHENTICATION)
def create_session(ctx: StepContext) -> Outcome:
    settings = ctx.settings
    redirect_url = (ctx.event.get("redirect_url")
                    or f"{settings.public_url.rstrip('/')}/landing?job={ctx.job.id}")
    domain_name = ctx.event.get("domain_name") or _first_domain(ctx)
    answer = ctx.adobe.sessions.create(ctx.sp, device=ctx.device, mvpd=ctx.job.mvpd,
                                       domain_name=domain_name, redirect_url=redirect_url)
    # Serialize on the device row (a row lock on PostgreSQL, the write lock on SQLite), so of
    # two sessions created at once for one device, the later commit supersedes the earlier.
    ctx.session.execute(update(Device).where(Device.id == ctx.job.device_id)
                        .values(updated_at=utcnow()))
    _supersede_older_sessions(ctx)
    if answer.action_name == "authorize":
        # Already authenticated, or TempPass / degraded access: no login needed.
        mvpd = answer.mvpd or ctx.job.mvpd
        return Outcome(JobStatus.RUNNING, next_step="profiles.fetch",
                       result={"reason": answer.reason_type}, state={"mvpd": mvpd})
    if not answer.code:
        return Outcome(JobStatus.FAILED, error={
            "status": None, "code": "unexpected_session_answer", "action": "none",
            "message": f"session answer {answer.action_name} without a code"})
    url = (urljoin(ctx.adobe.base_url + "/", answer.url) if answer.action_name == "authenticate"
           and answer.url else ctx.adobe.sessions.authenticate_url(ctx.sp, answer.code))
    now = utcnow()
    not_after = from_millis(answer.not_after) or now + timedelta(seconds=DEFAULT_SESSION_S)
    primary = ctx.event.get("screen") == "primary"
    # Primary screen: no polling until the user reaches redirectUrl (the landing starts it);
    # one last look just before notAfter (sent by the sweeper), so an expiry is still noticed.
    last_look = (not_after - now).total_seconds() - settings.sweep_grace_s - 2
    delay = max(0.0, last_look) if primary else ctx.poll_delay()
    ctx.session.add(AuthSession(
        job_id=ctx.job.id, device_id=ctx.job.device_id, service_provider=ctx.sp,
        code=answer.code, url=url, mvpd=answer.mvpd or ctx.job.mvpd,
        adobe_session_id=answer.session_id, not_before=from_millis(answer.not_before),
        not_after=not_after, status=SessionStatus.PENDING,
        next_poll_at=now + timedelta(seconds=delay),
        polling_started_at=None if primary else now,
    ))
    return Outcome(JobStatus.WAITING_FOR_USER, next_step="profiles.poll", delay_s=delay,
                   result={"code": answer.code, "url": url,
                           "missing_parameters": answer.missing_parameters or None})


def _first_domain(ctx: StepContext) -> str | None:
    domains = ctx.configuration().requestor.domains
    if not domains:
        return None
    first = domains[0]
    return first.get("name") if isinstance(first, dict) else str(first)


@step("profiles.fetch", Queue.AUTHENTICATION)
def fetch_profile(ctx: StepContext) -> Outcome:
    """After an `authorize` session answer: the profile that made it unnecessary to log in."""
    mvpd = ctx.job.state.get("mvpd") or ctx.job.mvpd
    profile = ctx.adobe.profiles.for_mvpd(
        ctx.sp, mvpd, device=ctx.device,
        temppass_identity=ctx.event.get("temppass_identity")).get(mvpd)
    if profile is None:
        return Outcome(JobStatus.FAILED, error={
            "status": None, "code": "authenticated_profile_missing", "action": "authentication",
            "message": f"no profile for {mvpd} after an authorize answer"})
    save_profile(ctx, profile)
    return Outcome(JobStatus.SUCCEEDED)
