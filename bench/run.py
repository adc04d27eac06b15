"""`make bench`: passflow measured side by side with two baselines on the same simulator: a plain
asyncio + httpx loop making the same upstream calls (no queue, no database: the upper bound on
this machine) and one Celery task per play with an ORM insert per decision (bench/one_task.py:
what a team would write in a day).

Phases, three rounds of the first: (a) the loop, the one-task baseline and passflow's
authorization at fixed offered loads, with the CPU of each part and PostgreSQL's and Redis's
work per decision; then once: (b) a whole-cookbook mix, (c) 1, 2 and 4 worker processes, (d)
the threads, prefork and gevent pools, (e) polling K sessions at interval I, (f) the API alone.
The table (medians of the rounds, with their range) is printed, written to bench/results/, and
copied into docs/performance.md. Every process started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import platform
import random
import resource
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis
from sqlalchemy import create_engine, insert, text
from sqlalchemy.orm import Session

from bench.stack import (
    PG_URL,
    REDIS_URL,
    TOKEN,
    PostgresCluster,
    Stack,
    proc_stats,
    server_cpu_s,
)
from models import AuthSession, Event, Job
from models import Device as DeviceRow
from passflow.heap import freeze_startup_heap
from passflow.settings import Settings
from simulator.fixtures import DEMO_SOFTWARE_STATEMENT
from worker.adobe_pass.headers import Device, device_headers

SP, MVPD = "REF30", "Cablevision"
LOOP_DEVICES = 500_000  # the plain loop's devices: numbered apart from passflow's
ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


_BENCH_NET = int(ipaddress.ip_address("198.18.0.0"))


def device(i: int) -> Device:
    # 198.18.0.0/15 is the benchmarking range: header values only, never contacted.
    ip = str(ipaddress.ip_address(_BENCH_NET + 1 + i % 131_000))
    return Device(id=f"bench-{i}", ip=ip, port=40000 + i % 20000,
                  info={"primaryHardwareType": "SetTopBox", "model": "TV", "version": "1",
                        "osName": "tvOS", "osVersion": "17", "connectionType": "LAN"})


def seed_profiles(sim_url: str, first: int, count: int) -> None:
    ids = [device(i).id for i in range(first, first + count)]
    for start in range(0, len(ids), 5000):
        httpx.post(sim_url + "/_sim/profiles", json={"service_provider": SP, "mvpd": MVPD,
                   "device_ids": ids[start:start + 5000]}, timeout=60).raise_for_status()


class Lanes:
    """Several small httpx.AsyncClient pools used in turn. One client with a large pool spends
    its time scanning the pool on every request (httpcore checks each connection): with 64
    connections a single client tops out near 110 requests/s on this machine, which would make
    the load generator and the baseline, not passflow or the simulator, the limit."""

    def __init__(self, base_url: str, *, connections: int, per_lane: int = 4, **kwargs):
        lanes = max(1, connections // per_lane)
        self._clients = [httpx.AsyncClient(base_url=base_url,
                                           limits=httpx.Limits(max_connections=per_lane),
                                           **kwargs) for _ in range(lanes)]
        self._next = 0

    def client(self) -> httpx.AsyncClient:
        self._next = (self._next + 1) % len(self._clients)
        return self._clients[self._next]

    async def post(self, url: str, **kwargs) -> httpx.Response:
        return await self._send("POST", url, **kwargs)

    async def get(self, url: str, **kwargs) -> httpx.Response:
        return await self._send("GET", url, **kwargs)

    async def _send(self, method: str, url: str, **kwargs) -> httpx.Response:
        """Sent again on a fresh connection when the server closed a kept-alive one as the
        request left (its idle timeout; the server had read none of it)."""
        for _ in range(2):
            with contextlib.suppress(httpx.RemoteProtocolError):
                return await self.client().request(method, url, **kwargs)
        return await self.client().request(method, url, **kwargs)

    async def __aenter__(self) -> Lanes:
        return self

    async def __aexit__(self, *exc) -> None:
        for client in self._clients:
            await client.aclose()


# Baseline -----------------------------------------------------------------------------------------

async def baseline(sim_url: str, first: int, duration: float, concurrency: int) -> dict:
    async with Lanes(sim_url, connections=concurrency, timeout=30) as client:
        info = {"X-Device-Info": device_headers(device(0))["X-Device-Info"]}
        creds = (await client.post("/o/client/register", headers=info,
                                   json={"software_statement": DEMO_SOFTWARE_STATEMENT})).json()
        token = (await client.post("/o/client/token", headers=info, data={
            "client_id": creds["client_id"], "client_secret": creds["client_secret"],
            "grant_type": "client_credentials"})).json()["access_token"]
        latencies: list[float] = []
        counter = iter(range(first, first + 10_000_000))
        deadline = time.monotonic() + duration

        async def one() -> None:
            while time.monotonic() < deadline:
                d = device(next(counter))
                started = time.perf_counter()
                answer = await client.post(
                    f"/api/v2/{SP}/decisions/authorize/{MVPD}", json={"resources": ["REF30"]},
                    headers={**device_headers(d), "Authorization": f"Bearer {token}"})
                answer.raise_for_status()
                latencies.append(time.perf_counter() - started)

        # Upstream time of one call on an idle simulator: what passflow's added latency is
        # measured against.
        idle: list[float] = []
        for _ in range(30):
            d = device(next(counter))
            started = time.perf_counter()
            await client.post(f"/api/v2/{SP}/decisions/authorize/{MVPD}",
                              json={"resources": ["REF30"]},
                              headers={**device_headers(d), "Authorization": f"Bearer {token}"})
            idle.append(time.perf_counter() - started)
        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"rate": len(latencies) / elapsed, "p50": pct(latencies, 50),
            "p99": pct(latencies, 99), "calls": len(latencies), "idle_p50": pct(idle, 50)}


# passflow -----------------------------------------------------------------------------------

async def offer(api_url: str, events: list[dict], rate: float,
                path: str = "/v1/events") -> list[str]:
    """Open loop: post the events at `rate` per second, whatever the API's pace; returns the
    job ids passflow answers with. A dropped connection is retried with the same event_id
    (idempotent: no duplicate job)."""
    job_ids: list[str] = []
    bodies = [json.dumps(e).encode() for e in events]  # encoded before the clock starts
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with Lanes(api_url, connections=100, timeout=60, headers=headers) as client:
        async def send(body: bytes) -> None:
            for attempt in range(8):
                try:
                    answer = await client.post(path, content=body)
                    if answer.status_code == 503:  # retry later, as the answer says
                        await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
                        continue
                    answer.raise_for_status()
                    job_ids.append(answer.json().get("job_id", ""))
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.2 * (attempt + 1))
            raise RuntimeError("the API did not take an event after 8 tries")

        tasks = []
        started = time.monotonic()
        for n, body in enumerate(bodies):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(body)))
        await asyncio.gather(*tasks)
    return job_ids


def wait_final(engine, job_ids: list[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    pending = len(job_ids)
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            pending = conn.execute(text(
                "SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND status NOT IN "
                "('succeeded','failed','expired','cancelled')"), {"ids": job_ids}).scalar()
        if pending == 0:
            return 0
        time.sleep(0.5)
    return pending


def undecided(count: int, plays: int) -> None:
    """A play that ended without a decision (a device with no profile in the simulator, an
    error) makes the phase measure something else: the run stops and says so."""
    if count > 0:
        raise RuntimeError(f"{count} of {plays} plays ended without a decision: see the "
                           "processes' logs in the run's directory")


def authorization_events(first: int, count: int) -> list[dict]:
    return [{"event_id": f"bench-{uuid.uuid4()}", "type": "authorization.requested",
             "device": {"id": device(i).id, "ip": device(i).ip, "port": device(i).port,
                        "info": dict(device(i).info)},
             "mvpd": MVPD, "resource": "REF30"} for i in range(first, first + count)]


def authorization(stack: Stack, engine, first: int, rate: float, duration: float,
                  upstream_s: float, warmup_s: float = 2.0) -> dict:
    """Offer `rate` events/s for `duration` s, after `warmup_s` s at the same rate that are not
    measured (workers just started open their connections and fetch a token then)."""
    warm = int(rate * warmup_s)
    wait_final(engine, asyncio.run(offer(stack.api_url, authorization_events(first, warm), rate)),
               timeout=60)
    n = int(rate * duration)
    events = authorization_events(first + warm, n)
    before, calls_before = cpu_snapshot(stack), authorize_calls()
    work_before = counters(engine)
    job_ids = asyncio.run(offer(stack.api_url, events, rate))
    left = wait_final(engine, job_ids, timeout=120)
    after = cpu_snapshot(stack)
    time.sleep(2)  # the workers' last metrics flush; PostgreSQL's statistics
    calls_after = authorize_calls()
    work = per_decision(work_before, counters(engine), n)
    upstream_mean = ((calls_after[0] - calls_before[0])
                     / max(1, calls_after[1] - calls_before[1]))
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT j.created_at, d.created_at FROM jobs j JOIN decisions d ON d.job_id = j.id "
            "WHERE j.id = ANY(:ids)"), {"ids": job_ids}).all()
    undecided(len(job_ids) - left - len(rows), len(job_ids))
    added = [(done - accepted).total_seconds() - upstream_s for accepted, done in rows]
    span = (max(d for _, d in rows) - min(a for a, _ in rows)).total_seconds() if rows else 1
    cpu_ms = {name: (after[name] - before[name]) * 1000 / max(1, len(rows)) for name in after}
    return {"offered": rate, "devices": warm + n, "done": len(rows), "lost": left,
            "rate": len(rows) / span,
            "p50": pct(added, 50), "p95": pct(added, 95), "p99": pct(added, 99),
            "upstream_mean": upstream_mean, "cpu_ms": cpu_ms, "work": work}


def postgres_apart(stack: Stack, workers: int, first: int, rate: float,
                   upstream_s: float) -> list[dict]:
    """passflow's processes (the simulator, the API, the workers, the load generator) on CPU 0;
    its PostgreSQL a cluster of its own with PostgreSQL's defaults, first on the same CPU, then
    on CPU 1: what a separate database instance gives the same passflow."""
    everywhere = set(range(os.cpu_count() or 1))
    cluster = PostgresCluster("bench").start()
    engine = None
    results = []
    try:
        url = cluster.database("passflow_bench")
        engine = create_engine(url)
        stack.use_database(url)
        for where, cpus in (("beside passflow (CPU 0)", {0}), ("apart (CPU 1)", {1})):
            cluster.pin(cpus)
            stack.start_workers(workers)
            stack.pin({0})
            result = authorization(stack, engine, first, rate, 6, upstream_s)
            first += result["devices"]
            results.append({"where": where, **result})
    finally:
        stack.stop_workers()
        stack.pin(everywhere)
        stack.use_database(PG_URL)
        if engine is not None:
            engine.dispose()
        cluster.drop()
    return results


def authorize_calls() -> tuple[float, float]:
    """(seconds, count) of the authorize calls passflow made so far, as its own metrics
    (passflow_adobe_pass_call_seconds) measured them: from the request to its answer, httpx's
    own work on both included."""
    raw = redis.Redis.from_url(REDIS_URL).hgetall(
        "passflow:metrics:h:passflow_adobe_pass_call_seconds")
    points = {tuple(json.loads(k)): float(v) for k, v in raw.items()}
    return (points.get(("decisions.authorize", "sum"), 0.0),
            points.get(("decisions.authorize", "+Inf"), 0.0))


def cpu_snapshot(stack: Stack) -> dict[str, float]:
    """CPU seconds used so far by each part of the run (the machine runs nothing else)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    parts = {"API": stack.api_cpu_s(), "workers": stack.worker_stats()[0],
             "simulator": proc_stats(stack.sim_pid)[0],
             "load generator": usage.ru_utime + usage.ru_stime}
    parts["PostgreSQL"] = server_cpu_s("postgres")
    parts["Redis"] = server_cpu_s("redis-server")
    # The rest of the machine's busy time: the kernel's own work (network, scheduling).
    parts["rest"] = machine_busy_s() - sum(parts.values())
    return parts


