"""Runs of many jobs: one task claims many jobs of a step and makes their calls side by side. A
real worker, the simulator over sockets, SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

import models.db
from models import Decision, Job, JobStep, Profile, utcnow
from passflow.settings import get_settings
from tests.factories import DeviceFactory, JobFactory
from tests.support import new_device, set_faults, wait_for, wait_for_status
from tests.worker.jobs.test_flows import SP, _polls, count, submit, view
from worker import dispatch, engine, jobs, policy
from worker.steps import STEPS


@pytest.fixture
def batches(jobs_env: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every delayed step goes through the table and the sweeper (as 15 s polls do in
    production); records the job ids of each batch the worker runs."""
    monkeypatch.setattr(policy, "DIRECT_DISPATCH_MAX_S", 0.0)
    seen: list[list[str]] = []
    original = engine.run

    def recording(step_name: str, job_ids: list[str], *, owner: str) -> dict[str, str]:
        results = original(step_name, job_ids, owner=owner)
        if step_name == "profiles.poll" and results:
            seen.append(list(results))
        return results

    monkeypatch.setattr(engine, "run", recording)
    return seen


def _waiting(n: int) -> list[str]:
    job_ids = [submit("authentication.requested", new_device(), mvpd="Cablevision")
               for _ in range(n)]
    for job_id in job_ids:
        wait_for_status(job_id, "waiting_for_user")
    return job_ids


@pytest.mark.slow
def test_due_polls_run_in_batches_until_login(jobs_env: httpx.Client, batches):
    job_ids = _waiting(6)
    wait_for(lambda: all(_polls(j) >= 2 for j in job_ids))
    assert any(len(batch) > 1 for batch in batches), batches
    assert {j for batch in batches for j in batch} >= set(job_ids)

    logged_in = job_ids[:3]
    for job_id in logged_in:
        jobs_env.post("/_sim/login", json={"code": view(job_id)["result"]["code"]})
    for job_id in logged_in:
        assert wait_for_status(job_id) == "succeeded"
        assert view(job_id)["result"]["profile"]["attributes"]["userID"]["value"] == "cv-0001"
        assert count(Profile, job_id=job_id) == 1
    # The others keep polling, still waiting for their users.
    before = {j: _polls(j) for j in job_ids[3:]}
    wait_for(lambda: all(_polls(j) > before[j] for j in job_ids[3:]))
    assert all(view(j)["status"] == "waiting_for_user" for j in job_ids[3:])


# One backend is enough: the retry waits, not the dialect.
@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_upstream_errors_in_a_batch_are_retried_then_fail_the_job(jobs_env: httpx.Client,
                                                                   batches):
    job_ids = _waiting(4)
    wait_for(lambda: len(batches) >= 1)
    set_faults(jobs_env, error_rate=1.0, error_status=503, error_action="retry")
    for job_id in job_ids:
        assert wait_for_status(job_id, timeout=60) == "failed"
        done = view(job_id)
        assert done["error"]["status"] == 503
        with models.db.session_scope() as session:
            step = session.scalars(select(JobStep).where(
                JobStep.job_id == job_id, JobStep.step == "profiles.poll")).one()
            assert step.failures == 2  # PASSFLOW_STEP_RETRIES in the tests


def _crashing_poll(monkeypatch: pytest.MonkeyPatch, odd: str, times: int, *,
                   in_runs_of_many: bool = False) -> list[str]:
    """profiles.poll whose apply raises an unexpected error for the job `odd`, `times` times
    (only in runs of several jobs, if `in_runs_of_many`)."""
    step = STEPS["profiles.poll"]
    crashed: list[str] = []

    def apply(ctx, answer):
        run = [o for o in ctx.session.identity_map.values() if isinstance(o, Job)]
        if ctx.job.id == odd and len(crashed) < times and (
                not in_runs_of_many or len(run) > 1):
            crashed.append(ctx.job.id)
            raise RuntimeError("unexpected")
        return step.apply(ctx, answer)

    monkeypatch.setitem(STEPS, "profiles.poll", replace(step, apply=apply))
    return crashed


@pytest.mark.slow
def test_a_job_a_run_cannot_settle_is_applied_alone(jobs_env: httpx.Client, batches,
                                                    monkeypatch: pytest.MonkeyPatch):
    """A run whose transaction fails for one job is rolled back and each job applied alone,
    with the answer it had: the job that crashed once, and the others, keep polling."""
    job_ids = _waiting(4)
    odd = job_ids[0]
    crashed = _crashing_poll(monkeypatch, odd, times=1, in_runs_of_many=True)
    wait_for(lambda: crashed)
    polls = {j: _polls(j) for j in job_ids}
    wait_for(lambda: all(_polls(j) > polls[j] for j in job_ids))
    jobs_env.post("/_sim/login", json={"code": view(odd)["result"]["code"]})
    assert wait_for_status(odd) == "succeeded"


def test_a_job_that_always_crashes_fails_alone(jobs_env: httpx.Client, batches,
                                               monkeypatch: pytest.MonkeyPatch):
    job_ids = _waiting(3)
    odd = job_ids[0]
    _crashing_poll(monkeypatch, odd, times=1000)
    assert wait_for_status(odd) == "failed"
    assert view(odd)["error"]["code"] == "internal_error"
    assert "RuntimeError in step profiles.poll" in view(odd)["error"]["message"]
    polls = {j: _polls(j) for j in job_ids[1:]}
    wait_for(lambda: all(_polls(j) > polls[j] for j in job_ids[1:]))
    assert all(view(j)["status"] == "waiting_for_user" for j in job_ids[1:])


