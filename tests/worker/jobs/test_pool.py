"""Several worker processes, as production runs them: a killed worker, one device's burst, a
single registration for the pool. On PostgreSQL, the production database."""

from __future__ import annotations

import os
import time
import uuid

import httpx
import pytest
import redis
from sqlalchemy import func, select

import models.db
from models import AuthSession, Decision, JobStep, Profile
from tests.support import (
    activation_codes,
    forget_registration,
    make_event,
    new_device,
    wait_for,
    wait_for_status,
)
from worker import dispatch
from worker.metrics import PROCESS_KEY

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

SP = "REF30"


def _submit(type_: str, device, **fields) -> str:
    job_id, _ = dispatch.submit(make_event(f"evt-{uuid.uuid4()}", type_, device, **fields),
                            default_service_provider=SP)
    return job_id


def _count(model, job_id: str) -> int:
    with models.db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(
            model.job_id == job_id))


def _polls(job_id: str) -> int:
    with models.db.session_scope() as session:
        return session.scalar(select(AuthSession.polls).where(AuthSession.job_id == job_id)) or 0


def _sweeps(redis_client, n: int) -> None:
    """Wait until the fleet has swept `n` more times."""
    from worker.sweeper import keys

    seen: set[bytes] = set()

    def swept() -> bool:
        stamp = redis_client.get(keys()[1])
        if stamp:
            seen.add(stamp)
        return len(seen) > n

    wait_for(swept, timeout=30)


def test_sigkilled_worker_poll_resumes_without_duplicates(worker_processes, sim: httpx.Client,
                                                         redis_client):
    doomed = worker_processes("doomed", queues="authentication,polling,registration")
    worker_processes("sweeps-only", queues="maintenance", concurrency=1)
    device = new_device()
    job_id = _submit("authentication.requested", device, mvpd="Cablevision")
    wait_for_status(job_id, "waiting_for_user", timeout=30)
    wait_for(lambda: _polls(job_id) >= 2, timeout=20)
    doomed.kill()
    polls_at_kill = _polls(job_id)
    _sweeps(redis_client, 3)  # polls are due every 0.3 s
    assert _polls(job_id) == polls_at_kill  # nobody is polling any more
    [code] = activation_codes(job_id)
    sim.post("/_sim/login", json={"code": code}).raise_for_status()
    worker_processes("rescuer", queues="authentication,polling,registration")
    # The sweeper re-sends the overdue poll once the dead worker's lease has expired.
    assert wait_for_status(job_id, timeout=60) == "succeeded"
    assert _polls(job_id) > polls_at_kill
    assert _count(AuthSession, job_id) == 1 and _count(Profile, job_id) == 1
    with models.db.session_scope() as session:
        steps = session.scalars(select(JobStep.step).where(JobStep.job_id == job_id)).all()
    assert sorted(steps) == sorted(set(steps))


def test_forty_plays_for_one_device_are_all_decided_in_order_without_a_429(
        worker_processes, sim: httpx.Client, fault_report):
    """40 authorizations for one device posted together, on 2 workers: the device's budget
    (10 at once, then 1 a second) serves them in order of arrival; none fails rate_limited, and
    Adobe Pass never has to answer 429."""
    for name in ("w1", "w2"):
        worker_processes(name)
    device = new_device()
    sim.post("/_sim/profiles", json={"service_provider": SP, "mvpd": "Cablevision",
                                     "device_ids": [device.id]}).raise_for_status()
    started = time.monotonic()
    job_ids = [_submit("authorization.requested", device, mvpd="Cablevision",
                       resource=f"res-{i}") for i in range(40)]
    assert [wait_for_status(j, timeout=90) for j in job_ids] == ["succeeded"] * 40
    elapsed = time.monotonic() - started
    stats = sim.get("/_sim/stats").json()
    assert stats.get("throttled", 0) == 0
    assert stats["decisions.authorize 200"] == 40
    assert elapsed >= 28  # 10 at once, then one a second: spread, not burst
    with models.db.session_scope() as session:
        decided = dict(session.execute(select(Decision.job_id, Decision.created_at).where(
            Decision.job_id.in_(job_ids))).all())
        waited = set(session.scalars(select(JobStep.job_id).where(
            JobStep.job_id.in_(job_ids), JobStep.attempts > 1)))
    # The plays that had to wait for the budget were served in order of arrival: none was
    # decided before an earlier one (give or take the plays of one run, decided together).
    queue = [j for j in job_ids if j in waited]
    assert len(queue) >= 25
    overtaken = [(a, b) for a, b in zip(queue, queue[1:], strict=False)
                 if (decided[a] - decided[b]).total_seconds() > 0.5]
    assert not overtaken, overtaken
    fault_report("40 authorizations for one device posted together, on 2 workers",
                 f"all 40 decided in {elapsed:.0f} s; the {len(queue)} that waited for the "
                 "device's budget were served in order of arrival; no 429, none rate_limited")


