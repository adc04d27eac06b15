"""docker-compose.yml: what the deployment relies on."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
SECRETS = {"PASSFLOW_SECRET_KEY": "k", "PASSFLOW_API_TOKEN": "t",
           "PASSFLOW_SOFTWARE_STATEMENT": "s", "PASSFLOW_PASS_BASE_URL": "staging",
           "POSTGRES_PASSWORD": "p"}


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`docker-compose config` (no engine needed); never skipped when it is missing."""
    binary = shutil.which("docker-compose")
    assert binary, ("docker-compose is missing: `make test` installs it (.ci/setup), or "
                    "apt-get install docker-compose")
    return subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                          text=True, env=env, timeout=60)


def test_compose_accepts_the_file_only_with_the_required_secrets():
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    with_secrets = _compose_config({**clean, **SECRETS})
    assert with_secrets.returncode == 0, with_secrets.stderr
    without = _compose_config(clean)
    assert without.returncode != 0
    assert any(name in without.stderr for name in SECRETS), without.stderr
    text = COMPOSE.read_text()
    assert "${PASSFLOW_SECRET_KEY:?" in text and "${PASSFLOW_API_TOKEN:?" in text


def test_compose_has_every_service_the_deployment_needs():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {"redis", "postgres", "migrate", "api", "simulator", "flower",
            "worker-authentication", "worker-polling", "worker-decisions",
            "worker-housekeeping"} <= set(services)
    # No singleton: workers take turns at the sweeper duty.
    assert "beat" not in services
    # Production-shaped: the simulator (whose controls complete anyone's login) and Flower (no
    # authentication) only in the dev profile, and only on this host.
    for dev in ("simulator", "flower"):
        assert services[dev]["profiles"] == ["dev"]
        assert all(str(port).startswith("127.0.0.1:") for port in services[dev]["ports"])
    assert "${POSTGRES_PASSWORD:?" in COMPOSE.read_text()
    assert "${PASSFLOW_PASS_BASE_URL:?" in COMPOSE.read_text()
    assert not any("beat" in " ".join(map(str, service.get("command", [])))
                   for service in services.values())
    # Every queue is consumed by some pool.
    from worker.queues import ALL_QUEUES

    consumed = set()
    for name, service in services.items():
        if name.startswith("worker-"):
            command = service["command"]
            consumed |= set(command[command.index("--queues") + 1].split(","))
    assert consumed == set(ALL_QUEUES)
    assert services["migrate"]["command"] == ["passflow", "db", "upgrade"]
    assert "healthcheck" in services["redis"] and "healthcheck" in services["postgres"]
    # The public edge: nginx in front, its configuration the one tests/security/test_edge.py
    # attacks; the API publishes no port, and believes only the edge's X-Forwarded-For.
    edge = services["edge"]
    assert edge["image"].startswith("nginx:") and edge["ports"] == ["8000:80"]
    assert any("deploy/nginx/passflow.conf.template" in v for v in edge["volumes"])
    assert "ports" not in services["api"]
    address = edge["networks"]["default"]["ipv4_address"]
    assert services["api"]["environment"]["PASSFLOW_TRUSTED_PROXIES"] == f'["{address}"]'


def test_compose_stops_gently_restarts_checks_workers_and_escapes_the_password():
    """Stop gives 30 s before a SIGKILL; the stores restart; every worker pool has a health
    check; the PostgreSQL password is never written into a URL (any character must work); the
    example scrape config names the compose service that serves /metrics."""
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    for name, service in services.items():
        if "passflow" in " ".join(map(str, service.get("command", []))):
            assert service.get("stop_grace_period") == "30s", name
    for store in ("redis", "postgres"):
        assert services[store]["restart"] == "unless-stopped"
    for name, service in services.items():
        if name.startswith("worker-"):
            assert "inspect ping" in " ".join(service["healthcheck"]["test"]), name
    env = spec["x-passflow"]["environment"]
    assert "POSTGRES_PASSWORD" not in env["PASSFLOW_DATABASE_URL"]
    assert "POSTGRES_PASSWORD" in env["PASSFLOW_DATABASE_PASSWORD"]
    scrape = yaml.safe_load((COMPOSE.parent / "deploy" / "prometheus" / "prometheus.yml")
                            .read_text())
    [target] = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert target.split(":")[0] in services


def test_a_database_password_with_any_character_reaches_the_url_escaped():
    from sqlalchemy.engine import make_url

    from passflow.settings import Settings

    password = "p@ss/w:rd?#%&"
    settings = Settings(_env_file=None, database_url="postgresql+psycopg://passflow@db/passflow",
                        database_password=password)
    url = make_url(settings.database_url)
    assert (url.password, url.host, url.database) == (password, "db", "passflow")
