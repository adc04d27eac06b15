"""Errors of the Adobe Pass client.

One base, a connection branch and a status branch; `make_status_error` maps a response to the
right class. Callers branch on `action`, the enhanced error code's recommended remediation
(features-standard/error-reporting/enhanced-error-codes.md), and on `retryable`.
"""

from __future__ import annotations

import httpx

from worker.adobe_pass.types import EnhancedError

# Throttling-mechanism.md: "Each application that receives a 429 response must wait for at least
# 1 second before generating a new request."
MIN_THROTTLE_WAIT_S = 1.0


class AdobePassError(Exception):
    retryable: bool = False


class APIConnectionError(AdobePassError):
    retryable = True

    def __init__(self, message: str = "Connection to Adobe Pass failed"):
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    def __init__(self, message: str = "Adobe Pass did not answer in time"):
        super().__init__(message)


class ThrottledError(AdobePassError):
    """Our own per-device budget is spent: call again after `retry_after` seconds. Nothing was
    sent to Adobe Pass."""

    retryable = True

    def __init__(self, retry_after: float, *, endpoint: str,
                 reason: str = "device request budget spent"):
        super().__init__(f"{endpoint}: {reason}, next in {retry_after:.2f}s")
        self.retry_after = max(0.0, retry_after)
        self.endpoint = endpoint


class RegistrationRequired(AdobePassError):
    """passflow's registration cannot be used (client credentials revoked, a scope missing):
    nothing that needs Adobe Pass can run until an operator registers again, on purpose
    (`passflow register`), since new client credentials invalidate every user's profile."""

    code = "application_registration_required"
    action = "application-registration"

    def __init__(self, problem: str):
        super().__init__(f"{problem}; run `passflow register` to register passflow again "
                         "(it invalidates every user's profile)")
        self.problem = problem


class DeviceNotDescribable(AdobePassError, ValueError):
    """The device has no X-Device-Info to send and is not a browser: no call is made for it
    (every REST API V2 request needs one; intake refuses such devices since 0.4.0, a job
    accepted before may still hold one)."""

    code = "device_info_missing"
    action = "none"


class MalformedResponseError(AdobePassError):
    """A success status with a body that is not the documented JSON shape."""

    def __init__(self, message: str, *, status_code: int, endpoint: str):
        super().__init__(f"{endpoint}: {message} (HTTP {status_code})")
        self.status_code = status_code
        self.endpoint = endpoint


class APIStatusError(AdobePassError):
    """An HTTP error answer, with the enhanced error object when Adobe Pass sent one."""

    def __init__(self, response: httpx.Response, error: EnhancedError | None, *, endpoint: str):
        self.response = response
        self.status_code = response.status_code
        self.error = error
        self.endpoint = endpoint
        detail = f"{error.code} (action {error.action})" if error and error.code else "no details"
        super().__init__(f"{endpoint}: HTTP {self.status_code}, {detail}")

    @property
    def code(self) -> str | None:
        return self.error.code if self.error else None

    @property
    def action(self) -> str | None:
        return self.error.action if self.error else None

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """Only the `retry` action warrants a retry (enhanced-error-codes.md: "Only a limited
        number of enhanced error codes warrant a retry"); an answer with any other action does
        not, whatever its status. A 5xx with no enhanced error (a gateway in front of Adobe
        Pass) is transient."""
        if self.error is not None and self.error.action:
            return self.error.action == "retry"
        return self.status_code >= 500


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    """401: the access token is invalid or expired."""


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class MethodNotAllowedError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    """429 Too Many Requests. `retry_after` is at least one second."""

    def __init__(self, response: httpx.Response, error: EnhancedError | None, *, endpoint: str):
        super().__init__(response, error, endpoint=endpoint)
        self.retry_after = max(MIN_THROTTLE_WAIT_S, retry_after_of(response) or 0.0)

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return True


class InternalServerError(APIStatusError):
    pass


class RegistrationError(APIStatusError):
    """A DCR error answer: 400 {"error": "invalid_request" | "invalid_client" | ...}."""

    def __init__(self, response: httpx.Response, oauth_error: str | None, *, endpoint: str):
        super().__init__(response, None, endpoint=endpoint)
        self.oauth_error = oauth_error
        self.args = (f"{endpoint}: HTTP {response.status_code}, {oauth_error or 'no details'}",)

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status_code >= 500


class InvalidClientError(RegistrationError):
    """The client credentials are no longer valid: register again."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    429: RateLimitError,
}


def retry_after_of(response: httpx.Response) -> float | None:
    """Retry-After in seconds, when the answer says."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def make_status_error(response: httpx.Response, *, endpoint: str) -> APIStatusError:
    body = _json(response)
    error: EnhancedError | None = None
    if isinstance(body, dict):
        # Top-level error information: the error fields stand at the top of the body.
        candidate = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(candidate, dict) and "code" in candidate:
            error = EnhancedError.model_validate(candidate)
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else APIStatusError
    return cls(response, error, endpoint=endpoint)


def make_registration_error(response: httpx.Response, *, endpoint: str) -> APIStatusError:
    if response.status_code in (429,) or response.status_code >= 500:
        return make_status_error(response, endpoint=endpoint)
    body = _json(response)
    oauth_error = body.get("error") if isinstance(body, dict) else None
    oauth_error = oauth_error if isinstance(oauth_error, str) else None
    cls = InvalidClientError if oauth_error == "invalid_client" else RegistrationError
    return cls(response, oauth_error, endpoint=endpoint)
