"""Real services shared by every test package: the simulator, Redis, SQLite and PostgreSQL, an
in-process worker, workers in subprocesses; the factories' binding; the recorded faults run.
Each layer's own fixtures are in its conftest.py."""

from __future__ import annotations

import os


def _per_process(redis_url: str, pg_url: str, worker: str) -> tuple[str, str]:
    """Under pytest-xdist (`make test`: -n 2 --dist loadfile) each test process has its own
    Redis database and PostgreSQL database: their workers would take each other's messages.
    The first process keeps the configured ones; the others count down from Redis database 11
    (13 and 14 are tests' own) and suffix the PostgreSQL database's name."""
    number = int(worker.removeprefix("gw") or 0)
    if number == 0:
        return redis_url, pg_url
    base, _, _db = redis_url.rpartition("/")
    return f"{base}/{11 - number}", f"{pg_url}_{worker}"


# Test settings, before anything reads them. Redis database 15 is the tests' own.
_REDIS_URL, _PG_URL = _per_process(
    os.environ.get("PASSFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    os.environ.get("PASSFLOW_TEST_PG_URL",
                   "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/passflow_test"),
    os.environ.get("PYTEST_XDIST_WORKER", ""))
os.environ["PASSFLOW_TEST_PG_URL"] = _PG_URL  # tests.support reads it
TEST_ENV = {
    "PASSFLOW_BROKER_URL": _REDIS_URL,
    "PASSFLOW_SECRET_KEY": "tests-only-secret-key-0123456789abcdef",
    "PASSFLOW_POLL_INTERVAL_S": "0.3",
    "PASSFLOW_LEASE_S": "6",
    "PASSFLOW_SWEEP_INTERVAL_S": "0.5",
    "PASSFLOW_SWEEP_GRACE_S": "1",
    "PASSFLOW_PUBLIC_URL": "http://127.0.0.1:8000",
    "PASSFLOW_STEP_RETRIES": "2",
    "PASSFLOW_PASS_TIMEOUT_S": "2",
}
os.environ.update(TEST_ENV)
from simulator.fixtures import DEMO_SOFTWARE_STATEMENT  # noqa: E402  (imports no settings)

# The simulator's statement: production has no default.
os.environ["PASSFLOW_SOFTWARE_STATEMENT"] = DEMO_SOFTWARE_STATEMENT
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

import models.db
from passflow.database import upgrade
from passflow.serving import BackgroundServer
from passflow.settings import get_settings
from simulator import SimConfig, create_app
from tests import factories
from tests.support import WorkerProcess, fresh_postgres, new_device
from worker.adobe_pass import AdobePass, Device
from worker.runtime import reset_runtime


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[BackgroundServer]:
    """The Adobe Pass simulator, served by uvicorn on a free port, for the whole run. It
    serves the MVPD logos too: a development host, trusted on its port."""
    with BackgroundServer(create_app(SimConfig.load())) as server:
        os.environ["PASSFLOW_LOGO_TRUSTED_HOSTS"] = f'["127.0.0.1:{server.port}"]'
        get_settings.cache_clear()
        yield server


@pytest.fixture
def sim(simulator_server: BackgroundServer) -> Iterator[httpx.Client]:
    """A control client of a simulator reset to its fixtures (state, faults, throttle, counters),
    keeping the clients it registered, as Adobe Pass does: passflow's stored registration stays
    valid across tests (a test that wants it revoked says so: /_sim/forget-clients)."""
    with httpx.Client(base_url=simulator_server.url, timeout=10) as control:
        control.post("/_sim/reset", params={"keep_registrations": "true"}).raise_for_status()
        yield control


@pytest.fixture
def pass_url(sim: httpx.Client) -> str:
    return str(sim.base_url).rstrip("/")


@pytest.fixture
def adobe(pass_url: str) -> Iterator[AdobePass]:
    with AdobePass(pass_url, software_statement=DEMO_SOFTWARE_STATEMENT) as client:
        yield client


@pytest.fixture
def device() -> Device:
    return new_device()


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(os.environ["PASSFLOW_BROKER_URL"])
    client.flushdb()
    yield client
    client.close()


