"""All logs of a full run: JSON lines, correlated by job and device, and no secret or personal
data in them."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid

import httpx
import pytest
from sqlalchemy import select

import models.db
from models import Registration
from passflow import logs
from passflow.crypto import cipher_from_settings
from tests.support import TOKEN, new_device, wait_for_status
from worker.runtime import runtime


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
        registration = session.scalars(select(Registration).where(
            Registration.key == runtime().adobe_for("REF30").registration_key)).one()
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


def test_a_request_id_follows_its_event_into_the_steps(api: httpx.Client,
                                                       jobs_env: httpx.Client, fault_report):
    """The id the caller sent (or the API made) is on the API's lines and on every step line of
    the job the request created; no line carries another job's device."""
    stream = io.StringIO()
    logs.configure(logging.DEBUG, stream=stream)  # a step done and an event accepted: debug
    try:
        devices = [new_device() for _ in range(3)]
        jobs = {}
        for n, device in enumerate(devices):
            answer = api.post("/v1/events", headers={"X-Request-ID": f"req-{n}-{uuid.uuid4()}"},
                              json={"event_id": f"evt-{uuid.uuid4()}", "type": "profiles.requested",
                                    "device": {"id": device.id, "ip": device.ip,
                                               "info": dict(device.info)}})
            jobs[answer.json()["job_id"]] = (device.id, answer.headers["x-request-id"])
        unnamed = api.post("/v1/events", json={})
        for job_id in jobs:
            wait_for_status(job_id)
    finally:
        logs.configure(logging.INFO)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    assert re.fullmatch(r"[0-9a-f]{32}", unnamed.headers["x-request-id"])  # one was made
    for job_id, (_, request_id) in jobs.items():
        assert request_id.startswith("req-")
        steps = [e for e in lines if e.get("job_id") == job_id and e["event"] == "step_run"]
        assert steps and all(e["request_id"] == request_id for e in steps), steps
        accepted = [e for e in lines if e["event"] == "event_accepted"
                    and e.get("job_id") == job_id]
        assert accepted and accepted[0]["request_id"] == request_id
    for entry in lines:
        if entry.get("job_id") in jobs and entry.get("device_id"):
            assert entry["device_id"] == jobs[entry["job_id"]][0], entry
    fault_report("three events with X-Request-ID, their jobs' logs searched",
                 "each job's step lines carry its request's id and its own device, no other")


def test_text_at_a_terminal_json_otherwise():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, fmt, is_json in ((Terminal(), "auto", False), (io.StringIO(), "auto", True),
                                 (Terminal(), "json", True), (io.StringIO(), "console", False)):
        logs.configure(logging.INFO, stream=stream, fmt=fmt)
        logs.get_logger("test").warning("step_run", job_id="j-1", error_code="x")
        line = stream.getvalue().strip()
        assert line.startswith("{") == is_json, (fmt, line)
        assert "j-1" in line and "step_run" in line
    logs.configure(logging.INFO)


@pytest.mark.slow
def test_a_worker_writes_one_stream_without_a_banner(pass_env: str, tmp_path):
    """JSON from its first line, no banner, and nothing while idle (it said ~6 lines a second:
    Celery's two per poll task). On a database of its own: an idle worker of a database where
    earlier tests left jobs due would rightly resume them, and say so."""
    import os
    import time

    import redis

    from passflow.database import upgrade
    from tests.support import WorkerProcess, wait_for
    from worker.sweeper import keys as sweeper_keys

    database_url = f"sqlite:///{tmp_path / 'quiet.db'}"
    upgrade(database_url)
    worker = WorkerProcess("quiet", concurrency=1, loglevel="info",
                           env={"PASSFLOW_LOG_FORMAT": "json",
                                "PASSFLOW_DATABASE_URL": database_url})
    try:
        wait_for(lambda: worker.said("worker_ready"), timeout=30)
        ready_lines = len(worker.log.read_text(errors="replace").splitlines())
        # Idle: the fleet sweeps every 0.5 s (this worker or another); three seconds of sweeps.
        client = redis.Redis.from_url(os.environ["PASSFLOW_BROKER_URL"])
        started = time.time()
        wait_for(lambda: json.loads(client.get(sweeper_keys(database_url)[1]) or "{}")
                 .get("at", 0) > started + 3, timeout=20, interval=0.25)
        idle_lines = len(worker.log.read_text(errors="replace").splitlines()) - ready_lines
    finally:
        worker.stop()
    assert idle_lines <= 2, worker.log.read_text(errors="replace")[-2000:]
    text = worker.log.read_text(errors="replace")
    # One exception: Celery's signal handler writes "worker: Warm shutdown" straight to stderr
    # (logging is not safe inside a signal handler), after the last line passflow logs.
    lines = [line for line in text.splitlines()
             if line.strip() and not line.startswith("worker: Warm shutdown")]
    assert all(line.startswith("{") for line in lines), [ln for ln in lines
                                                          if not ln.startswith("{")][:5]
    assert "-------------- " not in text  # Celery's banner


def test_a_failed_step_is_a_warning_with_its_code(api: httpx.Client, jobs_env: httpx.Client):
    stream = io.StringIO()
    logs.configure(logging.INFO, stream=stream)
    try:
        device = new_device()
        job_id = api.post("/v1/events", json={
            "event_id": f"evt-{uuid.uuid4()}", "type": "authorization.requested",
            "mvpd": "Cablevision", "resource": "REF30",
            "device": {"id": device.id, "ip": device.ip, "info": dict(device.info)}},
        ).json()["job_id"]
        assert wait_for_status(job_id) == "failed"  # nobody logged in on this device
    finally:
        logs.configure(logging.INFO)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    [failed] = [e for e in lines if e.get("job_id") == job_id and e.get("result") == "failed"]
    assert failed["level"] == "warning" and failed["error_code"] and failed["error_action"]
