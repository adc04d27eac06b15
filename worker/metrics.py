"""Prometheus metrics of the workers and the API (exposed by GET /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ADOBE_CALLS = Counter(
    "passflow_adobe_pass_calls_total", "Calls made to Adobe Pass", ["endpoint", "status"])
ADOBE_LATENCY = Histogram(
    "passflow_adobe_pass_call_seconds", "Latency of Adobe Pass calls", ["endpoint"])
THROTTLED = Counter(
    "passflow_throttled_total", "Calls deferred by the per-device throttle or answered 429",
    ["source"])
STEP_LATENCY = Histogram(
    "passflow_step_seconds", "Duration of job steps", ["step", "outcome"])


def observe_adobe_call(endpoint: str, status: int, seconds: float) -> None:
    ADOBE_CALLS.labels(endpoint, str(status)).inc()
    ADOBE_LATENCY.labels(endpoint).observe(seconds)
    if status == 429:
        THROTTLED.labels("adobe").inc()
