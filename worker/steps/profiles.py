"""Cookbook step 2: check for existing profiles (profiles.requested)."""

from __future__ import annotations

from models import JobStatus
from worker.jobs import Outcome, step
from worker.queues import Queue
from worker.steps.base import StepContext, save_profile


@step("profiles.retrieve", Queue.AUTHENTICATION)
def retrieve_profiles(ctx: StepContext) -> Outcome:
    for profile in ctx.adobe.profiles.list(ctx.sp, device=ctx.device):
        save_profile(ctx, profile)
    return Outcome(JobStatus.SUCCEEDED)
