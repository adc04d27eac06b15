"""`passflow db upgrade`: Alembic migrations, configured in code so they run from anywhere; and
whether a database is one passflow can run on (reachable, migrated to head)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
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


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


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
            current = MigrationContext.configure(connection).get_current_revision()
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return f"cannot reach the database at {shown(url)}: {reason}"
    finally:
        engine.dispose()
    needed = head()
    if current is None:
        return (f"the database at {shown(url)} has no passflow schema: run `passflow db "
                "upgrade`")
    if current != needed:
        return (f"the database at {shown(url)} is at revision {current}, this passflow needs "
                f"{needed}: run `passflow db upgrade` (or run the passflow that matches it)")
    return None
