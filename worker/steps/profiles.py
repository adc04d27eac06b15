"""Cookbook steps 2 and 4: profiles.

- `profiles.retrieve` (profiles.requested): every profile of the device.
- `profiles.check` (first step of authentication.requested): an app already authenticated
  needs no new session; otherwise on to the configuration.
- `profiles.poll`: the profile for the session's code, until authenticated, expired or
  superseded; one poll per run, the next `poll_interval_s` later (with jitter).
- `profiles.fetch`: after a session answered `authorize`, the profile that made a login
  unnecessary.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from models import AuthSession, Job, JobStatus, SessionStatus, utcnow
from passflow.events import temppass_identity
from worker import metrics
from worker.adobe_pass import BadRequestError
from worker.adobe_pass.types import Profiles
from worker.jobs import Outcome
from worker.policy import EXPIRY_MARGIN_S
from worker.queues import Queue
from worker.steps.base import (
    Call,
    Step,
    StepContext,
    StepName,
    answer_or_raise,
    failed,
    reuse_profile,
    save_profile,
    stored_profile,
)

# profiles.retrieve ---------------------------------------------------------------------------


def _list(ctx: StepContext) -> Call:
    adobe, sp, device = ctx.adobe, ctx.sp, ctx.device
    return lambda: adobe.profiles.list(sp, device=device)


def _save_all(ctx: StepContext, answer: Any) -> Outcome:
    for profile in answer_or_raise(answer):
        save_profile(ctx, profile)
    return Outcome(JobStatus.SUCCEEDED)


RETRIEVE = Step(StepName.PROFILES_RETRIEVE, Queue.AUTHENTICATION, _list, _save_all)


# profiles.check ------------------------------------------------------------------------------

def _known_mvpd(ctx: StepContext) -> str | None:
    """The MVPD the event names, else the one the device last used (checklist, Profiles
    Caching: "keep track of the user's selected TV provider")."""
    return ctx.job.mvpd or ctx.device_row.last_mvpd


def _check_plan(ctx: StepContext) -> Call | None:
    if stored_profile(ctx, ctx.job.mvpd) is not None:
        return None  # reused until it expires: no call
    adobe, sp, device, mvpd = ctx.adobe, ctx.sp, ctx.device, _known_mvpd(ctx)
    if mvpd is not None:  # a returning user: that MVPD's profile only
        return lambda: adobe.profiles.for_mvpd(sp, mvpd, device=device)
    return lambda: adobe.profiles.list(sp, device=device)


def _valid_or_continue(ctx: StepContext, answer: Any) -> Outcome:
    stored = stored_profile(ctx, ctx.job.mvpd)
    if answer is None and stored is not None:
        reuse_profile(ctx, stored)
        return Outcome(JobStatus.SUCCEEDED, result={"already_authenticated": True,
                                                    "profile_reused": True})
    now_ms = utcnow().timestamp() * 1000
    valid = [p for p in answer_or_raise(answer)
             if p.not_after > now_ms and (ctx.job.mvpd in (None, p.mvpd))]
    if valid:
        # Several profiles: take the one valid longest (checklist, multiple profiles support).
        save_profile(ctx, max(valid, key=lambda p: p.not_after))
        return Outcome(JobStatus.SUCCEEDED, result={"already_authenticated": True})
    if ctx.job.mvpd is None:
        # The user must pick a provider: the one case that needs the configuration.
        return Outcome(JobStatus.RUNNING, next_step=StepName.CONFIGURATION_RETRIEVE)
    return Outcome(JobStatus.RUNNING, next_step=StepName.SESSIONS_CREATE)


CHECK = Step(StepName.PROFILES_CHECK, Queue.AUTHENTICATION, _check_plan, _valid_or_continue)


# profiles.poll -------------------------------------------------------------------------------

_STOPPED = {
    SessionStatus.SUPERSEDED: JobStatus.CANCELLED,
    SessionStatus.CANCELLED: JobStatus.CANCELLED,
    SessionStatus.EXPIRED: JobStatus.EXPIRED,
    SessionStatus.AUTHENTICATED: JobStatus.SUCCEEDED,
    SessionStatus.FAILED: JobStatus.FAILED,
}
_CODE_GONE = ("invalid_authentication_session", "invalid_parameter_code")


def _expire(auth: AuthSession, reason: str) -> Outcome:
    auth.status = SessionStatus.EXPIRED
    auth.stop_reason = reason
    auth.next_poll_at = None
    return Outcome(JobStatus.EXPIRED, error={
        "status": None, "code": "authentication_session_expired", "action": "authentication",
        "message": f"the user did not log in before the code expired ({reason})"})


def _until_expiry(auth: AuthSession, now: datetime) -> float:
    return max(0.0, (auth.not_after - now).total_seconds()) + EXPIRY_MARGIN_S


def _poll_plan(ctx: StepContext) -> Call | None:
    auth = ctx.job.auth_session
    if auth is None or auth.status != SessionStatus.PENDING or utcnow() >= auth.not_after:
        return None  # apply says why
    if auth.polling_started_at is None:
        return None  # primary screen: the browser has not reached redirectUrl yet
    if auth.polling_started_at is not None and ctx.job.next_run_at is not None:
        metrics.observe("passflow_poll_drift_seconds", (),
                        max(0.0, (utcnow() - ctx.job.next_run_at).total_seconds()))
    adobe, sp, code, device = ctx.adobe, ctx.sp, auth.code(ctx.cipher), ctx.device
    return lambda: adobe.profiles.for_code(sp, code, device=device)


def _poll_apply(ctx: StepContext, answer: Profiles | Exception | None) -> Outcome:
    auth = ctx.job.auth_session
    if auth is None:
        return failed("authentication_session_missing", "the job has no session to poll")
    if auth.status != SessionStatus.PENDING:
        return Outcome(_STOPPED[SessionStatus(auth.status)])
    now = utcnow()
    if now >= auth.not_after:
        return _expire(auth, "notAfter reached" if auth.polling_started_at else
                       "notAfter reached; the browser never reached the landing page")
    if answer is None:
        # Primary screen, the user not back yet: nothing is asked before the landing starts
        # polling; the next run is at notAfter, to end the session then.
        delay = _until_expiry(auth, now)
        auth.next_poll_at = now + timedelta(seconds=delay)
        return Outcome(JobStatus.WAITING_FOR_USER, next_step=StepName.PROFILES_POLL,
                       delay_s=delay)
    if isinstance(answer, BadRequestError) and answer.code in _CODE_GONE:
        return _expire(auth, answer.code)
    profiles = answer_or_raise(answer)
    auth.polls += 1
    found = profiles.get(auth.mvpd) if auth.mvpd else next(iter(profiles), None)
    if found is not None:
        save_profile(ctx, found)
        auth.status = SessionStatus.AUTHENTICATED
        auth.mvpd = found.mvpd
        auth.stop_reason = "profile found"
        auth.next_poll_at = None
        return Outcome(JobStatus.SUCCEEDED)
    # No poll closer than the interval: one that would fall past notAfter becomes a run just
    # after it, which ends the session without a call.
    delay = ctx.poll_delay()
    if now + timedelta(seconds=delay) >= auth.not_after:
        delay = _until_expiry(auth, now)
    auth.next_poll_at = now + timedelta(seconds=delay)
    return Outcome(JobStatus.WAITING_FOR_USER, next_step=StepName.PROFILES_POLL, delay_s=delay)


POLL = Step(StepName.PROFILES_POLL, Queue.POLLING, _poll_plan, _poll_apply,
            preload=(Job.auth_session,), budget_deadline=False)


# profiles.fetch ------------------------------------------------------------------------------

def _fetch_plan(ctx: StepContext) -> Call:
    mvpd = ctx.job.state.get("mvpd") or ctx.job.mvpd
    adobe, sp, device = ctx.adobe, ctx.sp, ctx.device
    identity = temppass_identity(ctx.event, ctx.cipher)
    return lambda: adobe.profiles.for_mvpd(sp, mvpd, device=device,
                                           temppass_identity=identity)


def _fetch_apply(ctx: StepContext, answer: Any) -> Outcome:
    mvpd = ctx.job.state.get("mvpd") or ctx.job.mvpd
    profile = answer_or_raise(answer).get(mvpd)
    if profile is None:
        return failed("authenticated_profile_missing",
                      f"no profile for {mvpd} after an authorize answer", action="authentication")
    save_profile(ctx, profile)
    return Outcome(JobStatus.SUCCEEDED)


FETCH = Step(StepName.PROFILES_FETCH, Queue.AUTHENTICATION, _fetch_plan, _fetch_apply)
