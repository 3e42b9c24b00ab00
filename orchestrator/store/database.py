"""Database connections and migrations, and the one place that says which URL each uses.

The runtime connects with ``MILLRACE_DATABASE_URL`` (``Settings.database_url``). Migrations
connect as the schema's owner, ``MILLRACE_DATABASE_OWNER_URL``, when that is set (a runtime
role then need not be allowed to alter the schema), else with the runtime URL. Both
``millrace db upgrade`` and alembic's own command line (``alembic.ini`` at the repository
root; ``migrations/env.py``) ask ``migration_url`` here.
"""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text

if TYPE_CHECKING:
    from config.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, connections: int = 10) -> Engine:
    """An engine for ``url`` holding up to ``connections`` at once; SQLite gets WAL and a
    busy timeout so workers can share it."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # No pre-ping round trip per checkout: the tasks requeue their message when the
    # database drops a connection (tasks/app.py), which also covers a restart.
    # A database that does not answer fails a connection in seconds, not at TCP's pace.
    return create_engine(url, pool_size=(connections + 1) // 2, max_overflow=connections // 2,
                         connect_args=_CONNECT_ARGS)


_CONNECT_ARGS = {"connect_timeout": 5}
_AUTOCOMMIT: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def autocommit(engine: Engine) -> Engine:
    """``engine`` in autocommit mode: a single statement commits without BEGIN/COMMIT round trips.

    On PostgreSQL a pool of its own, of connections that stay in autocommit (disposed with
    ``engine``): switching a pooled connection into autocommit and back costs more CPU than the
    statement it runs (0.25 against 0.09 ms a statement here), and the hot path's writes are
    such statements. Elsewhere (SQLite) the same pool with the option set per checkout."""
    twin = _AUTOCOMMIT.get(engine)
    if twin is None:
        if engine.dialect.name == "postgresql":
            twin = create_engine(engine.url, isolation_level="AUTOCOMMIT", pool_size=engine.pool.size(),
                                 max_overflow=engine.pool._max_overflow, connect_args=_CONNECT_ARGS)
            event.listen(engine, "engine_disposed", lambda _engine, twin=twin: twin.dispose())
        else:
            twin = engine.execution_options(isolation_level="AUTOCOMMIT")
        _AUTOCOMMIT[engine] = twin
    return twin


def migration_url(settings: Settings | None = None, *, explicit: bool = False) -> str:
    """The URL migrations connect with: the owner's if set, else the runtime database's.

    ``explicit``: only a URL set in the environment will do, not local mode's SQLite file
    (alembic's command line must not quietly migrate a file nobody named); raises
    LookupError when neither variable is set.
    """
    if settings is None:
        from config.settings import load_settings

        settings = load_settings()
    if settings.database_owner_url:
        return settings.database_owner_url
    if explicit and not settings.database_named:
        raise LookupError("set MILLRACE_DATABASE_URL (or MILLRACE_DATABASE_OWNER_URL, to migrate as the "
                          "schema's owner) to the database to migrate, e.g. "
                          "postgresql+psycopg://user@host:5432/millrace")
    return settings.database_url


def runtime_role(settings: Settings | None = None) -> str | None:
    """The role the app and workers connect as, when it is not the schema's owner: the user
    of ``MILLRACE_DATABASE_URL`` when ``MILLRACE_DATABASE_OWNER_URL`` names another."""
    if settings is None:
        from config.settings import load_settings

        settings = load_settings()
    if not settings.database_owner_url or not settings.database_named:
        return None
    runtime, owner = make_url(settings.database_url).username, make_url(settings.database_owner_url).username
    return runtime if runtime and runtime != owner else None


def grant_runtime(conn: Connection, role: str) -> None:
    """What the runtime role may do: read and write every table but the audit trail and its
    checkpoints, which it may only read and append to, and the record of their purges, which it
    may only read (purging is the owner's: ``millrace audit purge``). It owns nothing, so it
    cannot alter a table, disable a trigger (the chain's, or the one refusing UPDATE and DELETE)
    or truncate."""
    quoted = conn.dialect.identifier_preparer.quote(role)
    for statement in (
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_events FROM {quoted}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_checkpoints FROM {quoted}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_purges FROM {quoted}",
        f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
    ):
        conn.execute(text(statement))


def ping(engine: Engine) -> None:
    """Raises unless the database answers a query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _alembic_config(engine: Engine):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration."""
    from alembic import command

    command.upgrade(_alembic_config(engine), "head")


def is_current(engine: Engine) -> bool:
    """Whether the schema is at the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(_alembic_config(engine)).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads


def flush_commits(engine: Engine) -> None:
    """Wait until what this process committed unflushed (``sql.unflushed``) is on disk: a
    commit that writes (it takes a transaction id) and waits for the WAL flush, which covers
    every commit before it. Nothing to wait for elsewhere (SQLite)."""
    if engine.dialect.name == "postgresql":
        with autocommit(engine).connect() as conn:
            conn.execute(text("SELECT pg_current_xact_id()"))
