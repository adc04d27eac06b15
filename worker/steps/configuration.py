"""The configuration (the MVPD list), fetched only when the user must pick a provider
(checklist, Configuration Retrieval): an authentication job with no MVPD. Cached for the pool a
few minutes per service provider and platform (worker.runtime). The job's result lists the
providers (id, display name, logo) for the app's own picker; the second screen has its own.
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
    if mvpd is not None and config.mvpd(mvpd) is None:
        return failed("invalid_parameter_mvpd", f"{mvpd} is not integrated with {ctx.sp}")
    providers = [{"id": m.id, "displayName": m.display_name, "logoUrl": m.logo_url}
                 for m in config.mvpds if not m.is_temp_pass]
    return Outcome(JobStatus.RUNNING, next_step=StepName.SESSIONS_CREATE,
                   result={"mvpds": providers})


RETRIEVE = Step(StepName.CONFIGURATION_RETRIEVE, Queue.AUTHENTICATION, plan, apply)
