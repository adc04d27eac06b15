"""Cookbook step 4: poll for the profile with the code until authenticated, expired or
superseded. One poll per run; the next is due `poll_interval_s` later (with jitter)."""

from __future__ import annotations

from datetime import timedelta

from models import AuthSession, Job, JobStatus, SessionStatus, utcnow
from worker import metrics
from worker.adobe_pass import BadRequestError
from worker.adobe_pass.types import Profiles
from worker.jobs import Apply, Call, Outcome, planned_step
from worker.queues import Queue
from worker.steps.base import StepContext, save_profile

_STOPPED = {
    SessionStatus.SUPERSEDED: JobStatus.CANCELLED,
    SessionStatus.CANCELLED: JobStatus.CANCELLED,
    SessionStatus.EXPIRED: JobStatus.EXPIRED,
    SessionStatus.AUTHENTICATED: JobStatus.SUCCEEDED,
    SessionStatus.FAILED: JobStatus.FAILED,
}


def _expire(auth: AuthSession, reason: str) -> Outcome:
    auth.status = SessionStatus.EXPIRED
    auth.stop_reason = reason
    auth.next_poll_at = None
    return Outcome(JobStatus.EXPIRED, error={
        "status": None, "code": "authentication_session_expired", "action": "authentication",
        "message": f"the user did not log in before the code expired ({reason})"})


@planned_step("profiles.poll", Queue.POLLING, preload=(Job.auth_session,))
def poll(ctx: StepContext) -> Outcome | tuple[Call, Apply]:
    auth = ctx.job.auth_session
    assert auth is not None, "an authentication job polls its own session"
    if auth.status != SessionStatus.PENDING:
        return Outcome(_STOPPED[SessionStatus(auth.status)])
    now = utcnow()
    if auth.polling_started_at is not None and ctx.job.next_run_at is not None:
        metrics.observe("passflow_poll_drift_seconds", (),
                        max(0.0, (now - ctx.job.next_run_at).total_seconds()))
    if now >= auth.not_after:
        return _expire(auth, "notAfter reached")
    # Plain values only in the call: it may run on another thread than the session's.
    adobe, sp, code, device = ctx.adobe, ctx.sp, auth.code, ctx.device

    def call() -> Profiles:
        return adobe.profiles.for_code(sp, code, device=device)

    def apply(answer: Profiles | Exception) -> Outcome:
        if isinstance(answer, BadRequestError) and answer.code in (
                "invalid_authentication_session", "invalid_parameter_code"):
            return _expire(auth, answer.code)
        if isinstance(answer, Exception):
            raise answer
        auth.polls += 1
        found = answer.get(auth.mvpd) if auth.mvpd else next(iter(answer), None)
        if found is not None:
            save_profile(ctx, found)
            auth.status = SessionStatus.AUTHENTICATED
            auth.mvpd = found.mvpd
            auth.stop_reason = "profile found"
            auth.next_poll_at = None
            return Outcome(JobStatus.SUCCEEDED)
        # The last poll lands on notAfter, so an expiry is noticed on time.
        later = utcnow()
        delay = min(ctx.poll_delay(), max(0.0, (auth.not_after - later).total_seconds()))
        auth.next_poll_at = later + timedelta(seconds=delay)
        return Outcome(JobStatus.WAITING_FOR_USER, next_step="profiles.poll", delay_s=delay)

    return call, apply
