"""Transactions that write a session and its job take their row locks in one order (the
session's, then the job's), so a user's return or a cancellation meeting the job's poll being
applied waits for it instead of deadlocking (PostgreSQL would abort one: a 503 on the page)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text, update

import models.db
from models import AuthSession, Job
from tests.factories import AuthSessionFactory
from tests.support import wait_for
from worker import jobs

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _waiting_for_a_lock(pid: int) -> bool:
    with models.db.engine().connect() as conn:
        return conn.scalar(text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity "
                                "WHERE pid = :pid"), {"pid": pid}) is True


def _user_returns(session, job_id: str) -> object:
    return jobs.start_polling(session, job_id)


def _operator_cancels(session, job_id: str) -> object:
    return jobs.cancel(session, [job_id])


@pytest.mark.parametrize(("action", "expected"), [
    (_user_returns, "profiles.poll"),  # the activation page's last step
    (_operator_cancels, None),  # DELETE /v1/jobs/{id}, or a newer code superseding it
], ids=["user-returns", "cancel"])
def test_a_transaction_meeting_the_poll_being_applied_waits_instead_of_deadlocking(
        factories_bound: None, action, expected):
    auth = AuthSessionFactory()
    job_id = auth.job_id
    returned: dict[str, object] = {}
    with models.db.session_scope() as poll:
        # The poll's run: its session's row first (the step's records are flushed first)...
        poll.execute(update(AuthSession).where(AuthSession.job_id == job_id)
                     .values(polls=AuthSession.polls + 1))
        poll.flush()

        def other() -> None:
            try:
                with models.db.session_scope() as page:
                    returned["pid"] = page.connection().exec_driver_sql(
                        "SELECT pg_backend_pid()").scalar()
                    returned["answer"] = action(page, job_id)
            except Exception as exc:  # noqa: BLE001 (the test reports it)
                returned["error"] = exc

        thread = threading.Thread(target=other)
        thread.start()
        # ...the other transaction is now waiting for a lock the poll holds...
        wait_for(lambda: "pid" in returned and _waiting_for_a_lock(returned["pid"]))
        # ...and the poll settles its job: no deadlock, whoever waits for whom.
        poll.execute(update(Job).where(Job.id == job_id).values(updated_at=Job.updated_at))
    thread.join(timeout=30)
    assert "error" not in returned, returned.get("error")
    if expected is None:  # cancelled, its session with it
        assert returned["answer"] == [job_id]
        with models.db.session_scope() as session:
            assert session.get(AuthSession, auth.id).status == "cancelled"
    else:
        assert returned["answer"] == expected
