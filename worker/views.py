"""A job as the HTTP API and webhooks show it (docs/api.md, "Jobs").

Personal data (profile attributes, media tokens) is shown only to whom a cipher is given: a
view made with `cipher=None` leaves them out and says so in `redacted`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import (
    FINAL_STATUSES,
    AuthSession,
    Decision,
    Event,
    Job,
    JobStatus,
    JobStep,
    Logout,
    Profile,
    audit,
    duration_text,
    utc_text,
    utcnow,
)
from passflow.crypto import Cipher
from passflow.flows import FLOWS, EventType, Result
from passflow.reasons import explained
from worker.heartbeat import worker_of
from worker.policy import SWEEP_STALE_S


def _millis(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value else None


REDACTED = ("media tokens, profile attributes and activation codes are left out: they need a "
            "token of the personal (or admin) scope")


def profile_view(profile: Profile, cipher: Cipher | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "mvpd": profile.mvpd,
        "notBefore": _millis(profile.not_before),
        "notAfter": _millis(profile.not_after),
        "issuer": profile.issuer,
        "type": profile.type,
    }
    if cipher is not None:
        view["attributes"] = json.loads(cipher.decrypt(profile.attributes_enc))
    return view


def decision_view(decision: Decision, cipher: Cipher | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "resource": decision.resource,
        "decision": decision.decision,
        "source": decision.source,
        "error": decision.error,
        "explained": explained(decision.error),
    }
    if decision.kind == "authorize" and decision.media_token_enc and cipher is not None:
        view["media_token"] = cipher.decrypt(decision.media_token_enc)
        view["media_token_not_before"] = _millis(decision.token_not_before)
        view["media_token_not_after"] = _millis(decision.token_not_after)
    return view


def _authentication_result(session: Session, job: Job, cipher: Cipher | None) -> dict[str, Any]:
    stored, result = job.result or {}, {}
    # A live code signs in whoever types it first: personal data too (the URL holds it).
    if cipher is not None:
        auth = session.scalars(select(AuthSession).where(AuthSession.job_id == job.id)).first()
        if auth is not None:
            result.update(code=auth.code(cipher), url=auth.url(cipher))
        else:  # a job of a release before 0.5.0 kept them in its result
            result.update({k: stored[k] for k in ("code", "url") if stored.get(k)})
    profile = session.scalars(select(Profile).where(Profile.job_id == job.id)).first()
    if profile is not None:
        result["profile"] = profile_view(profile, cipher)
    return result


def _profiles_result(session: Session, job: Job, cipher: Cipher | None) -> dict[str, Any]:
    profiles = session.scalars(select(Profile).where(Profile.job_id == job.id)
                               .order_by(Profile.id))
    return {"profiles": [profile_view(p, cipher) for p in profiles]}


def _decisions_result(session: Session, job: Job, cipher: Cipher | None) -> dict[str, Any]:
    decisions = session.scalars(select(Decision).where(Decision.job_id == job.id)
                                .order_by(Decision.id))
    return {"decisions": [decision_view(d, cipher) for d in decisions]}


def _logouts_result(session: Session, job: Job, cipher: Cipher | None) -> dict[str, Any]:
    logouts = session.scalars(select(Logout).where(Logout.job_id == job.id)
                              .order_by(Logout.id))
    return {"logouts": [{"mvpd": lo.mvpd, "actionName": lo.action_name,
                         "actionType": lo.action_type, "url": lo.url,
                         "single_logout": lo.single_sign_on} for lo in logouts]}


def _partner_result(session: Session, job: Job, cipher: Cipher | None) -> dict[str, Any]:
    """Adobe's partner request while the job waits (for the device's partner framework: a
    credential, shown only with personal data), then the profile; on Adobe's fallback, the code
    and URL of the basic flow and the reason."""
    stored = job.result or {}
    result = _authentication_result(session, job, cipher)
    if "profile" not in result and stored.get("profile_job"):
        result["profile_job"] = stored["profile_job"]
        profile = session.scalars(select(Profile).where(
            Profile.job_id == stored["profile_job"])).first()
        if profile is not None:
            result["profile"] = profile_view(profile, cipher)
    if stored.get("partner_request") and cipher is not None and "profile" not in result:
        result["partner_request"] = stored["partner_request"]
    if stored.get("fallback"):
        result["fallback"] = stored["fallback"]
    return result


# The view of each kind of result a flow declares (passflow.flows.Result).
RESULTS = {
    Result.AUTHENTICATION: _authentication_result,
    Result.PROFILES: _profiles_result,
    Result.DECISIONS: _decisions_result,
    Result.LOGOUTS: _logouts_result,
    Result.PARTNER: _partner_result,
}
assert set(RESULTS) == set(Result), "every kind of result has its view"


def job_result(session: Session, job: Job, cipher: Cipher | None) -> dict[str, Any]:
    return RESULTS[FLOWS[EventType(job.type)].result](session, job, cipher)


def waiting_for(job: Job, steps: list[JobStep], now: datetime | None = None, *,
                code: str | None = None) -> str | None:
    """What a job that is not final waits for, in words an operator can act on (the code
    itself only when given: it is personal data)."""
    if job.status in FINAL_STATUSES or job.current_step is None:
        return None
    now = now or utcnow()
    step = job.current_step
    row = next((s for s in steps if s.step == step), None)
    if job.status == JobStatus.WAITING_FOR_USER and step == "partner.wait":
        return (f"the device's partner framework to answer Adobe's request (send "
                f"partner_authentication.responded; expires at {utc_text(job.next_run_at)})")
    if job.status == JobStatus.WAITING_FOR_USER:
        code = code or "(redacted)"
        pick = "" if job.mvpd else "pick a provider and "
        return (f"the user to {pick}log in with code {code} on the second screen "
                f"(polled by {step}, next at {utc_text(job.next_run_at)})")
    if job.lease_until is not None and job.lease_until > now:
        who = worker_of(job.lease_owner)
        holder = f"worker {who} (`passflow workers`)" if who else str(job.lease_owner)
        return f"{step} running on {holder} (lease until {utc_text(job.lease_until)})"
    if job.next_run_at is not None and job.next_run_at > now:
        why = f" after: {_step_error(row.last_error)}" if row is not None and row.last_error else ""
        return f"{step} again at {utc_text(job.next_run_at)}{why}"
    due = job.next_run_at or job.created_at
    due = due if due.tzinfo else due.replace(tzinfo=UTC)
    if (now - due).total_seconds() < SWEEP_STALE_S:  # sent, and a worker will take it
        return f"a worker to run {step} (queued, due since {utc_text(due)})"
    return (f"a worker to run {step} (due since {utc_text(due)}; none has taken it for "
            f"{duration_text((now - due).total_seconds())}: are workers running and the "
            "sweeper fresh in /healthz?)")


def error_text(error: dict[str, Any]) -> str:
    """A job's error as one line: its code, HTTP status and Adobe's action, then its message
    (a step's `last_error`)."""
    head = str(error.get("code") or "error")
    if error.get("status"):
        head += f" (HTTP {error['status']})"
    if error.get("action") not in (None, "", "none"):
        head += f", action {error['action']}"
    return f"{head}: {error['message']}" if error.get("message") else head


def _step_error(stored: str | None) -> str | None:
    """A step's last error; releases before 0.5.0 stored a final one as JSON."""
    if stored and stored.startswith("{"):
        try:
            return error_text(json.loads(stored))
        except (ValueError, AttributeError):
            return stored
    return stored


def delay_text(late: dict[str, Any]) -> str:
    """A step no worker took for a while after it was due (worker.engine), in words."""
    return (f"no worker took {late['step']} for {duration_text(late['late_s'])} after it was "
            f"due: the {late['queue']} queue had no worker consuming it, or every worker was "
            "busy or down (`passflow workers`)")


def job_view(session: Session, job: Job, cipher: Cipher | None) -> dict[str, Any]:
    event_id = session.scalars(select(Event.event_id).where(Event.id == job.event_pk)).one()
    steps = list(session.scalars(select(JobStep).where(JobStep.job_id == job.id)
                                 .order_by(JobStep.id)))
    result = job_result(session, job, cipher)
    return {
        "job_id": job.id,
        "event_id": event_id,
        "type": job.type,
        "status": job.status,
        "device_id": job.device_id,
        "service_provider": job.service_provider,
        "mvpd": job.mvpd,
        "steps": [{"step": s.step, "status": s.status, "attempts": s.attempts,
                   "failures": s.failures, "rate_limited": s.rate_limited,
                   "last_error": _step_error(s.last_error),
                   "started_at": utc_text(s.started_at), "finished_at": utc_text(s.finished_at)}
                  for s in steps],
        "result": result,
        "error": job.error,
        "explained": explained(job.error),
        "waiting_for": waiting_for(job, steps, code=result.get("code")),
        # Waits for a worker (an outage of the pool), with the step, the wait and the queue.
        "delays": [{**late, "reason": delay_text(late)}
                   for late in (job.state or {}).get("delays", [])],
        "retry_of": job.retry_of,
        # The jobs that ran this one again (a failed job keeps its status; its retry is here).
        "retried_by": list(session.scalars(select(Job.id).where(Job.retry_of == job.id)
                                           .order_by(Job.created_at))),
        "requested_by": job.requested_by,
        # Who acted on it (a retry, a cancel): the audit log's entries for this job.
        "actions": audit.entries(session, target=job.id),
        "created_at": utc_text(job.created_at),
        "finished_at": utc_text(job.finished_at),
        **({"redacted": REDACTED} if cipher is None else {}),
    }

