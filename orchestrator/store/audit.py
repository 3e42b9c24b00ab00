"""The audit trail: events written beside what they record, and the chains that prove them.

Each event stores the hash of the one before it in its chain: a run's events chain within
the run (so writers of different runs never wait on each other), every other event in the
one ``system`` chain. PostgreSQL writes the chains (a trigger holding the chain's head row,
see migrations 0008 and 0027) and refuses any UPDATE, DELETE or TRUNCATE of ``audit_events``;
signed checkpoints (:mod:`orchestrator.store.checkpoints`) seal the chains' heads, and only
the schema's owner may purge the oldest of them, as whole checkpoints
(:mod:`orchestrator.store.audit_purges`). :mod:`orchestrator.store.verification` walks it all.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, Connection, Engine, bindparam, func, insert, select

from orchestrator.store.sql import now
from orchestrator.store.tables import audit_events


def audit(conn: Connection, actor: str, action: str, target: str, **details: Any) -> None:
    conn.execute(insert(audit_events).values(at=now(), actor=actor, action=action, target=target, details=details))


def event_per_row(rows: CTE, action: Any, details: Any) -> CTE:
    """One audit event per row of ``rows`` (the CTE of a change's RETURNING), as a CTE of the
    same statement: on PostgreSQL a change and its events are one statement, one round trip.
    ``action`` and ``details`` are SQL (over ``rows``' columns if need be); the event's time,
    actor and target are the parameters ``event_at``, ``event_actor`` and ``event_target``."""
    c = audit_events.c
    return insert(audit_events).from_select(["at", "actor", "action", "target", "details"], select(
        bindparam("event_at", type_=c.at.type), bindparam("event_actor", type_=c.actor.type), action,
        bindparam("event_target", type_=c.target.type), details,
    ).select_from(rows)).cte(f"{rows.name}_event")


def acting(conn: Connection, actor: str) -> None:
    """Name who causes the step transitions of this transaction: the step_runs trigger writes
    their audit events with this actor instead of the row's worker (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.set_config("millrace.actor", actor, True)))


def record_event(engine: Engine, actor: str, action: str, target: str, **details: Any) -> None:
    """An audit event on its own (what happened changed nothing else)."""
    with engine.begin() as conn:
        audit(conn, actor, action, target, **details)


def list_audit(engine: Engine, *, action: str | None = None, target: str | None = None,
               after_id: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    """Audit events, oldest first, after the event id ``after_id``."""
    query = select(audit_events).where(audit_events.c.id > after_id)
    if action:
        query = query.where(audit_events.c.action.startswith(action, autoescape=True))
    if target:
        query = query.where(audit_events.c.target == target)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(audit_events.c.id).limit(limit)).mappings()]




def canonical(alias: str = "") -> str:
    """What one event's hash covers, as SQL over its columns (``alias``: e.g. ``"e."``); the
    chain trigger (migrations 0008 and 0027) computes it the same way."""
    return f"""jsonb_build_array(coalesce({alias}prev_hash, ''), {alias}seq,
    to_char({alias}at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), {alias}actor, {alias}action, {alias}target,
    {alias}details)::text"""


def actors_of(engine: Engine, action: str, targets: list[str]) -> dict[str, str]:
    """The actor of each target's ``action`` event (``run:<id>`` -> ``<id>``: who), in one query."""
    if not targets:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(select(audit_events.c.target, audit_events.c.actor).where(
            audit_events.c.action == action, audit_events.c.target.in_(targets)))
        return {row.target.split(":", 1)[1]: row.actor for row in rows}
