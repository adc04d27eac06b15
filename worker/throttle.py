"""Per-device throttle shared by the whole worker pool: a token bucket in Redis, with a queue.

Adobe Pass keys its bucket on the forwarded device IP and allows 1 request/s with "an initial
burst of 10 requests (one-time allowance on the first interaction of the identified client)"
(throttling-mechanism.md). Read strictly, the burst is granted once: here a device's bucket
holds the burst until it is used up, then one token at most, and that is remembered for
THROTTLE_MEMORY_S (a device unseen that long is assumed to have its burst again; a 429 then puts
it right). A 429 from Adobe spends the burst and pauses every call of that identity. Keeping
each key at or under that here means Adobe never has to answer 429. The script runs atomically
in Redis and uses Redis' clock, so workers on several machines agree.

A device with more calls than budget is served in order of arrival: a caller that names itself
(a job) and finds no token, or others waiting before it, joins the device's queue and is told
when its turn comes (its place times the rate); when it comes back it is served before anyone
who arrived later. A caller that does not come back within THROTTLE_GRACE_S of its turn (its job
ended or moved on) is dropped, so it holds up nobody. Devices never wait for each other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import redis

from worker import policy

_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local member = ARGV[3]
local grace = tonumber(ARGV[4])
local arrival = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'spent')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
local spent = state[3] or '0'
if tokens == nil then
  tokens = capacity
  ts = now
end
local cap = capacity
if spent == '1' then cap = 1 end
tokens = math.min(cap, tokens + (now - ts) * rate)
while true do
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not head then break end
  local turn = tonumber(redis.call('HGET', KEYS[3], head) or '0')
  if turn + grace >= now then break end
  redis.call('ZREM', KEYS[2], head)
  redis.call('HDEL', KEYS[3], head)
end
local rank = false
if member ~= '' then
  rank = redis.call('ZRANK', KEYS[2], member)
  if not rank and (redis.call('ZCARD', KEYS[2]) > 0 or tokens < 1) then
    -- joins the queue at its place by arrival (an earlier event goes before later ones)
    if arrival <= 0 then arrival = now end
    redis.call('ZADD', KEYS[2], arrival, member)
    rank = redis.call('ZRANK', KEYS[2], member)
  end
end
local ahead = rank
if not ahead then ahead = redis.call('ZCARD', KEYS[2]) end
local wait = 0
if ahead == 0 and tokens >= 1 then
  tokens = tokens - 1
  if tokens < 1 then spent = '1' end  -- the burst is used up: never assumed again
  if rank then
    redis.call('ZREM', KEYS[2], member)
    redis.call('HDEL', KEYS[3], member)
  end
else
  wait = (ahead + 1 - tokens) / rate
  if rank then redis.call('HSET', KEYS[3], member, tostring(now + wait)) end
  spent = '1'  -- the burst is granted once: from now on, one token at most
end
local ttl = math.ceil(capacity / rate + grace + wait) + 2
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now), 'spent', spent)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
return tostring(wait)
"""


# A 429 for the identity: the next token comes `pause` seconds from now, the burst spent.
_PENALTY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local pause = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'tokens', tostring(1 - pause * rate), 'ts', tostring(now),
           'spent', '1')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


class DeviceThrottle:
    """`wait_for(key)` takes a token and returns 0, or returns how long until the caller's
    turn. Callers name themselves with `waiting_as` to keep their place in the queue."""

    def __init__(self, client: redis.Redis, *, rate_per_s: float = 1.0, burst: int = 10,
                 prefix: str = "passflow:throttle:", shared_key: str | None = None):
        self._script = client.register_script(_SCRIPT)
        self._penalty = client.register_script(_PENALTY)
        self.rate = rate_per_s
        # Adobe's documented bucket holds 1 + burst; staying at `burst` keeps a margin.
        self.capacity = burst
        self.prefix = prefix
        # Devices that share passflow's own address (no IP forwarded): one bucket for all, as
        # Adobe keys them.
        self.shared_key = shared_key
        self._caller = threading.local()

    @contextmanager
    def waiting_as(self, member: str | None, arrival: float = 0.0) -> Iterator[None]:
        """Calls made by this thread inside wait their turn as `member` (a job id) that arrived
        at `arrival` (epoch seconds; its event's acceptance)."""
        previous = getattr(self._caller, "member", None)
        self._caller.member = (member, arrival) if member else None
        try:
            yield
        finally:
            self._caller.member = previous

    def wait_for(self, key: str, member: str | None = None, arrival: float = 0.0) -> float:
        if member is None:
            member, arrival = getattr(self._caller, "member", None) or ("", 0.0)
        base = self.prefix + key
        return float(self._script(keys=[base, base + ":queue", base + ":turns"],
                                  args=[self.rate, self.capacity, member, policy.THROTTLE_GRACE_S,
                                        arrival, policy.THROTTLE_MEMORY_S]))

    def answered_429(self, endpoint: str, headers: Mapping[str, str],
                     retry_after: float) -> None:
        """Adobe Pass answered 429 for this identity: every call of it waits (at least a
        second, or what Retry-After says), not only the one that was refused, and its burst is
        spent."""
        base = self.prefix + self._key(endpoint, headers)
        pause = max(1.0, retry_after)
        self._penalty(keys=[base], args=[self.rate, pause, policy.THROTTLE_MEMORY_S])

    def _key(self, endpoint: str, headers: Mapping[str, str]) -> str:
        key = headers.get("X-Forwarded-For")
        if not key:
            key = "dcr" if endpoint.startswith("dcr.") else self.shared_key or (
                "no-ip:" + headers.get("AP-Device-Identifier", "unknown"))
        return key

    def __call__(self, endpoint: str, headers: Mapping[str, str]) -> float:
        """The AdobePass `rate_limiter` hook: keyed as Adobe keys, on the forwarded IP."""
        return self.wait_for(self._key(endpoint, headers))
