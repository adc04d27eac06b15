"""The simulator's bucket reproduces the scenario table of throttling-mechanism.md."""

from simulator.throttle import TokenBuckets

# (seconds since the first request, success?) straight from the documented scenario.
SCENARIO = [
    (0.0, True), (0.3, True), (0.6, True), (0.9, True), (1.2, True), (1.3, True), (1.4, True),
    (1.5, True), (1.6, True), (1.7, True), (1.8, True), (2.1, True), (2.2, True),
    (2.4, False), (2.6, False), (2.8, False), (3.1, True),
]


def test_documented_scenario():
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=1.0, burst=10, clock=lambda: now[0])
    outcomes = []
    for at, _ in SCENARIO:
        now[0] = at
        outcomes.append(buckets.take("203.0.113.7"))
    assert outcomes == [ok for _, ok in SCENARIO]


def test_clients_have_separate_buckets():
    buckets = TokenBuckets(rate_per_s=1.0, burst=0, clock=lambda: 0.0)
    assert buckets.take("a") and buckets.take("b")
    assert not buckets.take("a")


def test_the_burst_is_granted_once():
    """Once the client has found its bucket empty, a second's wait gives one call, never the
    burst again: the page's "one-time allowance on the first interaction"."""
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=1.0, burst=10, clock=lambda: now[0])
    assert all(buckets.take("c") for _ in range(11))
    assert not buckets.take("c")
    now[0] = 3600.0  # an hour later
    assert buckets.take("c") and not buckets.take("c")


def test_the_lenient_model_refills_the_burst():
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=1.0, burst=10, clock=lambda: now[0], one_time_burst=False)
    assert all(buckets.take("c") for _ in range(11)) and not buckets.take("c")
    now[0] = 3600.0
    assert all(buckets.take("c") for _ in range(11))
