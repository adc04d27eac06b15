"""deploy/: the alert rules pass `promtool test rules`, and every metric the dashboard and the
rules use is one passflow exposes (a renamed metric must not leave a panel blank)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import device_json, new_device, wait_for, wait_for_status
from worker.metrics import FIGURES_S

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "passflow.json"
# PromQL words that look like metric names.
_NOT_METRICS = {"sum", "rate", "by", "max", "min", "and", "or", "absent", "histogram_quantile",
                "increase", "le", "on", "ignoring", "without", "avg", "count",
                "up"}  # Prometheus' own: whether it scraped the target


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, ("promtool is missing: `make test` installs it (.ci/setup), or apt-get install "
                   "prometheus")
    return found


def test_the_alert_rules_pass_their_unit_tests():
    checked = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([_promtool(), "test", "rules", "alerts.test.yml"],
                            cwd=RULES.parent, capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _rule_exprs() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def _panel_exprs() -> list[str]:
    return [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"]
            for target in panel["targets"]]


def _used_metrics(exprs: list[str] | None = None) -> set[str]:
    exprs = _rule_exprs() + _panel_exprs() if exprs is None else exprs
    names = set()
    for expr in exprs:
        without_labels = re.sub(r"\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]|"
                                r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)
        names |= {word for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels)
                  if word not in _NOT_METRICS and not word.isdigit()}
    return names


def test_every_metric_an_alert_uses_has_a_panel():
    """The engineer an alert pages opens the dashboard: the figure that fired is on it."""
    missing = _used_metrics(_rule_exprs()) - _used_metrics(_panel_exprs()) - {"up"}
    assert not missing, f"alerts use, no panel shows: {sorted(missing)}"


def _exposed(text: str) -> set[str]:
    """Series names /metrics exposes, from its TYPE lines (a family with no sample yet is
    still declared)."""
    names = set()
    for kind, name in ((m.group(2), m.group(1)) for m in
                       re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE)):
        if kind == "counter":
            names |= {name, name + "_total"}
        elif kind == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            names.add(name)
    return names


def test_every_metric_the_dashboard_and_rules_use_is_exposed(api: httpx.Client):
    from worker.runtime import runtime

    device = new_device()
    # Adobe Pass names its MVPDs (a configuration read): only those are label values.
    runtime().configuration("REF30", device=device)
    job = api.post("/v1/events", json={"event_id": f"evt-{uuid.uuid4()}",
                                       "type": "authorization.requested", "mvpd": "Cablevision",
                                       "resource": "REF30", "device": device_json(device)})
    wait_for_status(job.json()["job_id"])  # fails: nobody logged in on this device
    text = api.get("/metrics").text
    exposed = _exposed(text)
    missing = _used_metrics() - exposed
    assert not missing, f"used by deploy/ but not exposed: {sorted(missing)}"
    assert len(_used_metrics()) >= 15
    # The failure is counted with its MVPD and error code, and the request by its route.
    assert re.search(r'passflow_jobs_finished_total\{[^}]*error_code="[a-z_]+"[^}]*'
                     r'mvpd="Cablevision"[^}]*status="failed"', text), text[:3000]
    assert 'route="/v1/events"' in text
    # The worker's own memory, as it publishes it every FIGURES_S (the API's process metrics
    # are its own; each test starts with an empty Redis).
    wait_for(lambda: re.search(r'passflow_worker_resident_memory_bytes\{worker="[^"]+"\} [1-9]',
                               api.get("/metrics").text), timeout=2 * FIGURES_S + 2)


# One backend is enough: the commands, as deployed.
@pytest.mark.slow  # subprocesses (make test-fast leaves it out)
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_every_runbook_command_in_the_rules_runs_as_written(database_url: str):
    """An on-call engineer copies the command an alert names: it must run (labels filled in
    as Prometheus would)."""
    import sys

    rules = yaml.safe_load(RULES.read_text())
    texts = [value for group in rules["groups"] for rule in group["rules"]
             for value in rule.get("annotations", {}).values()]
    commands = [found for text in texts for found in re.findall(r"`(passflow [^`]+)`", text)]
    assert commands, "the rules name no passflow command"
    for command in commands:
        argv = command.replace("{{ $labels.mvpd }}", "Spectrum").split()[1:]
        done = subprocess.run([sys.executable, "-m", "cli", *argv], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)


def _prometheus() -> str:
    found = shutil.which("prometheus")
    assert found, ("prometheus is missing: `make test` installs it (.ci/setup), or apt-get "
                   "install prometheus")
    return found


@pytest.mark.slow
def test_a_real_prometheus_fires_the_database_alert_for_the_replica_cut_off(pass_env: str,
                                                                            tmp_path: Path):
    """Two API replicas scraped by a real Prometheus with the shipped rules (their `for:`
    shortened to seconds); one loses its database: PassflowDatabaseDown fires, for that
    replica alone, naming it."""
    from sqlalchemy.engine import make_url

    from passflow.database import upgrade
    from passflow.serving import free_port
    from tests.support import TOKEN, ApiProcess, TcpProxy, fresh_postgres

    url = make_url(fresh_postgres("passflow_alerting"))
    upgrade(url.render_as_string(hide_password=False))
    proxy = TcpProxy((url.host, url.port or 5432))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "token").write_text(TOKEN)
    replicas = [ApiProcess({"PASSFLOW_DATABASE_URL": through}),
                ApiProcess({"PASSFLOW_DATABASE_URL": url.render_as_string(
                    hide_password=False)})]
    cut_off, healthy = (f"127.0.0.1:{r.port}" for r in replicas)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "alerts.yml")],
        "scrape_configs": [{
            "job_name": "passflow-api", "metrics_path": "/metrics",
            "authorization": {"type": "Bearer",
                              "credentials_file": str(tmp_path / "token")},
            "static_configs": [{"targets": [cut_off, healthy]}]}]}))
    port = free_port()
    prometheus = subprocess.Popen(
        [_prometheus(), f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"))
    base = f"http://127.0.0.1:{port}/api/v1"

    def series(query: str) -> dict[str, str]:
        try:
            answer = httpx.get(base + "/query", params={"query": query}, timeout=5).json()
        except httpx.TransportError:
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            return {}
        return {r["metric"].get("instance", ""): r["value"][1]
                for r in answer["data"]["result"]}

    def firing() -> list[dict]:
        alerts = httpx.get(base + "/alerts", timeout=5).json()["data"]["alerts"]
        return [a for a in alerts
                if a["labels"]["alertname"] == "PassflowDatabaseDown" and a["state"] == "firing"]

    try:
        wait_for(lambda: series("passflow_database_up") == {cut_off: "1", healthy: "1"},
                 timeout=30)
        assert firing() == []
        proxy.cut()
        wait_for(firing, timeout=30)
        wait_for(lambda: series("passflow_database_up") == {cut_off: "0", healthy: "1"},
                 timeout=10)
        [alert] = firing()
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=10)
        for replica in replicas:
            replica.stop()
    assert alert["labels"]["instance"] == cut_off
    assert cut_off in alert["annotations"]["summary"]
