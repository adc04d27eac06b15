"""Cookbook steps 5 and 6: preauthorize a catalogue, authorize every play, and TempPass.

A decision denied with action "retry" is asked again, alone, a bounded number of times
(enhanced-error-codes.md: "include in the repeated request only those items marked with retry",
2-3 retries); any other Deny is final and recorded.
"""

from __future__ import annotations

from models import DecisionKind, JobStatus
from worker.adobe_pass import RateLimitError, ThrottledError
from worker.adobe_pass.types import Decision as PassDecision
from worker.adobe_pass.types import Decisions
from worker.jobs import Apply, Call, Outcome, planned_step, step
from worker.queues import Queue
from worker.steps.base import StepContext, decided_resources, save_decision


def _retry_delay(round_: int) -> float:
    return float(2**round_)  # 1 s, 2 s, 4 s


def _wants_retry(ctx: StepContext, decision: PassDecision) -> bool:
    return (decision.error is not None and decision.error.action == "retry"
            and ctx.job.state.get("retry_rounds", 0) < ctx.settings.decision_retries)


@step("decisions.preauthorize", Queue.DECISIONS)
def preauthorize(ctx: StepContext) -> Outcome:
    mvpd = ctx.job.mvpd
    wanted = list(dict.fromkeys(ctx.event["resources"]))
    done = decided_resources(ctx, DecisionKind.PREAUTHORIZE)
    pending = [r for r in wanted if r not in done]
    size = ctx.settings.preauthorize_batch
    again: list[str] = []
    for start in range(0, len(pending), size):
        batch = pending[start:start + size]
        try:
            answer = ctx.adobe.decisions.preauthorize(ctx.sp, mvpd, resources=batch,
                                                      device=ctx.device)
        except (ThrottledError, RateLimitError) as exc:
            if start == 0:
                raise
            # Keep the batches already decided; continue when the device has budget again.
            return Outcome(JobStatus.RUNNING, next_step="decisions.preauthorize",
                           delay_s=exc.retry_after)
        for decision in answer.decisions:
            if decision.resource not in batch:
                continue
            if _wants_retry(ctx, decision):
                again.append(decision.resource)
            else:
                save_decision(ctx, DecisionKind.PREAUTHORIZE, mvpd, decision)
    if again:
        rounds = ctx.job.state.get("retry_rounds", 0)
        return Outcome(JobStatus.RUNNING, next_step="decisions.preauthorize",
                       delay_s=_retry_delay(rounds), state={"retry_rounds": rounds + 1})
    return Outcome(JobStatus.SUCCEEDED)


def _authorize(ctx: StepContext, step_name: str) -> Outcome | tuple[Call, Apply]:
    """Never a cached decision: every play asks Adobe Pass (checklist). A decision is stored
    in the transaction that ends the job, so a job that runs here has none yet (a message
    delivered again finds the job finished and claims nothing)."""
    mvpd, resource = ctx.job.mvpd, ctx.event["resource"]
    # Plain values only in the call: it may run on another thread than the session's.
    adobe, sp, device = ctx.adobe, ctx.sp, ctx.device
    identity = ctx.event.get("temppass_identity")

    def call() -> Decisions:
        return adobe.decisions.authorize(sp, mvpd, resources=[resource], device=device,
                                         temppass_identity=identity)

    def apply(answer: Decisions | Exception) -> Outcome:
        if isinstance(answer, Exception):
            raise answer
        decision = next((d for d in answer.decisions if d.resource == resource), None)
        if decision is None:
            return Outcome(JobStatus.FAILED, error={
                "status": None, "code": "decision_missing", "action": "none",
                "message": f"Adobe Pass answered without a decision for {resource}"})
        if _wants_retry(ctx, decision):
            rounds = ctx.job.state.get("retry_rounds", 0)
            return Outcome(JobStatus.RUNNING, next_step=step_name,
                           delay_s=_retry_delay(rounds), state={"retry_rounds": rounds + 1})
        save_decision(ctx, DecisionKind.AUTHORIZE, mvpd, decision)
        return Outcome(JobStatus.SUCCEEDED)

    return call, apply


@planned_step("decisions.authorize", Queue.DECISIONS)
def authorize(ctx: StepContext) -> Outcome | tuple[Call, Apply]:
    return _authorize(ctx, "decisions.authorize")


@planned_step("temppass.authorize", Queue.DECISIONS)
def temppass_authorize(ctx: StepContext) -> Outcome | tuple[Call, Apply]:
    """Temporary access: an authorization against the TempPass MVPD, no login (basic), or with
    the user's identity in AP-TempPass-Identity (promotional)."""
    return _authorize(ctx, "temppass.authorize")
