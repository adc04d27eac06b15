"""Cookbook step 3 (before the session): the service provider's configuration, the MVPD list.

Cached for the pool in Redis a few minutes (checklist); a chosen MVPD must be integrated.
"""

from __future__ import annotations

from typing import Any

from models import JobStatus
from worker.jobs import Outcome
from worker.queues import Queue
from worker.steps.base import Call, Step, StepContext, StepName, answer_or_raise, failed


def plan(ctx: StepContext) -> Call:
    rt, sp, device = ctx.runtime, ctx.sp, ctx.device
    return lambda: rt.configuration(sp, device=device)


def apply(ctx: StepContext, answer: Any) -> Outcome:
    config = answer_or_raise(answer)
    mvpd = ctx.job.mvpd
    if mvpd is not None:
        if config.mvpd(mvpd) is None:
            return failed("invalid_parameter_mvpd", f"{mvpd} is not integrated with {ctx.sp}")
        ctx.device_row.last_mvpd = mvpd
    return Outcome(JobStatus.RUNNING, next_step=StepName.SESSIONS_CREATE)


RETRIEVE = Step(StepName.CONFIGURATION_RETRIEVE, Queue.AUTHENTICATION, plan, apply)
