"""The cookbook steps, one module each as Adobe's API groups are (worker.adobe_pass.resources),
and their registry: the engine, the tasks and the job state read step specs from here only."""

from __future__ import annotations

from passflow.events import EventType
from worker.steps import configuration, decisions, logout, profiles, sessions, temppass
from worker.steps.base import Step, StepName

STEPS: dict[str, Step] = {step.name: step for step in (
    profiles.RETRIEVE,
    profiles.CHECK,
    configuration.RETRIEVE,
    sessions.CREATE,
    profiles.POLL,
    profiles.FETCH,
    decisions.PREAUTHORIZE,
    decisions.AUTHORIZE,
    temppass.AUTHORIZE,
    logout.INITIATE,
)}
assert set(STEPS) == set(StepName), "every step name has its spec"

# Where each event's job starts (docs/api.md, the events table).
FIRST_STEP: dict[str, str] = {
    EventType.PROFILES: StepName.PROFILES_RETRIEVE,
    EventType.AUTHENTICATION: StepName.PROFILES_CHECK,
    EventType.PREAUTHORIZATION: StepName.DECISIONS_PREAUTHORIZE,
    EventType.AUTHORIZATION: StepName.DECISIONS_AUTHORIZE,
    EventType.LOGOUT: StepName.LOGOUT_INITIATE,
    EventType.TEMPPASS: StepName.TEMPPASS_AUTHORIZE,
}

__all__ = ["FIRST_STEP", "STEPS", "Step", "StepName"]