def machine_busy_s() -> float:
    """CPU seconds the machine has spent busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def counters(engine) -> dict[str, float]:
    """What the database and the broker have done so far: for the costs per decision that
    docs/capacity.md scales from. PostgreSQL's statistics reach pg_stat_database within a second
    of a busy backend's work (10 s for one gone idle), so a phase's figures are read 2 s after it
    ends and are within a few per cent; WAL bytes are exact."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'), pg_database_size(current_database()) "
            "FROM pg_stat_database WHERE datname = current_database()")).one()
    stats = redis.Redis.from_url(REDIS_URL).info("stats")
    return {"transactions": float(row[0]), "rows written": float(row[1]),
            "WAL bytes": float(row[2]), "database bytes": float(row[3]),
            "Redis commands": float(stats["total_commands_processed"]),
            "Redis bytes in": float(stats["total_net_input_bytes"])}


def per_decision(before: dict[str, float], after: dict[str, float], decisions: int) -> dict:
    return {name: (after[name] - before[name]) / max(1, decisions) for name in after}


def one_task(stack: Stack, engine, first: int, rate: float, duration: float,
             upstream_s: float, warmup_s: float = 2.0) -> dict:
    """The one-task-per-play baseline (bench.one_task) at `rate` plays/s, open loop, posted to
    its API as passflow's events are, measured as passflow is: accepted to decision stored,
    minus one idle upstream call; after `warmup_s` s at the same rate that are not measured."""
    from bench import one_task as baseline_app

    table = baseline_app.PlayDecision.__tablename__
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {table}"))

    def plays(start: int, count: int) -> list[dict]:
        return [{"service_provider": SP, "mvpd": MVPD, "resource": "REF30",
                 "device_id": device(i).id, "headers": device_headers(device(i))}
                for i in range(start, start + count)]

    def stored(count: int) -> int:
        deadline, done = time.monotonic() + 120, 0
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                done = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            if done >= count:
                break
            time.sleep(0.5)
        return done

    warm, n = int(rate * warmup_s), int(rate * duration)
    asyncio.run(offer(stack.one_task_url, plays(first, warm), rate, path="/plays"))
    stored(warm)
    before, measured_from = cpu_snapshot(stack), time.time()
    asyncio.run(offer(stack.one_task_url, plays(first + warm, n), rate, path="/plays"))
    done = stored(warm + n)
    after = cpu_snapshot(stack)
    with engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT accepted_at, decided_at FROM {table} WHERE accepted_at >= :t"),
            {"t": datetime.fromtimestamp(measured_from, UTC).replace(tzinfo=None)}).all()
    added = [(decided - accepted).total_seconds() - upstream_s for accepted, decided in rows]
    span = (max(d for _, d in rows) - min(a for a, _ in rows)).total_seconds() if rows else 1
    cpu_ms = {name: (after[name] - before[name]) * 1000 / max(1, len(rows)) for name in after}
    return {"offered": rate, "devices": warm + n, "done": len(rows),
            "lost": warm + n - done, "rate": len(rows) / span, "p50": pct(added, 50),
            "p95": pct(added, 95), "p99": pct(added, 99), "cpu_ms": cpu_ms}


