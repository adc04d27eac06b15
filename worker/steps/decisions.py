"""Cookbook steps 5 and 6: preauthorize a catalogue, authorize every play.

A decision denied with action "retry" is asked again, alone, a bounded number of times
(enhanced-error-codes.md: "include in the repeated request only those items marked with retry",
2-3 retries); any other Deny is final and recorded. Every play asks Adobe Pass: a decision is
never served from a cache (checklist).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select

from models import Decision, DecisionKind, JobStatus, Profile, utcnow
from passflow import media_tokens
from passflow.events import temppass_identity
from worker.adobe_pass import RateLimitError, ThrottledError
from worker.adobe_pass.types import Decision as PassDecision
from worker.adobe_pass.types import Decisions
from worker.jobs import Outcome
from worker.policy import decision_retry_delay
from worker.queues import Queue
from worker.steps.base import (
    Call,
    Step,
    StepContext,
    StepName,
    answer_or_raise,
    decided_resources,
    failed,
    from_millis,
    save_decision,
    stored_profile,
)


def _wants_retry(ctx: StepContext, decision: PassDecision) -> bool:
    """A Deny with action retry is asked again while the step's one budget allows (shared
    with failures and 429s) and within PASSFLOW_DECISION_RETRIES rounds."""
    return (decision.error is not None and decision.error.action == "retry"
            and ctx.may_retry()
            and ctx.job.state.get("retry_rounds", 0) < ctx.settings.decision_retries)


def _again(ctx: StepContext) -> Outcome:
    rounds = ctx.job.state.get("retry_rounds", 0)
    return Outcome(JobStatus.RUNNING, next_step=StepName(ctx.job.current_step),
                   delay_s=decision_retry_delay(rounds), state={"retry_rounds": rounds + 1})


# decisions.preauthorize ----------------------------------------------------------------------

@dataclass(frozen=True)
class Preauthorized:
    answers: list[tuple[list[str], Decisions]]
    # The device ran out of request budget after the first batches: the rest waits this long.
    wait_s: float | None = None


FROM_CACHE = "passflow-cache"  # a decision's source when passflow answered from its store


def _cached_permits(ctx: StepContext, resources: list[str]) -> dict[str, Decision]:
    """Recent Permits of the device for these resources (checklist, Preauthorization Decisions
    Caching: "subscription updates while the application is running are infrequent"). Only
    preauthorization reads them: a play always asks Adobe Pass."""
    ttl = ctx.settings.preauthorization_cache_s
    if not ttl or not resources:
        return {}
    # Only under a profile still good, and never from before Adobe Pass (or a logout) ended
    # one: a Permit is worth what the authentication it was given under is worth.
    if stored_profile(ctx, ctx.job.mvpd) is None:
        return {}
    since = utcnow() - timedelta(seconds=ttl)
    ended = ctx.session.scalar(select(func.max(Profile.logged_out_at)).where(
        Profile.device_id == ctx.job.device_id, Profile.service_provider == ctx.sp,
        Profile.mvpd == ctx.job.mvpd))
    if ended is not None:
        since = max(since, ended)
    # Inside the decision's own window when Adobe gave one, never past it; never a Permit of
    # degradation (it lasts while the rule is applied, which only Adobe knows).
    now = utcnow()
    rows = ctx.session.scalars(select(Decision).where(
        Decision.device_id == ctx.job.device_id, Decision.service_provider == ctx.sp,
        Decision.mvpd == ctx.job.mvpd, Decision.kind == DecisionKind.PREAUTHORIZE,
        Decision.decision == "Permit", Decision.resource.in_(resources),
        Decision.job_id != ctx.job.id, Decision.created_at > since,
        or_(Decision.not_before.is_(None), Decision.not_before <= now),
        or_(Decision.not_after.is_(None), Decision.not_after > now),
        # Adobe's own answers only: a copy served from here never restarts the clock.
        or_(Decision.source.is_(None), Decision.source.not_in(("degradation", FROM_CACHE)))))
    return {row.resource: row for row in rows}


def _pending(ctx: StepContext) -> list[str]:
    done = decided_resources(ctx, DecisionKind.PREAUTHORIZE)
    return [r for r in dict.fromkeys(ctx.event["resources"]) if r not in done]


def _preauthorize_plan(ctx: StepContext) -> Call | None:
    wanted = _pending(ctx)
    cached = _cached_permits(ctx, wanted)
    pending = [r for r in wanted if r not in cached]
    if not pending:
        return None
    adobe, sp, mvpd, device = ctx.adobe, ctx.sp, ctx.job.mvpd, ctx.device
    size = ctx.settings.preauthorize_batch  # "usually up to 5" resources a call (cookbook)
    batches = [pending[start:start + size] for start in range(0, len(pending), size)]

    def call() -> Preauthorized:
        answers: list[tuple[list[str], Decisions]] = []
        for batch in batches:
            try:
                answers.append((batch, adobe.decisions.preauthorize(
                    sp, mvpd, resources=batch, device=device)))
            except (ThrottledError, RateLimitError) as exc:
                if not answers:
                    raise
                # Keep the batches decided; continue when the device has budget again.
                return Preauthorized(answers, wait_s=exc.retry_after)
        return Preauthorized(answers)

    return call


def _preauthorize_apply(ctx: StepContext, answer: Preauthorized | Exception | None) -> Outcome:
    mvpd = ctx.job.mvpd
    for resource, cached in _cached_permits(ctx, _pending(ctx)).items():
        ctx.session.add(Decision(
            job_id=ctx.job.id, device_id=ctx.job.device_id, service_provider=ctx.sp,
            mvpd=mvpd, kind=DecisionKind.PREAUTHORIZE, resource=resource, decision="Permit",
            source=FROM_CACHE, not_before=cached.not_before, not_after=cached.not_after))
    if answer is None:
        return Outcome(JobStatus.SUCCEEDED)
    result: Preauthorized = answer_or_raise(answer)
    again = False
    for batch, decisions in result.answers:
        for decision in decisions.decisions:
            if decision.resource not in batch:
                continue
            if _wants_retry(ctx, decision):
                again = True
            else:
                save_decision(ctx, DecisionKind.PREAUTHORIZE, mvpd, decision)
    if result.wait_s is not None:
        return Outcome(JobStatus.RUNNING, next_step=StepName.DECISIONS_PREAUTHORIZE,
                       delay_s=result.wait_s)
    if again:
        return _again(ctx)
    return Outcome(JobStatus.SUCCEEDED)


PREAUTHORIZE = Step(StepName.DECISIONS_PREAUTHORIZE, Queue.DECISIONS, _preauthorize_plan,
                    _preauthorize_apply, kept_for_apply=True)


# decisions.authorize -------------------------------------------------------------------------

def authorize_plan(ctx: StepContext) -> Call:
    """A job that runs here has no decision yet: it is stored in the transaction that ends the
    job (a message delivered again finds the job finished and claims nothing)."""
    adobe, sp, mvpd, device = ctx.adobe, ctx.sp, ctx.job.mvpd, ctx.device
    resource = ctx.event["resource"]
    identity = temppass_identity(ctx.event, ctx.cipher)
    return lambda: adobe.decisions.authorize(sp, mvpd, resources=[resource], device=device,
                                             temppass_identity=identity)


def authorize_apply(ctx: StepContext, answer: Any) -> Outcome:
    decisions: Decisions = answer_or_raise(answer)
    resource = ctx.event["resource"]
    decision = next((d for d in decisions.decisions if d.resource == resource), None)
    if decision is None:
        return failed("decision_missing", f"Adobe Pass answered without a decision for {resource}")
    if _wants_retry(ctx, decision):
        return _again(ctx)
    problem = media_token_problem(decision, service_provider=ctx.sp, mvpd=ctx.job.mvpd,
                                  resource=resource,
                                  certificate=ctx.settings.media_token_certificate)
    if problem:  # never handed on: the player would start on a token that fails verification
        return failed("media_token_invalid", f"Permit for {resource} not passed on: {problem}",
                      action="retry")
    save_decision(ctx, DecisionKind.AUTHORIZE, ctx.job.mvpd, decision)
    return Outcome(JobStatus.SUCCEEDED)


# A verifier's clock may differ from Adobe's by this much (media-tokens.md: the TTL "is
# designed to account for potential clock synchronization issues").
CLOCK_SKEW_S = 60


def media_token_problem(decision: PassDecision, *, service_provider: str, mvpd: str | None,
                        resource: str | None = None,
                        certificate: str | None = None) -> str | None:
    """Why a Permit's media token must not be handed on, or None. Read from the decision's own
    fields (Adobe advises against parsing the token itself): a token there, inside its
    validity window, for this requestor and MVPD. With a verification certificate configured,
    its signature too, and the requestor, resource and MVPD it was signed for
    (passflow/media_tokens.py); without one, that is the playback service's Media Token
    Verifier's to check."""
    if decision.decision != "Permit":
        return None
    token = decision.token
    if token is None or not token.serialized_token:
        return "the Permit carries no media token"
    now = utcnow()
    not_after, not_before = from_millis(token.not_after), from_millis(token.not_before)
    if not_after is not None and not_after <= now:
        return f"its media token expired at {not_after.isoformat()}"
    if not_before is not None and not_before > now + timedelta(seconds=CLOCK_SKEW_S):
        return f"its media token is valid only from {not_before.isoformat()}"
    if decision.service_provider and decision.service_provider != service_provider:
        return f"it was issued for requestor {decision.service_provider}"
    if decision.mvpd and mvpd and decision.mvpd != mvpd:
        return f"it was issued for MVPD {decision.mvpd}"
    return _signature_problem(token.serialized_token, certificate, service_provider, mvpd,
                              resource) if certificate else None


def _signature_problem(serialized: str, certificate: str, service_provider: str,
                       mvpd: str | None, resource: str | None) -> str | None:
    try:
        signed = media_tokens.verify(serialized, certificate)
    except ValueError as exc:
        return str(exc)
    for what, signed_for, expected in (("requestor", signed.requestor, service_provider),
                                       ("resource", signed.resource, resource),
                                       ("MVPD", signed.mvpd, mvpd)):
        if expected and signed_for != expected:
            return f"its media token was signed for {what} {signed_for or '(none)'}"
    return None


AUTHORIZE = Step(StepName.DECISIONS_AUTHORIZE, Queue.DECISIONS, authorize_plan, authorize_apply,
                 kept_for_apply=True)
