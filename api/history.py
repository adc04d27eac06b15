"""GET /v1/history: the entitlement history, newest first (docs/api.md, "History")."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.auth import Access, brands_of, personal_cipher
from api.queries import Cursor, Limit, Text, known_query
from api.schemas import PRINTABLE, HistoryPage, Instant
from models.db import session_scope
from models.history import OUTCOME_KINDS, HistoryQuery, history
from passflow.crypto import Cipher

Outcome = Enum("Outcome", {name: name for name in OUTCOME_KINDS}, type=str)  # type: ignore[misc]


def build_router(access: Access, cipher: Cipher) -> APIRouter:
    router = APIRouter(tags=["history"])

    @router.get("/v1/history", dependencies=[*access.read, known_query(
        "device_id", "mvpd", "resource", "job_id", "outcome", "since", "until", "limit",
        "cursor", "service_provider")])
    def get_history(
        request: Request,
        device_id: Text = None,
        service_provider: Text = None,
        mvpd: Text = None,
        resource: Annotated[str | None, Query(max_length=500, pattern=PRINTABLE)] = None,
        job_id: Annotated[str | None, Query(max_length=36, pattern=PRINTABLE)] = None,
        outcome: Outcome | None = None,
        since: Instant | None = None,
        until: Instant | None = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> HistoryPage:
        """Entitlement history, newest first: sessions, profiles, decisions, logouts, and the
        attempts that failed, expired or were cancelled (`kind: job`) with their error code,
        action and reason."""
        query = HistoryQuery(device_id=device_id, mvpd=mvpd, resource=resource, since=since,
                             until=until, limit=limit, cursor=cursor, job_id=job_id,
                             outcome=outcome, service_provider=service_provider,
                             service_providers=brands_of(request))
        with session_scope() as session:
            entries, next_cursor = history(session, query, personal_cipher(request, cipher))
        return HistoryPage(entries=entries, next_cursor=next_cursor)

    return router