def test_eighty_plays_for_five_devices_under_a_one_time_burst(worker_processes,
                                                               sim: httpx.Client, fault_report):
    """Adobe's burst read strictly (granted once per device, the simulator's default): each
    device has already spent its burst; 16 plays each, posted together, on 2 workers, pace at
    one a second per device: 80 Permits, no 429."""
    for name in ("w1", "w2"):
        worker_processes(name)
    devices = [new_device() for _ in range(5)]
    sim.post("/_sim/profiles", json={"service_provider": SP, "mvpd": "Cablevision",
                                     "device_ids": [d.id for d in devices]}).raise_for_status()
    # Each device's first interaction spends its burst (10 plays at once), then it idles.
    warm = [_submit("authorization.requested", device, mvpd="Cablevision", resource=f"warm-{i}")
            for i in range(10) for device in devices]
    assert [wait_for_status(j, timeout=60) for j in warm] == ["succeeded"] * 50
    started = time.monotonic()
    job_ids = [_submit("authorization.requested", device, mvpd="Cablevision",
                       resource=f"res-{i}") for i in range(16) for device in devices]
    assert [wait_for_status(j, timeout=120) for j in job_ids] == ["succeeded"] * 80
    elapsed = time.monotonic() - started
    stats = sim.get("/_sim/stats").json()
    assert stats.get("throttled", 0) == 0, stats
    with models.db.session_scope() as session:
        permits = session.scalar(select(func.count()).select_from(Decision).where(
            Decision.job_id.in_(job_ids), Decision.decision == "Permit"))
    assert permits == 80
    fault_report("80 plays for 5 devices posted together, the simulator granting each device's "
                 "burst once",
                 f"80 Permits in {elapsed:.0f} s, no 429: passflow paced each device once its "
                 "burst was spent")


def test_a_burst_of_plays_with_tokens_that_live_40_s(worker_processes, sim: httpx.Client,
                                                     fault_report):
    """Many devices, two plays each, while Adobe's access tokens live 40 s: every play decided,
    no 429, and no token request beyond one a lifetime (a token was renewed on every call
    when the margin was a fixed minute, and those requests starved the plays)."""
    sim.put("/_sim/ttl", json={"access_token_s": 40}).raise_for_status()
    forget_registration()
    for name in ("t1", "t2"):
        worker_processes(name, concurrency=8)
    devices = [new_device() for _ in range(40)]
    sim.post("/_sim/profiles", json={"service_provider": SP, "mvpd": "Cablevision",
                                     "device_ids": [d.id for d in devices]}).raise_for_status()
    started = time.monotonic()
    job_ids = [_submit("authorization.requested", d, mvpd="Cablevision", resource=r)
               for d in devices for r in ("REF30", "CNN")]
    assert [wait_for_status(j, timeout=90) for j in job_ids] == ["succeeded"] * 80
    elapsed = time.monotonic() - started
    stats = sim.get("/_sim/stats").json()
    assert stats.get("throttled", 0) == 0 and stats["decisions.authorize 200"] == 80
    assert stats["tokens_issued"] <= 1 + int(elapsed // 36)
    fault_report("80 plays for 40 devices at once, access tokens living 40 s",
                 f"all 80 decided in {elapsed:.0f} s with {stats['tokens_issued']} token "
                 "request(s); no 429")


def test_twenty_jobs_on_three_workers_register_once(worker_processes, sim: httpx.Client):
    forget_registration()
    for name in ("r1", "r2", "r3"):
        worker_processes(name, concurrency=8)
    job_ids = [_submit("profiles.requested", new_device()) for _ in range(20)]
    for job_id in job_ids:
        assert wait_for_status(job_id, timeout=60) == "succeeded"
    stats = sim.get("/_sim/stats").json()
    assert stats["registrations"] == 1
    assert stats["tokens_issued"] == 1
    assert stats["profiles.list 200"] == 20


def test_a_prefork_worker_sweeps_and_runs_steps_in_its_children(worker_processes,
                                                                sim: httpx.Client):
    """The prefork pool forks while the sweeper thread runs in the parent: the children get
    their own database pool and resources (a fork inherits locks held by the parent's threads),
    and the polls the parent's sweeper sends run in them."""
    worker_processes("forked", pool="prefork", concurrency=2)
    job_ids = [_submit("authentication.requested", new_device(), mvpd="Cablevision")
               for _ in range(3)]
    for job_id in job_ids:
        wait_for_status(job_id, "waiting_for_user", timeout=30)
    wait_for(lambda: all(_polls(job_id) >= 2 for job_id in job_ids), timeout=30)
    codes = activation_codes(*job_ids)
    for code in codes:
        sim.post("/_sim/login", json={"code": code}).raise_for_status()
    assert [wait_for_status(job_id, timeout=30) for job_id in job_ids] == ["succeeded"] * 3
    # Each child publishes its own memory and CPU for /metrics (HOST:PID), like the parent.
    client = redis.Redis.from_url(os.environ["PASSFLOW_BROKER_URL"])
    published = [key.decode() for key in client.scan_iter(PROCESS_KEY + "*")]
    children = [key for key in published if ":" in key.removeprefix(PROCESS_KEY)]
    assert len(children) >= 2, published


def test_a_worker_runs_the_documented_pool_and_says_so(worker_processes):
    """`passflow worker` without --pool runs threads, as --help and the README say (Celery's own
    default would fork a process per slot, each with its database pool), and its first log line
    says which pool and how many slots."""
    worker = worker_processes("plain", pool=None, concurrency=3, loglevel="INFO")
    wait_for(lambda: worker.said("worker_ready"), timeout=30)
    ready = next(line for line in worker.log.read_text().splitlines() if "worker_ready" in line)
    assert '"pool": "thread"' in ready and '"concurrency": 3' in ready, ready