@pytest.fixture
def completed(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The job ids of every transaction that completes jobs."""
    seen: list[set[str]] = []
    original = jobs._complete_many

    def recording(session, step_name, owner, done, cancelled):
        seen.append({job.id for job, _ in done})
        return original(session, step_name, owner, done, cancelled)

    monkeypatch.setattr(jobs, "_complete_many", recording)
    return seen


def _backlog_of_plays(sim: httpx.Client, n: int) -> list[str]:
    """`n` authorization jobs due a second ago, each one's message queued behind (for longer
    than a test lasts: the sweeper would re-send it otherwise)."""
    devices = DeviceFactory.create_batch(n)
    sim.post("/_sim/profiles", json={"service_provider": SP, "mvpd": "Cablevision",
                                     "device_ids": [d.id for d in devices]})
    backlog = [JobFactory(device=d, next_run_at=utcnow() - timedelta(seconds=1),
                          dispatched_at=utcnow() + timedelta(minutes=5)) for d in devices]
    return [job.id for job in backlog]


def _decided(job_ids: list[str]) -> None:
    for job_id in job_ids:
        assert wait_for_status(job_id) == "succeeded"
        assert count(Decision, job_id=job_id) == 1
        assert view(job_id)["result"]["decisions"][0]["decision"] == "Permit"


def test_a_message_takes_every_play_due_beside_it(jobs_env: httpx.Client, completed):
    """A backlog of plays is decided by the first message that runs late: it takes the other
    due jobs of its step along (their own messages, later, find nothing to claim)."""
    job_ids = _backlog_of_plays(jobs_env, 5)
    dispatch.send_step("decisions.authorize", job_ids[:1])
    _decided(job_ids)
    assert set(job_ids) in completed


@pytest.fixture
def batch_size(monkeypatch: pytest.MonkeyPatch):
    def set_size(size: int) -> None:
        monkeypatch.setenv("PASSFLOW_BATCH_SIZE", str(size))
        get_settings.cache_clear()

    yield set_size
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.parametrize("size", [3, 1])
def test_a_batch_takes_no_more_than_the_batch_size(jobs_env: httpx.Client, completed,
                                                   batch_size, size: int):
    batch_size(size)
    job_ids = _backlog_of_plays(jobs_env, 8)
    for job_id in job_ids:
        dispatch.send_step("decisions.authorize", [job_id])
    _decided(job_ids)
    # (Polls of earlier tests may still be completing beside these.)
    plays = [batch & set(job_ids) for batch in completed if batch & set(job_ids)]
    assert max(len(batch) for batch in plays) == size, plays
    assert set().union(*plays) == set(job_ids)


def test_the_sweeper_batches_jobs_due_close_together():
    """A message goes out for its first job's due time: later jobs join it only when they are
    due within the window, so none runs much before its time; steps never share a message."""
    rows = [(j, "profiles.poll", due) for j, due in
            [("a", 0.0), ("b", 0.05), ("c", 0.2), ("d", 0.21), ("e", 0.22), ("f", 0.5)]]
    rows.append(("g", "decisions.authorize", 0.0))

    def ids(chunks):
        return [[job_id for job_id, _, _ in chunk] for chunk in chunks]

    assert ids(dispatch.chunks(rows, 50)) == [["g"], ["a", "b"], ["c", "d", "e"], ["f"]]
    assert ids(dispatch.chunks(rows, 2)) == [["g"], ["a", "b"], ["c", "d"], ["e"], ["f"]]


def test_a_run_of_plays_reads_its_jobs_once(jobs_env: httpx.Client):
    """A play's job row changes during its call only by a cancellation, which takes its lease:
    the run applies the answers to the jobs its claim loaded, with no second read (it cost a
    fifth of a lone play's worker CPU), and each play is decided as before."""
    import threading

    from sqlalchemy import event

    job_ids = _backlog_of_plays(jobs_env, 3)
    mine, reads = threading.get_ident(), []

    def seen(conn, cursor, statement, parameters, context, executemany):
        # A load of the jobs with their events and devices (not the look for other due plays
        # a late run makes, nor the claim).
        if threading.get_ident() == mine and statement.lstrip().upper().startswith("SELECT") \
                and "FROM jobs" in statement and "JOIN devices" in statement:
            reads.append(statement)

    bind = models.db.engine()
    event.listen(bind, "before_cursor_execute", seen)
    try:
        results = engine.run("decisions.authorize", job_ids, owner="test-run")
    finally:
        event.remove(bind, "before_cursor_execute", seen)
    assert results == dict.fromkeys(job_ids, "succeeded")
    assert len(reads) == 1, reads
    _decided(job_ids)


def test_a_job_whose_record_breaks_a_constraint_fails_alone_and_holds_back_no_other(
        jobs_env: httpx.Client, caplog: pytest.LogCaptureFixture):
    """A constraint a job's record breaks is that job's fault, not the database being away: it
    was released and retried without end, and the plays batched with it never settled. Now
    the run is applied job by job: the other plays are decided, the bad one fails with its
    error in words and the constraint in the log."""
    from models import Job as JobRow
    from tests.factories import DecisionFactory

    bad, *good = _backlog_of_plays(jobs_env, 3)
    with models.db.session_scope() as session:
        row = session.get(JobRow, bad)
    DecisionFactory(job=row, device_id=row.device_id)  # the decision this play would store
    results = engine.run("decisions.authorize", [bad, *good], owner="test-run")
    assert results == {bad: "failed", **dict.fromkeys(good, "succeeded")}
    _decided(good)
    failed = view(bad)
    assert failed["status"] == "failed" and failed["error"]["code"] == "internal_error"
    assert "in step decisions.authorize" in failed["error"]["message"]
    assert any("step_record_refused" in r.getMessage() for r in caplog.records)
