"""Locks kept for requirement sets: the first lock resolved for a set is the one every
later run installs."""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, select

from orchestrator.definitions.requirements import requirements_key
from orchestrator.store import sql
from orchestrator.store.tables import dependency_locks


def kept_lock(engine: Engine, requirements: list[str], resolve_now: Callable[[], str]) -> str:
    """The lock kept for ``requirements``, or ``resolve_now()``'s, kept (the first writer wins)."""
    key = requirements_key(requirements)
    found = lock_of(engine, requirements)
    if found is not None:
        return found
    lock = resolve_now()
    with engine.begin() as conn:
        conn.execute(sql.dialect_insert(conn, dependency_locks).values(
            key=key, requirements=requirements, lock=lock, created_at=sql.now()).on_conflict_do_nothing())
        return conn.execute(select(dependency_locks.c.lock).where(dependency_locks.c.key == key)).scalar_one()


def lock_of(engine: Engine, requirements: list[str]) -> str | None:
    """The lock kept for ``requirements``, if any."""
    with engine.connect() as conn:
        return conn.execute(select(dependency_locks.c.lock).where(
            dependency_locks.c.key == requirements_key(requirements))).scalar()
