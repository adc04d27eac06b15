"""Bearer tokens of the HTTP API: several, stored hashed, scoped, compared in constant time.

Scopes, each a token's one grant (GRANTS says what it includes):
- `metrics`: metrics and detailed health (a Prometheus scraper, a probe);
- `read`: also jobs and history, without personal data (media tokens, profile attributes);
- `personal`: `read` with the personal data;
- `ingest`: sends events (the platform's backend);
- `admin`: everything, and cancels and retries jobs. PASSFLOW_API_TOKEN is an admin token.

A stored token may also be limited to brands (service providers): it sends events and reads
jobs and history of those only (`brands_of`), and no pool-wide figure.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

import structlog
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from models import ApiToken, utcnow
from models.db import session_scope
from passflow.crypto import Cipher

GRANTS: dict[str, frozenset[str]] = {
    "metrics": frozenset({"metrics"}),
    "read": frozenset({"metrics", "read"}),
    "personal": frozenset({"metrics", "read", "personal"}),
    "ingest": frozenset({"ingest"}),
    "admin": frozenset({"metrics", "read", "personal", "ingest", "admin"}),
}
SCOPES = tuple(GRANTS)
_BEARER = HTTPBearer(auto_error=False, description="a passflow API token (PASSFLOW_API_TOKEN "
                                                   "or `passflow token create`)")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
_CACHE_S = 5.0  # a revoked token stops working within this
log = structlog.get_logger(__name__)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Holder(NamedTuple):
    """Who presented a token: its scope, its name, and the brands it is limited to (None:
    every brand)."""

    scope: str
    name: str
    brands: frozenset[str] | None = None


# Names a stored token may not take: the environment's token is audited under this one.
RESERVED_NAMES = frozenset({"PASSFLOW_API_TOKEN"})


def create_token(session: Session, *, name: str, scope: str,
                 service_providers: list[str] | None = None) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    if name.strip().upper() in RESERVED_NAMES:
        raise ValueError(f"{name!r} is reserved: the environment's token is audited under it")
    brands = ",".join(sorted(set(service_providers))) if service_providers else None
    token = "pf_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, scope=scope, token_hash=token_hash(token),
                         service_providers=brands))
    session.flush()
    return token


def revoke_token(session: Session, *, name: str) -> bool:
    return bool(session.execute(
        update(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())).rowcount)


class TokenChecker:
    """`checker.require("read")` is a FastAPI dependency that admits tokens of that scope."""

    def __init__(self, static_tokens: list[str]):
        self._static = [(token_hash(t), Holder("admin", "PASSFLOW_API_TOKEN"))
                        for t in static_tokens if t]
        self._stored: list[tuple[str, Holder]] = []
        self._loaded = 0.0
        self._lock = threading.Lock()

    def _stale(self, max_age_s: float = _CACHE_S) -> bool:
        return time.monotonic() - self._loaded > max_age_s

    def _refresh(self, max_age_s: float = _CACHE_S) -> None:
        with self._lock:
            if not self._stale(max_age_s):
                return
            try:
                with session_scope() as session:
                    self._stored = [(t.token_hash, Holder(t.scope, t.name, frozenset(
                        t.service_providers.split(",")) if t.service_providers else None))
                        for t in session.scalars(
                            select(ApiToken).where(ApiToken.revoked_at.is_(None)))]
            except SQLAlchemyError:
                # The database away: the tokens known a moment ago (and the environment's)
                # still answer, so /metrics and /healthz can say what is down. Asked again
                # within a second.
                log.warning("tokens_not_reread", reason="database unavailable")
                self._loaded = time.monotonic() - max_age_s + 1.0
                return
            self._loaded = time.monotonic()

    async def fresh(self, max_age_s: float = _CACHE_S) -> None:
        """Re-read the stored tokens when read more than `max_age_s` ago (off the event
        loop)."""
        if time.monotonic() - self._loaded > max_age_s:
            await run_in_threadpool(self._refresh, max_age_s)

    def _tokens(self) -> list[tuple[str, Holder]]:
        if self._stale():
            self._refresh()
        return self._static + self._stored

    def holder_of(self, presented: str) -> Holder | None:
        """Who holds a presented token, or None."""
        return self.holder_of_hash(token_hash(presented))

    def holder_of_hash(self, hashed: str) -> Holder | None:
        """Who holds the token with this hash while it is valid (the console's session keeps
        the hash, never the token: a revoked token ends its sessions)."""
        given = hashed.encode()
        found = None
        # Every known hash is compared, always: timing says nothing about which matched.
        for known, holder in self._tokens():
            if hmac.compare_digest(known.encode(), given):
                found = holder
        return found

    def require(self, scope: str) -> Callable[[Request], Awaitable[None]]:
        async def check(request: Request, _: Bearer) -> None:
            # `_` only declares the scheme in the OpenAPI document (its Authorize button); the
            # header is read below, as it always was.
            # On the event loop (no thread hop per request); the stored tokens are read from
            # the database on a thread, every _CACHE_S at most.
            if self._stale():
                await run_in_threadpool(self._refresh)
            kind, _, value = request.headers.get("authorization", "").partition(" ")
            value = value.strip()
            holder = self.holder_of(value) if kind.lower() == "bearer" and value else None
            if holder is None:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                    "a valid bearer token is required",
                                    headers={"WWW-Authenticate": "Bearer"})
            granted = GRANTS.get(holder.scope, frozenset())
            if scope not in granted:
                raise HTTPException(status.HTTP_403_FORBIDDEN,
                                    f"this token's scope is {holder.scope}; {scope} is needed")
            request.state.granted = granted
            request.state.token_name = holder.name
            request.state.brands = holder.brands

        return check

    def require_every_brand(self, scope: str) -> Callable[[Request], Awaitable[None]]:
        """`require(scope)`, and a token not limited to brands (pool-wide figures, health)."""
        checked = self.require(scope)

        async def check(request: Request, _: Bearer) -> None:
            await checked(request, _)
            if request.state.brands is not None:
                raise HTTPException(status.HTTP_403_FORBIDDEN, (
                    "this token is limited to " + ", ".join(sorted(request.state.brands))
                    + "; these figures span every brand"))

        return check


def brands_of(request: Request) -> frozenset[str] | None:
    """The brands the request's token is limited to; None: every brand."""
    return getattr(request.state, "brands", None)


