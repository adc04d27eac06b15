"""POST /v1/events and GET /v1/jobs: the contract's answers, over a real socket."""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from sqlalchemy import func, select

import models.db
from models import Event, Job
from tests.support import new_device, wait_for, wait_for_status

SP = "REF30"


def event(type_: str = "profiles.requested", device=None, **fields) -> dict:
    device = device or new_device()
    return {"event_id": f"evt-{uuid.uuid4()}", "type": type_,
            "device": {"id": device.id, "ip": device.ip, "port": device.port,
                       "info": dict(device.info)}, **fields}


def stored_events() -> int:
    with models.db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Event))


@pytest.mark.parametrize("method,path", [("post", "/v1/events"), ("get", "/v1/jobs/x"),
                                         ("get", "/v1/history"), ("get", "/healthz"),
                                         ("get", "/metrics")])
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dGVzdA==", "Bearer"])
def test_every_endpoint_needs_a_valid_token(api: httpx.Client, method, path, header):
    headers = {"Authorization": header} if header else {}
    with httpx.Client(base_url=str(api.base_url), headers=headers) as anonymous:
        answer = anonymous.request(method, path, json=event() if method == "post" else None)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


def test_a_new_event_is_accepted_and_runs(api: httpx.Client):
    body = event()
    answer = api.post("/v1/events", json=body)
    assert answer.status_code == 202
    accepted = answer.json()
    assert accepted["status"] == "queued" and accepted["job_id"]
    assert wait_for_status(accepted["job_id"]) == "succeeded"
    job = api.get(f"/v1/jobs/{accepted['job_id']}").json()
    assert job["event_id"] == body["event_id"] and job["type"] == "profiles.requested"
    assert job["status"] == "succeeded" and job["error"] is None
    assert job["result"] == {"profiles": []}
    [step] = job["steps"]
    assert step["step"] == "profiles.retrieve" and step["attempts"] == 1
    assert step["started_at"] and step["finished_at"]


def test_a_repeated_event_id_answers_with_the_first_job(api: httpx.Client):
    body = event()
    first = api.post("/v1/events", json=body)
    again = api.post("/v1/events", json={**body, "type": "logout.requested", "mvpd": "Dish"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["job_id"] == first.json()["job_id"]
    with models.db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(
            Event.event_id == body["event_id"])) == 1


def test_events_sent_at_once_are_each_answered_and_a_twin_gets_the_first_job(
        api: httpx.Client):
    """Concurrent requests are stored together (group commit); each still hears about its own
    event, and the same event_id twice at the same moment makes one job."""
    bodies = [event() for _ in range(16)]
    twin = bodies[0]
    with ThreadPoolExecutor(len(bodies) + 1) as pool:
        answers = list(pool.map(lambda body: api.post("/v1/events", json=body),
                                [*bodies, twin]))
    assert sorted(a.status_code for a in answers) == [200] + [202] * 16
    twins = [answers[0], answers[-1]]
    assert twins[0].json()["job_id"] == twins[1].json()["job_id"]
    assert len({a.json()["job_id"] for a in answers}) == 16
    for body, answer in zip(bodies, answers, strict=False):
        job = api.get(f"/v1/jobs/{answer.json()['job_id']}").json()
        assert job["event_id"] == body["event_id"]
        assert job["device_id"] == body["device"]["id"]
    with models.db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(
            Event.event_id == twin["event_id"])) == 1
    assert all(wait_for_status(a.json()["job_id"]) == "succeeded" for a in answers)


def test_service_provider_defaults_to_the_configured_one(api: httpx.Client):
    job_id = api.post("/v1/events", json=event()).json()["job_id"]
    with models.db.session_scope() as session:
        assert session.get(Job, job_id).service_provider == SP


D = {"id": "d", "ip": "192.0.2.1", "info": {"model": "TV", "version": "5", "osName": "tvOS",
                                            "osVersion": "17", "connectionType": "LAN"}}

