"""`passflow api` and `passflow worker` against broken configurations: each exits non-zero at
once with one line naming the problem and its fix, instead of looking healthy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import models.db
from api.app import create_app
from passflow.database import upgrade
from passflow.serving import BackgroundServer
from passflow.settings import get_settings
from tests.support import TOKEN

# Each case starts `passflow api` or `passflow worker` (not in make test-fast).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def good_database(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('startup') / 'passflow.db'}"
    upgrade(url)
    return url


def _start(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", command], capture_output=True, text=True,
                          env={**os.environ, "PASSFLOW_API_TOKEN": TOKEN, **env}, timeout=60)


def _unmigrated(tmp_path: Path) -> str:
    import sqlite3

    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


BROKEN = {
    "a database URL of no known dialect": (
        lambda tmp: {"PASSFLOW_DATABASE_URL": "postgres-ish://db/passflow"},
        "PASSFLOW_DATABASE_URL"),
    "an unreachable PostgreSQL": (
        lambda tmp: {"PASSFLOW_DATABASE_URL":
                     "postgresql+psycopg://postgres:secret@127.0.0.1:1/passflow"},
        "cannot reach the database"),
    "a database file that does not exist": (
        lambda tmp: {"PASSFLOW_DATABASE_URL": f"sqlite:///{tmp}/missing.db"},
        "does not exist"),
    "an unmigrated database": (
        lambda tmp: {"PASSFLOW_DATABASE_URL": _unmigrated(tmp)},
        "passflow db upgrade"),
    "an unreachable broker": (
        lambda tmp: {"PASSFLOW_BROKER_URL": "redis://:secret@127.0.0.1:1/0"},
        "cannot reach the broker"),
    "a weak secret key": (
        lambda tmp: {"PASSFLOW_SECRET_KEY": "x"}, "PASSFLOW_SECRET_KEY"),
    "no secret key": (
        lambda tmp: {"PASSFLOW_SECRET_KEY": ""}, "PASSFLOW_SECRET_KEY is required"),
    "a media token certificate that is none": (
        lambda tmp: {"PASSFLOW_MEDIA_TOKEN_CERTIFICATE":
                     "-----BEGIN CERTIFICATE-----\nbm90IG9uZQ==\n-----END CERTIFICATE-----"},
        "PASSFLOW_MEDIA_TOKEN_CERTIFICATE"),
    "a media token certificate file that is missing": (
        lambda tmp: {"PASSFLOW_MEDIA_TOKEN_CERTIFICATE": f"{tmp}/adobe.pem"},
        "adobe.pem"),
}


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("command", ["api", "worker"])
def test_a_broken_configuration_stops_the_process_with_one_line(good_database: str, tmp_path,
                                                                command, case, fault_report):
    env, said = BROKEN[case]
    done = _start(command, {"PASSFLOW_DATABASE_URL": good_database, **env(tmp_path)})
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0] and "secret@" not in lines[0], lines
    assert not (tmp_path / "missing.db").exists()  # nothing created on the way
    fault_report(f"`passflow {command}` with {case}", f"exits 2: {lines[0][:120]}")


def test_a_schema_missing_at_run_time_is_a_500_not_retry_shortly(tmp_path, fault_report):
    """The tables dropped under a running API: a permanent fault, said as one."""
    previous = models.db.engine().url.render_as_string(hide_password=False)
    models.db.configure(_unmigrated(tmp_path))
    try:
        with BackgroundServer(create_app(get_settings(), tokens=[TOKEN])) as server:
            answer = httpx.get(server.url + "/v1/jobs/some-job",
                               headers={"Authorization": f"Bearer {TOKEN}"})
            ready = httpx.get(server.url + "/readyz")
    finally:
        models.db.configure(previous)
    assert ready.status_code == 503 and "database" in ready.json()["failing"]
    assert answer.status_code == 500 and "passflow db upgrade" in answer.text
    assert "retry-after" not in answer.headers
    fault_report("the database's tables missing under a running API",
                 "500 saying to run `passflow db upgrade` (not 503 retry shortly)")
