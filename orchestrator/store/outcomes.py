"""A step attempt's outcome, written once: the statement every path that records one uses,
on its own or as the first part of the statement that opens the next attempt of its batch
(``attempts.open_attempt``)."""
from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Engine, bindparam, update

from orchestrator.execution.lifecycle import OPEN_STEP, StepStatus
from orchestrator.store.database import autocommit
from orchestrator.store.sql import inline, now, storable, unflushed
from orchestrator.store.tables import step_runs


def outcome_values(attempt_id: int, status: StepStatus, result: Any = None, error: str | None = None,
                   logs: str | None = None, cached: bool = False) -> dict[str, Any]:
    """An attempt's outcome as ``write_outcome`` (and ``open_attempt``'s ``after``) take it, now."""
    return {"attempt_id": attempt_id, "status": status.value, "result": storable(result), "error": storable(error),
            "logs": storable(logs), "cached": cached, "finished_at": now()}


def write_outcome(engine: Engine, values: dict[str, Any], *, flush: bool = True) -> bool:
    """Write an outcome (``outcome_values``) unless its attempt has one; whether it was written."""
    statement = RECORD_OUTCOME if flush else _unflushed_outcome(engine.dialect.name)
    with autocommit(engine).connect() as conn:
        return bool(conn.execute(statement, values).rowcount)


def outcome_statement(prefix: str = "") -> Any:
    """An attempt's outcome, unless it has one: its parameters named as ``outcome_values``'
    keys, after ``prefix``."""
    def param(name: str) -> Any:
        return bindparam(prefix + name, type_=step_runs.c[name].type)
    return (update(step_runs)
            .where(step_runs.c.id == bindparam(prefix + "attempt_id"), step_runs.c.status.in_(inline(OPEN_STEP)))
            .values(status=param("status"), result=param("result"), error=param("error"), logs=param("logs"),
                    cached=param("cached"), finished_at=param("finished_at"), continuation=None))


RECORD_OUTCOME = outcome_statement()


@functools.cache
def _unflushed_outcome(dialect: str) -> Any:
    return RECORD_OUTCOME.where(unflushed(dialect))
