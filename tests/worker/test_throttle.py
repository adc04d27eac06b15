"""The per-device throttle (worker.throttle) as Adobe's throttling page reads strictly: the
burst granted once, a 429 pausing the whole identity. Time passing is moved in the bucket's
stored state, not slept."""

from __future__ import annotations


def test_a_spent_burst_is_never_assumed_again(redis_client):
    """After its burst, a device idle for a minute gets one call at once, not ten."""
    from worker.runtime import runtime

    throttle = runtime().throttle
    device_ip = "198.51.100.251"
    assert [throttle.wait_for(device_ip) for _ in range(throttle.capacity)] == \
        [0.0] * throttle.capacity
    state = f"{throttle.prefix}{device_ip}"
    redis_client.hset(state, "ts", float(redis_client.hget(state, "ts")) - 60)  # a minute on
    assert throttle.wait_for(device_ip) == 0.0
    assert throttle.wait_for(device_ip) > 0.5
    for key in redis_client.keys(f"{throttle.prefix}{device_ip}*"):
        redis_client.delete(key)


def test_a_429_pauses_every_job_of_that_device(redis_client):
    """Adobe answers 429 for a device: its next calls wait at least a second, whichever job
    makes them (throttling page), not only the one refused."""
    from worker.runtime import runtime

    throttle = runtime().throttle
    device_ip = "198.51.100.250"
    assert throttle.wait_for(device_ip) == 0  # the first call: a token
    throttle.answered_429("decisions.authorize", {"X-Forwarded-For": device_ip}, 0.0)
    waits = [throttle.wait_for(device_ip, member=f"job-{n}", arrival=n) for n in range(3)]
    assert all(wait >= 0.9 for wait in waits), waits
    for key in redis_client.keys(f"{throttle.prefix}{device_ip}*"):
        redis_client.delete(key)
