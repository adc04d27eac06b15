"""Partner single sign-on (Apple; the single sign-on partner flows): Adobe's partner
authentication request, handed to the device for its partner framework; then the profile from
the framework's response, sent by the backend as a second event.

A `partner_authentication.requested` job waits for that response (`partner.wait`, expired after
PARTNER_WAIT_S); the `partner_authentication.responded` job makes the profile and ends the
device's waiting request with it. When Adobe falls back to the basic flow (its `reasonType`:
`pfs_fallback`, `configuration_fallback`, ...), the job goes on as an authentication with a
code."""

from __future__ import annotations

import dataclasses
from typing import Any

from models import JobStatus
from passflow.flows import opened
from worker import jobs
from worker.adobe_pass.types import PartnerAction, Profiles
from worker.jobs import Outcome
from worker.policy import PARTNER_WAIT_S
from worker.queues import Queue
from worker.steps import sessions
from worker.steps.base import (
    Call,
    Step,
    StepContext,
    StepName,
    answer_or_raise,
    failed,
    save_profile,
)

# partner.request -----------------------------------------------------------------------------

def _request_plan(ctx: StepContext) -> Call:
    rt, sp, device, partner = ctx.runtime, ctx.sp, ctx.device, ctx.event["partner"]
    # Used only when Adobe falls back to the basic flow (as sessions.create uses them).
    redirect_url = ctx.event.get("redirect_url") or f"{ctx.public_url()}/landing?job={ctx.job.id}"
    domain_name = ctx.event.get("domain_name") or ctx.settings.domain_name

    def call() -> PartnerAction:
        domain = domain_name or rt.domain_name(sp, device=device)
        return rt.adobe_for(sp).partner.request(sp, partner, device=device, domain_name=domain,
                                        redirect_url=redirect_url)

    return call


def _request_apply(ctx: StepContext, answer: Any) -> Outcome:
    action: PartnerAction = answer_or_raise(answer)
    if action.action_name == "partner_profile":
        if action.authentication_request is None:
            return failed("unexpected_partner_answer",
                          "partner_profile answered without an authenticationRequest")
        return Outcome(JobStatus.WAITING_FOR_USER, next_step=StepName.PARTNER_WAIT,
                       delay_s=PARTNER_WAIT_S, state={"mvpd": action.mvpd}, result={
                           "partner_request": action.authentication_request.model_dump(
                               mode="json", by_alias=True, exclude_none=True)})
    # Adobe's fallback: the answer is a session's (authenticate, resume or authorize).
    outcome = sessions.apply(ctx, action)
    outcome = dataclasses.replace(outcome, result={**outcome.result,
                                                   "fallback": action.reason_type})
    if action.action_name == "resume" and sessions.resumable(ctx, action.missing_parameters):
        # The job resumes the session itself with what Adobe lacks (the event's MVPD, its
        # domain and redirect URL), at once; polling follows.
        return dataclasses.replace(outcome, status=JobStatus.RUNNING,
                                   next_step=StepName.SESSIONS_RESUME, delay_s=0)
    return outcome


REQUEST = Step(StepName.PARTNER_REQUEST, Queue.AUTHENTICATION, _request_plan, _request_apply)


# partner.wait: due only if no response came -------------------------------------------------

def _wait_apply(ctx: StepContext, answer: Any) -> Outcome:
    return Outcome(JobStatus.EXPIRED, error={
        "status": None, "code": "partner_response_missing", "action": "authentication",
        "message": f"no partner_authentication.responded for this device within "
                   f"{PARTNER_WAIT_S / 60:.0f} min of Adobe's partner request"})


WAIT = Step(StepName.PARTNER_WAIT, Queue.AUTHENTICATION, lambda ctx: None, _wait_apply)


# partner.profile -----------------------------------------------------------------------------

def _profile_plan(ctx: StepContext) -> Call:
    adobe, sp, device, partner = ctx.adobe, ctx.sp, ctx.device, ctx.event["partner"]
    response = opened(ctx.event, "partner_response", ctx.cipher)
    return lambda: adobe.partner.profile(sp, partner, device=device, saml_response=response)


def _profile_apply(ctx: StepContext, answer: Any) -> Outcome:
    profiles: Profiles = answer_or_raise(answer)
    if not len(profiles):
        return failed("partner_profile_missing",
                      "Adobe Pass made no profile from the partner's response",
                      action="authentication")
    for profile in profiles:
        save_profile(ctx, profile)
    answered = jobs.partner_answered(ctx.session, device_id=ctx.job.device_id,
                                     service_provider=ctx.sp, by_job_id=ctx.job.id)
    return Outcome(JobStatus.SUCCEEDED, result={"answered_jobs": answered})


PROFILE = Step(StepName.PARTNER_PROFILE, Queue.AUTHENTICATION, _profile_plan, _profile_apply)
