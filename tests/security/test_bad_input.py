"""Property-based bad input on POST /v1/events: always a clear 4xx, nothing stored half-way."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

import models.db
from models import Event

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
NASTY = st.sampled_from([
    "'; DROP TABLE events; --", "<script>alert(1)</script>", "\u0000", "\u202e\u2066evil",
    "../../etc/passwd", "${jndi:ldap://x}", "💥" * 50, "A" * 300, "\ud7ff\ue000", " ",
])
TYPES = st.sampled_from(["profiles.requested", "authentication.requested",
                         "authorization.requested", "teleport.requested", "", "AUTH"])


def events():
    device = st.fixed_dictionaries({"id": st.one_of(NASTY, st.text(max_size=5), st.integers())},
                                   optional={"ip": st.one_of(NASTY, st.just("203.0.113.5")),
                                             "port": st.integers(-5, 70000),
                                             "info": JSON})
    return st.fixed_dictionaries(
        {"type": TYPES},
        optional={"event_id": st.one_of(NASTY, st.integers(), st.none()),
                  "device": st.one_of(device, JSON), "mvpd": st.one_of(NASTY, JSON),
                  "resource": st.one_of(NASTY, JSON), "resources": st.one_of(
                      st.lists(NASTY, max_size=3), JSON)})


def _stored() -> int:
    with models.db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Event))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.one_of(events(), JSON))
def test_bad_events_get_a_clear_4xx(api: httpx.Client, fault_report, body):
    before = _stored()
    answer = api.post("/v1/events", content=json.dumps(body),
                      headers={"Content-Type": "application/json"})
    if answer.status_code in (200, 202):
        return  # a valid event after all (hypothesis found one): accepted and stored whole
    assert 400 <= answer.status_code < 500, answer.text
    problems = answer.json()
    assert isinstance(problems, list) and all("field" in p and "message" in p for p in problems)
    assert _stored() == before
    fault_report("generated bad events: wrong types, unknown types, injection strings, odd "
                 "unicode", "always a 4xx with a list of problems; nothing stored")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_get_a_clear_4xx(api: httpx.Client, fault_report, raw: bytes):
    before = _stored()
    answer = api.post("/v1/events", content=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code in (200, 202) or 400 <= answer.status_code < 500
    if answer.status_code >= 400:
        assert _stored() == before
    fault_report("arbitrary bytes as an event body", "always a 4xx; nothing stored")