def api_alone(stack: Stack, first: int, seconds: float, concurrency: int = 64) -> dict:
    """Events the API accepts per second with no worker running (each one stored and committed
    before it is answered): the intake's own ceiling. The jobs stay queued; the bench database
    is made anew by the next run."""
    stack.stop_workers()
    events = iter(authorization_events(first, 100_000))
    accepted = 0

    async def main() -> float:
        nonlocal accepted
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with Lanes(stack.api_url, connections=concurrency, timeout=60,
                         headers=headers) as client:
            deadline = time.monotonic() + seconds

            async def sender() -> None:
                nonlocal accepted
                while time.monotonic() < deadline:
                    answer = await client.post("/v1/events", json=next(events))
                    accepted += answer.status_code == 202
            started = time.monotonic()
            await asyncio.gather(*(sender() for _ in range(concurrency)))
            return time.monotonic() - started

    cpu0 = proc_stats(stack.api_pid)[0]
    elapsed = asyncio.run(main())
    cpu = proc_stats(stack.api_pid)[0] - cpu0
    return {"events_per_s": accepted / elapsed, "api_cpu_ms": cpu * 1000 / max(1, accepted)}


def drift_percentiles(client: redis.Redis) -> tuple[dict[str, float], float]:
    raw = client.hgetall("passflow:metrics:h:passflow_poll_drift_seconds")
    points = {json.loads(k)[-1]: float(v) for k, v in raw.items()}
    total = points.get("+Inf", 0.0)
    bounds = sorted((float(b), c) for b, c in points.items() if b not in ("+Inf", "sum"))
    out = {}
    for q in (50, 95, 99):
        need = total * q / 100
        out[f"p{q}"] = next((b for b, c in bounds if c >= need), float("inf"))
    return out, total


