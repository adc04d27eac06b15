"""Live workers: each worker beats every HEARTBEAT_S into Redis (who it is, where, which queues,
which pool, when it started); a worker whose beat is older than WORKER_DEAD_S is dead.

A job's lease owner is `<worker id>:<task id>` (`owner_of`), so a running job names the worker
holding it (`passflow workers`, GET /v1/workers, a job's view), and the sweeper gives a dead
worker's jobs to the others within seconds instead of at the end of their lease
(worker.sweeper, worker.jobs.release_owners)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
from typing import Any

import redis

from worker.policy import HEARTBEAT_S, WORKER_DEAD_S, WORKER_SEEN_S

PREFIX = "passflow:worker:"
SEEN_KEY = "passflow:workers:seen"  # worker id -> last beat (epoch), kept WORKER_SEEN_S


def worker_id(hostname: str) -> str:
    """A worker's short id from its node name (the same in its prefork children)."""
    return "w" + hashlib.sha256(hostname.encode()).hexdigest()[:10]


def owner_of(hostname: str | None, task_id: str) -> str:
    """The lease owner of a step run: the worker that runs it, and the run."""
    return f"{worker_id(hostname)}:{task_id}" if hostname else task_id


def worker_of(owner: str | None) -> str | None:
    """The worker id in a lease owner (None for an owner of another form)."""
    if not owner or ":" not in owner:
        return None
    head = owner.split(":", 1)[0]
    return head if head.startswith("w") and len(head) == 11 else None


class Heartbeat:
    """The beating thread of one worker."""

    def __init__(self, client: redis.Redis, *, hostname: str, queues: list[str], pool: str,
                 concurrency: int | None):
        self.client = client
        self.id = worker_id(hostname)
        self.info = {"id": self.id, "name": hostname, "host": socket.gethostname(),
                     "pid": os.getpid(), "queues": sorted(queues), "pool": pool,
                     "concurrency": concurrency, "started_at": time.time()}

    def beat(self) -> None:
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(PREFIX + self.id, json.dumps({**self.info, "beat_at": now}),
                 px=int(WORKER_DEAD_S * 1000))
        pipe.hset(SEEN_KEY, self.id, now)
        pipe.execute()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            # The broker away: beats resume with it (the sweeper waits for it too).
            with contextlib.suppress(redis.RedisError):
                self.beat()
            stop.wait(HEARTBEAT_S)
        with contextlib.suppress(redis.RedisError):  # a clean stop: gone at once
            self.client.delete(PREFIX + self.id)
            self.client.hdel(SEEN_KEY, self.id)


def live_workers(client: redis.Redis) -> list[dict[str, Any]]:
    """Every worker beating now, oldest first, with the age of its last beat."""
    keys = list(client.scan_iter(PREFIX + "*", count=500))
    found = []
    now = time.time()
    for raw in client.mget(keys) if keys else []:
        if raw:
            info = json.loads(raw)
            info["beat_age_s"] = round(max(0.0, now - info.get("beat_at", now)), 1)
            found.append(info)
    return sorted(found, key=lambda w: w.get("started_at", 0))


def dead_workers(client: redis.Redis) -> list[str]:
    """Workers that beat within WORKER_SEEN_S but not within WORKER_DEAD_S: killed, frozen or
    cut off (a clean stop says goodbye). Forgotten after WORKER_SEEN_S."""
    now = time.time()
    seen = {key.decode(): float(value) for key, value in client.hgetall(SEEN_KEY).items()}
    gone = [wid for wid, at in seen.items() if now - at > WORKER_SEEN_S]
    if gone:
        client.hdel(SEEN_KEY, *gone)
    candidates = [wid for wid, at in seen.items()
                  if WORKER_DEAD_S < now - at <= WORKER_SEEN_S]
    if not candidates:
        return []
    beating = client.mget([PREFIX + wid for wid in candidates])
    return [wid for wid, raw in zip(candidates, beating, strict=True) if raw is None]


# kombu's Redis transport keeps a queue as one list per priority step (the queue's name, then
# name + "\x06\x16" + step): LPUSH to send, BRPOP to take, so a list's oldest message is last.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)
SENT_AT_HEADER = "passflow_sent_at"  # stamped by worker.dispatch on every message it sends


def _oldest_sent_at(raw: bytes | None) -> float | None:
    if not raw:
        return None
    try:
        sent = json.loads(raw).get("headers", {}).get(SENT_AT_HEADER)
    except (ValueError, AttributeError):
        return None
    return float(sent) if isinstance(sent, int | float) else None


def queues_state(client: redis.Redis, queues: list[str]) -> dict[str, dict[str, Any]]:
    """Per queue: messages waiting (`depth`), live workers consuming it (`consumers`), and
    how long its oldest waiting message has waited (`oldest_age_s`, None when empty or sent
    before passflow stamped its messages)."""
    consumers = {queue: 0 for queue in queues}
    for worker in live_workers(client):
        for queue in worker.get("queues", []):
            if queue in consumers:
                consumers[queue] += 1
    pipe = client.pipeline(transaction=False)
    lists = {queue: [queue if step == 0 else f"{queue}{_PRIORITY_SEP}{step}"
                     for step in _PRIORITY_STEPS] for queue in queues}
    for names in lists.values():
        for name in names:
            pipe.llen(name)
            pipe.lindex(name, -1)
    answers = iter(pipe.execute())
    now, state = time.time(), {}
    for queue, names in lists.items():
        depth, oldest = 0, None
        for _ in names:
            depth += next(answers)
            sent = _oldest_sent_at(next(answers))
            if sent is not None:
                oldest = sent if oldest is None else min(oldest, sent)
        state[queue] = {"depth": depth, "consumers": consumers[queue],
                        "oldest_age_s": round(now - oldest, 1) if oldest is not None else None}
    return state


def unconsumed(state: dict[str, dict[str, Any]]) -> list[str]:
    """Queues with work and no live worker consuming them."""
    return sorted(q for q, s in state.items() if s["depth"] > 0 and s["consumers"] == 0)