# Every test that needs a database runs on each backend; `make test-fast` runs SQLite only.
BACKENDS = [name.strip() for name in
            os.environ.get("PASSFLOW_TEST_BACKENDS", "sqlite,postgresql").split(",")]


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """Each backend once, migrated with Alembic; the process' engine is bound to it."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "passflow.db"
        url = f"sqlite:///{path}"
    else:
        url = fresh_postgres()
    upgrade(url)
    os.environ["PASSFLOW_DATABASE_URL"] = url
    get_settings.cache_clear()
    models.db.configure(url)
    reset_runtime()  # its credential cache belongs to the previous database
    yield url


@pytest.fixture(scope="session")
def pass_env(simulator_server: BackgroundServer) -> str:
    os.environ["PASSFLOW_PASS_BASE_URL"] = simulator_server.url
    get_settings.cache_clear()
    reset_runtime()
    return simulator_server.url


@pytest.fixture(scope="module")
def worker(pass_env: str, redis_client: redis.Redis) -> Iterator[None]:
    """A real Celery worker (threads pool) consuming every queue, in this process, with the
    sweeper thread every worker runs."""
    from celery.contrib.testing.worker import start_worker

    from worker.app import celery_app
    from worker.queues import ALL_QUEUES
    from worker.tasks import register

    register(celery_app)
    with start_worker(celery_app, pool="threads", concurrency=8, perform_ping_check=False,
                      queues=ALL_QUEUES, loglevel="WARNING", shutdown_timeout=10):
        yield


# What a test's database keeps from the tests before it: its identity and schema, and
# passflow's registration at the simulator (which keeps it too, as Adobe Pass does; a test that
# wants none calls tests.support.forget_registration).
KEPT_TABLES = frozenset({"installation", "schema_compat", "registrations"})


@pytest.fixture(autouse=True)
def empty_tables(request) -> None:
    """Each test that uses a database starts from empty tables: no job, event or record a test
    before it left (workers commit on their own connections, so a transaction rolled back at
    the end would not do)."""
    if "database_url" not in request.fixturenames:
        return
    request.getfixturevalue("database_url")
    from sqlalchemy import delete, text
    from sqlalchemy.exc import OperationalError

    tables = [t for t in reversed(models.Base.metadata.sorted_tables)
              if t.name not in KEPT_TABLES]
    # A worker of the test before may still be finishing a transaction: TRUNCATE's table locks
    # can deadlock with its row locks, and PostgreSQL then cancels one of the two. Ours is
    # tried again (the worker's has gone through by then), a few times at most.
    for attempt in range(5):
        try:
            with models.db.session_scope() as session:
                if session.get_bind().dialect.name == "postgresql":
                    session.execute(text("SET LOCAL lock_timeout = '5s'"))
                    session.execute(text("TRUNCATE " + ", ".join(t.name for t in tables)))
                else:
                    for table in tables:
                        session.execute(delete(table))
            return
        except OperationalError:
            if attempt == 4:
                raise


@pytest.fixture
def factories_bound(database_url: str) -> Iterator[None]:
    """The factories write to the test's database; their session ends with the test."""
    factories.session.remove()
    yield
    factories.session.remove()


@pytest.fixture
def jobs_env(database_url: str, worker: None, factories_bound: None,
             simulator_server: BackgroundServer) -> Iterator[httpx.Client]:
    """Everything a job needs: a migrated database, Redis, a worker, and a simulator reset to
    its fixtures except for passflow's registration (as with the real Adobe Pass, which is not
    reset between jobs)."""
    with httpx.Client(base_url=simulator_server.url, timeout=10) as control:
        control.post("/_sim/reset", params={"keep_registrations": "true"}).raise_for_status()
        yield control


@pytest.fixture
def worker_processes(database_url: str, pass_env: str, redis_client: redis.Redis,
                     sim: httpx.Client) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers in subprocesses; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(name: str, **kwargs) -> WorkerProcess:
        proc = WorkerProcess(name, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


# `make test-fast` leaves out the tests marked slow: those that kill or start processes, drive
# the browser, or wait on purpose (a retry's backoff, a lease). Marked here by what they use, or
# in their module (`pytestmark = pytest.mark.slow`) or on the test.
SLOW_FIXTURES = {"worker_processes", "browser", "page"}
SLOW_FOLDERS = ("tests/faults/",)


def pytest_configure(config):
    from tests.checklist_gate import ChecklistGate

    config.pluginmanager.register(ChecklistGate(), "passflow-checklist-gate")


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parent.parent
    for item in items:
        where = Path(item.fspath).resolve().relative_to(root).as_posix()
        if SLOW_FIXTURES & set(item.fixturenames) or where.startswith(SLOW_FOLDERS):
            item.add_marker(pytest.mark.slow)


# The faults run: what the fault and attack tests observed, recorded for `make faults-table` ----

_FAULTS: list[dict[str, str]] = []
FAULTS_RECORD = Path(os.environ.get("PASSFLOW_FAULTS_RECORD",
                                    Path(__file__).resolve().parent.parent / "build" /
                                    "faults-run.json"))


@pytest.fixture
def fault_report(request) -> Callable[[str, str], None]:
    """`fault_report(case, observed)`: a row of the faults table, kept if the test passes."""
    rows: list[tuple[str, str]] = []
    request.node._fault_rows = rows

    def report(case: str, observed: str) -> None:
        rows.append((case, observed))

    return report


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A passing test's rows travel with its report (user_properties): under pytest-xdist the
    report, not the item, reaches the process that writes the record."""
    outcome = yield
    result = outcome.get_result()
    if result.when == "call" and result.passed:
        result.user_properties.extend(
            ("fault", {"case": case, "observed": observed,
                       "test": item.nodeid.split("::", 1)[0]})
            for case, observed in getattr(item, "_fault_rows", []))


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        _FAULTS.extend(row for name, row in report.user_properties if name == "fault")


def pytest_sessionfinish(session, exitstatus):
    """Record the run (rows, exit status, what was selected); tests.faults_table turns a whole,
    green run into docs/faults.md."""
    if not _FAULTS or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # (a test process of pytest-xdist: the controller writes the record)
    import json
    import time

    option = session.config.option
    whole = not option.keyword and not option.markexpr and session.config.args in (
        [], ["tests"], [str(Path(__file__).resolve().parent)])
    FAULTS_RECORD.parent.mkdir(parents=True, exist_ok=True)
    FAULTS_RECORD.write_text(json.dumps({
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "exit_status": int(exitstatus), "whole": whole,
        "tests_collected": session.testscollected, "rows": _FAULTS}, indent=1))
