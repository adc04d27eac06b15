"""The entitlement history: sessions, profiles, decisions and logouts, newest first, paged by an
opaque cursor. One query per record kind, merged in order of (time, kind, id)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from models.entitlements import AuthSession, Decision, Logout, Profile

# The rank breaks ties between kinds at the same instant, so paging is stable.
_KINDS: dict[str, tuple[int, type]] = {
    "session": (0, AuthSession),
    "profile": (1, Profile),
    "decision": (2, Decision),
    "logout": (3, Logout),
}


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class HistoryQuery:
    device_id: str | None = None
    mvpd: str | None = None
    resource: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None


_RANKS = frozenset(rank for rank, _ in _KINDS.values())


def _encode_cursor(at: datetime, rank: int, row_id: int) -> str:
    raw = json.dumps([at.isoformat(), rank, row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_MAX_ID = 2**63 - 1  # the largest key either database stores


def _decode_cursor(cursor: str) -> tuple[datetime, int, int]:
    """Everything in a cursor is checked as if hostile: the types, a time with its zone, a
    rank this module gives, an id a database can compare."""
    try:
        at, rank, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError("a time without its zone")
        moment = moment.astimezone(timezone.utc)  # OverflowError near year 1 or 9999
        if type(rank) is not int or rank not in _RANKS or type(row_id) is not int \
                or not 0 <= row_id <= _MAX_ID:
            raise ValueError("not a rank and an id")
        return moment, rank, row_id
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise BadCursor("cursor is not one this API gave out") from exc


def _entry(kind: str, row: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": kind,
        "device_id": row.device_id,
        "mvpd": row.mvpd,
        "resource": None,
        "at": row.created_at.isoformat().replace("+00:00", "Z"),
        "job_id": row.job_id,
    }
    if kind == "session":
        entry.update(outcome=row.status, code=row.code, reason=row.stop_reason)
    elif kind == "profile":
        entry.update(outcome="authenticated", profile_type=row.type,
                     not_after=row.not_after.isoformat().replace("+00:00", "Z"))
    elif kind == "decision":
        entry.update(resource=row.resource, outcome=row.decision, decision_kind=row.kind,
                     error_code=row.error_code, error_action=row.error_action)
    else:
        entry.update(outcome=row.action_name, action_type=row.action_type)
    return entry


def history(session: Session, query: HistoryQuery) -> tuple[list[dict[str, Any]], str | None]:
    """One page of entries and the cursor of the next page (None on the last)."""
    after = _decode_cursor(query.cursor) if query.cursor else None
    rows: list[tuple[datetime, int, int, str, Any]] = []
    for kind, (rank, model) in _KINDS.items():
        if query.resource is not None and kind != "decision":
            continue  # only decisions concern a resource
        stmt = select(model)
        if query.device_id is not None:
            stmt = stmt.where(model.device_id == query.device_id)
        if query.mvpd is not None:
            stmt = stmt.where(model.mvpd == query.mvpd)
        if query.resource is not None:
            stmt = stmt.where(model.resource == query.resource)
        if query.since is not None:
            stmt = stmt.where(model.created_at >= query.since)
        if query.until is not None:
            stmt = stmt.where(model.created_at < query.until)
        if after is not None:
            # Strictly after the cursor in (time, rank, id) descending order.
            at, c_rank, c_id = after
            if rank < c_rank:
                stmt = stmt.where(model.created_at <= at)
            elif rank == c_rank:
                stmt = stmt.where(or_(model.created_at < at,
                                      and_(model.created_at == at, model.id < c_id)))
            else:
                stmt = stmt.where(model.created_at < at)
        stmt = stmt.order_by(model.created_at.desc(), model.id.desc()).limit(query.limit + 1)
        rows.extend((row.created_at, rank, row.id, kind, row) for row in session.scalars(stmt))
    rows.sort(key=lambda r: (r[0], r[1], r[2]), reverse=True)
    page = rows[:query.limit]
    cursor = None
    if len(rows) > query.limit and page:
        last = page[-1]
        cursor = _encode_cursor(last[0], last[1], last[2])
    return [_entry(kind, row) for _, _, _, kind, row in page], cursor
