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


@dataclass(frozen=True)
class StoredToken:
    value: str
    expires_at: float  # epoch seconds


class CredentialStore(Protocol):
    """Keyed by registration: one key per (Adobe Pass base URL, software statement)."""

    def load_client(self, key: str) -> StoredClient | None: ...
    def save_client(self, key: str, client: StoredClient) -> None: ...
    def discard_client(self, key: str) -> None: ...
    def load_token(self, key: str) -> StoredToken | None: ...
    def save_token(self, key: str, token: StoredToken) -> None: ...
    def discard_token(self, key: str, value: str) -> None:
        """Forget the token, but only if it is still `value` (another worker may have renewed)."""


class InMemoryCredentialStore:
    def __init__(self) -> None:
        self._clients: dict[str, StoredClient] = {}
        self._tokens: dict[str, StoredToken] = {}
        self._lock = threading.Lock()

    def load_client(self, key: str) -> StoredClient | None:
        return self._clients.get(key)

    def save_client(self, key: str, client: StoredClient) -> None:
        with self._lock:
            self._clients[key] = client

    def discard_client(self, key: str) -> None:
        with self._lock:
            self._clients.pop(key, None)
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
