"""A worker SIGKILLed in the middle of each kind of step; Redis and PostgreSQL restarted during a
run. Each time: no accepted event lost, no duplicate rows, every job final, retries bounded."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import delete, func, select

import models.db
from bench.stack import PostgresCluster
from models import AuthSession, Decision, Job, JobStep, Logout, Profile, Registration
from tests.support import (
    ApiProcess,
    RedisServer,
    WorkerProcess,
    activation_codes,
    device_json,
    make_event,
    new_device,
    set_faults,
    wait_for,
    wait_for_status,
)
from worker import dispatch

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
SP = "REF30"


def _in_flight(sim: httpx.Client) -> bool:
    """A request is held inside the simulator right now (by the latency knob)."""
    return sim.get("/_sim/stats").json().get("in_flight", 0) >= 1


def _killed_and_restarted_empty(broker: RedisServer, noticed) -> RedisServer:
    """SIGKILL the broker; down until `noticed()` (the workers saw it go) and at least 3 s; then
    a new, empty one on the same port."""
    port = broker.port
    broker.kill()
    down = time.monotonic()
    wait_for(noticed, timeout=30)
    wait_for(lambda: time.monotonic() - down >= 3, timeout=10)
    return RedisServer(port).start()


def _submit(type_: str, device, **fields) -> str:
    return dispatch.submit(make_event(f"evt-{uuid.uuid4()}", type_, device, **fields),
                       default_service_provider=SP)[0]


def _rows(model, job_id: str) -> int:
    with models.db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(
            model.job_id == job_id))


def _running(job_id: str, step: str) -> bool:
    with models.db.session_scope() as session:
        job = session.get(Job, job_id)
        return job.current_step == step and job.lease_owner is not None


def _login_device(sim: httpx.Client, device, mvpd: str = "Cablevision") -> None:
    """A profile for the device, made without a call of its own (its budget untouched)."""
    sim.post("/_sim/profiles", json={"service_provider": SP, "mvpd": mvpd,
                                     "device_ids": [device.id]}).raise_for_status()


CASES = {
    # step killed: (event type, fields, needs a logged-in device, records that must be single)
    "dcr.register": ("profiles.requested", {}, False, []),
    "sessions.create": ("authentication.requested", {"mvpd": "Cablevision"}, False,
                        [AuthSession]),
    "decisions.preauthorize": ("preauthorization.requested",
                               {"mvpd": "Cablevision", "resources": ["REF30", "CNN", "HBO"]},
                               True, []),
    "decisions.authorize": ("authorization.requested",
                            {"mvpd": "Cablevision", "resource": "REF30"}, True, [Decision]),
    "logout.initiate": ("logout.requested", {"mvpd": "Cablevision"}, True, [Logout]),
}


@pytest.mark.parametrize("killed_in", list(CASES))
def test_sigkill_in_the_middle_of_a_step(killed_in: str, worker_processes, sim: httpx.Client,
                                         fault_report):
    type_, fields, logged_in, single = CASES[killed_in]
    device = new_device()
    if logged_in:
        _login_device(sim, device)
    if killed_in == "dcr.register":
        with models.db.session_scope() as session:
            session.execute(delete(Registration))
    step = {"dcr.register": "profiles.retrieve"}.get(killed_in, killed_in)
    doomed = worker_processes("doomed")
    set_faults(sim, latency_ms=1500)  # slow enough to be killed mid-call, under the 2 s timeout
    job_id = _submit(type_, device, **fields)
    wait_for(lambda: _running(job_id, step), timeout=60)
    wait_for(lambda: _in_flight(sim), timeout=30)  # the step's call is inside Adobe Pass now
    doomed.kill()
    assert _running(job_id, step)  # killed while holding the step
    set_faults(sim, latency_ms=0)
    worker_processes("rescuer")
    if type_ == "authentication.requested":
        final = wait_for_status(job_id, "waiting_for_user", timeout=60)
    else:
        final = wait_for_status(job_id, timeout=60)
        assert final == "succeeded", final
    for model in single:
        assert _rows(model, job_id) == 1
    if type_ == "preauthorization.requested":
        with models.db.session_scope() as session:
            resources = session.scalars(select(Decision.resource).where(
                Decision.job_id == job_id)).all()
        assert sorted(resources) == ["CNN", "HBO", "REF30"]
    with models.db.session_scope() as session:
        attempts = session.scalar(select(JobStep.attempts).where(
            JobStep.job_id == job_id, JobStep.step == step))
        registrations = session.scalar(select(func.sum(Registration.registrations)))
    # The killed run, the rescue, and a few reruns while the device's budget refills.
    assert attempts <= 6
    if killed_in == "dcr.register":
        assert registrations == 1
    fault_report(f"worker SIGKILLed during {killed_in}",
                 f"the job resumed on another worker and ended {final}; step ran "
                 f"{attempts} times; no duplicate rows")


def test_sigkill_during_a_poll(worker_processes, sim: httpx.Client, fault_report):
    doomed = worker_processes("doomed", queues="authentication,polling,registration")
    worker_processes("sweeper", queues="maintenance", concurrency=1)
    device = new_device()
    job_id = _submit("authentication.requested", device, mvpd="Cablevision")
    wait_for_status(job_id, "waiting_for_user", timeout=30)
    set_faults(sim, latency_ms=1500)
    wait_for(lambda: _running(job_id, "profiles.poll"), timeout=30)
    wait_for(lambda: _in_flight(sim), timeout=30)
    doomed.kill()
    assert _running(job_id, "profiles.poll")
    set_faults(sim, latency_ms=0)
    [code] = activation_codes(job_id)
    sim.post("/_sim/login", json={"code": code}).raise_for_status()
    worker_processes("rescuer", queues="authentication,polling,registration")
    assert wait_for_status(job_id, timeout=60) == "succeeded"
    assert _rows(AuthSession, job_id) == 1 and _rows(Profile, job_id) == 1
    fault_report("worker SIGKILLed during a profile poll",
                 "polling resumed on another worker after the lease expired; job succeeded; "
                 "one session and one profile row")


def test_redis_sigkilled_and_restarted_empty_during_a_run(database_url: str, pass_env: str,
                                                           sim: httpx.Client, fault_report):
    """The broker dies (SIGKILL, not a clean shutdown) with 30 jobs in flight and comes back
    empty 3 s later: both workers stay up, reconnect, and every job finishes once."""
    broker = RedisServer().start()
    env = {"PASSFLOW_BROKER_URL": broker.url}
    api = ApiProcess(env)
    workers = [WorkerProcess(name, env=env, loglevel="INFO") for name in ("broker1", "broker2")]
    try:
        # Both consuming before the jobs come: the fault is a broker lost during a run, not
        # during a worker's start-up (the clean clone's run once killed it between one
        # worker's mingle and its ready; that worker logged nothing in the 30 s the test waited).
        wait_for(lambda: all(w.said("worker_ready") for w in workers), timeout=60)
        headers = api.headers
        set_faults(sim, latency_ms=300)
        ids = []
        for _ in range(30):
            d = new_device()
            body = {"event_id": f"evt-{uuid.uuid4()}", "type": "profiles.requested",
                    "device": device_json(d)}
            ids.append(httpx.post(api.url + "/v1/events", json=body, headers=headers,
                                  timeout=30).json()["job_id"])
        wait_for(lambda: _in_flight(sim), timeout=30)  # steps are running
        # Queued and unacknowledged messages are gone with it.
        broker = _killed_and_restarted_empty(broker, lambda: all(
            w.said("connection to broker lost") for w in workers))
        set_faults(sim, latency_ms=0)
        finals = [wait_for_status(job_id, timeout=90) for job_id in ids]
        assert finals == ["succeeded"] * 30
        assert all(w.proc.poll() is None for w in workers), "a worker exited"
        with models.db.session_scope() as session:
            runs = session.scalars(select(JobStep.attempts).where(JobStep.job_id.in_(ids))).all()
            profiles_rows = session.scalar(select(func.count()).select_from(Job).where(
                Job.id.in_(ids), Job.status == "succeeded"))
        assert len(runs) == 30 and profiles_rows == 30 and max(runs) <= 3
        fault_report("Redis SIGKILLed with 30 jobs in flight, restarted empty 3 s later",
                     "both workers stayed up and reconnected; all 30 jobs succeeded (the "
                     f"sweeper re-sent the lost steps); each step ran at most {max(runs)} times")
    finally:
        for w in workers:
            w.stop()
        api.stop()
        broker.stop()


def test_redis_sigkilled_during_a_workers_start_up(database_url: str, pass_env: str,
                                                   sim: httpx.Client, fault_report):
    """The broker dies as a worker starts (after Celery's mingle, before the worker is ready:
    a deploy meeting a Redis restart) and comes back empty 3 s later: the worker stays up,
    reconnects, and runs the next job."""
    broker = RedisServer().start()
    env = {"PASSFLOW_BROKER_URL": broker.url}
    api = ApiProcess(env)
    worker = WorkerProcess("starting", env=env, loglevel="INFO")
    try:
        wait_for(lambda: worker.said("mingle: all alone"), timeout=60)
        broker = _killed_and_restarted_empty(broker, lambda: worker.said("cannot connect") or
                                             worker.said("connection to broker lost"))
        restarted = time.monotonic()
        body = {"event_id": f"evt-{uuid.uuid4()}", "type": "profiles.requested",
                "device": device_json(new_device())}
        job_id = httpx.post(api.url + "/v1/events", json=body, headers=api.headers,
                            timeout=30).json()["job_id"]
        assert wait_for_status(job_id, timeout=60) == "succeeded"
        took = time.monotonic() - restarted
        assert worker.proc.poll() is None, "the worker exited"
        fault_report("Redis SIGKILLed during a worker's start-up (after mingle, before ready), "
                     "restarted empty 3 s later",
                     f"the worker stayed up, reconnected, and ran a new job {took:.1f} s after "
                     "the restart")
    finally:
        worker.stop()
        api.stop()
        broker.stop()


@pytest.fixture
def own_postgres(database_url: str) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of the test's own, migrated, in the environment the workers start
    with: restarting the server the other test processes share would fail their tests."""
    import os

    from passflow.database import upgrade
    from passflow.settings import get_settings
    from worker.runtime import reset_runtime

    server = PostgresCluster("restart", fast=True).start()
    try:
        url = server.database("passflow")
        upgrade(url)
        os.environ["PASSFLOW_DATABASE_URL"] = url
        get_settings.cache_clear()
        models.db.configure(url)
        reset_runtime()
        yield server
    finally:
        os.environ["PASSFLOW_DATABASE_URL"] = database_url
        get_settings.cache_clear()
        models.db.configure(database_url)
        reset_runtime()
        server.drop()


