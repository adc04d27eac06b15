"""Retention and privacy: purge old records, forget a device everywhere, rotate the key."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

import models.db
from models import (
    AuthSession,
    Decision,
    Device,
    Event,
    Job,
    Logout,
    Profile,
    Registration,
    utcnow,
)
from passflow.crypto import Cipher
from tests.support import device_json, new_device, wait_for_status


def _walk(api: httpx.Client, sim: httpx.Client) -> str:
    device = new_device()
    dev = device_json(device)

    def post(type_: str, **fields) -> str:
        body = {"event_id": f"evt-{uuid.uuid4()}", "type": type_, "device": dev, **fields}
        return api.post("/v1/events", json=body).json()["job_id"]

    auth = post("authentication.requested", mvpd="Cablevision")
    wait_for_status(auth, "waiting_for_user")
    sim.post("/_sim/login", json={"code": api.get(f"/v1/jobs/{auth}").json()["result"]["code"]})
    wait_for_status(auth)
    wait_for_status(post("authorization.requested", mvpd="Cablevision", resource="REF30"))
    wait_for_status(post("logout.requested", mvpd="Cablevision"))
    return device.id


def _count(model, **where) -> int:
    with models.db.session_scope() as session:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return session.scalar(query)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_forget_a_device_deletes_its_records_everywhere(api: httpx.Client,
                                                        jobs_env: httpx.Client, fault_report):
    device_id = _walk(api, jobs_env)
    other = _walk(api, jobs_env)
    assert _count(Job, device_id=device_id) == 3
    planned = _cli("forget", "--device", device_id, "--dry-run")
    assert planned.returncode == 0 and "3 jobs" in planned.stdout, planned.stdout
    refused = _cli("forget", "--device", device_id)  # no --yes: nothing changes
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert _count(Job, device_id=device_id) == 3
    done = _cli("forget", "--device", device_id, "--yes")
    assert done.returncode == 0, done.stderr
    for model in (Job, AuthSession, Profile, Decision, Logout):
        assert _count(model, device_id=device_id) == 0, model
    assert _count(Device, id=device_id) == 0
    with models.db.session_scope() as session:
        payloads = session.scalars(select(Event.payload)).all()
    assert not any(p["device"]["id"] == device_id for p in payloads)
    assert api.get("/v1/history", params={"device_id": device_id}).json()["entries"] == []
    assert _count(Job, device_id=other) == 3  # the other device is untouched
    fault_report("`passflow forget --device`",
                 "jobs, events, sessions, profiles, decisions, logouts and the device row "
                 "deleted; other devices untouched")


@pytest.mark.slow
def test_purge_deletes_only_old_finished_records(api: httpx.Client, jobs_env: httpx.Client,
                                                 fault_report):
    old = _walk(api, jobs_env)
    recent = _walk(api, jobs_env)
    past = utcnow() - timedelta(days=100)
    with models.db.session_scope() as session:
        session.execute(update(Job).where(Job.device_id == old).values(created_at=past))
        session.execute(update(Device).where(Device.id == old).values(updated_at=past))
    done = _cli("purge", "--older-than", "90d")
    assert done.returncode == 0 and "jobs" in done.stdout
    assert _count(Job, device_id=old) == 0 and _count(Device, id=old) == 0
    assert _count(Decision, device_id=old) == 0
    assert _count(Job, device_id=recent) == 3
    assert _cli("purge", "--older-than", "soon").returncode != 0
    fault_report("`passflow purge --older-than 90d`",
                 "finished jobs older than 90 days and their records deleted; recent kept")


NEW_KEY = "another-tests-only-secret-key-9876543210"


@pytest.mark.slow
def test_rotate_key_reencrypts_every_secret(api: httpx.Client, jobs_env: httpx.Client,
                                            fault_report):
    _walk(api, jobs_env)
    old = os.environ["PASSFLOW_SECRET_KEY"]
    done = _cli("rotate-key", env={"PASSFLOW_SECRET_KEY": f"{NEW_KEY},{old}"})
    assert done.returncode == 0, done.stderr
    new_only, old_only = Cipher(NEW_KEY), Cipher(old)
    with models.db.session_scope() as session:
        secret = session.scalars(select(Registration.client_secret_enc)).first()
        token = session.scalars(select(Decision.media_token_enc).where(
            Decision.media_token_enc.is_not(None))).first()
        attributes = session.scalars(select(Profile.attributes_enc)).first()
    for value in (secret, token, attributes):
        assert new_only.decrypt(value)
        try:
            old_only.decrypt(value)
            raise AssertionError("still readable with the old key")
        except Exception as exc:
            assert "does not match" in str(exc)
    # Back to the test key, so the rest of the run can read its data.
    assert _cli("rotate-key", env={"PASSFLOW_SECRET_KEY": f"{old},{NEW_KEY}"}).returncode == 0
    fault_report("`passflow rotate-key` with PASSFLOW_SECRET_KEY=NEW,OLD",
                 "client secrets, tokens, media tokens and profile data readable with the new "
                 "key only")
