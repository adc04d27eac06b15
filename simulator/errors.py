"""Enhanced error codes as the simulator answers them.

Source: features-standard/error-reporting/enhanced-error-codes.md (REST API v2 list).
"""

from __future__ import annotations

import uuid
from typing import Any

HELP_URL = (
    "https://experienceleague.adobe.com/docs/pass/authentication/auth-features/"
    "error-reportn/enhanced-error-codes.html"
)

# code -> (status, action, message)
ENHANCED: dict[str, tuple[int, str, str]] = {
    "invalid_parameter_service_provider": (
        400, "none", "The service provider parameter value is missing or invalid."),
    "invalid_parameter_mvpd": (400, "none", "The mvpd parameter value is missing or invalid."),
    "invalid_parameter_code": (400, "none", "The code parameter value is missing or invalid."),
    "invalid_parameter_partner": (
        400, "none", "The partner parameter value is missing or invalid."),
    "invalid_parameter_saml_response": (
        400, "none", "The SAML response parameter value is missing or invalid."),
    "invalid_header_pfs_permission_access_not_present": (
        400, "none", "The permission access status value from the partner framework status "
        "header is not present."),
    "invalid_header_pfs_permission_access_not_granted": (
        400, "none", "The permission access status value from the partner framework status "
        "header is not granted."),
    "invalid_parameter_resources": (
        400, "none", "The resources parameter value is missing or invalid."),
    "invalid_parameter_redirect_url": (
        400, "none", "The redirect URL parameter value is missing or invalid."),
    "invalid_header_device_info": (
        400, "none", "The device information header value is missing or invalid."),
    "invalid_header_device_identifier": (
        400, "none", "The device identifier header value is missing or invalid."),
    "invalid_header_identity_for_temporary_access": (
        400, "none", "The identity for temporary access header value is missing or invalid."),
    "invalid_integration": (
        400, "none",
        "The integration between the specified service provider and mvpd does not exist or "
        "is disabled."),
    "invalid_authentication_session": (
        400, "none", "The authentication session associated with this request is missing or "
        "invalid."),
    "preauthorization_denied_by_mvpd": (
        403, "none", "The MVPD has returned a \"Deny\" decision when requesting "
        "pre-authorization for the specified resource."),
    "authorization_denied_by_mvpd": (
        403, "none", "The MVPD has returned a \"Deny\" decision when requesting authorization "
        "for the specified resource."),
    "authorization_denied_by_parental_controls": (
        403, "none", "The MVPD has returned a \"Deny\" decision due parental controls settings "
        "for the specified resource."),
    # The simulator's own, where Adobe's list has no code (a header the call's pages do not
    # list): the pages' 400 "The request is invalid, the client needs to correct the request".
    "invalid_request": (400, "none", "The request is invalid."),
    "internal_server_error": (500, "none", "The request failed due to an internal server error."),
    "too_many_resources": (
        403, "configuration", "The authorization or preauthorization request failed because "
        "too many resources were queried. Please contact support team to properly configure "
        "the authorization and preauthorization limitations."),
    "invalid_configuration_temporary_access": (
        500, "configuration", "The temporary access configuration is invalid."),
    "invalid_access_token_service_provider": (
        401, "application-registration",
        "The access token is invalid due to invalid service provider."),
    "invalid_access_token_client_application": (
        401, "application-registration",
        "The access token is invalid due to invalid client application."),
    "authenticated_profile_missing": (
        403, "authentication", "The authenticated profile associated with this request is "
        "missing."),
    "authenticated_profile_expired": (
        403, "authentication", "The authenticated profile associated with this request has "
        "expired."),
    "temporary_access_duration_limit_exceeded": (
        403, "authentication", "The temporary access duration limit has been exceeded."),
    "temporary_access_resources_limit_exceeded": (
        403, "authentication", "The temporary access resources limit has been exceeded."),
    "authenticated_profile_invalidated": (
        403, "authentication", "The authenticated profile associated with this request has "
        "been invalidated."),
    "authorization_denied_by_degradation_rule": (
        403, "none", "The integration between the specified service provider and mvpd has a "
        "degradation rule applied that denies authorization for the requested resources."),
    "invalid_configuration_platform": (
        500, "configuration", "The platform configuration is missing or invalid for "
        "integration."),
    "network_received_error": (
        403, "retry", "There was a read error while retrieving the response from the "
        "associated partner service. Retrying the request might solve the issue."),
    "network_connection_timeout": (
        403, "retry", "There was a connection timeout with the associated partner service. "
        "Retrying the request might solve the issue."),
    "maximum_execution_time_exceeded": (
        403, "retry", "The request did not complete in the maximum allowed time. Retrying the "
        "request might solve the issue."),
}


def error_object(code: str, *, details: str | None = None) -> dict[str, Any]:
    status, action, message = ENHANCED[code]
    body: dict[str, Any] = {
        "action": action,
        "status": status,
        "code": code,
        "message": message,
        "helpUrl": HELP_URL,
        "trace": str(uuid.uuid4()),
    }
    if details:
        body["details"] = details
    return body


class PassError(Exception):
    """A top-level enhanced error answer. The HTTP status defaults to the code's status."""

    def __init__(self, code: str, *, http_status: int | None = None, details: str | None = None):
        super().__init__(code)
        self.code = code
        self.http_status = http_status or ENHANCED[code][0]
        self.details = details


class DcrError(Exception):
    """An OAuth-style DCR error answer: 400 {"error": "..."}."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error
