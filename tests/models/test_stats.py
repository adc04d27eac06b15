"""The figures behind the console's charts (models.stats, GET /v1/stats/...), from records the
factories write at known times: on each backend (the time arithmetic is each dialect's own)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from models import Job, JobStatus, SessionStatus
from models.db import session_scope
from models.stats import Span, authentication, backlog, decisions, denies
from tests.factories import AuthSessionFactory, DecisionFactory, JobFactory, ProfileFactory
from worker import jobs


@pytest.fixture
def hour(factories_bound: None) -> datetime:
    """An hour in the past no other test writes to."""
    return datetime(2001, 1, 1, tzinfo=UTC) + timedelta(hours=random.randrange(200_000))


def test_decisions_per_minute_by_outcome(hour: datetime):
    for at, outcome in ((30, "Permit"), (70, "Permit"), (75, "Deny"), (3599, "Permit"),
                        (3600, "Permit"), (-1, "Deny")):  # the last two are outside
        DecisionFactory(created_at=hour + timedelta(seconds=at), decision=outcome)
    with session_scope() as session:
        figures = decisions(session, Span.of(hour, hour + timedelta(hours=1)))
    assert figures["totals"] == {"Permit": 3, "Deny": 1}
    assert figures["bucket_s"] == 60 and len(figures["series"]) == 60
    assert figures["series"][0] == {"at": figures["since"], "Permit": 1, "Deny": 0}
    assert figures["series"][1]["Permit"] == 1 and figures["series"][1]["Deny"] == 1
    assert figures["series"][59]["Permit"] == 1
    assert sum(bar["Permit"] + bar["Deny"] for bar in figures["series"]) == 4


def test_denies_by_provider_and_code(hour: datetime):
    for mvpd, code, n in (("Cablevision", "authorization_denied_by_mvpd", 3),
                          ("Comcast_SSO", "authorization_denied_by_parental_controls", 1)):
        for _ in range(n):
            DecisionFactory(created_at=hour + timedelta(minutes=5), decision="Deny", mvpd=mvpd,
                            error_code=code, error_action="none")
    DecisionFactory(created_at=hour + timedelta(minutes=5), decision="Permit")
    with session_scope() as session:
        figures = denies(session, Span.of(hour, hour + timedelta(hours=1)))
    assert figures["total"] == 4
    assert figures["by_provider"][0] == {"mvpd": "Cablevision", "error_code":
                                         "authorization_denied_by_mvpd",
                                         "error_action": "none", "count": 3}


def test_the_authentication_funnel_and_time_to_log_in(hour: datetime):
    for seconds in (10, 20, 30, 40, 100):  # logged in after that many seconds
        job = JobFactory(type="authentication.requested", status=JobStatus.SUCCEEDED.value,
                         current_step=None)
        made = AuthSessionFactory(job=job, created_at=hour + timedelta(minutes=1),
                                  status=SessionStatus.AUTHENTICATED.value)
        ProfileFactory(job=job, created_at=made.created_at + timedelta(seconds=seconds))
    for _ in range(2):
        AuthSessionFactory(created_at=hour + timedelta(minutes=2),
                           status=SessionStatus.EXPIRED.value)
    with session_scope() as session:
        figures = authentication(session, Span.of(hour, hour + timedelta(hours=1)))
    assert (figures["sessions_created"], figures["logged_in"], figures["profiles_received"],
            figures["expired"]) == (7, 5, 5, 2)
    assert figures["time_to_log_in_s"]["median"] == 30.0
    assert 40.0 <= figures["time_to_log_in_s"]["p90"] <= 100.0


def test_backlog_counts_due_jobs_and_the_oldest_wait(factories_bound: None):
    step = f"test.step-{random.randrange(10**9)}"
    now = datetime.now(UTC)
    future = now + timedelta(hours=1)  # dispatched later: the sweeper leaves them be
    for late in (5, 50):
        JobFactory(current_step=step, next_run_at=now - timedelta(seconds=late),
                   dispatched_at=future)
    JobFactory(current_step=step, next_run_at=now + timedelta(minutes=5), dispatched_at=future)
    JobFactory(current_step=step, status=JobStatus.RUNNING.value, next_run_at=now,
               lease_owner="w-test", lease_until=future, dispatched_at=future)
    try:
        with session_scope() as session:
            [row] = [s for s in backlog(session, now)["steps"] if s["step"] == step]
    finally:  # they must never run: their step is made up
        with session_scope() as session:
            ids = list(session.scalars(select(Job.id).where(Job.current_step == step)))
            assert len(jobs.cancel(session, ids)) == 4
    assert (row["due"], row["running"], row["not_final"]) == (2, 1, 4)
    assert 49 <= row["oldest_due_s"] <= 51


def test_a_window_is_checked():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="before"):
        Span.of(at, at)
    with pytest.raises(ValueError, match="31 days"):
        Span.of(at, at + timedelta(days=40))
    assert Span.of(at, at + timedelta(days=1)).bucket_s == 15 * 60
    assert Span.of(at, at + timedelta(days=7)).bucket_s == 3600


def test_step_latency_to_the_millisecond_on_each_backend(hour: datetime):
    """A quarter-second step is 0.25 s, not 0 (SQLite's strftime('%s') rounded to whole
    seconds: every p50 read "0 ms" in the console)."""
    from models.stats import step_latency
    from tests.factories import JobStepFactory

    for n, took in enumerate((0.25, 0.25, 0.25, 1.5)):
        JobStepFactory(started_at=hour + timedelta(seconds=10 * n), took_s=took,
                       step="decisions.authorize")
    with session_scope() as session:
        [figures] = step_latency(session, Span.of(hour, hour + timedelta(hours=1)))["steps"]
    assert figures["count"] == 4 and figures["p50_s"] == 0.25
    assert 1.0 < figures["p99_s"] <= 1.5


def test_jobs_failed_on_adobes_429s_apart_from_passflows_own_limit(hour: datetime):
    """"Adobe answered 429: 0" beside "jobs failed on 429s: 529" read as a contradiction: a
    job that waited too long for its device's budget (no request sent) is counted apart."""
    from models.stats import throttling

    for status, n in ((429, 2), (None, 3)):
        for _ in range(n):
            JobFactory(status="failed", current_step=None, finished_at=hour, created_at=hour,
                       error={"status": status, "code": "rate_limited", "action": "retry",
                              "message": "decisions.authorize: ..."})
    with session_scope() as session:
        figures = throttling(session, Span.of(hour, hour + timedelta(hours=1)))
    assert (figures["jobs_failed_rate_limited"], figures["jobs_failed_adobe_429"],
            figures["jobs_failed_device_budget"]) == (5, 2, 3)
