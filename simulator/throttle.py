"""Per-client token bucket, as Adobe Pass throttles (throttling-mechanism.md).

The documented scenario (13 calls succeed within 2.2 s, the next at 3.1 s) is a bucket holding
1 + burst tokens that refills at 1 token per second; this reproduces it exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(self, *, rate_per_s: float, burst: int, clock: Callable[[], float]):
        self.rate = rate_per_s
        self.capacity = 1 + burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(tokens=self.capacity, updated=now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return True
            return False

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