BAD_EVENTS = [
    ({"type": "profiles.requested"}, {"event_id", "device"}),
    ({"event_id": "e", "type": "teleport.requested", "device": D}, {"type"}),
    ({"event_id": "e", "type": "authorization.requested", "device": D,
      "mvpd": "Cablevision"}, {"body"}),
    ({"event_id": "e", "type": "preauthorization.requested", "device": D,
      "mvpd": "Cablevision", "resources": []}, {"resources"}),
    # The device's own address, Adobe's throttling key (device info that departs from the
    # X-Device-Info table is accepted with warnings: test_adobes_own_device_info_samples...).
    ({"event_id": "e", "type": "profiles.requested", "device": {"id": "d", "info": D["info"]}},
     {"device"}),
    ({"event_id": "e", "type": "profiles.requested", "device": {"id": "d", "ip": "999.1.1.1"}},
     {"device.ip"}),
    ({"event_id": "", "type": "profiles.requested", "device": {"id": "d", "port": 70000}},
     {"event_id", "device.port"}),
    ({"event_id": "e\n", "type": "profiles.requested", "device": {"id": "d"}}, {"event_id"}),
    ({"event_id": 5, "type": "profiles.requested", "device": "d"}, {"event_id", "device"}),
]


@pytest.mark.parametrize("body,fields", BAD_EVENTS)
def test_a_bad_event_is_a_422_list_and_stores_nothing(api: httpx.Client, body, fields):
    before = stored_events()
    answer = api.post("/v1/events", json=body)
    assert answer.status_code == 422
    problems = answer.json()
    assert isinstance(problems, list) and problems
    assert all(set(p) == {"field", "message", "type"} for p in problems)
    reported = {p["field"] for p in problems}
    assert fields <= reported, problems
    assert stored_events() == before


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_malformed_bodies_are_422(api: httpx.Client, raw: bytes):
    answer = api.post("/v1/events", content=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()[0]["field"] == "body"


def test_a_huge_body_is_413(api: httpx.Client):
    body = event(device=new_device(blob="x" * 70_000))
    before = stored_events()
    assert api.post("/v1/events", json=body).status_code == 413
    chunked = api.post("/v1/events", content=iter([json.dumps(body).encode()]),
                       headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    assert stored_events() == before


def test_unknown_job_is_404(api: httpx.Client):
    assert api.get(f"/v1/jobs/{uuid.uuid4()}").status_code == 404


def test_an_authentication_job_shows_code_and_url_while_waiting(api: httpx.Client):
    job_id = api.post("/v1/events", json=event("authentication.requested",
                                                mvpd="Cablevision")).json()["job_id"]
    wait_for_status(job_id, "waiting_for_user")
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "waiting_for_user"
    assert set(job["result"]) == {"code", "url"}
    cancelled = api.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 409


def test_healthz_checks_database_broker_and_the_sweeper(api: httpx.Client):
    answer = wait_for(lambda: (r := api.get("/healthz")).status_code == 200 and r)
    health = answer.json()
    assert (health["status"], health["database"], health["broker"]) == ("ok", "ok", "ok")
    # The in-process worker sweeps; its last sweep is fresh.
    assert health["sweeper"]["status"] == "ok" and health["sweeper"]["age_s"] < 5
    assert health["sweeper"]["by"]


def test_the_build_is_in_healthz_metrics_and_the_api_document(api: httpx.Client):
    from passflow import __version__
    from passflow.database import head

    health = api.get("/healthz").json()
    assert (health["version"], health["schema"]) == (__version__, head())
    assert (f'passflow_build_info{{schema="{head()}",version="{__version__}"}} 1.0'
            in api.get("/metrics").text)
    assert api.get("/openapi.json").json()["info"]["version"].startswith(__version__)


def test_an_empty_software_statement_stops_a_worker():
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "cli", "worker"], capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "PASSFLOW_SOFTWARE_STATEMENT": "  ",
                               "PASSFLOW_DATABASE_URL": "sqlite:////nonexistent/passflow.db"})
    [line] = done.stderr.strip().splitlines()  # one line, and about the statement
    assert done.returncode == 2 and "PASSFLOW_SOFTWARE_STATEMENT" in line, done.stderr


