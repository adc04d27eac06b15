"""Cookbook step 1, registration, for the whole pool: credentials and tokens in SQL, encrypted,
and a Redis lock so N workers never register (or refresh) N times."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import redis
from sqlalchemy import select, update

from models import Profile, Registration, utcnow
from models.db import session_scope
from passflow.crypto import Cipher
from worker import metrics
from worker.adobe_pass.credentials import StoredClient, StoredToken

# How long a process trusts its memory of the pool's access token before reading it again.
TOKEN_MEMORY_S = 5.0


class SqlCredentialStore:
    """CredentialStore on the `registrations` table. Tokens are also kept in process memory so
    a call does not cost a database read."""

    def __init__(self, cipher: Cipher, base_url: str, service_provider: str | None = None):
        self._cipher = cipher
        self._base_url = base_url
        # Whose profiles a new registration voids (None: every one).
        self._service_provider = service_provider
        self._tokens: dict[str, StoredToken] = {}
        self._read_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def _row(self, session, key: str) -> Registration:
        row = session.scalars(select(Registration).where(Registration.key == key)).one_or_none()
        if row is None:
            row = Registration(key=key, base_url=self._base_url)
            session.add(row)
            session.flush()
        return row

    def load_client(self, key: str) -> StoredClient | None:
        with session_scope() as session:
            row = session.scalars(select(Registration).where(Registration.key == key)).first()
            if row is None or not row.client_id or not row.client_secret_enc:
                return None
            return StoredClient(row.client_id, self._cipher.decrypt(row.client_secret_enc),
                                tuple((row.scopes or "").split()))

    def save_client(self, key: str, client: StoredClient) -> None:
        with self._lock:
            self._tokens.pop(key, None)
        with session_scope() as session:
            row = self._row(session, key)
            row.client_id = client.client_id
            row.client_secret_enc = self._cipher.encrypt(client.client_secret)
            row.scopes = " ".join(client.scopes) or None
            row.registered_at = utcnow()
            row.registrations += 1
            row.access_token_enc = None
            row.token_expires_at = None
            row.token_lifetime_s = None
            row.problem = None
            row.problem_at = None
            # New client credentials: every profile obtained with other ones (an earlier
            # registration, another environment) is gone at Adobe Pass, and so here; those of
            # this service provider only (each brand registers with its own statement).
            voided = update(Profile).where(Profile.logged_out_at.is_(None))
            if self._service_provider is not None:
                voided = voided.where(Profile.service_provider == self._service_provider)
            session.execute(voided.values(logged_out_at=utcnow())
                            .execution_options(synchronize_session=False))

    def problem(self, key: str) -> str | None:
        with session_scope() as session:
            return session.scalar(select(Registration.problem).where(Registration.key == key))

    def report_problem(self, key: str, problem: str) -> None:
        with self._lock:
            self._tokens.pop(key, None)
        with session_scope() as session:
            row = self._row(session, key)
            if row.problem != problem:
                row.problem, row.problem_at = problem[:500], utcnow()
                row.access_token_enc = row.token_expires_at = None
        metrics.inc("passflow_registration_problems_total", ())

    def registered_before(self, key: str) -> bool:
        with session_scope() as session:
            return bool(session.scalar(select(Registration.registrations).where(
                Registration.key == key)))

    def load_token(self, key: str) -> StoredToken | None:
        cached = self._tokens.get(key)
        read_at = self._read_at.get(key, float("-inf"))
        # Kept in memory, read again every TOKEN_MEMORY_S: another process's renewal, or a
        # new registration (`passflow register`), reaches this one within seconds.
        if (cached is not None and cached.fresh(time.time())
                and time.monotonic() - read_at < TOKEN_MEMORY_S):
            return cached
        with session_scope() as session:
            row = session.scalars(select(Registration).where(Registration.key == key)).first()
            if row is None or not row.access_token_enc or row.token_expires_at is None:
                return None
            token = StoredToken(self._cipher.decrypt(row.access_token_enc),
                                row.token_expires_at.timestamp(), row.token_lifetime_s)
        with self._lock:
            self._tokens[key] = token
            self._read_at[key] = time.monotonic()
        return token

    def save_token(self, key: str, token: StoredToken) -> None:
        with session_scope() as session:
            row = self._row(session, key)
            row.access_token_enc = self._cipher.encrypt(token.value)
            row.token_expires_at = datetime.fromtimestamp(token.expires_at, UTC)
            row.token_lifetime_s = token.lifetime_s
        with self._lock:
            self._tokens[key] = token
            self._read_at[key] = time.monotonic()

    def discard_token(self, key: str, value: str) -> None:
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.value == value:
                del self._tokens[key]
        with session_scope() as session:
            row = session.scalars(select(Registration).where(Registration.key == key)).first()
            if row is not None and row.access_token_enc and (
                    self._cipher.decrypt(row.access_token_enc) == value):
                row.access_token_enc = None
                row.token_expires_at = None


def redis_refresh_lock(client: redis.Redis, *, ttl_s: float):
    """A lock factory for AdobePass(refresh_lock=...): one registration or token refresh in the
    pool at a time. The lock expires after `ttl_s` (the longest a registration and a token
    request can take), so a worker killed while holding it blocks the others that long at most;
    a caller waits at most `wait_s` (its deadline) and hears False when it could not get it."""

    @contextlib.contextmanager
    def lock(key: str, wait_s: float | None) -> Iterator[bool]:
        held = client.lock(f"passflow:lock:registration:{key}", timeout=ttl_s,
                           blocking_timeout=ttl_s if wait_s is None else max(0.01, wait_s),
                           thread_local=False)
        if not held.acquire():
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(redis.exceptions.LockError):
                held.release()

    return lock
