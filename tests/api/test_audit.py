"""Who did what: every action that changes state leaves an audit row (who, what, when), from
the API (the token's name) and the command line (the OS account, and the person --as names)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest
from sqlalchemy import select

import models.db
from models import AuditEntry
from models.audit import cli_actor
from passflow.serving import BackgroundServer
from simulator import SimConfig, create_app
from simulator.fixtures import DEMO_SOFTWARE_STATEMENT, make_software_statement
from tests.support import device_json, new_device, wait_for_status


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def _rows(target: str) -> list[tuple[str, str]]:
    with models.db.session_scope() as session:
        return [(e.actor, e.action) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.target == target).order_by(AuditEntry.id))]


def _failed_play(api: httpx.Client) -> str:
    body = {"event_id": f"evt-{uuid.uuid4()}", "type": "authorization.requested",
            "device": device_json(new_device()), "mvpd": "Cablevision", "resource": "REF30"}
    job_id = api.post("/v1/events", json=body).json()["job_id"]
    assert wait_for_status(job_id) == "failed"  # no profile
    return job_id


# One backend is enough: the rows, not the dialect.
@pytest.mark.slow  # subprocesses (make test-fast leaves it out)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_api_and_cli_actions_are_audited_with_who_did_them(api: httpx.Client,
                                                            jobs_env: httpx.Client, tmp_path):
    api_actor = "api:PASSFLOW_API_TOKEN"
    by_api = _failed_play(api)
    assert api.post(f"/v1/jobs/{by_api}/retry").status_code == 201
    assert _rows(by_api) == [(api_actor, "job.retry")]

    body = {"event_id": f"evt-{uuid.uuid4()}", "type": "authentication.requested",
            "device": device_json(new_device()), "mvpd": "Cablevision"}
    waiting = api.post("/v1/events", json=body).json()["job_id"]
    wait_for_status(waiting, "waiting_for_user")
    cancelled = api.delete(f"/v1/jobs/{waiting}").json()
    assert cancelled["error"]["message"] == f"cancelled by {api_actor}"
    assert [a["action"] for a in cancelled["actions"]] == ["job.cancel"]  # in the job's view

    me = cli_actor("alice")
    by_cli = _failed_play(api)
    assert _cli("jobs", "retry", by_cli, "--as", "alice").returncode == 0
    device = new_device()
    api.post("/v1/events", json={"event_id": f"evt-{uuid.uuid4()}",
                                  "type": "profiles.requested", "device": device_json(device)})
    assert _cli("forget", "--device", device.id, "--yes", "--as", "alice").returncode == 0
    name = f"audited-{uuid.uuid4().hex[:8]}"
    assert _cli("token", "create", "--name", name, "--as", "alice").returncode == 0
    assert _cli("token", "revoke", "--name", name, "--as", "alice").returncode == 0
    statement = tmp_path / "brand.jwt"
    statement.write_text(make_software_statement("brand-audited"))
    assert _cli("service-providers", "add", "AUDITED", "--software-statement-file",
                str(statement), "--as", "alice").returncode == 0
    assert _cli("service-providers", "retire", "AUDITED", "--as", "alice").returncode == 0
    assert _rows(by_cli) == [(me, "job.retry")]
    assert _rows(device.id) == [(me, "device.forget")]
    assert _rows(name) == [(me, "token.create"), (me, "token.revoke")]
    assert _rows("AUDITED") == [(me, "service_provider.add"), (me, "service_provider.retire")]
    assert me.startswith("cli:") and me.endswith(" as alice")
    listed = json.loads(_cli("audit", "--target", device.id, "--json").stdout)["entries"]
    assert listed[0]["detail"]["deleted"]["devices"] == 1


@pytest.mark.slow  # subprocesses (make test-fast leaves it out)
def test_a_registration_is_audited(tmp_path):
    """`passflow register --yes` against an Adobe Pass of its own (a new registration voids
    profiles: kept apart from the other tests' database and simulator)."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with BackgroundServer(create_app(SimConfig.load())) as adobe:
        env = {"PASSFLOW_DATABASE_URL": url, "PASSFLOW_PASS_BASE_URL": adobe.url,
               "PASSFLOW_SOFTWARE_STATEMENT": DEMO_SOFTWARE_STATEMENT}
        assert _cli("db", "upgrade", env=env).returncode == 0
        done = _cli("register", "--yes", "--as", "bob", env=env)
        assert done.returncode == 0, done.stderr
        listed = json.loads(_cli("audit", "--json", env=env).stdout)["entries"]
    [entry] = listed
    assert (entry["action"], entry["target"]) == ("registration.register", "REF30")
    assert entry["actor"] == cli_actor("bob") and entry["detail"]["client_id"]


def test_purge_rotate_key_and_console_sign_in_and_out_are_audited_with_their_actors(
        api: httpx.Client, api_server: BackgroundServer, capsys):
    """`passflow audit` shows who purged, who rotated the key and which token signed in to
    the console and out (its name, never its secret)."""
    from cli.main import main
    from tests.support import TOKEN

    assert main(["purge", "--older-than", "3650d", "--as", "ops-anna"]) == 0
    assert main(["rotate-key", "--as", "ops-anna"]) == 0
    with httpx.Client(base_url=api_server.url, follow_redirects=False) as browser:
        signed = browser.post("/console/sign-in", data={"token": TOKEN})
        assert signed.status_code == 303
        page = browser.get("/console/overview")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert browser.post("/console/sign-out", data={"csrf": csrf}).status_code == 303
    capsys.readouterr()
    assert main(["audit", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    entries = entries["entries"] if isinstance(entries, dict) else entries
    done = {(e["action"], e["actor"]) for e in entries}
    actor = cli_actor("ops-anna")
    assert ("records.purge", actor) in done and ("secret_key.rotate", actor) in done
    assert ("console.sign_in", "console:PASSFLOW_API_TOKEN") in done
    assert ("console.sign_out", "console:PASSFLOW_API_TOKEN") in done
    assert TOKEN not in json.dumps(entries)
