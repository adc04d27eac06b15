"""What every step service gets, and the helpers that persist what Adobe Pass answered."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Decision, Device, Job, Profile
from passflow.crypto import Cipher
from passflow.settings import Settings
from worker.adobe_pass import AdobePass, APIStatusError
from worker.adobe_pass import Device as PassDevice
from worker.adobe_pass.types import Configuration
from worker.adobe_pass.types import Decision as PassDecision
from worker.adobe_pass.types import Profile as PassProfile


def from_millis(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


@dataclass
class StepContext:
    session: Session
    job: Job
    settings: Settings
    adobe: AdobePass
    cipher: Cipher
    redis: redis.Redis

    @property
    def device_row(self) -> Device:
        return self.job.device

    @cached_property
    def device(self) -> PassDevice:
        row = self.device_row
        return PassDevice(id=row.id, ip=row.last_ip, port=row.last_port, info=row.last_info or {})

    @cached_property
    def event(self) -> dict[str, Any]:
        return self.job.event.payload

    @property
    def sp(self) -> str:
        return self.job.service_provider

    def poll_delay(self) -> float:
        """The poll interval plus a little jitter, so thousands of polls do not fire at once."""
        interval = self.settings.poll_interval_s
        return interval + random.uniform(0, interval * 0.1)

    def configuration(self) -> Configuration:
        from worker.runtime import runtime

        return runtime().configuration(self.sp, device=self.device)


def error_of(exc: Exception) -> dict[str, Any]:
    """A job-level error: the enhanced error's code and action, or the HTTP status."""
    if isinstance(exc, APIStatusError):
        error = exc.error
        return {
            "status": exc.status_code,
            "code": (error.code if error else None) or getattr(exc, "oauth_error", None),
            "action": error.action if error else None,
            "message": (error.message if error else None) or str(exc),
        }
    return {"status": None, "code": type(exc).__name__, "action": None, "message": str(exc)}


def save_profile(ctx: StepContext, profile: PassProfile) -> None:
    exists = ctx.session.scalars(select(Profile.id).where(
        Profile.job_id == ctx.job.id, Profile.mvpd == profile.mvpd)).first()
    if exists:
        return
    attributes = {k: v.model_dump(mode="json") for k, v in profile.attributes.items()}
    ctx.session.add(Profile(
        job_id=ctx.job.id, device_id=ctx.job.device_id, service_provider=ctx.sp,
        mvpd=profile.mvpd, not_before=from_millis(profile.not_before),
        not_after=from_millis(profile.not_after), issuer=profile.issuer, type=profile.type,
        attributes_enc=ctx.cipher.encrypt(json.dumps(attributes, separators=(",", ":"))),
    ))
    ctx.device_row.last_mvpd = profile.mvpd


def decided_resources(ctx: StepContext, kind: str) -> set[str]:
    return set(ctx.session.scalars(select(Decision.resource).where(
        Decision.job_id == ctx.job.id, Decision.kind == kind)))


def save_decision(ctx: StepContext, kind: str, mvpd: str, decision: PassDecision) -> None:
    token = decision.token
    ctx.session.add(Decision(
        job_id=ctx.job.id, device_id=ctx.job.device_id, service_provider=ctx.sp, mvpd=mvpd,
        kind=kind, resource=decision.resource, decision=decision.decision,
        source=decision.source,
        error_code=decision.error.code if decision.error else None,
        error_action=decision.error.action if decision.error else None,
        error=decision.error.model_dump(mode="json", by_alias=True, exclude_none=True)
        if decision.error else None,
        media_token_enc=ctx.cipher.encrypt(token.serialized_token) if token else None,
        token_not_before=from_millis(token.not_before) if token else None,
        token_not_after=from_millis(token.not_after) if token else None,
    ))
