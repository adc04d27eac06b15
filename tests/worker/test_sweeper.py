"""The sweeper duty: every worker runs a Sweeper; a lease in Redis lets one sweep at a time, and
another takes over when the sweeper stops renewing it (dies or pauses). Real Redis, in-process
sweepers with stand-in sweeps (the process-level kill and pause are in tests/faults)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
import redis

from tests.support import RedisServer, wait_for
from worker.sweeper import Sweeper, keys, last_sweep

# The process's own test Redis (tests/conftest.py), and a scope of the sweepers' own: their
# lease keys are named by it, apart from those of the tests' workers.
URL = os.environ["PASSFLOW_BROKER_URL"]
SCOPE = f"sqlite:///sweeper-tests-{os.getpid()}.db"
LEADER_KEY, LAST_KEY = keys(SCOPE)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(URL)
    client.delete(LEADER_KEY, LAST_KEY)
    yield client
    client.delete(LEADER_KEY, LAST_KEY)
    client.close()


class Fleet:
    """Sweepers on their own threads; a sweeper's sweep can be made to hang (a pause)."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self.sweepers: dict[str, Sweeper] = {}
        self.stops: dict[str, threading.Event] = {}
        self.hang: dict[str, threading.Event] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, database_url: str = SCOPE) -> Sweeper:
        release = self.hang[name] = threading.Event()
        release.set()

        def sweep() -> int:
            release.wait(timeout=30)
            return 0

        sweeper = Sweeper(self.client, name=name, database_url=database_url, interval_s=0.05,
                          lease_s=1.0, sweep=sweep, token_upkeep=lambda: None)
        stop = self.stops[name] = threading.Event()
        thread = threading.Thread(target=sweeper.run, args=(stop,), daemon=True)
        thread.start()
        self.threads.append(thread)
        self.sweepers[name] = sweeper
        return sweeper

    def leaders(self) -> list[str]:
        return [name for name, s in self.sweepers.items() if s.leading]

    def stop(self) -> None:
        for name in self.stops:
            self.hang[name].set()
            self.stops[name].set()
        for thread in self.threads:
            thread.join(timeout=10)


@pytest.fixture
def fleet(client: redis.Redis) -> Iterator[Fleet]:
    fleet = Fleet(client)
    yield fleet
    fleet.stop()


def test_one_worker_sweeps_at_a_time(fleet: Fleet, client: redis.Redis):
    for name in ("a", "b", "c"):
        fleet.start(name)
    [leader] = wait_for(lambda: fleet.leaders())
    wait_for(lambda: fleet.sweepers[leader].sweeps >= 10)
    assert fleet.leaders() == [leader]
    assert all(s.sweeps == 0 for name, s in fleet.sweepers.items() if name != leader)
    assert last_sweep(client, SCOPE)["by"] == leader and last_sweep(client, SCOPE)["status"] == "ok"


@pytest.mark.slow
def test_a_paused_sweeper_is_replaced_then_stands_down(fleet: Fleet):
    fleet.start("a")
    wait_for(lambda: fleet.leaders() == ["a"])
    fleet.hang["a"].clear()  # a's next sweep hangs: it stops renewing its lease
    fleet.start("b")
    wait_for(lambda: fleet.sweepers["b"].sweeps >= 3, timeout=10)
    fleet.hang["a"].set()  # a wakes up, finds its lease gone, and stops sweeping
    wait_for(lambda: not fleet.sweepers["a"].leading, timeout=5)
    swept = fleet.sweepers["a"].sweeps
    wait_for(lambda: fleet.sweepers["b"].sweeps >= 10)
    assert fleet.leaders() == ["b"] and fleet.sweepers["a"].sweeps == swept


def test_a_stopped_sweeper_hands_over_at_once(fleet: Fleet, client: redis.Redis):
    fleet.start("a")
    wait_for(lambda: fleet.leaders() == ["a"])
    fleet.start("b")
    fleet.stops["a"].set()  # a clean shutdown releases the lease
    wait_for(lambda: fleet.leaders() == ["b"], timeout=5)
    wait_for(lambda: last_sweep(client, SCOPE)["by"] == "b")


