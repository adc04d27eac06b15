"""Cookbook step 7: log out, one record per removed profile with its action and URL."""

from __future__ import annotations

from sqlalchemy import select

from models import JobStatus, Logout
from worker.jobs import Outcome, step
from worker.queues import Queue
from worker.steps.base import StepContext


@step("logout.initiate", Queue.LOGOUT)
def initiate_logout(ctx: StepContext) -> Outcome:
    redirect_url = (ctx.event.get("redirect_url")
                    or f"{ctx.settings.public_url.rstrip('/')}/landing")
    answer = ctx.adobe.logout.initiate(ctx.sp, ctx.job.mvpd, redirect_url=redirect_url,
                                       device=ctx.device)
    recorded = set(ctx.session.scalars(select(Logout.mvpd).where(Logout.job_id == ctx.job.id)))
    for mvpd, action in answer.logouts.items():
        if mvpd in recorded:
            continue
        ctx.session.add(Logout(
            job_id=ctx.job.id, device_id=ctx.job.device_id, service_provider=ctx.sp, mvpd=mvpd,
            action_name=action.action_name, action_type=action.action_type, url=action.url))
    if ctx.device_row.last_mvpd == ctx.job.mvpd:
        ctx.device_row.last_mvpd = None
    return Outcome(JobStatus.SUCCEEDED)
