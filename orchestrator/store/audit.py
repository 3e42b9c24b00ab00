"""The audit trail: events written beside what they record, and the chain that proves them.

Each event stores the hash of the one before it.

PostgreSQL writes the chain (a trigger, under a lock, see migration 0008) and refuses any
UPDATE, DELETE or TRUNCATE of ``audit_events``. :func:`verify` recomputes every hash from the
stored fields and names the first event where the chain breaks: an event changed (its hash
no longer matches its fields), removed, or inserted (the next one's ``prev_hash`` no longer
matches).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, text

from orchestrator.errors import Conflict
from orchestrator.store.sql import now
from orchestrator.store.tables import audit_events, audit_verifications


def audit(conn: Connection, actor: str, action: str, target: str, **details: Any) -> None:
    conn.execute(insert(audit_events).values(at=now(), actor=actor, action=action, target=target, details=details))


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



_CANONICAL = """jsonb_build_array(coalesce(prev_hash, ''), seq,
    to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), actor, action, target, details)::text"""
_WALK = text(f"""
SELECT id, seq, prev_hash, hash,
       encode(sha256(convert_to({_CANONICAL}, 'UTF8')), 'hex') AS expected,
       lag(hash) OVER (ORDER BY seq) AS previous,
       lag(seq) OVER (ORDER BY seq) AS previous_seq
FROM audit_events WHERE seq > :after ORDER BY seq LIMIT :batch
""")
_BATCH = 10_000


@dataclass(frozen=True)
class Verdict:
    events: int
    broken_at: int | None = None  # the seq of the first event that does not fit
    event_id: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(engine: Engine) -> Verdict:
    """Walk the whole chain in order; the first broken link, if any."""
    if engine.dialect.name != "postgresql":
        raise Conflict("the audit chain is kept by PostgreSQL; local mode (SQLite) has none to verify: set "
                       "MILLRACE_DATABASE_URL to the PostgreSQL database whose chain to check")
    checked, after, previous_hash, previous_seq = 0, 0, None, 0
    with engine.connect() as conn:
        unchained = conn.execute(text("SELECT min(id) FROM audit_events WHERE seq IS NULL")).scalar()
        if unchained is not None:
            return Verdict(checked, 0, unchained, "an event outside the chain (written with the trigger off)")
        while True:
            rows = conn.execute(_WALK, {"after": after, "batch": _BATCH}).all()
            if not rows:
                return Verdict(checked)
            for i, row in enumerate(rows):
                expected_prev = row.previous if i else previous_hash
                seq_before = row.previous_seq if i else previous_seq
                if row.seq != seq_before + 1:
                    return Verdict(checked, row.seq, row.id, f"events {seq_before + 1}..{row.seq - 1} are missing")
                if row.prev_hash != expected_prev:
                    return Verdict(checked, row.seq, row.id, "its prev_hash is not the hash of the event before it")
                if row.hash != row.expected:
                    return Verdict(checked, row.seq, row.id, "its fields no longer match its hash (changed)")
                checked += 1
            after, previous_hash, previous_seq = rows[-1].seq, rows[-1].hash, rows[-1].seq


def keep_verdict(engine: Engine, verdict: Verdict) -> None:
    """Keep a walk's outcome with its time (what the console's audit page shows)."""
    with engine.begin() as conn:
        conn.execute(insert(audit_verifications).values(at=now(), events=verdict.events, ok=verdict.ok,
                                                        broken_event_id=verdict.event_id, reason=verdict.reason))


def last_verdict(engine: Engine) -> dict[str, Any] | None:
    """The newest kept walk of the chain, or None if it was never verified."""
    with engine.connect() as conn:
        row = conn.execute(select(audit_verifications).order_by(audit_verifications.c.id.desc()).limit(1)).first()
    return dict(row._mapping) if row else None


def actors_of(engine: Engine, action: str, targets: list[str]) -> dict[str, str]:
    """The actor of each target's ``action`` event (``run:<id>`` -> ``<id>``: who), in one query."""
    if not targets:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(select(audit_events.c.target, audit_events.c.actor).where(
            audit_events.c.action == action, audit_events.c.target.in_(targets)))
        return {row.target.split(":", 1)[1]: row.actor for row in rows}
