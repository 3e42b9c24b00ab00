"""Helpers every statement of the store uses: the time, autocommit, dialect-aware inserts."""
from __future__ import annotations

import datetime as dt
import functools
import re
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


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """``value`` with what PostgreSQL cannot keep in text or JSON (NUL characters, lone
    UTF-16 surrogates) replaced by U+FFFD: a step's output is recorded whatever bytes it
    held, rather than failing the write (and, with it, leaving its run running)."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value) if _UNSTORABLE.search(value) else value
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value