def test_healthz_fails_when_no_worker_sweeps(database_url: str, pass_env: str):
    """An API whose broker no worker uses (another Redis database): nothing sweeps there, so
    polls and retries would never be sent, and /healthz says so."""
    from api.app import create_app
    from passflow.serving import BackgroundServer
    from passflow.settings import get_settings
    from tests.support import TOKEN, private_broker

    with private_broker() as broker_url:
        settings = get_settings().model_copy(update={"broker_url": broker_url})
        with BackgroundServer(create_app(settings, tokens=[TOKEN])) as server:
            answer = httpx.get(server.url + "/healthz",
                               headers={"Authorization": f"Bearer {TOKEN}"})
            ready = httpx.get(server.url + "/readyz")
    # The fleet's fault, not this replica's: the load balancer keeps it.
    assert ready.status_code == 200 and ready.json()["failing"] == []
    assert "sweeper" in ready.json()["fleet"]  # named, not failing
    assert answer.status_code == 503
    assert answer.json()["status"] == "failing" and answer.json()["broker"] == "ok"
    assert answer.json()["sweeper"] == {"status": "stale", "age_s": None, "by": None}


def test_metrics_count_jobs_and_adobe_calls(api: httpx.Client):
    job_id = api.post("/v1/events", json=event()).json()["job_id"]
    wait_for_status(job_id)

    def flushed() -> str | None:
        # The worker flushes its counters at most twice a second, after a task: send more.
        api.post("/v1/events", json=event())
        body = api.get("/metrics").text
        return body if 'passflow_step_seconds_bucket{le="+Inf",outcome="succeeded",' \
                       'step="profiles.retrieve"}' in body else None

    body = wait_for(flushed, interval=0.3)
    assert re.search(r'passflow_jobs_finished_total\{error_code="",mvpd="",'
                     r'service_provider="REF30",status="succeeded",'
                     r'type="profiles.requested"\} [1-9]', body)
    assert re.search(r'passflow_events_total\{outcome="accepted",type="profiles.requested"\} '
                     r'[1-9]', body)
    assert "passflow_polls_in_flight" in body
    assert 'passflow_adobe_pass_calls_total{endpoint="profiles.list",status="200"}' in body
    assert 'passflow_step_seconds_bucket{le="+Inf",outcome="succeeded",step="profiles.retrieve"}' \
        in body


def test_send_x_device_info_header_and_the_device_address_are_explained(api: httpx.Client):
    no_ip = api.post("/v1/events", json={"event_id": "e", "type": "profiles.requested",
                                         "device": {"id": "d", "info": D["info"]}}).json()
    assert "device.ip is required" in no_ip[0]["message"]
    assert "PASSFLOW_DEVICES_SHARE_ADDRESS" in no_ip[0]["message"]
    missing = api.post("/v1/events", json={"event_id": f"e-{uuid.uuid4()}",
                                           "type": "profiles.requested",
                                           "device": {**D, "info": {"model": "TV",
                                                                    "osName": "tvOS",
                                                                    "osVersion": "17"}}})
    assert missing.status_code == 202  # Adobe's own sample holds no more: accepted, and said
    warned = " ".join(missing.json()["warnings"])
    assert "version is missing" in warned and "connectionType is missing" in warned


