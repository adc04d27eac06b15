"""Worker metrics, added up in Redis so one scrape of the API's /metrics sees the whole pool.

Each process buffers its increments and flushes them in one pipeline at the end of a task, so
the hot path costs no extra round trip per Adobe call.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session

PREFIX = "passflow:metrics:"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)

COUNTERS = {
    "passflow_adobe_pass_calls_total": ("Calls made to Adobe Pass", ("endpoint", "status")),
    "passflow_throttled_total": (
        "Calls deferred by the per-device throttle (local) or answered 429 (adobe)", ("source",)),
    "passflow_registration_problems_total": (
        "Times the registration with Adobe Pass was found unusable (revoked client, missing "
        "scope): work stops until `passflow register`", ()),
    "passflow_events_total": ("Events received, by type; `repeated`: an event_id seen before",
                              ("type", "outcome")),
    "passflow_jobs_finished_total": (
        "Jobs that ended, by type, status, MVPD, error code and service provider (brand)",
        ("type", "status", "mvpd", "error_code", "service_provider")),
    "passflow_decisions_total": (
        "Decisions stored, by kind, outcome, MVPD and service provider (brand)",
        ("kind", "decision", "mvpd", "service_provider")),
    "passflow_profiles_total": (
        "Profiles Adobe Pass returned, by type (regular, platformSSO, serviceTokenSSO, appleSSO, "
        "temporary, degraded; other) and MVPD", ("type", "mvpd")),
    "passflow_webhook_deliveries_total": (
        "Webhook delivery attempts by outcome: delivered, retry (will be tried again), failed "
        "(given up)", ("outcome",)),
}
HISTOGRAMS = {
    "passflow_adobe_pass_call_seconds": ("Latency of Adobe Pass calls", ("endpoint",)),
    "passflow_step_seconds": ("Duration of job steps", ("step", "outcome")),
    "passflow_poll_drift_seconds": ("How late a profile poll ran after it was due", ()),
    "passflow_api_request_seconds": ("API requests by route, method and status class",
                                     ("route", "method", "status")),
}

# MVPD ids Adobe Pass has shown to exist (in a configuration, a profile or a Permit): the only
# values of the `mvpd` label; any other is "other", so an event naming made-up MVPDs cannot
# create series without end. Shared by the pool in Redis, bounded, read again every KNOWN_S.
KNOWN_MVPDS_KEY = PREFIX + "mvpds"
MAX_KNOWN_MVPDS = 2000
KNOWN_S = 30.0
_known: set[str] = set()
_new_known: set[str] = set()
_known_read_at = 0.0

_buffer: dict[tuple[str, str], float] = defaultdict(float)
# Histograms as observed since the last flush, by (key, labels): the count of each bucket's own
# range (the last: above every bucket), then the sum. Made cumulative, one field per bucket, at
# the flush: an observation costs one increment, not one per bucket.
_histograms: dict[tuple[str, tuple[str, ...]], list[float]] = {}
_lock = threading.Lock()
_last_flush = 0.0


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _buffer.clear()  # the parent's increments are the parent's to flush
    _histograms.clear()
    _new_known.clear()
    _reporter.update(started=False, name=None)  # threads do not cross a fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def know_mvpds(*mvpds: str) -> None:
    """Adobe Pass named these MVPDs: they may be label values (reported with the counts)."""
    with _lock:
        for mvpd in mvpds:
            if mvpd and mvpd not in _known and len(_known) < MAX_KNOWN_MVPDS:
                _known.add(mvpd)
                _new_known.add(mvpd)


# Adobe's profile types (the Profiles pages): the only values of the `type` label.
PROFILE_TYPES = frozenset({"regular", "platformSSO", "serviceTokenSSO", "appleSSO", "temporary",
                           "degraded"})


def profile_type_label(kind: str | None) -> str:
    return kind if kind in PROFILE_TYPES else "other"


def mvpd_label(mvpd: str | None) -> str:
    """The `mvpd` label value of `mvpd`: itself when Adobe Pass named it, else "other"."""
    if not mvpd:
        return ""
    return mvpd if mvpd in _known else "other"


def _share_known(client: redis.Redis) -> None:
    """This process's new MVPDs to the pool, the pool's to this process (every KNOWN_S)."""
    global _known_read_at
    with _lock:
        new = list(_new_known)
        _new_known.clear()
    try:
        if new and client.scard(KNOWN_MVPDS_KEY) < MAX_KNOWN_MVPDS:
            client.sadd(KNOWN_MVPDS_KEY, *new)
        if time.monotonic() - _known_read_at >= KNOWN_S:
            shared = {m.decode() for m in client.srandmember(KNOWN_MVPDS_KEY, MAX_KNOWN_MVPDS)}
            _known_read_at = time.monotonic()
            with _lock:
                _known.update(list(shared)[:max(0, MAX_KNOWN_MVPDS - len(_known))])
    except redis.RedisError:
        with _lock:
            _new_known.update(new)


def inc(name: str, labels: tuple[str, ...], value: float = 1.0) -> None:
    with _lock:
        _buffer[(PREFIX + "c:" + name, json.dumps(labels))] += value


def observe(name: str, labels: tuple[str, ...], seconds: float) -> None:
    where = bisect.bisect_left(BUCKETS, seconds)  # the first bucket with seconds <= its bound
    with _lock:
        counts = _histograms.get((name, labels))
        if counts is None:
            counts = _histograms[(name, labels)] = [0.0] * (len(BUCKETS) + 2)
        counts[where] += 1
        counts[-1] += seconds


def _histograms_to_buffer() -> None:
    """The observed histograms into the buffer, as Prometheus counts them: each bucket's
    field counts every observation at or under its bound. (Under _lock.)"""
    for (name, labels), counts in _histograms.items():
        key, seen = PREFIX + "h:" + name, 0.0
        for bound, count in zip(BUCKETS, counts, strict=False):
            seen += count
            if seen:
                _buffer[(key, json.dumps([*labels, str(bound)]))] += seen
        _buffer[(key, json.dumps([*labels, "+Inf"]))] += seen + counts[-2]
        _buffer[(key, json.dumps([*labels, "sum"]))] += counts[-1]
    _histograms.clear()


def flush(client: redis.Redis, *, min_interval_s: float = 0.5) -> None:
    global _last_flush
    now = time.monotonic()
    if now - _last_flush < min_interval_s:
        return
    with _lock:
        _histograms_to_buffer()
        items = list(_buffer.items())
        _buffer.clear()
        _last_flush = now
    if not items:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for (key, field), value in items:
            pipe.hincrbyfloat(key, field, value)
        pipe.execute()
    except redis.RedisError:
        with _lock:  # keep them for the next flush
            for (key, field), value in items:
                _buffer[(key, field)] += value


def observe_adobe_call(endpoint: str, status: int, seconds: float) -> None:
    inc("passflow_adobe_pass_calls_total", (endpoint, str(status)))
    observe("passflow_adobe_pass_call_seconds", (endpoint,), seconds)
    if status == 429:
        inc("passflow_throttled_total", ("adobe",))


def inc_on_commit(session: Session, name: str, labels: tuple[str, ...]) -> None:
    """Count `name` once the session's transaction commits (never for a rolled-back one)."""
    session.info.setdefault(_PENDING, []).append((name, labels))


