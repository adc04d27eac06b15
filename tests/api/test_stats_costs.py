"""Costly reads stay bounded (api.stats): an answer is kept a few seconds per figure and window,
and past AT_ONCE figures computed at once a request is answered 503 at once, not queued."""

from __future__ import annotations

import threading

import pytest
from fastapi import HTTPException

from api.stats import AT_ONCE, _Costly


def test_a_figure_asked_again_within_seconds_is_computed_once():
    costly, computed = _Costly(), []
    for _ in range(5):
        assert costly.read(("steps", 1, 2), lambda: computed.append(1) or {"n": 1}) == {"n": 1}
    assert computed == [1]
    costly.read(("steps", 1, 3), lambda: computed.append(2) or {"n": 2})  # another window
    assert computed == [1, 2]


def test_past_the_limit_a_read_is_refused_at_once_not_queued():
    costly, release, started = _Costly(), threading.Event(), threading.Barrier(AT_ONCE + 1)

    def slow() -> dict:
        started.wait(timeout=5)
        release.wait(timeout=10)
        return {}

    threads = [threading.Thread(target=costly.read, args=((f"k{n}",), slow))
               for n in range(AT_ONCE)]
    for thread in threads:
        thread.start()
    started.wait(timeout=5)  # both are computing now
    with pytest.raises(HTTPException) as refused:
        costly.read(("another",), dict)
    assert refused.value.status_code == 503 and refused.value.headers["Retry-After"] == "2"
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert costly.read(("another",), lambda: {"ok": True}) == {"ok": True}
