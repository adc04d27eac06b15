"""Reasons a support agent can read: every failure and Deny falls in one class, from Adobe's
code, action and status (enhanced-error-codes.md) and passflow's own codes."""

from __future__ import annotations

import pytest

from passflow.reasons import REASONS, explained, reason_class


@pytest.mark.parametrize("status,code,action,kind", [
    (403, "authorization_denied_by_mvpd", "none", "entitlement"),
    (403, "preauthorization_denied_by_mvpd", "none", "entitlement"),
    (403, "authorization_denied_by_parental_controls", "none", "entitlement"),
    (403, "authorization_denied_by_degradation_rule", "none", "retry_later"),
    (403, "authenticated_profile_missing", "authentication", "sign_in_again"),
    (None, "authentication_session_expired", "none", "sign_in_again"),
    (503, "service_unavailable", "retry", "retry_later"),
    (502, None, None, "retry_later"),  # a gateway's bare answer
    (429, "rate_limited", "retry", "retry_later"),
    (None, "APITimeoutError", None, "retry_later"),
    (500, "internal_server_error", "none", "retry_later"),  # Adobe's own trouble
    (400, "invalid_header_device_info", "none", "our_fault"),
    (None, "internal_error", None, "our_fault"),
    (401, "invalid_client", "application-registration", "our_fault"),
    (None, "superseded", "none", "stopped"),
])
def test_each_answer_has_the_class_a_support_desk_would_give_it(status, code, action, kind):
    assert reason_class({"status": status, "code": code, "action": action}) == kind


def test_the_explanation_keeps_the_providers_own_sentence():
    said = explained({"status": 403, "code": "authorization_denied_by_mvpd", "action": "none",
                      "message": 'Your subscription package does not include the "HBO" '
                                 "channel."})
    assert said == {"class": "entitlement", "in_words": REASONS["entitlement"],
                    "their_words": 'Your subscription package does not include the "HBO" '
                                   "channel."}
    assert explained(None) is None
