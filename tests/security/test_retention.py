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


def _stored_text(*tables: str) -> str:
    """Every value these tables hold, as a dump of the database would show it."""
    from sqlalchemy import text

    with models.db.session_scope() as session:
        return "\n".join(str(row) for table in tables
                         for row in session.execute(text(f"SELECT * FROM {table}")))


@pytest.mark.slow
def test_activation_codes_and_urls_are_not_stored_in_the_clear(
        api: httpx.Client, jobs_env: httpx.Client, fault_report):
    """A live code signs in whoever types it first: a copy of the database must not give it.
    The job still shows it to a token allowed personal data, and the code typed as users type
    it still finds its session."""
    body = {"event_id": f"evt-{uuid.uuid4()}", "type": "authentication.requested",
            "device": device_json(new_device())}
    job_id = api.post("/v1/events", json=body).json()["job_id"]
    wait_for_status(job_id, "waiting_for_user")
    result = api.get(f"/v1/jobs/{job_id}").json()["result"]
    code, url = result["code"], result["url"]
    assert code in url
    stored = _stored_text("auth_sessions", "jobs", "job_steps", "events")
    assert code not in stored and code.lower() not in stored and url not in stored
    typed = f" {code[:3].lower()}-{code[3:]} "
    with models.db.session_scope() as session:
        found = session.scalar(select(AuthSession.job_id).where(
            AuthSession.has_code(Cipher(os.environ["PASSFLOW_SECRET_KEY"]), typed)))
    assert found == job_id
    fault_report("a copy of the database read for a live activation code",
                 "neither the code nor its URL found in sessions, jobs, steps or events")


@pytest.mark.slow
def test_rotate_key_seals_codes_stored_in_the_clear_and_keeps_them_found(
        api: httpx.Client, factories_bound, fault_report):
    """Sessions written before 0.5.0 (code and URL in the clear, the code in the job's
    result too) are found as they are, sealed by `rotate-key`, and found again after it."""
    from tests.factories import AuthSessionFactory

    legacy = AuthSessionFactory(code_key="OLDCODE1", code_enc=None, url_enc=None,
                                url_clear="https://pass.test/api/v2/authenticate/REF30/OLDCODE1")
    with models.db.session_scope() as session:
        session.execute(update(Job).where(Job.id == legacy.job_id).values(
            result={"code": "OLDCODE1", "url": legacy.url_clear}))
    sealed = AuthSessionFactory(code="NEWCODE2")
    old = os.environ["PASSFLOW_SECRET_KEY"]

    def found(keys: str, code: str) -> str | None:
        with models.db.session_scope() as session:
            return session.scalar(select(AuthSession.job_id).where(
                AuthSession.has_code(Cipher(keys), code)))

    assert found(old, "oldcode1") == legacy.job_id  # before any rotation
    assert found(f"{NEW_KEY},{old}", "NEWCODE2") == sealed.job_id  # a rotation under way
    done = _cli("rotate-key", env={"PASSFLOW_SECRET_KEY": f"{NEW_KEY},{old}"})
    assert done.returncode == 0, done.stderr
    try:
        assert "OLDCODE1" not in _stored_text("auth_sessions", "jobs")
        assert found(NEW_KEY, "OLDCODE1") == legacy.job_id
        assert found(NEW_KEY, "NEWCODE2") == sealed.job_id
        with models.db.session_scope() as session:
            row = session.get_one(AuthSession, legacy.id)
            assert (row.code(Cipher(NEW_KEY)), row.url(Cipher(NEW_KEY))) == (
                "OLDCODE1", "https://pass.test/api/v2/authenticate/REF30/OLDCODE1")
    finally:  # back to the test key, so the rest of the run can read its data
        assert _cli("rotate-key", env={"PASSFLOW_SECRET_KEY": f"{old},{NEW_KEY}"}
                    ).returncode == 0
    fault_report("`passflow rotate-key` over sessions stored in the clear by 0.4",
                 "codes and URLs sealed under the new key, still found by the code typed")