def brand_allowed(request: Request, service_provider: str) -> bool:
    brands = brands_of(request)
    return brands is None or service_provider in brands


def sees_personal_data(request: Request) -> bool:
    """Whether the request's token may read media tokens and profile attributes."""
    return "personal" in getattr(request.state, "granted", frozenset())


@dataclass(frozen=True)
class Access:
    """What each audience may do, as the routes' dependencies: one place, one checker."""

    checker: TokenChecker

    @property
    def ingest(self) -> list[Any]:  # send events
        return [Depends(self.checker.require("ingest"))]

    @property
    def read(self) -> list[Any]:  # jobs and history of the token's brands
        return [Depends(self.checker.require("read"))]

    @property
    def admin(self) -> list[Any]:  # act: retry, cancel
        return [Depends(self.checker.require("admin"))]

    @property
    def every_brand(self) -> list[Any]:  # pool-wide figures and workers
        return [Depends(self.checker.require_every_brand("read"))]

    @property
    def monitoring(self) -> list[Any]:  # /metrics and /healthz
        return [Depends(self.checker.require_every_brand("metrics"))]


def personal_cipher(request: Request, cipher: Cipher) -> Cipher | None:
    """The cipher opening personal data (activation codes, media tokens, profile attributes)
    for a request whose token may read it; None hides it."""
    return cipher if sees_personal_data(request) else None


def actor(request: Request) -> str:
    """Who acts, for the audit log and a job's `requested_by`: the token's name."""
    return f"api:{getattr(request.state, 'token_name', 'unknown')}"