def test_postgresql_restarted_during_a_run(own_postgres: PostgresCluster, worker_processes,
                                           sim: httpx.Client, fault_report):
    worker = worker_processes("pg1")
    set_faults(sim, latency_ms=300)
    ids = [_submit("profiles.requested", new_device()) for _ in range(10)]
    # During a run: the worker is up and its steps are inside Adobe Pass (a worker still
    # starting would meet a database that is shutting down, and rightly exit).
    wait_for(lambda: _in_flight(sim), timeout=30)
    own_postgres.restart()
    set_faults(sim, latency_ms=0)
    models.db.configure(own_postgres_url())
    finals = [wait_for_status(job_id, timeout=90) for job_id in ids]
    assert finals == ["succeeded"] * 10
    assert worker.proc.poll() is None, "the worker exited"
    fault_report("PostgreSQL restarted with 10 jobs in flight",
                 "all 10 jobs succeeded; workers replaced the closed connections and retried")


def own_postgres_url() -> str:
    import os

    return os.environ["PASSFLOW_DATABASE_URL"]


def _sweeping(redis_client, workers) -> str | None:
    """The worker of `workers` (its name) that made the latest sweep, while sweeps are fresh
    (an earlier test's worker may have made the last one)."""
    from worker.sweeper import last_sweep

    last = last_sweep(redis_client)
    name = last["by"].split("@")[0] if last["status"] == "ok" and last["by"] else None
    return name if name in workers else None


