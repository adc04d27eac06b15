"""The engine and the one helper that owns a session's lifetime."""

from __future__ import annotations

import functools
import os
import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Dialect, Engine, create_engine, event, insert
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None
_ROWS = "passflow.db.rows"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        # Workers and the API share the file: wait for locks instead of failing at once.
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if "poolclass" not in kwargs:
        from passflow.settings import get_settings

        settings = get_settings()
        kwargs.update(pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "checkout", functools.partial(_closed_by_server, engine.dialect))
    return engine


def _closed_by_server(dialect: Dialect, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """A pooled PostgreSQL connection the server has closed is replaced at checkout (the pool
    takes another). An idle connection has nothing to read: one that is quiet is taken with no
    round trip (SQLAlchemy's pool_pre_ping cost every transaction one: three a play). One with
    something to read holds the server's goodbye (a restart's FATAL, its end) or, rarely, a
    message the server sends unasked: a ping tells which."""
    if dbapi_conn.closed or dbapi_conn.broken:
        raise DisconnectionError("connection closed")
    poller = select.poll()  # (not select.select: a busy process' descriptors pass 1024)
    poller.register(dbapi_conn.fileno(), select.POLLIN)
    if not poller.poll(0):
        return
    try:
        dialect.do_ping(dbapi_conn)
    except dialect.loaded_dbapi.Error as exc:
        raise DisconnectionError("the server closed the connection") from exc


def configure(url: str | None = None) -> Engine:
    """(Re)bind the process to a database; the URL defaults to PASSFLOW_DATABASE_URL."""
    global _engine, _factory
    if url is None:
        from passflow.settings import get_settings

        url = get_settings().database_url
    if _engine is not None:
        _engine.dispose()
    _engine = make_engine(url)
    _factory = sessionmaker(_engine, expire_on_commit=False)
    return _engine


def _after_fork_in_child() -> None:
    """A forked child (Celery's prefork pool) must not use its parent's pooled connections, nor
    pool locks another thread of the parent may have held at the fork: give it a fresh pool
    (SQLAlchemy's advice for multiprocessing; the parent's connections stay the parent's)."""
    if _engine is not None:
        _engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


def engine() -> Engine:
    return _engine if _engine is not None else configure()


def new_session() -> Session:
    """A session of the process' database; its caller owns it (most code uses session_scope)."""
    if _factory is None:
        configure()
    assert _factory is not None
    return _factory()


def on_postgresql(session: Session) -> bool:
    """Whether the session's database is PostgreSQL (else SQLite): for the few statements
    written for each (SKIP LOCKED, a data-modifying WITH, percentiles)."""
    return session.get_bind().dialect.name == "postgresql"


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for one task or request: commit on success, roll back on error."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def add_row(session: Session, model: type, **values: Any) -> None:
    """A row to insert when the session's transaction commits, with the others of its table in
    one statement (executemany of one cached statement; the ORM's flush of one object cost a
    lone play more than parsing its answer). The rows of a table name the same columns; a
    rollback forgets them."""
    session.connection()  # in a transaction, whose rollback forgets them
    session.info.setdefault(_ROWS, {}).setdefault(model.__table__, []).append(values)


@event.listens_for(Session, "before_commit")
def _insert_rows(session: Session) -> None:
    for table, rows in session.info.pop(_ROWS, {}).items():
        session.connection().execute(insert(table), rows)


@event.listens_for(Session, "after_soft_rollback")
def _forget_rows(session: Session, _transaction: Any) -> None:
    session.info.pop(_ROWS, None)