_PENDING = "passflow.metrics.pending"


@event.listens_for(Session, "after_commit")
def _counted(session: Session) -> None:
    for name, labels in session.info.pop(_PENDING, ()):
        inc(name, labels)


@event.listens_for(Session, "after_rollback")
def _forgotten(session: Session) -> None:
    session.info.pop(_PENDING, None)


PROCESS_KEY = PREFIX + "p:"  # + process name: that process's own figures
_PROCESS_TTL_S = 30  # a process gone (killed) drops out of /metrics after this
FLUSH_S = 1.0  # how often a process hands its buffered counts to Redis
FIGURES_S = 5.0  # how often a named process publishes its memory and CPU

_reporter: dict[str, Any] = {"started": False, "name": None}
_reporter_lock = threading.Lock()


def start_reporter(client: Callable[[], redis.Redis], *, name: str | None = None) -> None:
    """The one thread per process that reports to Redis: its buffered counts every FLUSH_S
    (so they reach /metrics when no task or request ends), and, once the process has a `name`
    (a worker, a prefork child as HOST:PID), its memory, CPU and open files every FIGURES_S.
    Called again, it only names the process."""
    with _reporter_lock:
        if name is not None:
            _reporter["name"] = name
        if _reporter["started"]:
            return
        _reporter["started"] = True

    def run() -> None:
        next_figures = 0.0
        while True:
            flush(client(), min_interval_s=0.0)
            _share_known(client())
            named = _reporter["name"]
            if named is not None and time.monotonic() >= next_figures:
                publish_process(client(), named)
                next_figures = time.monotonic() + FIGURES_S
            time.sleep(FLUSH_S)

    threading.Thread(target=run, name="passflow-metrics", daemon=True).start()


def publish_process(client: redis.Redis, name: str) -> None:
    """This process's memory, CPU, open files and start time, for the API's /metrics (which
    sees only its own process otherwise)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.process_collector import ProcessCollector

    figures = {sample.name: sample.value
               for family in ProcessCollector(registry=CollectorRegistry()).collect()
               for sample in family.samples}
    if not figures:
        return  # no /proc here
    key = PROCESS_KEY + name
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hset(key, mapping=figures)
        pipe.expire(key, _PROCESS_TTL_S)
        pipe.execute()
    except redis.RedisError:
        pass  # the next round tries again
