"""Debounced starts: within a flow's `concurrency: {debounce: ...}` window, a start with the
same key joins the run the first one recorded, and its idempotency key is kept so that a
retry of it finds that run (a run's row holds one key: its first start's)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from orchestrator.execution.lifecycle import RunStatus
from orchestrator.store.audit import audit
from orchestrator.store.tables import joined_keys, runs


def join_pending(conn: Connection, flow_id: str, key: str | None, at: dt.datetime, *, inputs: dict[str, Any],
                 labels: dict[str, str], idempotency_key: str | None, actor: str, trigger: str) -> str | None:
    """The run of this flow and key whose window is still open, given these inputs and labels
    (the latest win); None when there is none. The key's lock, held until commit, makes
    concurrent starts find each other: one inserts, the others join."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"millrace-debounce:{flow_id}:{key}"))))
    pending = conn.execute(select(runs.c.id).where(
        runs.c.flow_id == flow_id, runs.c.concurrency_key == key,
        runs.c.status == RunStatus.QUEUED.value, runs.c.debounce_until > at)
        .order_by(runs.c.created_at.desc()).limit(1).with_for_update()).scalar()
    if pending is None:
        return None
    conn.execute(update(runs).where(runs.c.id == pending).values(inputs=inputs, labels=labels))
    if idempotency_key is not None:
        conn.execute(insert(joined_keys).values(flow_id=flow_id, idempotency_key=idempotency_key, run_id=pending,
                                                created_at=at))
    audit(conn, actor, "run.debounced", f"run:{pending}", trigger=trigger)
    return pending


def joined_run(conn: Connection, flow_id: str, idempotency_key: str) -> Any:
    """The (id, status) of the run a start with this key joined, or None."""
    joined = joined_keys.c
    return conn.execute(select(runs.c.id, runs.c.status).join(joined_keys, joined.run_id == runs.c.id).where(
        joined.flow_id == flow_id, joined.idempotency_key == idempotency_key)).first()
