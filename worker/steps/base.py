"""What a step is (Step), what it gets (StepContext), and the helpers that persist what Adobe Pass
answered.

Every step is plan -> call -> apply, run by worker.engine for one job or many at once:
- `plan(ctx)` reads the database (never writes) and returns the upstream call to make, a
  zero-argument callable closed over plain values, or None when no call is needed;
- the call runs with no database session open, beside other jobs' calls;
- `apply(ctx, answer)` gets the call's answer, the exception it raised, or None (no call), in
  a fresh transaction, writes the records and returns the job's Outcome, or raises an Adobe
  Pass error for the engine's retry and throttle policy (worker.engine).
"""

from __future__ import annotations

import enum
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from models import Decision, Device, Job, JobStatus, Profile, utcnow
from models.db import add_row
from passflow.crypto import Cipher
from passflow.flows import opened
from passflow.settings import Settings
from passflow.user_metadata import open_encrypted_attribute
from worker import metrics
from worker.adobe_pass import AdobePass, APIStatusError
from worker.adobe_pass import Device as PassDevice
from worker.adobe_pass.types import Decision as PassDecision
from worker.adobe_pass.types import Profile as PassProfile
from worker.jobs import Outcome
from worker.queues import Queue
from worker.runtime import Runtime

Call = Callable[[], Any]


class StepName(enum.StrEnum):
    """Every step's name, written once: job rows, task names and logs use these."""

    PROFILES_RETRIEVE = "profiles.retrieve"
    PROFILES_CHECK = "profiles.check"
    CONFIGURATION_RETRIEVE = "configuration.retrieve"
    SESSIONS_CREATE = "sessions.create"
    SESSIONS_RESUME = "sessions.resume"
    PROFILES_POLL = "profiles.poll"
    PROFILES_FETCH = "profiles.fetch"
    DECISIONS_PREAUTHORIZE = "decisions.preauthorize"
    DECISIONS_AUTHORIZE = "decisions.authorize"
    TEMPPASS_AUTHORIZE = "temppass.authorize"
    LOGOUT_INITIATE = "logout.initiate"
    PARTNER_REQUEST = "partner.request"
    PARTNER_WAIT = "partner.wait"
    PARTNER_PROFILE = "partner.profile"


@dataclass(frozen=True)
class Step:
    """A cookbook step as the engine runs it. The policy a step needs different is a field."""

    name: StepName
    queue: Queue
    plan: Callable[[StepContext], Call | None]
    apply: Callable[[StepContext, Any], Outcome]
    # Relationships of Job loaded with the jobs (one query for a whole run).
    preload: tuple[Any, ...] = ()
    # Whether the job fails `rate_limited` once it has waited PASSFLOW_THROTTLE_DEADLINE_S for
    # its device's request budget; polls do not (they stop at their session's notAfter).
    budget_deadline: bool = True
    # Whether apply may use the jobs as the claim loaded them, with no second query: true
    # where nothing but the lease holder writes a job's row during its call (a play; a
    # cancellation takes the lease, and the run's settle then finds it lost). Not for a
    # poll: the activation page records the user's provider on its job meanwhile.
    kept_for_apply: bool = False


