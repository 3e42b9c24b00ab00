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
    return sql.kept_value(engine, dependency_locks.c.lock, requirements_key(requirements),
                          lambda: {"requirements": requirements, "lock": resolve_now()})


def lock_of(engine: Engine, requirements: list[str]) -> str | None:
    """The lock kept for ``requirements``, if any."""
    with engine.connect() as conn:
        return conn.execute(select(dependency_locks.c.lock).where(
            dependency_locks.c.key == requirements_key(requirements))).scalar()