def test_a_device_that_cannot_be_described_to_adobe_is_refused_and_nothing_is_stored(
        api: httpx.Client):
    """Checklist item 18: X-Device-Info on every call. A TV with no device info, or one lacking
    what Adobe's own sample carries, would be refused on every call: a 422 naming what is
    missing, and no job. A browser's User-Agent stands for it (the header's page)."""
    from tests.support import BROWSER_AGENT

    for info, named in (({}, "device.info is empty"),
                        ({"model": "TV", "osName": "tvOS"}, "device.info.osVersion"),
                        ({"osName": "tvOS", "osVersion": "17"}, "device.info.model")):
        event_id = f"e-{uuid.uuid4()}"
        answer = api.post("/v1/events", json={"event_id": event_id, "type": "profiles.requested",
                                              "device": {**D, "info": info}})
        assert answer.status_code == 422 and named in answer.text, answer.text
        assert api.get("/v1/jobs", params={"event_id": event_id}).json()["jobs"] == []
    browser = api.post("/v1/events", json={
        "event_id": f"e-{uuid.uuid4()}", "type": "profiles.requested",
        "device": {"id": "laptop-1", "ip": "203.0.113.40", "user_agent": BROWSER_AGENT}})
    assert browser.status_code == 202, browser.text
    odd = api.post("/v1/events", json={"event_id": f"e-{uuid.uuid4()}",
                                       "type": "profiles.requested",
                                       "device": {**D, "info": {**D["info"],
                                                                "browserVendor": ["Apple"]}}})
    assert odd.status_code == 202, odd.text  # a list where the table names values: a warning
    assert "browserVendor=['Apple'] is not one of" in " ".join(odd.json()["warnings"])


# The page's own example (no connectionType), and its Roku OS recipe (osName "Roku",
# connectionType "WifiConnection").
ADOBE_SAMPLES = [
    {"primaryHardwareType": "MobilePhone", "model": "SM-S901U", "vendor": "samsung",
     "version": "r0q", "manufacturer": "samsung", "osName": "Android", "osVersion": "14"},
    {"primaryHardwareType": "SetTopBox", "model": "Roku", "vendor": "Roku",
     "manufacturer": "Roku", "version": "5303X", "osName": "Roku", "osVersion": "12.5",
     "connectionType": "WifiConnection", "connectionSecure": False},
]


@pytest.mark.parametrize("info", ADOBE_SAMPLES)
def test_adobes_own_device_info_samples_are_accepted_with_the_warning_a_strict_adobe_proves(
        api: httpx.Client, info, jobs_env: httpx.Client):
    """Adobe's own samples depart from its own table (no connectionType; osName "Roku"): they
    are accepted, with a warning that says why, and an Adobe Pass that keeps to the table (the
    simulator, strict) refuses the call for the reason the warning gave."""
    device = new_device()
    body = event("profiles.requested", device)
    body["device"]["info"] = info
    answer = api.post("/v1/events", json=body)
    assert answer.status_code == 202, answer.text
    warned = " ".join(answer.json()["warnings"])
    assert "refuses every call" in warned or "is not one of" in warned, warned
    job_id = answer.json()["job_id"]
    assert wait_for_status(job_id) == "failed"
    assert api.get(f"/v1/jobs/{job_id}").json()["error"]["code"] == "invalid_header_device_info"


def test_devices_that_share_passflows_address_may_come_without_one():
    from passflow.events import EventIn

    event = {"event_id": "e", "type": "profiles.requested",
             "device": {"id": "d", "info": D["info"]}}
    assert EventIn.model_validate(event, context={"devices_share_address": True}).device.ip \
        is None


def test_made_up_mvpds_create_no_metric_series(api: httpx.Client, fault_report):
    """An ingest token naming MVPDs Adobe Pass never named cannot grow /metrics without end:
    their jobs are counted under mvpd="other"."""
    made_up = [f"MadeUp{uuid.uuid4().hex[:8]}" for _ in range(20)]
    jobs = [api.post("/v1/events", json=event("authorization.requested", mvpd=mvpd,
                                              resource="REF30")).json()["job_id"]
            for mvpd in made_up]
    for job_id in jobs:
        wait_for_status(job_id)

    def counted() -> str | None:
        body = api.get("/metrics").text
        return body if re.search(r'passflow_jobs_finished_total\{[^}]*mvpd="other"[^}]*'
                                 r'type="authorization.requested"\} [1-9]', body) else None

    body = wait_for(counted, interval=0.3)
    assert not any(mvpd in body for mvpd in made_up)
    fault_report("20 authorization events naming made-up MVPDs",
                 'no metric series names them: counted as mvpd="other"')