def _waiting_sessions(n: int) -> list[str]:
    ids = [_submit("authentication.requested", new_device(), mvpd="Cablevision")
           for _ in range(n)]
    for job_id in ids:
        wait_for_status(job_id, "waiting_for_user", timeout=30)
    return ids


def _log_in(sim: httpx.Client, job_ids: list[str]) -> None:
    codes = activation_codes(*job_ids)
    for code in codes:
        sim.post("/_sim/login", json={"code": code}).raise_for_status()


def test_sigkill_the_sweeping_worker_while_sessions_wait(worker_processes, sim: httpx.Client,
                                                         redis_client, fault_report):
    """No singleton: the worker that sweeps dies; another takes the duty over within seconds,
    and every user who logs in afterwards is found by a poll."""
    workers = {name: worker_processes(name) for name in ("s1", "s2")}
    ids = _waiting_sessions(5)
    leader = wait_for(lambda: _sweeping(redis_client, workers), timeout=30)
    survivor = next(name for name in workers if name != leader)
    workers[leader].kill()
    killed = time.monotonic()
    wait_for(lambda: _sweeping(redis_client, workers) == survivor, timeout=20)
    took = time.monotonic() - killed
    _log_in(sim, ids)
    assert [wait_for_status(job_id, timeout=60) for job_id in ids] == ["succeeded"] * 5
    for job_id in ids:
        assert _rows(Profile, job_id) == 1
    fault_report("the sweeping worker SIGKILLed while 5 sessions wait for their users",
                 f"the other worker took the sweeper duty over {took:.1f} s later; all 5 "
                 "logins found, one profile row each")


