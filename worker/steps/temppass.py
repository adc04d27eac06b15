"""Temporary access (TempPass): an authorization against the TempPass MVPD, with no login
(basic), or with the user's identity in AP-TempPass-Identity (promotional). Adobe Pass answers
as for any play (temp-pass-feature.md); the decision's `source` says it was TempPass."""

from __future__ import annotations

from worker.queues import Queue
from worker.steps.base import Step, StepName
from worker.steps.decisions import authorize_apply, authorize_plan

AUTHORIZE = Step(StepName.TEMPPASS_AUTHORIZE, Queue.DECISIONS, authorize_plan, authorize_apply)
