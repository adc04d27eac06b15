"""Collectors behind GET /metrics: job counts from SQL, pool-wide worker metrics from Redis."""

from __future__ import annotations

import json
from collections import defaultdict

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from models import AuthSession, Job, SessionStatus
from models.db import session_scope
from worker.metrics import BUCKETS, COUNTERS, HISTOGRAMS, PREFIX


class JobsCollector(Collector):
    def collect(self):
        jobs = GaugeMetricFamily("passflow_jobs", "Jobs by type and status",
                                 labels=["type", "status"])
        polls = GaugeMetricFamily("passflow_polls_in_flight",
                                  "Authentication sessions still polled")
        with session_scope() as session:
            for type_, status, count in session.execute(
                    select(Job.type, Job.status, func.count()).group_by(Job.type, Job.status)):
                jobs.add_metric([type_, status], count)
            polls.add_metric([], session.scalar(select(func.count()).select_from(AuthSession)
                                                .where(AuthSession.status ==
                                                       SessionStatus.PENDING)))
        yield jobs
        yield polls


class RedisMetricsCollector(Collector):
    def __init__(self, url: str):
        self._url = url

    def collect(self):
        client = redis.Redis.from_url(self._url, socket_timeout=2, socket_connect_timeout=2)
        try:
            for name, (doc, labels) in COUNTERS.items():
                family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
                for field, value in client.hgetall(PREFIX + "c:" + name).items():
                    family.add_metric(json.loads(field), float(value))
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
        finally:
            client.close()
