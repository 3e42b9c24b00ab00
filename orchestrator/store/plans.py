"""What the database does with the statements a piece of code runs: capture them, find the
sequential scans in their plans, keep the planner's statistics fresh (``millrace bench scale``
and its tests)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, event, text

# The tables that grow with history (or, the outbox, with a backlog): none may be read whole.
HISTORY_TABLES = frozenset({"runs", "step_runs", "outbox", "audit_events", "trigger_fires", "schedule_fires"})
SMALL_TABLE = 1_000  # rows: a table this small is best read whole, whatever its indexes


def analyze_history(engine: Engine) -> None:
    """Fresh planner statistics for the history tables (what autovacuum does after a while)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"ANALYZE {', '.join(sorted(HISTORY_TABLES))}, schedules"))


@contextlib.contextmanager
def captured() -> Iterator[list[tuple[str, Any]]]:
    """The SELECTs any engine runs meanwhile (the API app has an engine of its own)."""
    seen: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if not executemany and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", keep)


def plan(engine: Engine, statement: str, parameters: Any) -> dict[str, Any]:
    """The planner's plan for a captured statement (EXPLAIN, FORMAT JSON: its top node)."""
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar()[0]["Plan"]


def seq_scans(engine: Engine, statement: str, parameters: Any) -> list[str]:
    """The history tables ``statement``'s plan reads sequentially, of those holding more than
    ``SMALL_TABLE`` rows (an empty outbox is best read whole)."""
    top = plan(engine, statement, parameters)
    with engine.connect() as conn:
        found: list[str] = []

        def walk(node: dict[str, Any]) -> None:
            if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") in HISTORY_TABLES:
                found.append(node["Relation Name"])
            for child in node.get("Plans", []):
                walk(child)

        walk(top)
        if not found:
            return []
        sizes = dict(conn.execute(text("SELECT relname, reltuples FROM pg_class WHERE relname = ANY(:names)"),
                                  {"names": found}).all())
    return [f"Seq Scan on {name}" for name in found if sizes.get(name, 0) > SMALL_TABLE]
