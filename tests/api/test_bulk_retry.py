"""Retrying failed jobs by filter after an incident (POST /v1/jobs/retry, `passflow jobs retry
--status failed ...`, the console's "retry all"): a count first, the new jobs after, audited,
never a job retried twice, never another brand's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

import models.db
from api.auth import create_token
from models import Job, audit, utc_text, utcnow
from tests.factories import JobFactory

OUTAGE = {"status": 503, "code": "network_connection_failure", "action": "retry",
          "message": "the MVPD did not answer"}
NEVER = {"status": 403, "code": "authenticated_profile_missing", "action": "authentication",
         "message": "The authenticated profile associated with this request is missing."}


def _failed(error: dict, *, hours_ago: float = 1.0, **fields) -> str:
    at = utcnow() - timedelta(hours=hours_ago)
    return JobFactory(status="failed", current_step=None, error=error, created_at=at,
                      finished_at=at, next_run_at=None, dispatched_at=at, **fields).id


def _retries_of(job_ids: list[str]) -> dict[str, str]:
    with models.db.session_scope() as session:
        return dict(session.execute(select(Job.retry_of, Job.id)
                                    .where(Job.retry_of.in_(job_ids))).all())


def test_a_bulk_retry_counts_first_then_retries_only_what_the_filter_names(
        api: httpx.Client, factories_bound, fault_report):
    outage = [_failed(OUTAGE) for _ in range(3)]
    never = [_failed(NEVER) for _ in range(2)]
    window = {"until": utc_text(utcnow() - timedelta(minutes=30))}
    counted = api.post("/v1/jobs/retry", json={**window, "dry_run": True})
    assert counted.status_code == 200, counted.text
    report = counted.json()
    assert report["by_error_code"] == {"network_connection_failure": 3,
                                       "authenticated_profile_missing": 2}
    assert (report["matched"], report["would_retry"], report["retried"]) == (5, 5, [])
    assert _retries_of(outage + never) == {}  # a dry run changes nothing

    done = api.post("/v1/jobs/retry", json={**window, "error_code": "network_connection_failure"})
    assert done.status_code == 200, done.text
    report = done.json()
    assert report["matched"] == 3 and report["left"] == 0 and report["refused"] == []
    assert {r["job_id"] for r in report["retried"]} == set(outage)
    assert _retries_of(outage + never) == {r["job_id"]: r["new_job_id"]
                                           for r in report["retried"]}
    again = api.post("/v1/jobs/retry", json={**window, "dry_run": True}).json()
    assert again["by_error_code"] == {"authenticated_profile_missing": 2}  # never twice
    with models.db.session_scope() as session:
        [act] = [e for e in audit.entries(session, target="jobs")
                 if e["action"] == "jobs.retry_many"]
    assert act["actor"] == "api:PASSFLOW_API_TOKEN"
    assert act["detail"]["filter"]["error_code"] == "network_connection_failure"
    assert (act["detail"]["matched"], act["detail"]["retried"]) == (3, 3)
    refused = api.post("/v1/jobs/retry", json={"error_code": "x", "surprise": 1})
    assert refused.status_code == 422  # an unknown field is a mistake, not "every job"
    fault_report("POST /v1/jobs/retry after an outage, by error code",
                 "a dry run counts by code; only the outage's jobs retried, each once, audited")


def test_a_brand_limited_token_retries_only_its_brand(api: httpx.Client, factories_bound):
    ours = _failed(OUTAGE, service_provider="REF30")
    theirs = _failed(OUTAGE, service_provider="OTHER30")
    with models.db.session_scope() as session:
        token = create_token(session, name=f"ref30-admin-{uuid.uuid4()}", scope="admin",
                             service_providers=["REF30"])
    from tests.support import wait_for

    headers = {"Authorization": f"Bearer {token}"}
    url = str(api.base_url) + "/v1/jobs/retry"
    wait_for(lambda: httpx.post(url, headers=headers, json={"dry_run": True}).status_code == 200,
             timeout=10, interval=0.25)  # new tokens reach the API within seconds
    report = httpx.post(url, headers=headers, json={"error_code": OUTAGE["code"]}).json()
    assert ours in {r["job_id"] for r in report["retried"]}
    assert theirs not in {r["job_id"] for r in report["retried"]}
    assert theirs not in _retries_of([theirs])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ})


@pytest.mark.slow  # subprocesses (make test-fast leaves it out)
def test_the_cli_retries_by_filter_with_a_dry_run(api: httpx.Client, factories_bound):
    outage = [_failed(OUTAGE, mvpd="Spectrum", hours_ago=2) for _ in range(2)]
    other = _failed(NEVER, mvpd="Spectrum", hours_ago=2)
    since = utc_text(utcnow() - timedelta(hours=3))
    until = utc_text(utcnow() - timedelta(hours=1))
    window = ("--since", since, "--until", until, "--mvpd", "Spectrum")
    dry = _cli("jobs", "retry", "--status", "failed", *window, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "3 failed job(s) match" in dry.stdout and "network_connection_failure: 2" in dry.stdout
    assert "would retry 3 (dry run: nothing changed)" in dry.stdout
    assert _retries_of([*outage, other]) == {}
    done = _cli("jobs", "retry", "--status", "failed", *window, "--error-code",
                OUTAGE["code"], "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {r["job_id"] for r in report["retried"]} == set(outage)
    assert set(_retries_of([*outage, other])) == set(outage)
    vague = _cli("jobs", "retry", "--error-code", OUTAGE["code"])  # no --status failed
    assert vague.returncode == 2 and "--status failed" in vague.stderr
