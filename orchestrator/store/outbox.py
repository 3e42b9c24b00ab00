"""What commits leave owed: one table, one way to owe, find the overdue and mark done.

The delivery guarantee is "record, then send, then mark sent": a transaction that makes a
message owed (a run recorded, a run failed with on_failure steps, a waiting step decided,
a run ended) writes an outbox row with it; after the commit its doer sends it and deletes
the row. A doer that dies in between leaves the row, and the sweeper does it later: at
least once, and every receiver is idempotent.
"""
from __future__ import annotations

import datetime as dt
import enum
import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CTE, ColumnElement, Connection, Engine, bindparam, delete, literal, select, update
from sqlalchemy.dialects import postgresql

from orchestrator.store.database import autocommit
from orchestrator.store.sql import dialect_insert, now, unflushed
from orchestrator.store.tables import outbox


class OwedKind(enum.StrEnum):
    RUN = "run"  # a run's first message (None: compiled from the run's row when sent)
    ON_FAILURE = "on_failure"  # a failed run's on_failure steps
    FINALLY = "finally"  # a run's finally steps (compiled from the run's record when sent)
    CONTINUATION = "continuation"  # a decided waiting step's saved message
    FOLLOW_UP = "follow_up"  # what a run's end sets off (flow triggers, held runs)
    DEBOUNCED = "debounced"  # a debounced run's first message, owed from its window's end


@dataclass(frozen=True)
class Owed:
    """One outbox row."""

    id: int
    kind: OwedKind
    run_id: str
    attempt_id: int | None = None
    message: dict[str, Any] | None = None


def owe(conn: Connection, kind: OwedKind, run_id: str, *, attempt_id: int | None = None,
        message: dict[str, Any] | None = None, since: dt.datetime | None = None) -> Owed | None:
    """Record in ``conn``'s transaction that ``kind`` is owed for this run (or attempt); None
    when it was owed already (the same key: each is owed once)."""
    key = f"{kind.value}:{attempt_id if kind is OwedKind.CONTINUATION else run_id}"
    statement = dialect_insert(conn, outbox).values(
        key=key, kind=kind.value, run_id=run_id, attempt_id=attempt_id, message=message,
        owed_since=since or now()).on_conflict_do_nothing(index_elements=["key"]).returning(outbox.c.id)
    owed_id = conn.execute(statement).scalar()
    return None if owed_id is None else Owed(owed_id, kind, run_id, attempt_id, message)


def owed_per_row(rows: CTE, kind: OwedKind, where: ColumnElement[bool]) -> CTE:
    """``owe`` as a CTE of the statement that makes it owed (PostgreSQL): ``kind`` owed for each
    row of ``rows`` (its ``id`` a run's) that ``where`` admits, once per key, since the
    parameter ``event_at`` (with the parameter ``owed_message``); its ids returned."""
    c = outbox.c
    rows_owed = select(literal(f"{kind.value}:") + rows.c.id, literal(kind.value, c.kind.type), rows.c.id,
                       bindparam("owed_message", type_=c.message.type), bindparam("event_at", type_=c.owed_since.type),
                       ).select_from(rows).where(where)
    return (postgresql.insert(outbox).from_select(["key", "kind", "run_id", "message", "owed_since"], rows_owed)
            .on_conflict_do_nothing(index_elements=["key"]).returning(c.id).cte(f"{rows.name}_owed"))


@functools.cache
def _done_statement(dialect: str) -> Any:
    # Unflushed: lost only with PostgreSQL's own crash, when the sweeper sends again what a
    # redelivery would (every message is safe to receive twice).
    return delete(outbox).where(outbox.c.id == bindparam("owed_id"), unflushed(dialect))


def done(engine: Engine, owed: Owed) -> None:
    """It was sent (or followed up): nothing is owed any more."""
    with autocommit(engine).connect() as conn:
        conn.execute(_done_statement(engine.dialect.name), {"owed_id": owed.id})


def overdue(engine: Engine, older_than: dict[OwedKind, float], limit: int = 100) -> list[Owed]:
    """What has been owed longer than its kind's grace period (its doer most likely died),
    oldest first."""
    at = now()
    rows = []
    with engine.connect() as conn:
        for kind, seconds in older_than.items():
            rows += conn.execute(select(outbox).where(
                outbox.c.kind == kind.value, outbox.c.owed_since < at - dt.timedelta(seconds=seconds))
                .order_by(outbox.c.owed_since).limit(limit)).all()
    return [Owed(r.id, OwedKind(r.kind), r.run_id, r.attempt_id, r.message) for r in rows]


def owed_for(engine: Engine, kind: OwedKind, run_id: str) -> Owed | None:
    """The row owed of ``kind`` for a run, if any (a follow-up that may already be done)."""
    with engine.connect() as conn:
        row = conn.execute(select(outbox).where(outbox.c.key == f"{kind.value}:{run_id}")).first()
    return None if row is None else Owed(row.id, OwedKind(row.kind), row.run_id, row.attempt_id, row.message)


def owed_from_now(conn: Connection, owed: list[Owed]) -> None:
    """Count these as owed from now (the end of a long transaction), not from their insert."""
    conn.execute(update(outbox).where(outbox.c.id.in_([o.id for o in owed])).values(owed_since=now()))
