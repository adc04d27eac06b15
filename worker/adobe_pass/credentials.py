"""Where client credentials and access tokens live between calls.

The checklist requires both cached: client credentials "indefinitely", access tokens "until they
expire". `InMemoryCredentialStore` serves one process; the SQL store (models/) serves a pool.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StoredClient:
    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredToken:
    value: str
    expires_at: float  # epoch seconds
    lifetime_s: float | None = None  # as issued (expires_in)

    @property
    def issued_at(self) -> float | None:
        return self.expires_at - self.lifetime_s if self.lifetime_s else None

    def fresh(self, now: float) -> bool:
        """Valid, and not in the last tenth of its lifetime (a minute at most): renewed then,
        so it never dies in flight, and whatever its lifetime, once per lifetime."""
        lifetime = self.lifetime_s if self.lifetime_s else 600.0
        return self.expires_at - min(60.0, 0.1 * lifetime) > now


class CredentialStore(Protocol):
    """Keyed by registration: one key per (Adobe Pass base URL, software statement)."""

    def load_client(self, key: str) -> StoredClient | None: ...
    def save_client(self, key: str, client: StoredClient) -> None: ...
    def load_token(self, key: str) -> StoredToken | None: ...
    def save_token(self, key: str, token: StoredToken) -> None: ...
    def discard_token(self, key: str, value: str) -> None:
        """Forget the token, but only if it is still `value` (another worker may have renewed)."""
    def problem(self, key: str) -> str | None:
        """Why the registration cannot be used, until a deliberate new registration."""
    def report_problem(self, key: str, problem: str) -> None: ...
    def registered_before(self, key: str) -> bool:
        """Whether client credentials were ever issued for this key (new ones would then
        invalidate the users' profiles)."""


class InMemoryCredentialStore:
    def __init__(self) -> None:
        self._clients: dict[str, StoredClient] = {}
        self._tokens: dict[str, StoredToken] = {}
        self._problems: dict[str, str] = {}
        self._registered: set[str] = set()
        self._lock = threading.Lock()

    def problem(self, key: str) -> str | None:
        return self._problems.get(key)

    def report_problem(self, key: str, problem: str) -> None:
        with self._lock:
            self._problems[key] = problem
            self._tokens.pop(key, None)

    def registered_before(self, key: str) -> bool:
        return key in self._registered

    def load_client(self, key: str) -> StoredClient | None:
        return self._clients.get(key)

    def save_client(self, key: str, client: StoredClient) -> None:
        with self._lock:
            self._clients[key] = client
            self._registered.add(key)
            self._problems.pop(key, None)
            self._tokens.pop(key, None)

    def load_token(self, key: str) -> StoredToken | None:
        return self._tokens.get(key)

    def save_token(self, key: str, token: StoredToken) -> None:
        with self._lock:
            self._tokens[key] = token

    def discard_token(self, key: str, value: str) -> None:
        with self._lock:
            current = self._tokens.get(key)
            if current is not None and current.value == value:
                del self._tokens[key]
