"""Cookbook step 7: log out, one record per removed profile with its action and URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

from sqlalchemy import select, update

from models import JobStatus, Logout, Profile, utcnow
from worker.jobs import Outcome
from worker.queues import Queue
from worker.steps.base import Call, Step, StepContext, StepName, answer_or_raise


def plan(ctx: StepContext) -> Call:
    adobe, sp, mvpd, device = ctx.adobe, ctx.sp, ctx.job.mvpd, ctx.device
    redirect_url = ctx.event.get("redirect_url") or f"{ctx.public_url()}/landing"
    return lambda: adobe.logout.initiate(sp, mvpd, redirect_url=redirect_url, device=device)


def apply(ctx: StepContext, answer: Any) -> Outcome:
    logouts = answer_or_raise(answer).logouts
    single = single_sign_on_methods(ctx.device.sso)
    recorded = set(ctx.session.scalars(select(Logout.mvpd).where(Logout.job_id == ctx.job.id)))
    for mvpd, action in logouts.items():
        if mvpd in recorded:
            continue
        ctx.session.add(Logout(
            job_id=ctx.job.id, device_id=ctx.job.device_id, service_provider=ctx.sp, mvpd=mvpd,
            action_name=action.action_name, action_type=action.action_type,
            # A relative URL is Adobe Pass's: the app's user agent needs it whole.
            url=urljoin(ctx.adobe.base_url + "/", action.url) if action.url else None,
            single_sign_on=single))
    now = utcnow()
    if single:
        # The single logout flow deletes the single sign-on profile itself: every app and
        # device of the same user is told "no profile" from now on, not "authenticated" from
        # passflow's store (their stored profiles of the identity end too).
        identities = select(Profile.identity_key).where(
            Profile.device_id == ctx.job.device_id, Profile.mvpd == ctx.job.mvpd,
            Profile.identity_key.is_not(None)).scalar_subquery()
        ctx.session.execute(update(Profile).where(
            Profile.identity_key.in_(identities), Profile.mvpd == ctx.job.mvpd,
            Profile.logged_out_at.is_(None))
            .values(logged_out_at=now).execution_options(synchronize_session=False))
    # The stored profiles of the MVPD are not reused after a logout.
    ctx.session.execute(update(Profile).where(
        Profile.device_id == ctx.job.device_id, Profile.service_provider == ctx.sp,
        Profile.mvpd == ctx.job.mvpd, Profile.logged_out_at.is_(None))
        .values(logged_out_at=now).execution_options(synchronize_session=False))
    if ctx.device_row.last_mvpd == ctx.job.mvpd:
        ctx.device_row.last_mvpd = None
    return Outcome(JobStatus.SUCCEEDED)


def single_sign_on_methods(sso: dict[str, Any]) -> str | None:
    """The single sign-on methods a device's headers carry, as Adobe names its profile types:
    a logout with them is a single logout (the single sign-on logout flow)."""
    methods = [name for name, keys in (("platformSSO", ("subject_token", "roku_connect_token")),
                                       ("serviceTokenSSO", ("service_token",)))
               if any(sso.get(key) for key in keys)]
    return ",".join(methods) or None


INITIATE = Step(StepName.LOGOUT_INITIATE, Queue.LOGOUT, plan, apply)