def seed_waiting_sessions(stack: Stack, engine, first: int, sessions: int,
                          interval: float) -> list[str]:
    """`sessions` authentication jobs waiting for their users, as sessions.create leaves them:
    pending sessions in the simulator, and in SQL the device, event, job and session rows with
    the first polls spread over one interval. Going there through the API would take most of
    the bench's ten minutes (four cookbook steps per session) and is measured elsewhere."""
    now = datetime.now(UTC)
    devices = [device(i) for i in range(first, first + sessions)]
    codes: dict[str, dict] = {}
    for start in range(0, sessions, 2000):
        answer = httpx.post(stack.sim_url + "/_sim/sessions", timeout=60, json={
            "service_provider": SP, "mvpd": MVPD,
            "device_ids": [d.id for d in devices[start:start + 2000]]})
        answer.raise_for_status()
        codes.update(answer.json()["sessions"])
    rows: dict[type, list[dict]] = {DeviceRow: [], Event: [], Job: [], AuthSession: []}
    job_ids = []
    for d in devices:
        code = codes[d.id]["code"]
        not_after = datetime.fromtimestamp(codes[d.id]["notAfter"] / 1000, UTC)
        due = now + timedelta(seconds=random.uniform(0, interval))
        event_pk, job_id = str(uuid.uuid4()), str(uuid.uuid4())
        job_ids.append(job_id)
        payload = {"event_id": f"bench-{uuid.uuid4()}", "type": "authentication.requested",
                   "device": {"id": d.id, "ip": d.ip, "port": d.port, "info": dict(d.info)},
                   "mvpd": MVPD}
        url = f"{stack.sim_url}/api/v2/authenticate/{SP}/{code}"
        rows[DeviceRow].append({"id": d.id, "last_info": dict(d.info), "last_ip": d.ip,
                             "last_port": d.port, "created_at": now, "updated_at": now})
        rows[Event].append({"id": event_pk, "event_id": payload["event_id"],
                            "type": payload["type"], "payload": payload, "received_at": now})
        rows[Job].append({"id": job_id, "event_pk": event_pk, "type": payload["type"],
                          "status": "waiting_for_user", "service_provider": SP,
                          "device_id": d.id, "mvpd": MVPD, "current_step": "profiles.poll",
                          "next_run_at": due, "result": {"code": code, "url": url},
                          "state": {}, "created_at": now, "updated_at": now})
        rows[AuthSession].append({"job_id": job_id, "device_id": d.id, "service_provider": SP,
                                  "code": code, "url": url, "mvpd": MVPD, "not_before": now,
                                  "not_after": not_after, "status": "pending",
                                  "next_poll_at": due, "polls": 0, "polling_started_at": now,
                                  "created_at": now, "updated_at": now})
    with Session(engine) as session, session.begin():
        for model, values in rows.items():
            session.execute(insert(model), values)
    return job_ids


