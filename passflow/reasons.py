"""Why a play or a sign-in did not work, grouped as a support desk answers a subscriber
(docs/operations.md, "Reasons"): entitlement, sign in again, retry later (the provider's or
Adobe's trouble), our fault, stopped on purpose. From Adobe's enhanced error code, its action
and HTTP status (enhanced-error-codes.md), and passflow's own codes."""

from __future__ import annotations

from typing import Any

REASONS = {
    "entitlement": "The TV provider said no for this subscriber: their package, parental "
                   "controls or account decide; a retry gives the same answer",
    "sign_in_again": "The subscriber must sign in again with their TV provider",
    "retry_later": "The TV provider or Adobe Pass had trouble (an outage, a timeout, a "
                   "limit): retry the job once it is over",
    "our_fault": "A fault of this setup (passflow, its Adobe Pass configuration or the app's "
                 "request), not the subscriber's: tell the engineers, with the code",
    "stopped": "Stopped on purpose: a newer sign-in replaced it, or an operator cancelled it",
}
_SIGN_IN_CODES = frozenset({"authentication_session_expired", "invalid_authentication_session",
                            "authorization_denied_by_session_invalidated"})
_RETRY_CODES = frozenset({"rate_limited", "internal_server_error", "APITimeoutError",
                          "APIConnectionError", "authorization_denied_by_degradation_rule"})


def reason_class(error: dict[str, Any] | None) -> str | None:
    """The class of an error or a Deny (REASONS), from Adobe's code, action and status."""
    if not error:
        return None
    code, action = str(error.get("code") or ""), error.get("action")
    status = error.get("status") or 0
    if code in ("cancelled", "superseded"):
        return "stopped"
    if action == "authentication" or code.startswith("authenticated_profile_") \
            or code in _SIGN_IN_CODES:
        return "sign_in_again"
    if code in _RETRY_CODES or code.startswith("network_") or action == "retry" \
            or status == 429 or status >= 502:
        return "retry_later"
    if code.startswith(("authorization_denied_by_", "preauthorization_denied_by_")):
        return "entitlement"
    return "our_fault"


def explained(error: dict[str, Any] | None) -> dict[str, str] | None:
    """An error or a Deny in words a support agent reads to a subscriber: its class, what
    that means, and the provider's or Adobe's own sentence when there is one."""
    kind = reason_class(error)
    if kind is None or error is None:
        return None
    said = {"class": kind, "in_words": REASONS[kind]}
    if error.get("message"):
        said["their_words"] = str(error["message"])
    return said
