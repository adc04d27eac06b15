"""Collectors behind GET /metrics: job counts from SQL, pool-wide worker metrics from Redis."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import defaultdict
from datetime import UTC

import redis
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from api.auth import Access
from models import FINAL_STATUSES, AuthSession, Job, Registration, SessionStatus, utcnow
from models.db import session_scope
from passflow.database import build_info
from passflow.settings import Settings
from worker import metrics
from worker.broker import brief_client
from worker.metrics import BUCKETS, COUNTERS, HISTOGRAMS, PREFIX
from worker.runtime import runtime
from worker.sweeper import last_sweep


class JobsCollector(Collector):
    """What is open now, from SQL, on the partial indexes of open work: jobs not final by type
    and status, the backlog per step (due and not leased) with the age of its oldest due job,
    and the sessions being polled. Finished work is counted by passflow_jobs_finished_total."""

    def collect(self):
        now = utcnow()
        jobs = GaugeMetricFamily("passflow_jobs_open", "Jobs not final, by type and status",
                                 labels=["type", "status"])
        backlog = GaugeMetricFamily("passflow_backlog_jobs",
                                    "Jobs due now and not held by a worker, per step",
                                    labels=["step"])
        oldest = GaugeMetricFamily("passflow_backlog_oldest_due_seconds",
                                   "How long the oldest due, unheld job of a step has waited",
                                   labels=["step"])
        polls = GaugeMetricFamily("passflow_polls_in_flight",
                                  "Authentication sessions still polled")
        open_ = Job.status.not_in([s.value for s in FINAL_STATUSES])
        with session_scope() as session:
            for type_, status, count in session.execute(
                    select(Job.type, Job.status, func.count()).where(open_)
                    .group_by(Job.type, Job.status)):
                jobs.add_metric([type_, status], count)
            unheld = or_(Job.lease_until.is_(None), Job.lease_until < now)
            for step, count, first_due in session.execute(
                    select(Job.current_step, func.count(), func.min(Job.next_run_at))
                    .where(open_, Job.next_run_at <= now, unheld)
                    .group_by(Job.current_step)):
                backlog.add_metric([step], count)
                if first_due is not None:
                    first_due = first_due if first_due.tzinfo else first_due.replace(tzinfo=UTC)
                    oldest.add_metric([step], max(0.0, (now - first_due).total_seconds()))
            polls.add_metric([], session.scalar(select(func.count()).select_from(AuthSession)
                                                .where(AuthSession.status ==
                                                       SessionStatus.PENDING)))
        yield from (jobs, backlog, oldest, polls)


class WorkerProcessCollector(Collector):
    """Each worker process's memory, CPU and open files, as it published them (every 5 s, kept
    30 s: a worker that died drops out)."""

    _FAMILIES = {
        "process_resident_memory_bytes": (
            GaugeMetricFamily, "passflow_worker_resident_memory_bytes",
            "Resident memory of each worker process"),
        "process_cpu_seconds_total": (
            CounterMetricFamily, "passflow_worker_cpu_seconds",
            "CPU time of each worker process (restarts from 0 with the process)"),
        "process_open_fds": (GaugeMetricFamily, "passflow_worker_open_fds",
                             "Open file descriptors of each worker process"),
    }

    def __init__(self, broker_url: str):
        self._broker_url = broker_url

    def collect(self):
        families = {source: kind(name, doc, labels=["worker"])
                    for source, (kind, name, doc) in self._FAMILIES.items()}
        try:
            with brief_client(self._broker_url) as client:
                for key in client.scan_iter(metrics.PROCESS_KEY + "*", count=500):
                    worker = key.decode().removeprefix(metrics.PROCESS_KEY)
                    for field, value in client.hgetall(key).items():
                        family = families.get(field.decode())
                        if family is not None:
                            family.add_metric([worker], float(value))
        except redis.RedisError:
            return
        yield from families.values()


# One API replica exports the pool's figures (SQL gauges, the counters the pool adds up in Redis,
# the workers' and queues'): every replica would serve the same numbers, and a sum() over the
# scraped replicas would count them as many times. The replica holding this lease (taken at a
# scrape, kept by the next, released at shutdown) exports them; each exports its own process's.
POOL_EXPORTER_KEY = "passflow:metrics:pool-exporter"
POOL_EXPORTER_TTL_S = 40.0


class PoolExporter:
    def __init__(self, broker_url: str, replica: str):
        self._broker_url, self.replica = broker_url, replica
        self._checked: tuple[bool, float] = (False, float("-inf"))

    def holds(self) -> bool:
        """Whether this replica exports the pool's figures now (asked once a scrape)."""
        import time

        held, at = self._checked
        if time.monotonic() - at < 1.0:
            return held
        ttl_ms = int(POOL_EXPORTER_TTL_S * 1000)
        try:
            with brief_client(self._broker_url) as client:
                held = bool(client.set(POOL_EXPORTER_KEY, self.replica, nx=True, px=ttl_ms))
                if not held and client.get(POOL_EXPORTER_KEY) == self.replica.encode():
                    held = bool(client.pexpire(POOL_EXPORTER_KEY, ttl_ms))
        except redis.RedisError:
            held = False
        self._checked = (held, time.monotonic())
        return held

    def release(self) -> None:
        with contextlib.suppress(redis.RedisError), brief_client(self._broker_url) as client:
            if client.get(POOL_EXPORTER_KEY) == self.replica.encode():
                client.delete(POOL_EXPORTER_KEY)


