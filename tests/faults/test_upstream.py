"""Upstream faults: 5xx bursts, timeouts, slow answers, 429 storms, malformed bodies. Each ends in
a final job with a clear error or a success, with bounded retries and no duplicate rows."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

import models.db
from models import Decision, Job, JobStep
from tests.support import new_device, set_faults, wait_for, wait_for_status
from tests.worker.jobs.test_flows import authenticate, submit, view

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _attempts(job_id: str) -> int:
    with models.db.session_scope() as session:
        return session.scalar(select(func.max(JobStep.attempts)).where(JobStep.job_id == job_id))


def _stat(sim: httpx.Client, name: str) -> int:
    return sim.get("/_sim/stats").json().get(name, 0)


def _decisions(job_id: str) -> int:
    with models.db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Decision).where(
            Decision.job_id == job_id))


def _authorize(jobs_env: httpx.Client, **faults: object) -> str:
    """An authenticated device asks to play, with the faults set before the event is sent: a
    job that could finish before they are set would test nothing."""
    device = new_device()
    authenticate(jobs_env, device)
    set_faults(jobs_env, **faults)
    return submit("authorization.requested", device, mvpd="Cablevision", resource="REF30")


def test_a_5xx_burst_is_ridden_out(jobs_env: httpx.Client, fault_report):
    job_id = _authorize(jobs_env, error_rate=1.0, error_status=503, error_action="retry")
    wait_for(lambda: _stat(jobs_env, "faults_error") >= 1)
    set_faults(jobs_env, error_rate=0.0)
    assert wait_for_status(job_id, timeout=30) == "succeeded"
    assert _decisions(job_id) == 1 and _attempts(job_id) <= 3
    fault_report("Adobe Pass answers 503 for a second",
                 f"job succeeded after {_attempts(job_id)} attempts; one decision row")


@pytest.mark.parametrize("knobs,requests,case", [
    ({"error_status": 502, "error_code": ""}, 3,
     "a gateway in front of Adobe Pass answers 502 to every call"),
    ({"error_status": 503, "error_action": "retry"}, 3,
     "Adobe Pass answers every call 503 with action retry"),
    ({"error_status": 500, "error_code": "internal_server_error"}, 1,
     "Adobe Pass answers 500 internal_server_error (action none) to every call"),
])
def test_endless_5xx_fail_the_job_within_one_retry_budget(jobs_env: httpx.Client, fault_report,
                                                          knobs, requests, case):
    """Checklist, Authorization Decisions Retrieval Retry: retries limited to 2-3 and only when
    the answer warrants one; one budget counted in requests, never nested in the client."""
    before = _stat(jobs_env, "faults_error")
    job_id = _authorize(jobs_env, error_rate=1.0, **knobs)
    assert wait_for_status(job_id, timeout=40) == "failed"
    error = view(job_id)["error"]
    assert error["status"] == knobs["error_status"]
    assert _stat(jobs_env, "faults_error") - before == requests
    assert _attempts(job_id) == requests and _decisions(job_id) == 0
    fault_report(case, f"job failed with HTTP {error['status']} ({error['code'] or 'no code'}) "
                 f"after {requests} request(s) in all; no decision stored")


def test_timeouts_fail_after_bounded_retries(jobs_env: httpx.Client, fault_report):
    job_id = _authorize(jobs_env, timeout_rate=1.0, timeout_s=3.0)  # the client gives up after 2 s
    assert wait_for_status(job_id, timeout=60) == "failed"
    error = view(job_id)["error"]
    assert error["code"] == "APITimeoutError" and _attempts(job_id) == 3
    fault_report("Adobe Pass never answers (timeouts)",
                 f"job failed with {error['code']} after {_attempts(job_id)} attempts")


def test_slow_answers_still_succeed(jobs_env: httpx.Client, fault_report):
    job_id = _authorize(jobs_env, latency_ms=1500)  # under the 2 s client timeout
    started = time.monotonic()
    assert wait_for_status(job_id, timeout=30) == "succeeded"
    took = time.monotonic() - started
    assert took >= 1.5 and _decisions(job_id) == 1 and _attempts(job_id) == 1
    fault_report("Adobe Pass answers in 1.5 s",
                 f"job succeeded in {took:.1f} s, first attempt, one decision row")


def test_a_short_429_storm_is_waited_out(jobs_env: httpx.Client, fault_report):
    before = _stat(jobs_env, "throttled")
    job_id = _authorize(jobs_env, throttle_rate=1.0)
    wait_for(lambda: _stat(jobs_env, "throttled") > before)
    set_faults(jobs_env, throttle_rate=0.0)
    assert wait_for_status(job_id, timeout=30) == "succeeded"
    answered = _stat(jobs_env, "throttled") - before
    assert answered in (1, 2) and _decisions(job_id) == 1  # each 429 waited >= 1 s
    fault_report("a short 429 storm",
                 f"the job waited at least 1 s after each of {answered} 429(s), then "
                 "succeeded; one decision row")


def test_an_endless_429_storm_fails_within_the_retry_budget(jobs_env: httpx.Client,
                                                            fault_report):
    """Adobe's 429 spends the play's one retry budget (2 retries) like any failure."""
    before = _stat(jobs_env, "throttled")
    job_id = _authorize(jobs_env, throttle_rate=1.0)
    assert wait_for_status(job_id, timeout=30) == "failed"
    error = view(job_id)["error"]
    assert (error["code"], error["status"]) == ("rate_limited", 429)
    assert "request 3 of at most 3" in error["message"]
    assert _stat(jobs_env, "throttled") - before == 3
    fault_report("429 storm that never ends", f"job failed {error['code']} after 3 requests "
                 "(1 + 2 retries), each at least 1 s after the last; no crash loop")


def test_no_play_makes_more_than_three_requests_whatever_fails(jobs_env: httpx.Client,
                                                               fault_report):
    """503s with action retry, 429s and successes mixed at random: each play, one at a time,
    makes at most 3 requests (checklist item 14: retries limited to 2-3), whatever the mix."""
    most = 0
    for _ in range(8):
        device = new_device()
        authenticate(jobs_env, device)
        set_faults(jobs_env, error_rate=0.35, error_status=503, error_action="retry",
                   throttle_rate=0.35)
        before = _stat(jobs_env, "requests")
        job_id = submit("authorization.requested", device, mvpd="Cablevision",
                        resource="REF30")
        wait_for_status(job_id, timeout=30)
        made = _stat(jobs_env, "requests") - before
        set_faults(jobs_env, error_rate=0.0, throttle_rate=0.0)
        assert 1 <= made <= 3, made
        most = max(most, made)
    fault_report("8 plays with 503s (action retry) and 429s at random",
                 f"each made at most 3 requests (the most: {most}), failures and 429s sharing "
                 "one budget")


@pytest.mark.parametrize("body,case", [
    ("<html>not json", "Adobe Pass answers 200 with a body that is not JSON"),
    ('{"decisions": [{"resource": "REF30"}]}',
     "Adobe Pass answers 200 with JSON lacking documented fields"),
])
def test_malformed_bodies_fail_the_step_without_retries(jobs_env: httpx.Client, fault_report,
                                                        body, case):
    job_id = _authorize(jobs_env, malformed_rate=1.0, malformed_body=body)
    assert wait_for_status(job_id, timeout=30) == "failed"
    error = view(job_id)["error"]
    assert error["code"] == "MalformedResponseError" and _attempts(job_id) == 1
    assert "decisions.authorize" in error["message"]
    assert _decisions(job_id) == 0
    fault_report(case, "job failed at once with MalformedResponseError naming the endpoint; "
                 "nothing stored")


def test_two_events_for_one_device_at_once(jobs_env: httpx.Client, fault_report):
    import threading

    from tests.support import make_event
    from worker import dispatch

    device = new_device()
    ids: list[str] = []

    def send() -> None:
        event = make_event(f"evt-{uuid.uuid4()}", "authentication.requested", device,
                           mvpd="Cablevision")
        ids.append(dispatch.submit(event, default_service_provider="REF30")[0])

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for job_id in ids:
        wait_for_status(job_id, "waiting_for_user", "cancelled")
    statuses = {}
    for job_id in ids:
        job = view(job_id)
        statuses[job_id] = job["status"]
        if job["status"] == "waiting_for_user":
            jobs_env.post("/_sim/login", json={"code": job["result"]["code"]})
    final = sorted(wait_for_status(job_id, timeout=30) for job_id in ids)
    assert final == ["cancelled", "succeeded"], statuses
    with models.db.session_scope() as session:
        profiles = session.scalar(select(func.count()).select_from(Job).where(
            Job.device_id == device.id, Job.status == "succeeded"))
    assert profiles == 1
    fault_report("two authentication events for one device at once",
                 "the newer session superseded the older: one job cancelled (superseded), "
                 "one succeeded")