def test_a_sweeper_whose_redis_dies_keeps_trying_and_leads_again():
    """Redis SIGKILLed under the sweeper and started again empty: the loop never ends, and the
    sweeper takes the (new) lease once Redis answers."""
    server = RedisServer().start()
    client = redis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    sweeper = Sweeper(client, name="x", database_url=SCOPE, interval_s=0.05, lease_s=1.0,
                      sweep=lambda: 0, token_upkeep=lambda: None)
    stop = threading.Event()
    thread = threading.Thread(target=sweeper.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: sweeper.sweeps >= 3)
        port = server.port
        server.kill()
        wait_for(lambda: not sweeper.leading, timeout=10)
        assert thread.is_alive()
        server = RedisServer(port).start()
        swept = sweeper.sweeps
        wait_for(lambda: sweeper.leading and sweeper.sweeps > swept, timeout=10)
        assert client.get(LEADER_KEY) is not None
    finally:
        stop.set()
        thread.join(timeout=10)
        server.stop()


class _FailingOnce(redis.lock.Lock):
    """A lease whose first renewal meets a connection closed under it by another thread (what
    redis-py raises then is not a RedisError)."""

    failed = False

    def do_reacquire(self) -> bool:
        if not _FailingOnce.failed:
            _FailingOnce.failed = True
            raise AttributeError("'NoneType' object has no attribute 'readline'")
        return super().do_reacquire()


def test_an_unexpected_error_renewing_the_lease_does_not_end_the_sweeper(client: redis.Redis):
    sweeper = Sweeper(client, name="x", database_url=SCOPE, interval_s=0.05, lease_s=1.0,
                      sweep=lambda: 0, token_upkeep=lambda: None)
    stop = threading.Event()
    _FailingOnce.failed = False
    client.lock = lambda name, **kw: _FailingOnce(client, name, **kw)  # type: ignore[method-assign]
    thread = threading.Thread(target=sweeper.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: _FailingOnce.failed)
        swept = sweeper.sweeps
        wait_for(lambda: sweeper.leading and sweeper.sweeps > swept + 3, timeout=10)
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(timeout=10)


def test_one_leader_per_database_whatever_the_route_to_it(client: redis.Redis):
    """The lease is the database's, not its URL's: three processes reach one PostgreSQL as
    written three ways (another spelling, another port through a pooler-like relay): one
    leader, and each sees the fleet's last sweep (its /healthz says ok)."""
    from sqlalchemy.engine import make_url

    from passflow.database import upgrade
    from tests.support import TcpProxy, fresh_postgres

    url = fresh_postgres("passflow_identity")
    upgrade(url)
    parsed = make_url(url)
    proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    fleet = Fleet(client)
    try:
        routes = {"a": url, "b": url + "?application_name=passflow-b",
                  "c": parsed.set(port=proxy.port).render_as_string(hide_password=False)}
        assert len({keys(route) for route in routes.values()}) == 1
        for name, route in routes.items():
            fleet.start(name, route)
        [leader] = wait_for(lambda: fleet.leaders())
        wait_for(lambda: fleet.sweepers[leader].sweeps >= 10)
        assert fleet.leaders() == [leader]
        for route in routes.values():
            assert last_sweep(client, route)["by"] == leader
    finally:
        fleet.stop()
        client.delete(*keys(url))
        proxy.cut()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_apis_reaching_one_database_two_ways_are_ready_and_see_one_sweeper(
        database_url: str, worker_processes):
    """`passflow api` twice, their PostgreSQL URLs written differently (one through a relay on
    another port, as a pooler would be): both ready, and both see the fleet's one sweeper."""
    import httpx
    from sqlalchemy.engine import make_url

    from tests.support import PG_URL, ApiProcess, TcpProxy

    parsed = make_url(PG_URL)
    proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    worker_processes("sweeping")
    apis = []
    try:
        for url in (PG_URL + "?application_name=passflow-api-a",
                    parsed.set(port=proxy.port).render_as_string(hide_password=False)):
            apis.append(ApiProcess({"PASSFLOW_DATABASE_URL": url}))
        for api in apis:
            assert httpx.get(api.url + "/readyz").json()["failing"] == []

        def sweepers() -> set | None:
            seen = {httpx.get(api.url + "/healthz", headers=api.headers).json()["sweeper"]["by"]
                    for api in apis}
            # (A worker an earlier test killed may still be named until its lease ends.)
            return seen if all(by and by.startswith("sweeping@") for by in seen) else None

        [leader] = wait_for(sweepers, timeout=30)  # one sweeper, seen by both
    finally:
        for api in apis:
            api.stop()
        proxy.cut()
