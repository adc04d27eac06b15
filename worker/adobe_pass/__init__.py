"""Typed client of Adobe Pass DCR and REST API V2."""

from worker.adobe_pass._client import AdobePass, registration_key
from worker.adobe_pass._exceptions import (
    AdobePassError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DeviceNotDescribable,
    InternalServerError,
    InvalidClientError,
    MalformedResponseError,
    MethodNotAllowedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RegistrationError,
    RegistrationRequired,
    ThrottledError,
)
from worker.adobe_pass.credentials import CredentialStore, InMemoryCredentialStore
from worker.adobe_pass.headers import Device

__all__ = [
    "registration_key",
    "DeviceNotDescribable",
    "APIConnectionError", "APIStatusError", "APITimeoutError", "AdobePass", "AdobePassError",
    "AuthenticationError", "BadRequestError", "CredentialStore", "Device",
    "InMemoryCredentialStore", "InternalServerError", "InvalidClientError",
    "MalformedResponseError", "MethodNotAllowedError", "NotFoundError",
    "PermissionDeniedError", "RateLimitError", "RegistrationError", "RegistrationRequired",
    "ThrottledError",
]
