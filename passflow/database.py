"""`passflow db upgrade`: Alembic migrations, configured in code so they run from anywhere; and
whether a database is one passflow can run on (reachable, migrated to head)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
    _record_compat(url or _configured_url())


def _configured_url() -> str:
    from passflow.settings import get_settings

    return get_settings().database_url


def _record_compat(url: str) -> None:
    """Which code heads run on the schema now: its revision's, and the one before when that
    migration only adds (`EXPAND_ONLY`): during a rolling upgrade the older processes keep
    running, and may restart."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            if current is None or not inspect(connection).has_table("schema_compat"):
                return
            script = ScriptDirectory.from_config(alembic_config()).get_revision(current)
            runs_with = [current]
            if getattr(script.module, "EXPAND_ONLY", False) and script.down_revision:
                runs_with.append(str(script.down_revision))
            connection.execute(text("DELETE FROM schema_compat WHERE revision = :r"),
                               {"r": current})
            connection.execute(text("INSERT INTO schema_compat (revision, runs_with) "
                                    "VALUES (:r, :w)"), {"r": current, "w": ",".join(runs_with)})
    finally:
        engine.dispose()


def runs_on(connection: Connection, code_head: str | None = None) -> str | None:
    """Why this code (its head, or `code_head`) cannot run on the schema the connection sees,
    or None: the schema is at its head, or at a later revision that says it runs with it."""
    needed = code_head or head()
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return "no passflow schema: run `passflow db upgrade`"
    if current == needed:
        return None
    if inspect(connection).has_table("schema_compat"):
        row = connection.execute(text("SELECT runs_with FROM schema_compat WHERE revision = :r"),
                                 {"r": current}).first()
        if row is not None and needed in row[0].split(","):
            return None
    return (f"at revision {current}, this passflow needs {needed}: run `passflow db upgrade` "
            "(or run the passflow that matches it)")


_identities: dict[str, str] = {}


def forget_identity(url: str) -> None:
    """A database dropped and created again at the same URL is another database: read its
    identity afresh (the tests' databases, made anew for each backend in turn)."""
    _identities.pop(url, None)


def database_identity(url: str) -> str | None:
    """The database's own identity (the `installation` row its first migration wrote), the
    same whatever URL reaches it; None when it cannot be read (then callers key on the URL)."""
    if url in _identities:
        return _identities[url]
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
            return None  # connecting would create the file
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                if not inspect(connection).has_table("installation"):
                    return None
                found = connection.execute(text("SELECT id FROM installation")).scalar()
        finally:
            engine.dispose()
    except (DBAPIError, ArgumentError, NoSuchModuleError):
        return None
    if found:
        _identities[url] = str(found)
    return _identities.get(url)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
    _record_compat(url or _configured_url())


def downgrade_losses(url: str | None, revision: str) -> list[tuple[str, int]]:
    """What going down to `revision` would delete, counted now: each migration undone names
    its losses (`LOSES`: what, and the query counting it); those with rows. ValueError for a
    revision that is not below the current one."""
    url = url or _configured_url()
    scripts = ScriptDirectory.from_config(alembic_config())
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            if current is None:
                raise ValueError("the database has no passflow schema: nothing to downgrade")
            target = None if revision == "base" else scripts.get_revision(revision).revision
            undone = []
            for script in scripts.iterate_revisions(current, target):
                if script.revision == target:
                    break
                undone.append(script)
            if target is not None and not any(s.down_revision == target for s in undone):
                raise ValueError(f"{revision} is not below the current revision {current}")
            losses = []
            for script in undone:
                for what, query in getattr(script.module, "LOSES", []):
                    count = connection.execute(text(query)).scalar() or 0
                    if count:
                        losses.append((what, int(count)))
            return losses
    finally:
        engine.dispose()


def current_revision(url: str | None = None) -> tuple[str | None, str | None]:
    """(the database's revision, the code heads that run on it as `db upgrade` recorded)."""
    engine = create_engine(url or _configured_url())
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            runs_with = None
            if current and inspect(connection).has_table("schema_compat"):
                runs_with = connection.execute(text(
                    "SELECT runs_with FROM schema_compat WHERE revision = :r"),
                    {"r": current}).scalar()
            return current, runs_with
    finally:
        engine.dispose()


def history() -> list[tuple[str, str | None, str]]:
    """Every revision, newest first: (revision, the one before, its first line)."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return [(s.revision, str(s.down_revision) if s.down_revision else None,
             (s.doc or "").strip().splitlines()[0] if s.doc else "")
            for s in scripts.walk_revisions()]


def check(url: str | None = None) -> None:
    """Raise if the models and the migrations disagree (alembic check)."""
    command.check(alembic_config(url))


def head() -> str:
    """The revision this code needs."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return heads[0]


def build_info() -> dict[str, str]:
    """passflow's version and the schema revision this code needs (`passflow --version`,
    /healthz, the passflow_build_info metric, the OpenAPI document)."""
    import passflow

    return {"version": passflow.__version__, "schema": head()}


def shown(url: str) -> str:
    """A database URL fit for a message: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a URL)"


def schema_problem(url: str, *, timeout_s: float = 5.0) -> str | None:
    """Why passflow cannot run on the database at `url` (in words, with the fix), or None: the
    URL is one SQLAlchemy knows, the server answers, and the schema is at head."""
    try:
        parsed = make_url(url)
        sqlite = parsed.get_backend_name() == "sqlite"
        engine = create_engine(url, connect_args={} if sqlite else
                               {"connect_timeout": max(1, int(timeout_s))})
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        return (f"PASSFLOW_DATABASE_URL is not a database URL passflow can use "
                f"({type(exc).__name__}); e.g. postgresql+psycopg://user:pass@host/passflow")
    if sqlite and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).exists():
        engine.dispose()  # connecting would create an empty file
        return (f"the database file {parsed.database} does not exist: check "
                "PASSFLOW_DATABASE_URL, or create it with `passflow db upgrade`")
    try:
        with engine.connect() as connection:
            problem = runs_on(connection)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return f"cannot reach the database at {shown(url)}: {reason}"
    finally:
        engine.dispose()
    if problem is None:
        return None
    return f"the database at {shown(url)} {'has' if problem.startswith('no ') else 'is'} {problem}"
