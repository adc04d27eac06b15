"""A job as the HTTP API and webhooks show it (CONTRACT.md, GET /v1/jobs/{job_id}).

Personal data (profile attributes, media tokens) is shown only to whom a cipher is given: a
view made with `cipher=None` leaves them out and says so in `redacted`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Decision, Event, Job, JobStep, Logout, Profile
from passflow.crypto import Cipher
from passflow.events import EventType


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _millis(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value else None


REDACTED = ("media tokens and profile attributes are left out: they need a token of the "
            "personal (or admin) scope")


def profile_view(profile: Profile, cipher: Cipher | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "mvpd": profile.mvpd,
        "notBefore": _millis(profile.not_before),
        "notAfter": _millis(profile.not_after),
        "issuer": profile.issuer,
        "type": profile.type,
    }
    if cipher is not None:
        view["attributes"] = json.loads(cipher.decrypt(profile.attributes_enc))
    return view


def decision_view(decision: Decision, cipher: Cipher | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "resource": decision.resource,
        "decision": decision.decision,
        "source": decision.source,
        "error": decision.error,
    }
    if decision.kind == "authorize" and decision.media_token_enc and cipher is not None:
        view["media_token"] = cipher.decrypt(decision.media_token_enc)
        view["media_token_not_before"] = _millis(decision.token_not_before)
        view["media_token_not_after"] = _millis(decision.token_not_after)
    return view


def job_result(session: Session, job: Job, cipher: Cipher | None) -> dict[str, Any]:
    stored = job.result or {}
    result: dict[str, Any] = {}
    kind = EventType(job.type)
    if kind == EventType.AUTHENTICATION:
        for key in ("code", "url"):
            if stored.get(key):
                result[key] = stored[key]
        profile = session.scalars(select(Profile).where(Profile.job_id == job.id)).first()
        if profile is not None:
            result["profile"] = profile_view(profile, cipher)
    elif kind == EventType.PROFILES:
        profiles = session.scalars(select(Profile).where(Profile.job_id == job.id)
                                   .order_by(Profile.id))
        result["profiles"] = [profile_view(p, cipher) for p in profiles]
    elif kind in (EventType.PREAUTHORIZATION, EventType.AUTHORIZATION, EventType.TEMPPASS):
        decisions = session.scalars(select(Decision).where(Decision.job_id == job.id)
                                    .order_by(Decision.id))
        result["decisions"] = [decision_view(d, cipher) for d in decisions]
    elif kind == EventType.LOGOUT:
        logouts = session.scalars(select(Logout).where(Logout.job_id == job.id)
                                  .order_by(Logout.id))
        result["logouts"] = [{"mvpd": lo.mvpd, "actionName": lo.action_name,
                              "actionType": lo.action_type, "url": lo.url} for lo in logouts]
    return result


def job_view(session: Session, job: Job, cipher: Cipher | None) -> dict[str, Any]:
    event_id = session.scalars(select(Event.event_id).where(Event.id == job.event_pk)).one()
    steps = session.scalars(select(JobStep).where(JobStep.job_id == job.id).order_by(JobStep.id))
    return {
        "job_id": job.id,
        "event_id": event_id,
        "type": job.type,
        "status": job.status,
        "device_id": job.device_id,
        "service_provider": job.service_provider,
        "mvpd": job.mvpd,
        "steps": [{"step": s.step, "status": s.status, "attempts": s.attempts,
                   "started_at": _iso(s.started_at), "finished_at": _iso(s.finished_at)}
                  for s in steps],
        "result": job_result(session, job, cipher),
        "error": job.error,
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
        **({"redacted": REDACTED} if cipher is None else {}),
    }
