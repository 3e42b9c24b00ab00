"""Helpers every statement of the store uses: the time, dialect-aware inserts, unflushed commits."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, func, literal_column, select, true
from sqlalchemy.dialects import postgresql, sqlite


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def unflushed(dialect: str) -> Any:
    """A condition that always holds and lets its statement's commit return before the WAL
    reaches the disk (``synchronous_commit`` off for that transaction alone; a flush costs
    about 1.2 ms here, several under load).

    Only for a write that needs no flush of its own: a crash of the worker loses nothing
    (PostgreSQL has it), and the next commit that does flush (or the WAL writer, within
    ``wal_writer_delay``) makes it durable with everything before it. What only a crash of
    PostgreSQL itself in that moment could lose must be something a redelivery or the
    sweeper does again (an attempt opened, a run started, an owed send marked done, the
    outcome of a batch's step with more of its task after it: a task is acked only after a
    flushed write, ``database.flush_commits`` when nothing else flushes, so a lost outcome's
    step runs again in the redelivered task, and is recorded once).
    """
    if dialect != "postgresql":
        return true()
    return func.set_config("synchronous_commit", "off", True).isnot(None)


def dialect_insert(engine_or_conn: Engine | Connection, table: Any) -> Any:
    """An INSERT that knows ON CONFLICT for the connected database."""
    name = engine_or_conn.dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(table)


def kept_value(engine: Engine, column: Any, key: str, make_row: Callable[[], dict[str, Any]]) -> Any:
    """``column``'s value in the row whose ``key`` column is ``key``: the row kept if there is
    one, else ``make_row()``'s, inserted unless another writer's got there first (the first wins)."""
    table = column.table
    with engine.connect() as conn:
        found = conn.execute(select(column).where(table.c.key == key)).scalar()
    if found is not None:
        return found
    row = make_row()
    with engine.begin() as conn:
        conn.execute(dialect_insert(conn, table).values(key=key, created_at=now(), **row).on_conflict_do_nothing())
        return conn.execute(select(column).where(table.c.key == key)).scalar_one()


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
