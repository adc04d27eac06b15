"""All logs of a full run: JSON lines, correlated by job and device, and no secret or personal
data in them."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid

import httpx
from sqlalchemy import select

import models.db
from models import Registration
from passflow import logs
from passflow.crypto import cipher_from_settings
from tests.support import TOKEN, new_device, wait_for_status


def test_a_full_run_logs_no_secret(api: httpx.Client, jobs_env: httpx.Client, fault_report):
    stream = io.StringIO()
    logs.configure(logging.DEBUG, stream=stream)
    try:
        device = new_device()
        dev = {"id": device.id, "ip": device.ip, "info": dict(device.info)}

        def run(type_: str, until=(), **fields) -> dict:
            body = {"event_id": f"evt-{uuid.uuid4()}", "type": type_, "device": dev, **fields}
            job_id = api.post("/v1/events", json=body).json()["job_id"]
            wait_for_status(job_id, *until)
            return api.get(f"/v1/jobs/{job_id}").json()

        waiting = run("authentication.requested", ("waiting_for_user",), mvpd="Cablevision")
        jobs_env.post("/_sim/login", json={"code": waiting["result"]["code"]})
        wait_for_status(waiting["job_id"])
        authenticated = api.get(f"/v1/jobs/{waiting['job_id']}").json()
        played = run("authorization.requested", mvpd="Cablevision", resource="REF30")
        run("temppass.requested", mvpd="flexibleTempPass", resource="CNN",
            temppass_identity={"email": "viewer@example.com"})
        run("logout.requested", mvpd="Cablevision")
    finally:
        logs.configure(logging.INFO)
    output = stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert len(lines) >= 8, output[:2000]
    correlated = [entry for entry in lines if entry.get("job_id") and entry.get("device_id")]
    assert any(entry["device_id"] == device.id for entry in correlated)

    cipher = cipher_from_settings()
    with models.db.session_scope() as session:
        registration = session.scalars(select(Registration)).first()
        client_secret = cipher.decrypt(registration.client_secret_enc)
        access_token = cipher.decrypt(registration.access_token_enc)
    media_token = played["result"]["decisions"][0]["media_token"]
    attributes = authenticated["result"]["profile"]["attributes"]
    secrets = {"client secret": client_secret, "access token": access_token,
               "media token": media_token, "API token": TOKEN,
               "TempPass identity": "viewer@example.com"}
    secrets.update({f"profile attribute {k}": str(v["value"]) for k, v in attributes.items()})
    # Whole tokens only: a short value such as a zip code also occurs inside timestamps and
    # durations ("...T18:02:10.100014Z").
    leaked = {name: output[max(0, m.start() - 80):m.end() + 80]
              for name, value in secrets.items() if value
              for m in [re.search(rf"(?<![\w.]){re.escape(value)}(?![\w])", output)] if m}
    assert leaked == {}
    fault_report("logs of a full run (auth, play, TempPass, logout) searched for secrets",
                 "every line JSON, step lines carry job and device ids; no client secret, "
                 "access token, media token, API token, TempPass identity or profile attribute")
