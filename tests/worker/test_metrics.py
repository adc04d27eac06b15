"""A process's histograms, as the pool's /metrics shows them after a flush to Redis."""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from api.metrics import RedisMetricsCollector
from worker import metrics


def _scrape() -> str:
    registry = CollectorRegistry()
    registry.register(RedisMetricsCollector(os.environ["PASSFLOW_BROKER_URL"]))
    return generate_latest(registry).decode()


def _series(body: str, route: str) -> dict[str, float]:
    """The bucket, sum and count lines of one route's series, by `le` (or "sum", "count")."""
    found = {}
    for line in body.splitlines():
        if f'route="{route}"' not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if "_bucket{" in name:
            found[name.split('le="')[1].split('"')[0]] = float(value)
        elif name.startswith("passflow_api_request_seconds_sum"):
            found["sum"] = float(value)
        elif name.startswith("passflow_api_request_seconds_count"):
            found["count"] = float(value)
    return found


def test_each_bucket_counts_every_observation_at_or_under_its_bound(redis_client: redis.Redis):
    route = f"/t/{uuid.uuid4().hex}"  # a series of its own
    labels = (route, "GET", "2xx")
    for seconds in (0.003, 0.005, 0.04, 0.04, 2.0, 45.0):
        metrics.observe("passflow_api_request_seconds", labels, seconds)
    metrics.flush(redis_client, min_interval_s=0)
    first = _series(_scrape(), route)
    assert first["0.005"] == 2 and first["0.01"] == 2 and first["0.025"] == 2
    assert first["0.05"] == 4 and first["1.0"] == 4 and first["2.5"] == 5
    assert first["30.0"] == 5 and first["+Inf"] == 6 and first["count"] == 6
    assert first["sum"] == pytest.approx(47.088)

    # Flushed again, later observations add to what the pool already counts.
    metrics.observe("passflow_api_request_seconds", labels, 0.001)
    metrics.flush(redis_client, min_interval_s=0)
    second = _series(_scrape(), route)
    assert second["0.005"] == 3 and second["+Inf"] == 7 and second["30.0"] == 6
    assert second["sum"] == pytest.approx(47.089)


def test_observations_kept_while_redis_is_away_reach_it_with_the_next_flush(
        redis_client: redis.Redis):
    route = f"/t/{uuid.uuid4().hex}"
    labels = (route, "POST", "2xx")
    metrics.observe("passflow_api_request_seconds", labels, 0.2)
    metrics.flush(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5),
                  min_interval_s=0)  # nothing listens there
    metrics.observe("passflow_api_request_seconds", labels, 0.02)
    metrics.flush(redis_client, min_interval_s=0)
    series = _series(_scrape(), route)
    assert series["0.025"] == 1 and series["0.25"] == 2 and series["+Inf"] == 2
    assert series["sum"] == pytest.approx(0.22)