def test_a_paused_sweeper_is_replaced_and_harmless_when_it_wakes(worker_processes,
                                                                 sim: httpx.Client,
                                                                 redis_client, fault_report):
    workers = {name: worker_processes(name) for name in ("p1", "p2")}
    ids = _waiting_sessions(3)
    leader = wait_for(lambda: _sweeping(redis_client, workers), timeout=30)
    survivor = next(name for name in workers if name != leader)
    workers[leader].pause()
    try:
        wait_for(lambda: _sweeping(redis_client, workers) == survivor, timeout=20)
    finally:
        workers[leader].resume()
    _log_in(sim, ids)
    assert [wait_for_status(job_id, timeout=60) for job_id in ids] == ["succeeded"] * 3
    # The woken worker found its lease gone and stopped sweeping: one sweeper at a time.
    wait_for(lambda: workers[leader].said("sweeper_lease_lost"), timeout=20)
    for job_id in ids:
        assert _rows(Profile, job_id) == 1 and _rows(AuthSession, job_id) == 1
    fault_report("the sweeping worker paused (SIGSTOP), then woken",
                 "the other worker took the duty over; the woken one saw its lease gone and "
                 "stood down; every login found once")


def test_a_sigkilled_workers_play_is_finished_by_another_within_seconds(
        worker_processes, sim: httpx.Client, fault_report):
    """With the production lease (60 s), a worker SIGKILLed in the middle of a play: its
    heartbeat stops, the sweeper gives its job to the live worker, and the viewer's play is
    decided within 10 s of the kill, not at the end of the lease."""
    # Adobe Pass holds the doomed worker's play far longer than the rescuer takes to start (and
    # under the call's timeout): the kill always lands mid-play. A first play, before, registers
    # the application and fetches its token, so the call held is the play's own.
    env = {"PASSFLOW_LEASE_S": "60", "PASSFLOW_PASS_TIMEOUT_S": "30"}
    doomed = worker_processes("doomed", env=env)
    job_id = _a_play_held_in_its_call(sim)
    rescuer = worker_processes("rescuer", env=env)
    wait_for(lambda: _beating(rescuer.name), timeout=30)
    assert _running(job_id, "decisions.authorize"), "the play ended before the kill"
    doomed.kill()
    killed_at = time.monotonic()
    set_faults(sim, latency_ms=0)
    assert wait_for_status(job_id, timeout=30) == "succeeded"
    took = time.monotonic() - killed_at
    assert took < 10, took
    assert _rows(Decision, job_id) == 1
    fault_report("worker SIGKILLed mid-play with the production 60 s lease",
                 f"its heartbeat stopped; another worker decided the play {took:.1f} s after "
                 "the kill (not at the lease's end); one decision row")