def from_millis(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


@dataclass
class StepContext:
    session: Session
    job: Job
    settings: Settings
    runtime: Runtime
    # Requests of this step already made again, whatever the cause (failures, 429s, Denies
    # with action retry): one budget, PASSFLOW_STEP_RETRIES (set by the engine).
    retries_spent: int = 0

    def may_retry(self) -> bool:
        """Whether one more request fits the step's one retry budget."""
        return self.retries_spent < self.settings.step_retries

    @property
    def adobe(self) -> AdobePass:
        """This job's service provider's client (its registration and token)."""
        return self.runtime.adobe_for(self.sp)

    @property
    def cipher(self) -> Cipher:
        return self.runtime.cipher

    @property
    def device_row(self) -> Device:
        return self.job.device

    @cached_property
    def device(self) -> PassDevice:
        row = self.device_row
        sent = self.event.get("device") or {}
        return PassDevice(id=row.id, ip=row.last_ip, port=row.last_port, info=row.last_info or {},
                          visitor_id=sent.get("visitor_id"), user_agent=sent.get("user_agent"),
                          sso=opened(self.event, "device.sso", self.cipher) or {})

    @cached_property
    def event(self) -> dict[str, Any]:
        return self.job.event.payload

    @property
    def sp(self) -> str:
        return self.job.service_provider

    def public_url(self) -> str:
        """Where users' browsers reach passflow's pages (the default redirect URLs)."""
        return self.settings.public_url or self.runtime.published_public_url()

    def poll_delay(self) -> float:
        """The poll interval less up to a tenth of it (jitter, so thousands of polls do not
        fire at once), never under 3 s when the interval is 3 s or more: with the setting
        within Adobe's 3-5 s (passflow.settings), every delay is too."""
        interval = self.settings.poll_interval_s
        return random.uniform(max(0.9 * interval, min(interval, 3.0)), interval)



def answer_or_raise(answer: Any) -> Any:
    """The call's answer; an exception it raised goes to the engine's policy."""
    if isinstance(answer, BaseException):
        raise answer
    return answer


def failed(code: str, message: str, *, action: str = "none") -> Outcome:
    """The job ends failed with passflow's own error code (no Adobe answer to quote)."""
    return Outcome(JobStatus.FAILED, error={"status": None, "code": code, "action": action,
                                           "message": message})


def error_of(exc: Exception) -> dict[str, Any]:
    """A job-level error: the enhanced error's code and action, or the HTTP status."""
    if isinstance(exc, APIStatusError):
        error = exc.error
        return {
            "status": exc.status_code,
            "code": (error.code if error else None) or getattr(exc, "oauth_error", None),
            "action": error.action if error else None,
            "message": (error.message if error else None) or str(exc),
        }
    return {"status": None, "code": getattr(exc, "code", None) or type(exc).__name__,
            "action": getattr(exc, "action", None), "message": str(exc)}


def save_profile(ctx: StepContext, profile: PassProfile) -> None:
    exists = ctx.session.scalars(select(Profile.id).where(
        Profile.job_id == ctx.job.id, Profile.mvpd == profile.mvpd)).first()
    if exists:
        return
    metrics.know_mvpds(profile.mvpd)  # Adobe Pass made a profile of it
    metrics.inc("passflow_profiles_total", (metrics.profile_type_label(profile.type),
                                            metrics.mvpd_label(profile.mvpd)))
    attributes = {k: _readable(ctx, v.model_dump(mode="json"))
                  for k, v in profile.attributes.items()}
    user = profile.attributes.get("userID")
    ctx.session.add(Profile(
        job_id=ctx.job.id, device_id=ctx.job.device_id, service_provider=ctx.sp,
        mvpd=profile.mvpd, not_before=from_millis(profile.not_before),
        not_after=from_millis(profile.not_after), issuer=profile.issuer, type=profile.type,
        attributes_enc=ctx.cipher.encrypt(json.dumps(attributes, separators=(",", ":"))),
        identity_key=ctx.cipher.digest(f"{profile.mvpd}\n{user.value}")
        if profile.type in SINGLE_SIGN_ON_TYPES and user is not None else None,
    ))
    ctx.device_row.last_mvpd = profile.mvpd


def voided_by_adobe(error: dict[str, Any] | None) -> bool:
    """Whether Adobe Pass said the device's authentication is gone: an
    `authenticated_profile_*` code, or any error whose action is `authentication`."""
    error = error or {}
    return str(error.get("code") or "").startswith("authenticated_profile_") \
        or error.get("action") == "authentication"


def forget_profiles(ctx: StepContext, mvpd: str | None) -> int:
    """Adobe Pass said so: the device's stored profiles (of `mvpd`, or every one of the service
    provider) are not reused from now on, nor the preauthorization Permits decided under them
    (server-to-server cookbook: invalidate when told). How many were forgotten."""
    query = update(Profile).where(
        Profile.device_id == ctx.job.device_id, Profile.service_provider == ctx.sp,
        Profile.logged_out_at.is_(None))
    if mvpd is not None:
        query = query.where(Profile.mvpd == mvpd)
    done = ctx.session.execute(query.values(logged_out_at=utcnow())
                               .execution_options(synchronize_session=False))
    return done.rowcount or 0


# The profile types of single sign-on: one user's, shared by every app of that identity.
SINGLE_SIGN_ON_TYPES = frozenset({"platformSSO", "serviceTokenSSO", "appleSSO"})


def stored_profile(ctx: StepContext, mvpd: str | None) -> Profile | None:
    """The device's latest stored profile (for `mvpd`, or any), while it is valid and no
    logout ended it (checklist, Profiles Caching: reused, no call). Never a degraded one:
    degradation lasts "for the period the degradation is applied", which only Adobe knows."""
    now = utcnow()
    query = (select(Profile).where(
        Profile.device_id == ctx.job.device_id, Profile.service_provider == ctx.sp,
        Profile.not_before <= now, Profile.not_after > now, Profile.logged_out_at.is_(None),
        or_(Profile.type.is_(None), Profile.type != "degraded"))
        .order_by(Profile.not_after.desc()).limit(1))
    if mvpd is not None:
        query = query.where(Profile.mvpd == mvpd)
    return ctx.session.scalars(query).first()


def reuse_profile(ctx: StepContext, stored: Profile) -> None:
    """The job's own record of a stored profile (the job's result shows it)."""
    ctx.session.add(Profile(
        job_id=ctx.job.id, device_id=ctx.job.device_id, service_provider=ctx.sp,
        mvpd=stored.mvpd, not_before=stored.not_before, not_after=stored.not_after,
        issuer=stored.issuer, type=stored.type, attributes_enc=stored.attributes_enc))
    ctx.device_row.last_mvpd = stored.mvpd


def _readable(ctx: StepContext, attribute: dict[str, Any]) -> dict[str, Any]:
    """An "enc" attribute opened with the programmer's key when one is configured, else kept
    sealed as Adobe sent it."""
    key = ctx.settings.metadata_private_key
    if attribute.get("state") != "enc" or key is None:
        return attribute
    try:
        passphrase = ctx.settings.metadata_key_passphrase
        return {"value": open_encrypted_attribute(key.get_secret_value(), attribute["value"],
                                     passphrase.get_secret_value() if passphrase else None),
                "state": "decrypted"}
    except ValueError:
        return attribute


def decided_resources(ctx: StepContext, kind: str) -> set[str]:
    return set(ctx.session.scalars(select(Decision.resource).where(
        Decision.job_id == ctx.job.id, Decision.kind == kind)))


def save_decision(ctx: StepContext, kind: str, mvpd: str, decision: PassDecision) -> None:
    token = decision.token
    if decision.error is not None and voided_by_adobe(
            {"code": decision.error.code, "action": decision.error.action}):
        forget_profiles(ctx, mvpd)
    if decision.decision == "Permit":  # Adobe Pass knows the MVPD
        metrics.know_mvpds(mvpd)
    metrics.inc_on_commit(ctx.session, "passflow_decisions_total",
                          (kind, decision.decision, metrics.mvpd_label(mvpd), ctx.sp))
    add_row(  # inserted at commit, with the run's other decisions
        ctx.session, Decision,
        job_id=ctx.job.id, device_id=ctx.job.device_id, service_provider=ctx.sp, mvpd=mvpd,
        kind=kind, resource=decision.resource, decision=decision.decision,
        source=decision.source,
        error_code=decision.error.code if decision.error else None,
        error_action=decision.error.action if decision.error else None,
        error=decision.error.model_dump(mode="json", by_alias=True, exclude_none=True)
        if decision.error else None,
        media_token_enc=ctx.cipher.encrypt(token.serialized_token) if token else None,
        token_not_before=from_millis(token.not_before) if token else None,
        token_not_after=from_millis(token.not_after) if token else None,
        not_before=from_millis(decision.not_before), not_after=from_millis(decision.not_after),
    )
