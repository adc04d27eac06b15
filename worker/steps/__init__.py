"""The cookbook steps, one module each as Adobe's API groups are (worker.adobe_pass.resources),
and their registry: the engine, the tasks and the job state read step specs from here only."""

from __future__ import annotations

from passflow.flows import FLOWS
from worker.steps import (
    configuration,
    decisions,
    logout,
    partner,
    profiles,
    sessions,
    temppass,
)
from worker.steps.base import Step, StepName

STEPS: dict[str, Step] = {step.name: step for step in (
    profiles.RETRIEVE,
    profiles.CHECK,
    configuration.RETRIEVE,
    sessions.CREATE,
    sessions.RESUME,
    profiles.POLL,
    profiles.FETCH,
    decisions.PREAUTHORIZE,
    decisions.AUTHORIZE,
    temppass.AUTHORIZE,
    logout.INITIATE,
    partner.REQUEST,
    partner.WAIT,
    partner.PROFILE,
)}
assert set(STEPS) == set(StepName), "every step name has its spec"

# Where each event's job starts (passflow.flows, one declaration a flow).
FIRST_STEP: dict[str, str] = {kind: StepName(flow.first_step) for kind, flow in FLOWS.items()}
for _flow in FLOWS.values():
    assert _flow.first_step in _flow.steps and _flow.steps <= set(STEPS), _flow.type

__all__ = ["FIRST_STEP", "STEPS", "Step", "StepName"]
