"""What a job that is not final waits for, said in words an operator can act on."""

from __future__ import annotations

from datetime import timedelta

from models import JobStatus, JobStep, utcnow
from tests.factories import JobFactory
from worker.views import waiting_for


def _step(job, **fields) -> JobStep:
    return JobStep(job_id=job.id, step=job.current_step, status="running", attempts=1,
                   failures=0, rate_limited=0, **fields)


def test_a_throttled_play_says_until_when_and_why(factories_bound):
    later = utcnow() + timedelta(seconds=4)
    job = JobFactory(status=JobStatus.RUNNING.value, next_run_at=later,
                     dispatched_at=utcnow() + timedelta(hours=1))
    reason = "decisions.authorize: device budget spent, next in 4.00s"
    said = waiting_for(job, [_step(job, last_error=reason)])
    assert said.startswith("decisions.authorize again at ") and reason in said


def test_a_job_no_worker_took_points_at_the_workers(factories_bound):
    job = JobFactory(next_run_at=utcnow() - timedelta(minutes=2),
                     dispatched_at=utcnow() + timedelta(hours=1))
    said = waiting_for(job, [])
    assert "none has taken it for 2 min" in said and "are workers running" in said


def test_a_job_queued_a_moment_ago_does_not_suspect_the_workers(factories_bound):
    job = JobFactory(next_run_at=utcnow() - timedelta(seconds=1))
    said = waiting_for(job, [])
    assert said.startswith(f"a worker to run {job.current_step} (queued")
    assert "are workers running" not in said


def test_a_leased_job_names_its_worker_and_a_final_one_waits_for_nothing(factories_bound):
    job = JobFactory(status=JobStatus.RUNNING.value, lease_owner="worker-7@host",
                     lease_until=utcnow() + timedelta(seconds=30),
                     dispatched_at=utcnow() + timedelta(hours=1))
    assert "running on worker-7@host" in waiting_for(job, [])
    done = JobFactory(status=JobStatus.SUCCEEDED.value, current_step=None)
    assert waiting_for(done, []) is None


def test_a_last_error_stored_as_json_by_an_earlier_release_reads_as_words(factories_bound):
    job = JobFactory(status=JobStatus.RUNNING.value, next_run_at=utcnow() + timedelta(seconds=4),
                     dispatched_at=utcnow() + timedelta(hours=1))
    stored = '{"status": 503, "code": "network_connection_failure", "action": "retry", ' \
             '"message": "the MVPD did not answer"}'
    said = waiting_for(job, [_step(job, last_error=stored)])
    assert said.endswith("after: network_connection_failure (HTTP 503), action retry: the MVPD "
                         "did not answer")