def polling(stack: Stack, engine, first: int, sessions: int, interval: float,
            duration: float) -> dict:
    setup_started = time.monotonic()
    job_ids = seed_waiting_sessions(stack, engine, first, sessions, interval)
    setup = time.monotonic() - setup_started
    client = redis.Redis.from_url(REDIS_URL)
    time.sleep(interval)  # one full round, then measure a steady state
    client.delete("passflow:metrics:h:passflow_poll_drift_seconds")
    cpu0, rss0 = stack.worker_stats()
    started = time.monotonic()
    time.sleep(duration)
    cpu1, rss1 = stack.worker_stats()
    elapsed = time.monotonic() - started
    time.sleep(1)  # the last flushes
    drift, polls = drift_percentiles(client)
    with engine.connect() as conn:
        waiting = conn.execute(text(
            "SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND status = 'waiting_for_user'"),
            {"ids": job_ids}).scalar()
    stack.stop_workers()  # then stop the sessions: cancelling is a row update
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET status='cancelled', current_step=NULL "
                          "WHERE id = ANY(:ids)"), {"ids": job_ids})
        conn.execute(text("UPDATE auth_sessions SET status='cancelled' "
                          "WHERE job_id = ANY(:ids)"), {"ids": job_ids})
    return {"sessions": sessions, "waiting": waiting, "setup_s": setup, "interval": interval,
            "polls": polls, "polls_per_s": polls / elapsed, **drift,
            "cpu": (cpu1 - cpu0) / elapsed, "rss_start": rss0, "rss_end": rss1}


def cookbook_mix(stack: Stack, engine, first: int, devices: int) -> dict:
    async def one(api: Lanes, sim: Lanes, i: int) -> None:
        d = device(i)
        dev = {"id": d.id, "ip": d.ip, "info": dict(d.info)}

        async def run(type_: str, until: set[str], **fields) -> dict:
            answer = await api.post("/v1/events", json={"event_id": f"bench-{uuid.uuid4()}",
                                                        "type": type_, "device": dev, **fields})
            job_id = answer.json()["job_id"]
            while True:
                job = (await api.get(f"/v1/jobs/{job_id}")).json()
                if job["status"] in until:
                    return job
                await asyncio.sleep(0.2)

        final = {"succeeded", "failed", "expired", "cancelled"}
        waiting = await run("authentication.requested", {"waiting_for_user"} | final,
                            mvpd=MVPD)
        await sim.post("/_sim/login", json={"code": waiting["result"]["code"]})
        while (await api.get(f"/v1/jobs/{waiting['job_id']}")).json()["status"] != "succeeded":
            await asyncio.sleep(0.2)
        await run("preauthorization.requested", final, mvpd=MVPD,
                  resources=["REF30", "CNN", "HBO", "r4", "r5"])
        await run("authorization.requested", final, mvpd=MVPD, resource="REF30")
        await run("logout.requested", final, mvpd=MVPD)

    async def main() -> float:
        async with Lanes(stack.api_url, connections=100, timeout=60,
                         headers={"Authorization": f"Bearer {TOKEN}"}) as api, \
                Lanes(stack.sim_url, connections=20, timeout=60) as sim:
            started = time.monotonic()
            await asyncio.gather(*(one(api, sim, i) for i in range(first, first + devices)))
            return time.monotonic() - started

    elapsed = asyncio.run(main())
    return {"devices": devices, "jobs": devices * 4, "seconds": elapsed,
            "jobs_per_s": devices * 4 / elapsed}


# Report -------------------------------------------------------------------------------------

def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                 platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) / 1024 / 1024
    return (f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, Python "
            f"{platform.python_version()}, PostgreSQL and Redis on the same machine")


POOLS = (("threads", 12), ("prefork", 4), ("gevent", 32))


