"""Cookbook step 3: create the authentication session (a code and a URL).

A new code supersedes the device's older pending ones (checklist). A session answered
`authorize` needs no login (already authenticated, TempPass, degraded access): the profile is
fetched instead of polled.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin

from models import AuthSession, Job, JobStatus, SessionStatus, utcnow
from worker import jobs
from worker.adobe_pass.types import SessionAction
from worker.jobs import Outcome
from worker.policy import DEFAULT_SESSION_S, EXPIRY_MARGIN_S
from worker.queues import Queue
from worker.steps.base import (
    Call,
    Step,
    StepContext,
    StepName,
    answer_or_raise,
    failed,
    from_millis,
)


def _session_fields(ctx: StepContext) -> tuple[str, Callable[[], str]]:
    """The redirect URL, and the domain (the event's, the setting, else the one learned from a
    configuration: read only by the first login ever, off the database, in the call)."""
    rt, sp, device = ctx.runtime, ctx.sp, ctx.device
    redirect_url = ctx.event.get("redirect_url") or f"{ctx.public_url()}/landing?job={ctx.job.id}"
    domain_name = ctx.event.get("domain_name") or ctx.settings.domain_name
    return redirect_url, lambda: domain_name or rt.domain_name(sp, device=device)


def plan(ctx: StepContext) -> Call:
    rt, sp, device, mvpd = ctx.runtime, ctx.sp, ctx.device, ctx.job.mvpd
    redirect_url, domain = _session_fields(ctx)
    return lambda: rt.adobe_for(sp).sessions.create(
        sp, device=device, mvpd=mvpd, domain_name=domain(), redirect_url=redirect_url)


def apply(ctx: StepContext, answer: Any) -> Outcome:
    created: SessionAction = answer_or_raise(answer)
    jobs.supersede_sessions(ctx.session, device_id=ctx.job.device_id, service_provider=ctx.sp,
                            by_job_id=ctx.job.id)
    if created.action_name == "authorize":
        mvpd = created.mvpd or ctx.job.mvpd
        return Outcome(JobStatus.RUNNING, next_step=StepName.PROFILES_FETCH,
                       result={"reason": created.reason_type}, state={"mvpd": mvpd})
    if not created.code:
        return failed("unexpected_session_answer",
                      f"session answer {created.action_name} without a code")
    url = (urljoin(ctx.adobe.base_url + "/", created.url)
           if created.action_name == "authenticate" and created.url
           else ctx.adobe.sessions.authenticate_url(ctx.sp, created.code))
    now = utcnow()
    not_after = from_millis(created.not_after) or now + timedelta(seconds=DEFAULT_SESSION_S)
    primary = ctx.event.get("screen") == "primary"
    # Primary screen: no poll at all until the user reaches redirectUrl (the landing starts
    # polling); a run just after notAfter ends the session, with no call, if they never do.
    until_expiry = (not_after - now).total_seconds() + EXPIRY_MARGIN_S
    delay = until_expiry if primary else min(ctx.poll_delay(), until_expiry)
    auth = AuthSession(
        job_id=ctx.job.id, device_id=ctx.job.device_id, service_provider=ctx.sp,
        mvpd=created.mvpd or ctx.job.mvpd,
        adobe_session_id=created.session_id, not_before=from_millis(created.not_before),
        not_after=not_after, status=SessionStatus.PENDING,
        next_poll_at=now + timedelta(seconds=delay),
        polling_started_at=None if primary else now,
    )
    auth.seal(ctx.cipher, created.code, url)  # the job's view reads them from here
    ctx.session.add(auth)
    return Outcome(JobStatus.WAITING_FOR_USER, next_step=StepName.PROFILES_POLL, delay_s=delay,
                   result={"missing_parameters": created.missing_parameters or None})


CREATE = Step(StepName.SESSIONS_CREATE, Queue.AUTHENTICATION, plan, apply)


# sessions.resume -----------------------------------------------------------------------------
# Adobe answered `resume` with `missingParameters` (a partner fallback whose framework named no
# provider Adobe knows): the job gives what it has itself, the event's MVPD included, rather than
# leaving the session to the activation page.

_GIVEN_BY_PASSFLOW = frozenset({"domainName", "domain", "redirectUrl"})


def resumable(ctx: StepContext, missing: list[str] | None) -> bool:
    """Whether the job can give every parameter Adobe's session lacks."""
    can = _GIVEN_BY_PASSFLOW | ({"mvpd"} if _resume_mvpd(ctx) else set())
    return bool(missing) and set(missing) <= can


def _resume_mvpd(ctx: StepContext) -> str | None:
    return ctx.job.mvpd or ctx.event.get("mvpd")


def _resume_plan(ctx: StepContext) -> Call | None:
    auth = ctx.job.auth_session
    if auth is None or auth.status != SessionStatus.PENDING:
        return None
    rt, sp, device, mvpd = ctx.runtime, ctx.sp, ctx.device, _resume_mvpd(ctx)
    code = auth.code(ctx.cipher)
    redirect_url, domain = _session_fields(ctx)
    return lambda: rt.adobe_for(sp).sessions.resume(
        sp, code, device=device, mvpd=mvpd, domain_name=domain(), redirect_url=redirect_url)


def _resume_apply(ctx: StepContext, answer: Any) -> Outcome:
    auth = ctx.job.auth_session
    if answer is None or auth is None:
        return Outcome(JobStatus.WAITING_FOR_USER, next_step=StepName.PROFILES_POLL)
    resumed: SessionAction = answer_or_raise(answer)
    mvpd = resumed.mvpd or _resume_mvpd(ctx)
    if resumed.action_name == "authorize":
        return Outcome(JobStatus.RUNNING, next_step=StepName.PROFILES_FETCH,
                       result={"reason": resumed.reason_type}, state={"mvpd": mvpd})
    auth.mvpd = auth.mvpd or mvpd
    missing = resumed.missing_parameters if resumed.action_name == "retry" else None
    delay = ctx.poll_delay()
    auth.next_poll_at = utcnow() + timedelta(seconds=delay)
    # `retry`: Adobe still lacks something passflow cannot give: the user's second screen
    # (the activation page) resumes it, and the job says what is missing meanwhile.
    return Outcome(JobStatus.WAITING_FOR_USER, next_step=StepName.PROFILES_POLL, delay_s=delay,
                   result={"missing_parameters": missing or None})


RESUME = Step(StepName.SESSIONS_RESUME, Queue.AUTHENTICATION, _resume_plan, _resume_apply,
              preload=(Job.auth_session,))