def test_a_queue_with_work_and_no_consumer_is_named_by_healthz(database_url: str,
                                                               pass_env: str):
    """Work waits in a queue no live worker consumes (here: no worker at all on this broker):
    /healthz names the queue and says what to do, /readyz keeps the replica (not its fault)."""
    from api.app import create_app
    from passflow.serving import BackgroundServer
    from passflow.settings import get_settings
    from tests.support import TOKEN, private_broker
    from worker.heartbeat import SENT_AT_HEADER

    with private_broker() as broker_url:
        settings = get_settings().model_copy(update={"broker_url": broker_url})
        broker = redis.Redis.from_url(broker_url)
        broker.lpush("decisions", json.dumps({"body": "", "headers": {SENT_AT_HEADER: 1.0}}))
        with BackgroundServer(create_app(settings, tokens=[TOKEN])) as server:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            health = httpx.get(server.url + "/healthz", headers=auth).json()
            ready = httpx.get(server.url + "/readyz")
            fleet = httpx.get(server.url + "/v1/workers", headers=auth).json()
            scraped = httpx.get(server.url + "/metrics", headers=auth).text
        broker.close()
    assert health["queues"].startswith("work waiting with no worker consuming: decisions")
    assert ready.status_code == 200 and "queues" in ready.json()["fleet"]
    assert fleet["workers"] == [] and fleet["queues"]["decisions"]["depth"] == 1
    assert fleet["queues"]["decisions"]["oldest_age_s"] > 1_000_000  # sent at epoch 1 s
    assert 'passflow_queue_depth{queue="decisions"} 1.0' in scraped
    assert 'passflow_queue_consumers{queue="decisions"} 0.0' in scraped


def test_the_live_workers_are_listed_with_their_queues(api: httpx.Client):
    """The tests' worker beats: listed with its queues and pool, consuming every queue."""
    fleet = wait_for(lambda: (body := api.get("/v1/workers").json())["workers"] and body)
    [worker] = [w for w in fleet["workers"] if w["queues"]][:1]
    assert worker["id"].startswith("w") and worker["pool"] and worker["beat_age_s"] < 5
    assert all(q["consumers"] >= 1 for q in fleet["queues"].values())


def test_counters_summed_over_two_api_replicas_equal_the_truth(api: httpx.Client,
                                                               api_server, database_url: str):
    """Two replicas behind one balancer, scraped both: the pool's figures come from one of
    them only (the exporter lease), so sum() over the replicas counts each event once; when
    that replica stops, the other exports them."""
    from api.app import create_app
    from passflow.serving import BackgroundServer
    from passflow.settings import get_settings
    from tests.support import TOKEN

    def events_total(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('passflow_events_total{outcome="accepted",'
                                      'type="profiles.requested"}'))

    auth = {"Authorization": f"Bearer {TOKEN}"}
    with BackgroundServer(create_app(get_settings(), tokens=[TOKEN])) as second:
        before = sum(events_total(httpx.get(url + "/metrics", headers=auth).text)
                     for url in (api_server.url, second.url))
        for _ in range(3):
            for url in (api_server.url, second.url):  # the balancer sends to both
                httpx.post(url + "/v1/events", headers=auth, json=event()).raise_for_status()

        def summed() -> float | None:
            scraped = [httpx.get(url + "/metrics", headers=auth).text
                       for url in (api_server.url, second.url)]
            exporters = [t.count("passflow_pool_exporter 1.0") for t in scraped]
            total = sum(events_total(t) for t in scraped)
            return total if sorted(exporters) == [0, 1] and total - before == 6 else None

        assert wait_for(summed, timeout=10) - before == 6
    # The exporter stopped (or was the other one): the remaining replica exports now.
    assert wait_for(lambda: "passflow_pool_exporter 1.0" in httpx.get(
        api_server.url + "/metrics", headers=auth).text, timeout=60)