class PoolOnly(Collector):
    """A collector of pool-wide figures, exported by the replica holding the exporter lease."""

    def __init__(self, inner: Collector, exporter: PoolExporter):
        self._inner, self._exporter = inner, exporter

    def collect(self):
        if not self._exporter.holds():
            return
        try:
            families = list(self._inner.collect())
        except (SQLAlchemyError, redis.RedisError):
            # The figures need the stores: without them /metrics still answers, and
            # passflow_database_up / passflow_broker_up (0) say which one is away.
            return
        yield from families


class ReplicaCollector(Collector):
    """This API replica's view: whether it reaches its database and its broker (an alert needs
    a 0, not a missing series), and whether it exports the pool's figures."""

    def __init__(self, broker_url: str, exporter: PoolExporter):
        self._broker_url, self._exporter = broker_url, exporter

    def collect(self):
        from sqlalchemy import text

        database_up = GaugeMetricFamily("passflow_database_up",
                                        "The database answers this API (1)")
        try:
            with session_scope() as session:
                session.execute(text("SELECT 1"))
            database_up.add_metric([], 1)
        except Exception:  # noqa: BLE001 (the database away is what this gauge says)
            database_up.add_metric([], 0)
        broker_up = GaugeMetricFamily("passflow_broker_up", "The broker answers this API (1)")
        try:
            with brief_client(self._broker_url) as client:
                client.ping()
            broker_up.add_metric([], 1)
        except redis.RedisError:
            broker_up.add_metric([], 0)
        exporting = GaugeMetricFamily(
            "passflow_pool_exporter", "This replica exports the pool's figures (1; sum() over "
            "replicas counts them once)")
        exporting.add_metric([], 1 if self._exporter.holds() else 0)
        yield from (database_up, broker_up, exporting)


class FleetCollector(Collector):
    """The fleet: per queue the messages waiting, the live workers consuming it and the age of
    its oldest message; the live workers; the oldest running step per step (a stuck worker);
    registrations Adobe refused."""

    def __init__(self, broker_url: str, lease_s: float):
        self._broker_url, self._lease_s = broker_url, lease_s

    def collect(self):
        from worker.heartbeat import live_workers, queues_state
        from worker.queues import ALL_QUEUES

        registration = GaugeMetricFamily(
            "passflow_registration_problem",
            "Registrations Adobe Pass refused (revoked client, missing scope): work stops "
            "until `passflow register`")
        running = GaugeMetricFamily(
            "passflow_running_step_oldest_seconds",
            "How long the oldest step run still holding its job has run, per step",
            labels=["step"])
        try:
            now = utcnow()
            with session_scope() as session:
                for step, first_lease_end in session.execute(
                        select(Job.current_step, func.min(Job.lease_until))
                        .where(Job.lease_until > now, Job.current_step.is_not(None))
                        .group_by(Job.current_step)):
                    started = (first_lease_end if first_lease_end.tzinfo
                               else first_lease_end.replace(tzinfo=UTC))
                    age = (now - started).total_seconds() + self._lease_s
                    running.add_metric([step], max(0.0, age))
                registration.add_metric([], session.scalar(
                    select(func.count()).select_from(Registration)
                    .where(Registration.problem.is_not(None))) or 0)
            yield from (running, registration)
        except Exception:  # noqa: BLE001 (passflow_database_up says the database is away)
            pass
        try:
            with brief_client(self._broker_url) as client:
                state = queues_state(client, ALL_QUEUES)
                workers = live_workers(client)
        except redis.RedisError:
            return
        depth = GaugeMetricFamily("passflow_queue_depth", "Messages waiting in a queue",
                                  labels=["queue"])
        consumers = GaugeMetricFamily("passflow_queue_consumers",
                                      "Live workers consuming a queue", labels=["queue"])
        oldest = GaugeMetricFamily("passflow_queue_oldest_message_seconds",
                                   "How long a queue's oldest waiting message has waited",
                                   labels=["queue"])
        for queue, figures in state.items():
            depth.add_metric([queue], figures["depth"])
            consumers.add_metric([queue], figures["consumers"])
            if figures["oldest_age_s"] is not None:
                oldest.add_metric([queue], figures["oldest_age_s"])
        live = GaugeMetricFamily("passflow_workers_live", "Workers beating now")
        live.add_metric([], len(workers))
        yield from (depth, consumers, oldest, live)


