"""Declarative base, naming convention and column types shared by every record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, TypeDecorator
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def in_utc(value: datetime) -> datetime:
    """A time given from outside (a query, a cursor) as the instant in UTC; ValueError when it
    has no zone (which instant is meant?) or is out of range once in UTC (year 1 east of UTC,
    year 9999 west of it)."""
    if value.tzinfo is None:
        raise ValueError("give a timezone, e.g. Z or +01:00")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("out of range once in UTC") from exc


def utc_text(value: datetime | None) -> str | None:
    """A stored time as the API writes it: ISO 8601 in UTC with a Z."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def duration_text(seconds: float) -> str:
    """A wait in words a support agent reads aloud: "40 s", "11 min", "2 h 5 min"."""
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}