def spread(values: list[float], unit: str = "", scale: float = 1.0, digits: int = 0) -> str:
    """The median of the runs, and their range when there is more than one."""
    ordered = sorted(v * scale for v in values)
    median = ordered[len(ordered) // 2]
    text_ = f"{median:.{digits}f}{unit}"
    if len(ordered) > 1:
        text_ += f" ({ordered[0]:.{digits}f}-{ordered[-1]:.{digits}f})"
    return text_


def by_load(rounds: list[list[dict]]) -> list[list[dict]]:
    """Rows of the same offered load across rounds, in the order of the loads."""
    return [list(rows) for rows in zip(*rounds, strict=True)]


def linger_table(rounds: list[dict]) -> list[str]:
    """passflow as configured (the API lingers PASSFLOW_INTAKE_LINGER_MS for company) against
    the API storing each event the moment it can, measured in each round beside it."""
    if not rounds[0]["no_linger"]:
        return []
    lines = ["", "The API's linger (PASSFLOW_INTAKE_LINGER_MS, default "
             f"{Settings.model_fields['intake_linger_ms'].default:.0f}) against none (0), each "
             "round's passflow at the same load beside it; CPU per decision in ms:", "",
             "| offered/s | passflow's own, linger / none | API | workers | PostgreSQL | added p50 "
             "| added p99 | transactions per decision |", "| --- |" + " --- |" * 7]
    own = ("API", "workers", "PostgreSQL", "Redis")
    columns = [(lambda a: sum(a["cpu_ms"][k] for k in own), "", 1.0, 1),
               (lambda a: a["cpu_ms"]["API"], "", 1.0, 1),
               (lambda a: a["cpu_ms"]["workers"], "", 1.0, 1),
               (lambda a: a["cpu_ms"]["PostgreSQL"], "", 1.0, 1),
               (lambda a: a["p50"], " ms", 1000.0, 0), (lambda a: a["p99"], " ms", 1000.0, 0),
               (lambda a: a["work"]["transactions"], "", 1.0, 2)]
    for none in by_load([r["no_linger"] for r in rounds]):
        rate = none[0]["offered"]
        lingered = [next(a for a in r["auth"] if a["offered"] == rate) for r in rounds]
        cells = [f"{spread([key(a) for a in lingered], unit, scale, digits)} / "
                 f"{spread([key(b) for b in none], unit, scale, digits)}"
                 for key, unit, scale, digits in columns]
        lines.append(f"| {rate:.0f} | " + " | ".join(cells) + " |")
    return lines


def report(args, rounds: list[dict], poll: dict, mix: dict, scale: list[dict],
           pools: list[dict], intake: list[dict], apart: list[dict]) -> str:
    runs = len(rounds)
    lines = [f"Run {datetime.now():%Y-%m-%d %H:%M}, {machine()}; simulator upstream latency "
             f"{args.latency_ms:.0f} ms. Each figure is the median of {runs} runs made in turn "
             "in this one run, with their range in brackets.", "",
             "| measurement | passflow | one Celery task per play | plain httpx loop "
             "| passflow / loop |", "| --- | --- | --- | --- | --- |"]
    best = [max(r["auth"], key=lambda x: x["rate"])["rate"] for r in rounds]
    best_one = [max(r["one_task"], key=lambda x: x["rate"])["rate"] for r in rounds]
    loop = [r["base"]["rate"] for r in rounds]
    ratio = spread([b / c for b, c in zip(best, loop, strict=True)], digits=2)
    lines.append(f"| authorization, decisions/s (best) | {spread(best)} | {spread(best_one)} "
                 f"| {spread(loop)} | {ratio} |")
    accepted = spread([i["events_per_s"] for i in intake])
    lines.append(f"| API alone, events accepted/s (no worker) | {accepted} | | | |")
    lines.append(f"| upstream call, idle simulator, p50 | | | "
                 f"{spread([r['base']['idle_p50'] for r in rounds], ' ms', 1000)} | |")
    lines.append("| upstream call at the loop's full load, p50 / p99 | | | "
                 f"{spread([r['base']['p50'] for r in rounds], ' ms', 1000)} / "
                 f"{spread([r['base']['p99'] for r in rounds], ' ms', 1000)} | |")
    lines += ["", f"Authorization at fixed offered loads, {args.workers} worker process(es) "
              "(threads pool, 12 each) for passflow and for the one-task baseline, each load "
              "after 2 s at the same load that are not measured (added latency = event accepted "
              "to decision stored, minus the upstream time of one call on an idle simulator; "
              "both take their plays over HTTP, the baseline's API publishing one task per "
              "play):", "",
              "| offered/s | passflow decisions/s | added p50 | added p99 | one-task "
              "decisions/s | one-task added p99 | unfinished (passflow / one-task) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for auth, one in zip(by_load([r["auth"] for r in rounds]),
                         by_load([r["one_task"] for r in rounds]), strict=True):
        lines.append(
            f"| {auth[0]['offered']:.0f} | {spread([a['rate'] for a in auth])} | "
            f"{spread([a['p50'] for a in auth], ' ms', 1000)} | "
            f"{spread([a['p99'] for a in auth], ' ms', 1000)} | "
            f"{spread([o['rate'] for o in one])} | "
            f"{spread([o['p99'] for o in one], ' ms', 1000)} | "
            f"{sum(a['lost'] for a in auth)} / {sum(o['lost'] for o in one)} |")
    parts = list(rounds[0]["auth"][0]["cpu_ms"])
    lines += ["", "CPU per decision, in ms, by part (2 cores = 2000 ms of CPU per second); "
              "passflow's own parts are the API, the workers, PostgreSQL and Redis (rest: the "
              "kernel's own work):", "",
              "| offered/s | " + " | ".join(parts) + " | passflow's own | one-task API "
              "| one-task workers | one-task's own |", "| --- |" + " --- |" * (len(parts) + 4)]
    own = ("API", "workers", "PostgreSQL", "Redis")
    for auth, one in zip(by_load([r["auth"] for r in rounds]),
                         by_load([r["one_task"] for r in rounds]), strict=True):
        cells = [spread([a["cpu_ms"][name] for a in auth], digits=1) for name in parts]
        mine = spread([sum(a["cpu_ms"][k] for k in own) for a in auth], digits=1)
        theirs = spread([sum(o["cpu_ms"][k] for k in own) for o in one], digits=1)
        lines.append(f"| {auth[0]['offered']:.0f} | " + " | ".join(cells) + f" | {mine} | "
                     f"{spread([o['cpu_ms']['API'] for o in one], digits=1)} | "
                     f"{spread([o['cpu_ms']['workers'] for o in one], digits=1)} | {theirs} |")
    lines += linger_table(rounds)
    work = list(rounds[0]["auth"][0]["work"])
    lines += ["", "PostgreSQL and Redis per decision, passflow (the figures docs/capacity.md "
              "scales from):", "",
              "| offered/s | " + " | ".join(work) + " |", "| --- |" + " --- |" * len(work)]
    for auth in by_load([r["auth"] for r in rounds]):
        lines.append(f"| {auth[0]['offered']:.0f} | " + " | ".join(
            spread([a["work"][k] for a in auth], digits=1) for k in work) + " |")
    lines.append("")
    lines.append(f"API alone: {spread([i['api_cpu_ms'] for i in intake], digits=2)} ms of the "
                 "API's CPU per accepted event.")
    lines += ["", f"Worker pools, one worker process, authorization at {args.scale_load:.0f}/s "
              "offered:", "", "| pool | decisions/s | added p99 | worker CPU per decision | "
              "unfinished |", "| --- | --- | --- | --- | --- |"]
    for r in pools:
        lines.append(f"| {r['pool']} | {r['rate']:.0f} | {r['p99'] * 1000:.0f} ms | "
                     f"{r['cpu_ms']['workers']:.1f} ms | {r['lost']} |")
    lines += ["", "Worker processes (threads pool, 12 each), authorization at "
              f"{args.scale_load:.0f}/s offered:", "",
              "| workers | decisions/s | added p99 |", "| --- | --- | --- |"]
    for r in scale:
        lines.append(f"| {r['workers']} | {r['rate']:.0f} | {r['p99'] * 1000:.0f} ms |")
    if apart:
        lines += ["", "PostgreSQL on a separate instance: passflow's processes (simulator, API, "
                  f"{args.workers} workers, load generator) pinned to CPU 0, its PostgreSQL a "
                  "cluster of its own (PostgreSQL's defaults) pinned beside them, then apart; "
                  f"authorization at {args.apart_load:.0f}/s offered, measured once each:", "",
                  "| PostgreSQL | decisions/s | added p50 | added p99 | PostgreSQL CPU per "
                  "decision | API + workers CPU per decision |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in apart:
            lines.append(f"| {r['where']} | {r['rate']:.0f} | {r['p50'] * 1000:.0f} ms | "
                         f"{r['p99'] * 1000:.0f} ms | {r['cpu_ms']['PostgreSQL']:.1f} ms | "
                         f"{r['cpu_ms']['API'] + r['cpu_ms']['workers']:.1f} ms |")
    lines += ["", f"Polling: {poll['sessions']} sessions waiting for their users (seeded in "
              f"{poll['setup_s']:.0f} s; {poll['waiting']} still waiting at the end), interval "
              f"{poll['interval']:.0f} s, measured over {args.poll_duration:.0f} s after one "
              "round:", "",
              "| polls/s | drift p50 | drift p95 | drift p99 | worker CPU | worker RSS start "
              "-> end |", "| --- | --- | --- | --- | --- | --- |",
              f"| {poll['polls_per_s']:.0f} | <= {poll['p50']} s | <= {poll['p95']} s | "
              f"<= {poll['p99']} s | {poll['cpu'] * 100:.0f}% of a core | "
              f"{poll['rss_start']:.0f} -> {poll['rss_end']:.0f} MiB |",
              "", f"Whole cookbook: {mix['devices']} devices, each authentication (with "
              f"login), preauthorization of 5, authorization, logout: {mix['jobs']} jobs in "
              f"{mix['seconds']:.1f} s ({mix['jobs_per_s']:.1f} jobs/s)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--workers", type=int, default=2)  # one per core
    parser.add_argument("--rounds", type=int, default=3, help="runs of the side-by-side phases")
    parser.add_argument("--loads", default="50,100,200,350,450")
    parser.add_argument("--linger-loads", default="50,100,200",
                        help="offered loads measured again with PASSFLOW_INTAKE_LINGER_MS=0")
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--scale", default="1,2,4")
    parser.add_argument("--scale-load", type=float, default=200)
    parser.add_argument("--polls", type=int, default=5000)
    parser.add_argument("--poll-interval", type=float, default=15)
    parser.add_argument("--poll-duration", type=float, default=30)
    parser.add_argument("--mix-devices", type=int, default=50)
    parser.add_argument("--apart-load", type=float, default=100,
                        help="offered plays/s of the PostgreSQL apart phase")
    parser.add_argument("--quick", action="store_true",
                        help="the side-by-side phases only (no pools, processes, polling, mix)")
    args = parser.parse_args()
    from bench import one_task as baseline_app

    workdir = Path(tempfile.mkdtemp(prefix="passflow-bench-"))
    stack = Stack(latency_ms=args.latency_ms, poll_interval_s=args.poll_interval,
                  workdir=workdir).start()
    engine = create_engine(PG_URL)
    baseline_app.Base.metadata.create_all(engine)
    # The load generator's own full collections would bunch its events (both sides alike).
    freeze_startup_heap()
    first = 0
    loads = [float(x) for x in args.loads.split(",")]
    linger_loads = [float(x) for x in args.linger_loads.split(",") if x]
    if not set(linger_loads) <= set(loads):
        parser.error("--linger-loads must be among --loads (each is measured beside it)")
    rounds: list[dict] = []
    intake: list[dict] = []
    scale: list[dict] = []
    pools: list[dict] = []
    poll: dict = {}
    mix: dict = {}
    apart: list[dict] = []
    try:
        # Every device a phase plays for has a profile; the loop's devices are apart.
        # Each load plays for new devices, warm-up included: both sides, and the linger's.
        per_round = round((2 * sum(loads) + sum(linger_loads)) * (args.duration + 2))
        seed_profiles(stack.sim_url, 0, per_round * args.rounds + 15_000)
        seed_profiles(stack.sim_url, LOOP_DEVICES, 10_000 * args.rounds)
        for n in range(args.rounds):
            this: dict = {"auth": [], "one_task": [], "no_linger": []}
            print(f"round {n + 1} of {args.rounds}: plain asyncio + httpx loop ...", flush=True)
            this["base"] = asyncio.run(baseline(stack.sim_url, LOOP_DEVICES + n * 10_000,
                                                args.duration, concurrency=64))
            print(f"  {this['base']['rate']:.0f} calls/s", flush=True)
            for kind, label, measure, start in (
                    ("one_task", "one task per play", one_task, stack.start_one_task_workers),
                    ("auth", "authorization", authorization, stack.start_workers)):
                start(args.workers)
                for load in loads:
                    print(f"{label} at {load:.0f}/s ...", flush=True)
                    this[kind].append(measure(stack, engine, first, load, args.duration,
                                              this["base"]["idle_p50"]))
                    first += this[kind][-1]["devices"]
                    print(f"  {this[kind][-1]}", flush=True)
            # The API's linger against none, beside the runs above with the same workers.
            stack.restart_api(PASSFLOW_INTAKE_LINGER_MS="0")
            for load in linger_loads:
                print(f"authorization at {load:.0f}/s, the API not lingering ...", flush=True)
                this["no_linger"].append(authorization(stack, engine, first, load,
                                                       args.duration, this["base"]["idle_p50"]))
                first += this["no_linger"][-1]["devices"]
                print(f"  {this['no_linger'][-1]}", flush=True)
            stack.restart_api()
            rounds.append(this)
        upstream = rounds[0]["base"]["idle_p50"]
        if not args.quick:
            stack.start_workers(args.workers)
            print("cookbook mix ...", flush=True)
            mix = cookbook_mix(stack, engine, 30_000_000, args.mix_devices)
            for count in (int(x) for x in args.scale.split(",")):
                stack.start_workers(count)
                print(f"authorization with {count} worker processes ...", flush=True)
                result = authorization(stack, engine, first, args.scale_load, 6, upstream)
                first += result["devices"]
                scale.append({"workers": count, **result})
            for pool, concurrency in POOLS:
                # Every thread or greenlet may hold a database connection.
                stack.env["PASSFLOW_DB_MAX_OVERFLOW"] = str(concurrency + 2)
                stack.start_workers(1, pool=pool, concurrency=concurrency)
                print(f"authorization with the {pool} pool ...", flush=True)
                result = authorization(stack, engine, first, args.scale_load, 6, upstream)
                first += result["devices"]
                pools.append({"pool": pool, **result})
            stack.env["PASSFLOW_DB_MAX_OVERFLOW"] = "8"
            if (os.cpu_count() or 1) > 1 and Path("/etc/postgresql").is_dir() \
                    and os.geteuid() == 0:
                print(f"PostgreSQL apart, {args.apart_load:.0f}/s ...", flush=True)
                apart = postgres_apart(stack, args.workers, first, args.apart_load, upstream)
                first += sum(r["devices"] for r in apart)
            else:
                print("PostgreSQL apart: skipped (needs 2 CPUs, Debian's PostgreSQL and root "
                      "for pg_createcluster)", flush=True)
            stack.start_workers(args.workers)
            print(f"polling {args.polls} sessions ...", flush=True)
            poll = polling(stack, engine, 40_000_000, args.polls, args.poll_interval,
                           args.poll_duration)
        # Last: the jobs it accepts stay queued (no worker runs after it).
        for n in range(args.rounds):
            print("API alone ...", flush=True)
            intake.append(api_alone(stack, 20_000_000 + n * 200_000, 5))
            print(f"  {intake[-1]}", flush=True)
    finally:
        stack.stop()
        engine.dispose()
    if args.quick:
        print(json.dumps({"rounds": rounds, "intake": intake}, default=str, indent=1))
        return
    table = report(args, rounds, poll, mix, scale, pools, intake, apart)
    print("\n" + table)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"{datetime.now():%Y%m%d-%H%M}.md").write_text(table + "\n")
    (results / "latest.md").write_text(table + "\n")
    page = ROOT / "docs" / "performance.md"
    body = page.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in body and end in body:
        head, rest = body.split(start, 1)
        page.write_text(head + start + "\n" + table + "\n" + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    main()