class SweeperCollector(Collector):
    def __init__(self, broker_url: str, database_url: str):
        self._broker_url, self._database_url = broker_url, database_url

    def collect(self):
        age = GaugeMetricFamily("passflow_sweeper_age_seconds",
                                "Seconds since a worker last swept (polls and retries are sent "
                                "by the sweep; stale above 15 s)")
        try:
            with brief_client(self._broker_url) as client:
                seen = last_sweep(client, self._database_url)
        except redis.RedisError:
            return
        if seen.get("age_s") is not None:
            age.add_metric([], float(seen["age_s"]))
            yield age


class RedisMetricsCollector(Collector):
    def __init__(self, url: str):
        self._url = url

    def collect(self):
        try:
            with brief_client(self._url) as client:
                for name, (doc, labels) in COUNTERS.items():
                    family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
                    for field, value in client.hgetall(PREFIX + "c:" + name).items():
                        # A label added since (a rolling upgrade): empty in older series.
                        values = json.loads(field)
                        values += [""] * (len(labels) - len(values))
                        family.add_metric(values[:len(labels)], float(value))
                    yield family
                for name, (doc, labels) in HISTOGRAMS.items():
                    series: dict[tuple, dict[str, float]] = defaultdict(dict)
                    for field, value in client.hgetall(PREFIX + "h:" + name).items():
                        *label_values, le = json.loads(field)
                        series[tuple(label_values)][le] = float(value)
                    family = HistogramMetricFamily(name, doc, labels=labels)
                    for label_values, points in series.items():
                        buckets = [(str(b), points.get(str(b), 0.0)) for b in BUCKETS]
                        buckets.append(("+Inf", points.get("+Inf", 0.0)))
                        family.add_metric(list(label_values), buckets, points.get("sum", 0.0))
                    yield family
        except redis.RedisError:
            return


def build_router(settings: Settings, access: Access) -> APIRouter:
    """GET /metrics: the pool's figures (exported by one replica at a time), this replica's
    reach of its stores, this process, and the build."""
    registry = CollectorRegistry()
    exporter = PoolExporter(settings.broker_url, replica=uuid.uuid4().hex)
    for pool_wide in (JobsCollector(), SweeperCollector(settings.broker_url, settings.database_url),
                      WorkerProcessCollector(settings.broker_url),
                      FleetCollector(settings.broker_url, settings.lease_s),
                      RedisMetricsCollector(settings.broker_url)):
        registry.register(PoolOnly(pool_wide, exporter))
    registry.register(ReplicaCollector(settings.broker_url, exporter))
    ProcessCollector(registry=registry)  # this API process: memory, CPU, open files
    Info("passflow_build", "The version of passflow and the schema revision it needs",
         registry=registry).info(build_info())
    router = APIRouter(tags=["metrics"], on_shutdown=[exporter.release])

    @router.get("/metrics", dependencies=access.monitoring, response_class=Response)
    def metrics_page() -> Response:
        metrics.flush(runtime().redis, min_interval_s=0.0)  # this process's counts first
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
