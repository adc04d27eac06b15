"""Every flow is one declaration (passflow.flows): each is walked here. Its event, built from
the declaration's example with every sealed field given, is stored with those fields sealed
(none of their values in the stored text), opened where a step reads them (the device's single
sign-on headers, the TempPass identity), and sealed again under a new key by rotation."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet

from passflow.crypto import Cipher
from passflow.events import EventIn, stored_payload, temppass_identity
from passflow.flows import FLOWS, Result, opened, reseal
from worker.steps import FIRST_STEP, STEPS
from worker.views import RESULTS

SECRETS = {"subject_token": "amazon.jws.secret-1", "service_token": "service-secret-2",
           "temppass_identity": {"email": "viewer@example.com"},
           "partner_response": "PHNhbWxwOlJlc3BvbnNlPnNlY3JldC1zYW1sPC9zYW1scDpSZXNwb25zZT4="}


def _event(kind) -> EventIn:
    return EventIn.model_validate({
        "event_id": f"evt-{kind}", "type": kind, **FLOWS[kind].example,
        "temppass_identity": SECRETS["temppass_identity"],
        "partner_response": SECRETS["partner_response"],
        "device": {"id": "tv-1", "ip": "203.0.113.9", "port": 4000,
                   "info": {"model": "TV", "version": "1", "osName": "tvOS",
                            "osVersion": "17"},
                   "sso": {"subject_token": SECRETS["subject_token"],
                           "service_token": SECRETS["service_token"],
                           "partner_framework_status": {
                               "frameworkPermissionInfo": {"accessStatus": "granted"},
                               "frameworkProviderInfo": {"id": "Cablevision",
                                                         "expirationDate": "1900000000000"}}}}})


@pytest.mark.parametrize("kind", list(FLOWS))
def test_each_flows_sealed_fields_are_sealed_at_rest_and_opened_where_read(kind):
    old_key = Fernet.generate_key().decode()
    cipher = Cipher(old_key)
    flow = FLOWS[kind]
    assert FIRST_STEP[kind] == flow.first_step and flow.steps <= set(STEPS)
    assert flow.result in RESULTS
    stored = stored_payload(_event(kind), cipher)
    text = json.dumps(stored)
    for secret in ("amazon.jws.secret-1", "service-secret-2", "viewer@example.com",
                   SECRETS["partner_response"]):
        assert secret not in text, (kind, secret)
    for path in ("temppass_identity", "partner_response"):  # opened as the steps read them
        assert opened(stored, path, cipher) == SECRETS[path], (kind, path)
    assert set(flow.sealed_fields) >= {"device.sso", "temppass_identity", "partner_response"}
    # Where the steps read them: the device's headers (StepContext.device) and the identity.
    assert opened(stored, "device.sso", cipher)["subject_token"] == SECRETS["subject_token"]
    assert temppass_identity(stored, cipher) == SECRETS["temppass_identity"]
    # Key rotation: under a new first key, still opened; an old clear value gets sealed.
    rotated = Cipher(f"{Fernet.generate_key().decode()},{old_key}")
    again = reseal(flow, stored, rotated)
    assert again is not None and opened(again, "device.sso", rotated)["service_token"] \
        == SECRETS["service_token"]
    clear = {**stored, "temppass_identity": {"email": "old@example.com"}}
    clear.pop("temppass_identity_enc")
    sealed = reseal(flow, clear, rotated)
    assert "old@example.com" not in json.dumps(sealed)
    assert temppass_identity(sealed, rotated) == {"email": "old@example.com"}


def test_every_kind_of_result_has_a_view():
    assert set(RESULTS) == set(Result)
