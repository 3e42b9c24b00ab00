"""Helpers every statement of the store uses: the time, autocommit, dialect-aware inserts."""
from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from sqlalchemy import Connection, Engine, literal_column
from sqlalchemy.dialects import postgresql, sqlite


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@functools.cache
def autocommit(engine: Engine) -> Engine:
    """The engine in autocommit mode: a single statement commits without BEGIN/COMMIT round trips."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def dialect_insert(engine_or_conn: Engine | Connection, table: Any) -> Any:
    """An INSERT that knows ON CONFLICT for the connected database."""
    name = engine_or_conn.dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(table)


def inline(values: tuple[str, ...]) -> list[Any]:
    """Constants written into the SQL text: an IN over bound parameters is re-expanded (and
    the statement recompiled) at every execution, which a statement run per step cannot afford."""
    return [literal_column(f"'{value}'") for value in values]
