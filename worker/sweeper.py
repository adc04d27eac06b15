"""The sweeper duty, taken in turn by the workers: no separate beat process, no singleton.

Every `passflow worker` runs a Sweeper thread. Through a lease in Redis (redis-py's Lock,
renewed before each sweep) one of them at a time sweeps every PASSFLOW_SWEEP_INTERVAL_S:
- sends the steps now due (polls and delayed retries live in the table, not as delayed
  broker messages), in batches;
- re-sends any step overdue by the grace period and not leased (a lost message: a killed
  worker, a broker restarted empty), and any webhook delivery likewise;
- asks for the access token to be renewed ahead of its expiry.

A sweeper that dies or pauses loses the lease within SWEEPER_LEASE_S, and another worker takes
it. A stale sweeper that wakes up mid-sweep can only send a message twice, which is harmless:
every claim is a conditional update, so a second message finds nothing to claim. Each sweep
stamps Redis for /healthz.

The lease and the stamp belong to the database whose jobs are swept (keyed by a digest of its
URL): deployments that share one Redis each keep their own sweeper.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis
from redis.exceptions import LockError

from models.db import session_scope
from passflow import logs
from passflow.database import database_identity
from passflow.settings import get_settings
from worker import dispatch, heartbeat, jobs, webhooks
from worker.policy import (
    SWEEP_LIMIT,
    SWEEP_STALE_S,
    SWEEPER_FOLLOWER_CHECK_S,
    SWEEPER_LEASE_S,
    TOKEN_UPKEEP_S,
)
from worker.runtime import runtime

log = logs.get_logger(__name__)



def keys(database_url: str | None = None) -> tuple[str, str]:
    """(lease key, last-sweep key) of the database's sweeper: keyed on the database's identity
    (passflow.database.database_identity), so processes reaching it by differently written URLs
    (a rotated password, a pooler on another port) share one leader; on the URL's text only
    when the identity cannot be read."""
    url = database_url or get_settings().database_url
    scope = database_identity(url) or hashlib.sha256(url.encode()).hexdigest()[:16]
    return f"passflow:sweeper:{scope}:leader", f"passflow:sweeper:{scope}:last"


def sweep() -> int:
    """One sweep: send what is due and re-send what is overdue. Returns how many were sent."""
    settings = get_settings()
    grace = timedelta(seconds=settings.sweep_grace_s)
    horizon = timedelta(seconds=settings.sweep_interval_s + 0.1)
    dead = heartbeat.dead_workers(runtime().redis)
    with session_scope() as session:
        taken = jobs.release_owners(session, dead)
        due = jobs.due_jobs(session, grace=grace, horizon=horizon, limit=SWEEP_LIMIT)
    if taken:
        log.warning("dead_worker_jobs_taken_over", workers=dead, jobs=len(taken))
    dispatch.send_steps(due)
    with session_scope() as session:
        deliveries = webhooks.overdue(session, grace=grace)
    for delivery_id in deliveries:
        dispatch.send_delivery(delivery_id)
    return len(due) + len(deliveries)


def last_sweep(client: redis.Redis, database_url: str | None = None) -> dict[str, Any]:
    """When the fleet last swept the database and who did, and whether that is stale (health
    checks)."""
    raw = client.get(keys(database_url)[1])
    if not raw:
        return {"status": "stale", "age_s": None, "by": None}
    stamp = json.loads(raw)
    age = max(0.0, time.time() - stamp["at"])
    return {"status": "ok" if age <= SWEEP_STALE_S else "stale", "age_s": round(age, 1),
            "by": stamp.get("by")}


class Sweeper:
    """The loop of one worker: lead and sweep, or wait to take over."""

    def __init__(self, client: redis.Redis, *, name: str | None = None,
                 database_url: str | None = None,
                 interval_s: float | None = None, lease_s: float = SWEEPER_LEASE_S,
                 sweep: Callable[[], int] = sweep,
                 token_upkeep: Callable[[], None] = dispatch.send_token_upkeep):
        self.client = client
        self.leader_key, self.last_key = keys(database_url)
        self.name = name or socket.gethostname()
        self.interval_s = interval_s or get_settings().sweep_interval_s
        self.lease_s = lease_s
        self._sweep = sweep
        self._token_upkeep = token_upkeep
        self.leading = False
        self.sweeps = 0

    def run(self, stop: threading.Event) -> None:
        lock = self.client.lock(self.leader_key, timeout=self.lease_s, thread_local=False)
        next_token = 0.0
        while not stop.is_set():
            self._hold(lock)
            if self.leading:
                self._sweep_once()
                if time.monotonic() >= next_token:
                    self._token_upkeep()
                    next_token = time.monotonic() + TOKEN_UPKEEP_S
            stop.wait(self.interval_s if self.leading else SWEEPER_FOLLOWER_CHECK_S)
        if self.leading:  # the next worker need not wait for the lease to expire
            with contextlib.suppress(LockError, redis.RedisError):
                lock.release()
            self.leading = False

    def _hold(self, lock) -> None:
        """Renew the lease, or try to take it."""
        try:
            if self.leading:
                lock.reacquire()  # LockNotOwnedError: it expired (a pause) or another took it
            elif lock.acquire(blocking=False):
                self.leading = True
                log.info("sweeper_leading", worker=self.name)
        except LockError:
            self.leading = False
            log.warning("sweeper_lease_lost", worker=self.name)
        except Exception as exc:  # noqa: BLE001 - the broker away, or (redis-py) a connection
            # closed under this thread: not leading, and the next round tries again; the thread
            # must not end, or this worker never sweeps again.
            if self.leading:
                log.warning("sweeper_lease_lost", worker=self.name, error=type(exc).__name__)
            self.leading = False

    def _sweep_once(self) -> None:
        try:
            sent = self._sweep()
            self.client.set(self.last_key, json.dumps({"at": time.time(), "by": self.name}),
                            ex=3600)
            self.sweeps += 1
            if sent:
                log.debug("swept", sent=sent)
        except Exception as exc:  # the database or broker away: the next round tries again
            log.warning("sweep_failed", error=type(exc).__name__)