def _a_play_held_in_its_call(sim: httpx.Client) -> str:
    """A play whose call Adobe Pass holds 25 s (the running workers take it), after a first
    play registered the application and fetched its token: the call held is the play's own."""
    device, first = new_device(), new_device()
    _login_device(sim, device)
    _login_device(sim, first)
    assert wait_for_status(_submit("authorization.requested", first, mvpd="Cablevision",
                                   resource="REF30"), timeout=60) == "succeeded"
    set_faults(sim, latency_ms=25_000)
    job_id = _submit("authorization.requested", device, mvpd="Cablevision", resource="REF30")
    wait_for(lambda: _running(job_id, "decisions.authorize"), timeout=60)
    wait_for(lambda: _in_flight(sim), timeout=30)
    return job_id


def _beating(name: str) -> bool:
    import redis as redis_lib

    from passflow.settings import get_settings
    from worker.heartbeat import live_workers

    client = redis_lib.Redis.from_url(get_settings().broker_url)
    try:
        return any(w["name"].startswith(f"{name}@") for w in live_workers(client))
    finally:
        client.close()


def _live() -> list[dict]:
    import redis as redis_lib

    from passflow.settings import get_settings
    from worker.heartbeat import live_workers

    client = redis_lib.Redis.from_url(get_settings().broker_url)
    try:
        return live_workers(client)
    finally:
        client.close()


def test_two_workers_on_one_host_as_the_readme_says_are_two(worker_processes,
                                                            sim: httpx.Client, fault_report):
    """`passflow worker` twice on one host, no --hostname: two identities (listed as two, each
    beating), and with the production lease the one holding a play, SIGKILLed, has it decided
    by the other within 15 s (a shared celery@host name kept the dead one "alive": 61 s)."""
    import os
    import signal

    from worker.heartbeat import worker_of

    env = {"PASSFLOW_LEASE_S": "60", "PASSFLOW_PASS_TIMEOUT_S": "30"}
    one = worker_processes("one", env=env, hostname=False)
    two = worker_processes("two", env=env, hostname=False)
    wait_for(lambda: len(_live()) >= 2, timeout=60)
    live = _live()
    assert len({w["id"] for w in live}) == len(live) >= 2
    assert {one.proc.pid, two.proc.pid} <= {w["pid"] for w in live}
    job_id = _a_play_held_in_its_call(sim)
    with models.db.session_scope() as session:
        holder = worker_of(session.get(Job, job_id).lease_owner)
    [pid] = [w["pid"] for w in _live() if w["id"] == holder]
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    set_faults(sim, latency_ms=0)
    assert wait_for_status(job_id, timeout=30) == "succeeded"
    took = time.monotonic() - killed_at
    assert took < 15, took
    fault_report("two `passflow worker` on one host, no --hostname; the holder SIGKILLed",
                 f"two identities; the other decided the play {took:.1f} s after the kill")


def test_a_worker_name_already_live_is_refused_in_one_line(worker_processes):
    first = worker_processes("twin")
    wait_for(lambda: _beating("twin"), timeout=60)
    second = worker_processes("twin")
    assert second.proc.wait(timeout=60) == 2
    assert second.said("a live worker already runs as twin@")
    assert first.proc.poll() is None
