"""Per-device throttle shared by the whole worker pool: a token bucket in Redis.

Adobe Pass keys its bucket on the forwarded device IP and allows 1 request/s with a burst of 10
(throttling-mechanism.md). Keeping each key at or under that here means Adobe never has to answer
429. The script runs atomically in Redis and uses Redis' clock, so workers on several machines
agree.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + (now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 2)
return tostring(wait)
"""


class DeviceThrottle:
    """`wait_for(key)` takes a token and returns 0, or returns how long until one is due."""

    def __init__(self, client: redis.Redis, *, rate_per_s: float = 1.0, burst: int = 10,
                 prefix: str = "passflow:throttle:"):
        self._script = client.register_script(_SCRIPT)
        self.rate = rate_per_s
        # Adobe's documented bucket holds 1 + burst; staying at `burst` keeps a margin.
        self.capacity = burst
        self.prefix = prefix

    def wait_for(self, key: str) -> float:
        return float(self._script(keys=[self.prefix + key], args=[self.rate, self.capacity]))

    def __call__(self, endpoint: str, headers: Mapping[str, str]) -> float:
        """The AdobePass `rate_limiter` hook: keyed as Adobe keys, on the forwarded IP."""
        key = headers.get("X-Forwarded-For") or (
            "dcr" if endpoint.startswith("dcr.") else "no-ip:" + headers.get(
                "AP-Device-Identifier", "unknown"))
        return self.wait_for(key)
