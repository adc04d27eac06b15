"""factory-boy factories: how tests build records. Bound to the test's database by the
`factories` fixture (tests/conftest.py); each object is committed, so workers see it."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy.orm import scoped_session

import models.db
from models import (
    AuthSession,
    Decision,
    DecisionKind,
    Device,
    Event,
    Job,
    JobStatus,
    Logout,
    Profile,
    SessionStatus,
    normal_code,
    utcnow,
)
from models.jobs import JobStep, StepStatus, new_id
from passflow.crypto import Cipher, cipher_from_settings
from passflow.flows import FLOWS, EventType
from worker.steps import FIRST_STEP

# One session per thread for the factories, on whichever database the test bound.
session = scoped_session(models.db.new_session)

DEVICE_INFO = {"primaryHardwareType": "SetTopBox", "model": "TV 5th Gen", "version": "5",
               "osName": "tvOS", "osVersion": "17.1", "connectionType": "LAN"}

# What each event type carries by default: its flow's example (passflow.flows).
FIELDS = {kind: dict(flow.example) for kind, flow in FLOWS.items()}


class _Factory(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session = session
        sqlalchemy_session_persistence = "commit"


class DeviceFactory(_Factory):
    class Meta:
        model = Device
        sqlalchemy_get_or_create = ("id",)  # a device the flow already stored is reused

    id = factory.Sequence(lambda n: f"device-{os.getpid()}-f{n:05d}")
    # Documentation range (RFC 5737), one address each: each device its own throttle bucket.
    last_ip = factory.Sequence(lambda n: f"192.0.{n // 250 % 250}.{n % 250 + 1}")
    last_port = factory.Sequence(lambda n: 20000 + n % 40000)
    last_info = factory.LazyFunction(lambda: dict(DEVICE_INFO))


class EventFactory(_Factory):
    class Meta:
        model = Event

    class Params:
        device = factory.SubFactory(DeviceFactory)
        fields = factory.LazyAttribute(lambda o: dict(FIELDS[o.type]))

    id = factory.LazyFunction(new_id)
    event_id = factory.Sequence(lambda n: f"evt-{os.getpid()}-f{n:05d}")
    type = EventType.AUTHORIZATION.value
    payload = factory.LazyAttribute(lambda o: {
        "event_id": o.event_id, "type": o.type, "service_provider": None,
        "device": {"id": o.device.id, "ip": o.device.last_ip, "port": o.device.last_port,
                   "info": o.device.last_info},
        **o.fields})


class JobFactory(_Factory):
    """A job as intake stores it, due now and never sent (the sweeper would send it): pass
    `dispatched_at` in the future to keep the sweeper away."""

    class Meta:
        model = Job

    class Params:
        fields = factory.LazyAttribute(lambda o: dict(FIELDS[o.type]))

    id = factory.LazyFunction(new_id)
    type = EventType.AUTHORIZATION.value
    device = factory.SubFactory(DeviceFactory)
    event = factory.SubFactory(EventFactory, type=factory.SelfAttribute("..type"),
                               device=factory.SelfAttribute("..device"),
                               fields=factory.SelfAttribute("..fields"))
    mvpd = factory.LazyAttribute(lambda o: o.fields.get("mvpd"))
    service_provider = "REF30"
    status = JobStatus.QUEUED.value
    current_step = factory.LazyAttribute(lambda o: FIRST_STEP[o.type])
    next_run_at = factory.LazyFunction(utcnow)
    dispatched_at = None
    result = factory.LazyFunction(dict)
    state = factory.LazyFunction(dict)


class JobStepFactory(_Factory):
    """One run of a step of a job (its `job` parameter): finished `took_s` after it started."""

    class Meta:
        model = JobStep

    class Params:
        job = factory.SubFactory(JobFactory, status=JobStatus.SUCCEEDED.value,
                                 current_step=None)
        took_s = 0.25

    job_id = factory.SelfAttribute("job.id")
    step = "decisions.authorize"
    status = StepStatus.SUCCEEDED.value
    attempts = 1
    started_at = factory.LazyFunction(utcnow)
    finished_at = factory.LazyAttribute(lambda o: o.started_at + timedelta(seconds=o.took_s))


class _OfJobFactory(_Factory):
    """A record of a job's (its `job` parameter): the job's ids and service provider."""

    class Meta:
        abstract = True

    job_id = factory.SelfAttribute("job.id")
    device_id = factory.SelfAttribute("job.device.id")
    service_provider = factory.SelfAttribute("job.service_provider")
    mvpd = "Cablevision"


class AuthSessionFactory(_OfJobFactory):
    """A pending session with its authentication job waiting for the user."""

    class Meta:
        model = AuthSession

    class Params:
        job = factory.SubFactory(JobFactory, type=EventType.AUTHENTICATION.value,
                                 current_step="profiles.poll",
                                 status=JobStatus.WAITING_FOR_USER.value)
        # Stored sealed, as the sessions.create step stores them (AuthSession.seal).
        code = factory.Sequence(lambda n: f"F{n:06d}")
        url = factory.LazyAttribute(
            lambda o: f"http://pass.test/api/v2/authenticate/REF30/{o.code}")

    mvpd = factory.SelfAttribute("job.mvpd")
    code_key = factory.LazyAttribute(lambda o: _cipher().digest(normal_code(o.code)))
    code_enc = factory.LazyAttribute(lambda o: _cipher().encrypt(o.code))
    url_enc = factory.LazyAttribute(lambda o: _cipher().encrypt(o.url))
    not_after = factory.LazyFunction(lambda: utcnow() + timedelta(minutes=30))
    status = SessionStatus.PENDING.value
    next_poll_at = factory.LazyFunction(utcnow)
    polling_started_at = factory.LazyFunction(utcnow)


class ProfileFactory(_OfJobFactory):
    class Meta:
        model = Profile

    class Params:
        job = factory.SubFactory(JobFactory, type=EventType.AUTHENTICATION.value,
                                 status=JobStatus.SUCCEEDED.value, current_step=None)
        attributes = factory.LazyFunction(lambda: {"userID": {"value": "u-1"}})

    not_before = factory.LazyFunction(utcnow)
    not_after = factory.LazyFunction(lambda: utcnow() + timedelta(days=30))
    type = "regular"
    attributes_enc = factory.LazyAttribute(lambda o: _encrypt(o.attributes))


class DecisionFactory(_OfJobFactory):
    class Meta:
        model = Decision

    class Params:
        job = factory.SubFactory(JobFactory, status=JobStatus.SUCCEEDED.value,
                                 current_step=None)
        media_token = None  # a Permit's token, stored encrypted

    kind = DecisionKind.AUTHORIZE.value
    media_token_enc = factory.LazyAttribute(
        lambda o: _cipher().encrypt(o.media_token) if o.media_token else None)
    resource = "REF30"
    decision = "Permit"


class LogoutFactory(_OfJobFactory):
    class Meta:
        model = Logout

    class Params:
        job = factory.SubFactory(JobFactory, type=EventType.LOGOUT.value,
                                 status=JobStatus.SUCCEEDED.value, current_step=None)

    action_name = "logout"
    action_type = "interactive"


def _cipher() -> Cipher:
    return cipher_from_settings()


def _encrypt(attributes: dict[str, Any]) -> str:
    return _cipher().encrypt(json.dumps(attributes))
